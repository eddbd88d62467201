"""STS GetCallerIdentity: who the SigV4 signature says the caller is.

The SageMaker SDK uses it for ``Session.account_id()``, the default bucket
name ``sagemaker-<region>-<account>`` and the expected-bucket-owner checks.
The access key decides the account (see docs/auth.md). A key that the
credentials file gives a ``user_name`` is that IAM user of its account; any
other key is the account's root identity.
"""

from __future__ import annotations

from ..server.operations import Context, operation
from .iam import unique_id


def caller_identity(ctx: Context) -> tuple[str, str]:
    """(Arn, UserId) of the caller, as IAM names them."""
    credential = getattr(ctx.backends.authenticator, "credentials", {}).get(ctx.access_key)
    if credential and credential.account_id == ctx.account_id and credential.user_name:
        name = credential.user_name
        return f"arn:aws:iam::{ctx.account_id}:user/{name}", unique_id("AIDA", ctx.account_id, name)
    # For the root identity AWS reports the account id as the UserId.
    return f"arn:aws:iam::{ctx.account_id}:root", ctx.account_id


@operation("sts", "GetCallerIdentity")
def get_caller_identity(ctx: Context, params: dict) -> dict:
    arn, user_id = caller_identity(ctx)
    return {"Account": ctx.account_id, "Arn": arn, "UserId": user_id}
