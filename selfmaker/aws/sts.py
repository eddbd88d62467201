"""STS GetCallerIdentity: who the SigV4 signature says the caller is.

The SageMaker SDK uses it for ``Session.account_id()``, the default bucket
name ``sagemaker-<region>-<account>`` and the expected-bucket-owner checks.
SelfMaker's identities are accounts (open mode maps every key to the default
account; strict mode maps each key to the account its credentials file
names), so the caller is that account's root identity.
"""

from __future__ import annotations

from ..server.operations import Context, operation


def root_arn(account_id: str) -> str:
    return f"arn:aws:iam::{account_id}:root"


@operation("sts", "GetCallerIdentity")
def get_caller_identity(ctx: Context, params: dict) -> dict:
    # For the root identity AWS reports the account id as the UserId.
    return {"Account": ctx.account_id, "Arn": root_arn(ctx.account_id), "UserId": ctx.account_id}
