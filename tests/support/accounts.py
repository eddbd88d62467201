"""Two (or more) accounts on one server: a credentials file mapping each access key to its account.

``accounts_server("name", A, B)`` returns the two fixtures such a test module needs, written once here:
``srv`` (the module's open-mode server, with the suite's job runtime) and ``as_`` (``as_(A, "s3")``: a
checked client of that account on it). A module takes them as ``srv, as_ = accounts_server(...)``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.pipelines import runtimes_config

SECRET = "secret"


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
