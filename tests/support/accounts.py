"""Two (or more) accounts on one server: a credentials file mapping each access key to its account.

``accounts_server("name", A, B)`` returns the two fixtures such a test module needs, written once here:
``srv`` (the module's open-mode server, with the suite's job runtime) and ``as_`` (``as_(A, "s3")``: a
checked client of that account on it). A module takes them as ``srv, as_ = accounts_server(...)``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from support.pipelines import runtimes_config
from support.waiting import wait_for

SECRET = "secret"

# The two accounts of the account-wall tests (tests/test_security_accounts*.py).
A = SimpleNamespace(key="AKIAACCOUNTSWALLA001", account="111111111111")
B = SimpleNamespace(key="AKIAACCOUNTSWALLB001", account="222222222222")
ROLE = "arn:aws:iam::{account}:role/SageMakerRole"
REGION = "us-east-1"


def credentials_file(directory: Path, *accounts) -> Path:
    """An INI credentials file for ``accounts`` (each with ``key`` and ``account``), all with SECRET."""
    path = directory / "credentials.ini"
    path.write_text(
        "".join(f"[{who.key}]\nsecret_access_key = {SECRET}\naccount_id = {who.account}\n\n" for who in accounts)
    )
    return path


def accounts_server(name: str, *accounts):
    """The ``srv`` and ``as_`` fixtures of a module whose ``accounts`` share one server named ``name``."""

    @pytest.fixture(scope="module", name="srv")
    def server(make_server, tmp_path_factory):
        tmp = tmp_path_factory.mktemp(name)
        credentials = credentials_file(tmp, *accounts)
        return make_server(
            name, ["--credentials-file", str(credentials)], env={"SELFMAKER_RUNTIMES_CONFIG": runtimes_config(tmp)}
        ).start()

    @pytest.fixture(name="as_")
    def as_account(client, srv):
        """as_(A, "s3"[, **client options]) -> a client of that account on the module's server."""
        return lambda who, service="sagemaker", **kw: client(
            service, srv=srv, access_key=who.key, secret_key=SECRET, **kw
        )

    return server, as_account


# -- what the account-wall tests assert ----------------------------------------------------------------------


def refused(call, *codes: str, **kwargs) -> str:
    """Make a call that must fail with one of ``codes``; its message."""
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    error = err.value.response["Error"]
    assert error["Code"] in codes, f"{call.__name__}: {error}"
    return error["Message"]


NOT_FOUND = ("ResourceNotFound", "ValidationException")


def arn_of(who, resource: str, region: str = REGION) -> str:
    return f"arn:aws:sagemaker:{region}:{who.account}:{resource}"


def until(check, timeout: float = 60, what: str = "condition"):
    """``check()``'s first truthy answer: the suite's wait_for, with timeout and what by position."""
    return wait_for(check, timeout=timeout, what=what)
