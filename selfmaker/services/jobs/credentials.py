"""Each job's and endpoint's own AWS credentials: its code calls this server as its account, while it lives.

A job's instances reach SelfMaker's S3, CloudWatch and SageMaker APIs with an
access key minted for the job when it starts (kept in the job record's private
``_credentials``, never returned by Describe) and known to the server's
authenticator, whatever its mode: strict mode verifies their signatures, and
either mode maps them to the job's account. An endpoint's instances get the key
minted at CreateEndpoint the same way (services/hosting). A restarted server
knows the keys of every job still running and of every endpoint again before it
serves a request; the job's end, or the endpoint's deletion, revokes its key.
"""

from __future__ import annotations

import secrets
import string

from sqlalchemy import and_, or_, select

from ...backends import Backends, background_worker
from ...server.credentials import Credential
from ...store import schema
from ...store.resources import Record

_KEY_ALPHABET = string.ascii_uppercase + string.digits


def mint() -> dict:
    """A new access key and secret, AWS-shaped (20 and 40 characters)."""
    return {
        "AccessKeyId": "AKIASMJOB" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(11)),
        "SecretAccessKey": secrets.token_urlsafe(30),
    }


def _known(backends: Backends) -> dict[str, Credential] | None:
    """The authenticator's access keys, which both modes keep in ``credentials``."""
    return getattr(backends.authenticator, "credentials", None)


def grant(backends: Backends, record: Record) -> None:
    """Make the job's key valid (idempotent): it signs as the job's account's root."""
    issued, known = record.data.get("_credentials"), _known(backends)
    if issued and known is not None:
        known[issued["AccessKeyId"]] = Credential(issued["AccessKeyId"], issued["SecretAccessKey"], record.account_id)


def revoke(backends: Backends, data: dict) -> None:
    issued, known = data.pop("_credentials", None), _known(backends)
    if issued and known is not None:
        known.pop(issued["AccessKeyId"], None)


def environment(data: dict) -> dict[str, str]:
    issued = data["_credentials"]
    return {"AWS_ACCESS_KEY_ID": issued["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": issued["SecretAccessKey"]}


ENDPOINT_KIND = "Endpoint"  # an endpoint's key lives as long as its record (services/hosting/endpoints.py)


class _Regrant:
    """At start-up: the keys of the jobs still running, and of every endpoint, are valid again."""

    def __init__(self, backends: Backends):
        self.backends = backends

    def start(self) -> None:
        from ..kinds import KINDS
        from .lifecycle import ACTIVE, JobKind

        kinds = [k.name for k in KINDS.values() if isinstance(k, JobKind)]
        store = self.backends.resources
        with self.backends.store.read() as conn:
            R = schema.resources
            rows = conn.execute(
                select(R.c.arn).where(
                    or_(and_(R.c.kind.in_(kinds), R.c.status.in_(sorted(ACTIVE))), R.c.kind == ENDPOINT_KIND)
                )
            )
            for row in rows.fetchall():
                record = store.get_by_arn(row.arn, conn=conn)
                if record is not None:
                    grant(self.backends, record)

    def stop(self) -> None:
        pass


background_worker(_Regrant)
