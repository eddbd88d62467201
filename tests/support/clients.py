"""boto3 clients for tests: pointed at a test server, no retries, every answer checked for conformance.

The check itself is attached to every botocore client this process makes (support.conformance), so a client
a test builds another way is checked too; this factory only spares each test the endpoint, keys and config.
"""

from __future__ import annotations

import boto3
from botocore.config import Config

from support.server import REGION

ACCESS_KEY, SECRET_KEY = "AKIDEXAMPLE", "secret"


def make_client(
    service: str,
    endpoint_url: str,
    *,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    region: str = REGION,
    session_token: str | None = None,
    config: Config | None = None,
    **config_options,
):
    """A boto3 client for ``service`` at ``endpoint_url``; ``config`` / ``config_options`` add to the defaults
    (one attempt: a test must see the first answer, not a retried one)."""
    merged = Config(retries={"max_attempts": 1, "mode": "standard"})
    if config is not None:
        merged = merged.merge(config)
    if config_options:
        merged = merged.merge(Config(**config_options))
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=session_token,
        config=merged,
    )


def error_of(call) -> tuple[str, str, int]:
    """(code, message, HTTP status) of the ClientError ``call()`` must raise."""
    import pytest
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as err:
        call()
    response = err.value.response
    return response["Error"]["Code"], response["Error"]["Message"], response["ResponseMetadata"]["HTTPStatusCode"]
