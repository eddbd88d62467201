"""Who is calling: the access key in the SigV4 signature decides the account.

Open mode (the default) accepts any key without checking signatures; a key
listed in the credentials file, if one is given, maps to its account, and any
other key to the default account. Strict mode verifies signatures against the
credentials file; see :mod:`selfmaker.server.sigv4`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .credentials import KeyRing, load_credentials
from .http import Request

if TYPE_CHECKING:
    from ..config import Settings
    from .sigv4 import ChunkVerifier

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
    user_name: str = ""  # the credentials file's user_name; empty means the account's root
    # Strict mode, aws-chunked uploads signed per chunk: the S3 endpoint checks every chunk with it.
    streaming: ChunkVerifier | None = None


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


class Authenticator(Protocol):
    """What the ASGI app asks of the authenticator the settings chose (open or strict)."""

    checks_payload: bool  # whether authenticate reads payload_sha256 (else the caller need not hash the body)

    def check_headers(self, request: Request, scope: Scope | None, service: str | None = None) -> None:
        """Refuse (raise AWSError) what the headers alone decide, before the body is read."""

    def authenticate(
        self, request: Request, scope: Scope | None, payload_sha256: str | None, service: str | None = None
    ) -> Principal:
        """The caller, or the AWSError refusing them."""


class OpenAuthenticator:
    """Any key works, signed or not; listed keys get their account, others the default one."""

    checks_payload = False

    def __init__(self, settings):
        self.settings = settings
        self.credentials = KeyRing(load_credentials(settings.credentials_file) if settings.credentials_file else {})

    def check_headers(self, request: Request, scope: Scope | None, service: str | None = None) -> None:
        """Nothing to refuse: open mode checks no signature."""

    def authenticate(
        self, request: Request, scope: Scope | None, payload_sha256: str | None, service: str | None = None
    ) -> Principal:
        access_key = scope.access_key if scope else ""
        known = self.credentials.get(access_key)
        return Principal(
            account_id=known.account_id if known else self.settings.default_account,
            access_key=access_key,
            region=scope.region if scope else self.settings.region,
            user_name=known.user_name if known else "",
        )


def make_authenticator(settings: Settings) -> Authenticator:
    if settings.auth_mode == "strict":
        from .sigv4 import StrictAuthenticator

        return StrictAuthenticator(settings)
    return OpenAuthenticator(settings)
