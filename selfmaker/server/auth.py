"""Who is calling: the access key in the SigV4 signature decides the account.

Open mode (the default) accepts any key and maps it to the default account.
Strict mode verifies signatures against a credentials file; see
:mod:`selfmaker.server.sigv4`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .http import Request

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")


@dataclass(frozen=True)
class Scope:
    access_key: str
    date: str
    region: str
    service: str


@dataclass(frozen=True)
class Principal:
    account_id: str
    access_key: str
    region: str


def signing_scope(request: Request) -> Scope | None:
    """The credential scope of a signed request (Authorization header or presigned query)."""
    header = request.headers.get("authorization", "")
    m = _CREDENTIAL.search(header)
    if m:
        return Scope(*m.groups())
    credential = request.query_value("X-Amz-Credential")
    if credential:
        parts = credential.split("/")
        if len(parts) == 5 and parts[4] == "aws4_request":
            return Scope(*parts[:4])
    return None


class OpenAuthenticator:
    """Any key works; every caller is the default account."""

    def __init__(self, settings):
        self.settings = settings

    def authenticate(self, request: Request, scope: Scope | None, payload_sha256: str | None) -> Principal:
        return Principal(
            account_id=self.settings.default_account,
            access_key=scope.access_key if scope else "",
            region=scope.region if scope else self.settings.region,
        )


def make_authenticator(settings):
    if settings.auth_mode == "strict":
        from .sigv4 import StrictAuthenticator

        return StrictAuthenticator(settings)
    return OpenAuthenticator(settings)
