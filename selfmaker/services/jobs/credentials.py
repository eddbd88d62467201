"""Each job's and endpoint's own AWS credentials: its code calls this server as its account, while it lives.

A job's instances reach SelfMaker's S3, CloudWatch and SageMaker APIs with an
access key minted for the job when it starts (kept in the job record's private
``_credentials``, never returned by Describe) and known to the server's
authenticator, whatever its mode: strict mode verifies their signatures, and
either mode maps them to the job's account. An endpoint's instances get the key
minted at CreateEndpoint the same way (services/hosting). A restarted server
knows the keys of every job still running and of every endpoint again before it
serves a request; the job's end, or the endpoint's deletion, revokes its key.

Several servers share one database (docs/scale-out.md): a workload's calls may
reach a server that did not start it (behind a load balancer, or from a Ray node).
``workload_keys`` says which record holds each key, and the record's own
``_credentials`` decide: revoking pops them in the same transaction as the job's
end, so every server refuses the key once the record says so (another server
within ``RECHECK_SECONDS``, the time it keeps an answer).
"""

from __future__ import annotations

import secrets
import string
import threading
import time

from sqlalchemy import and_, delete, or_, select

from ...backends import Backends, background_worker
from ...server.credentials import Credential
from ...store import schema
from ...store.resources import Record

_KEY_ALPHABET = string.ascii_uppercase + string.digits
_PREFIX = "AKIASMJOB"
RECHECK_SECONDS = 2.0  # how long a server trusts what the database said about another server's workload key
_REMEMBERED = 10_000  # answers kept at most: a caller trying random keys cannot grow the memory


def mint() -> dict:
    """A new access key and secret, AWS-shaped (20 and 40 characters)."""
    return {
        "AccessKeyId": _PREFIX + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(11)),
        "SecretAccessKey": secrets.token_urlsafe(30),
    }


def _known(backends: Backends) -> dict[str, Credential] | None:
    """The authenticator's access keys, which both modes keep in ``credentials``."""
    return getattr(backends.authenticator, "credentials", None)


def grant(backends: Backends, record: Record) -> None:
    """Make the job's key valid on every server (idempotent): it signs as the job's account's root.
    Called outside any transaction: it writes which record holds the key (one row per record)."""
    issued, known = record.data.get("_credentials"), _known(backends)
    if not issued:
        return
    if known is not None:
        known[issued["AccessKeyId"]] = Credential(issued["AccessKeyId"], issued["SecretAccessKey"], record.account_id)
    K = schema.workload_keys
    with backends.store.write() as conn:
        held = conn.execute(select(K.c.access_key_id).where(K.c.owner_arn == record.arn)).scalars().all()
        if held != [issued["AccessKeyId"]]:
            conn.execute(delete(K).where(K.c.owner_arn == record.arn))
            conn.execute(K.insert().values(access_key_id=issued["AccessKeyId"], owner_arn=record.arn))


def revoke(backends: Backends, data: dict) -> None:
    issued, known = data.pop("_credentials", None), _known(backends)
    if issued and known is not None:
        known.pop(issued["AccessKeyId"], None)


class _Lookup:
    """The key ring's resolver: a workload key this server did not grant, as the database has it now."""

    def __init__(self, backends: Backends):
        self.backends = backends
        self._answers: dict[str, tuple[float, Credential | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, access_key: str) -> Credential | None:
        if not access_key.startswith(_PREFIX) or len(access_key) > 32:
            return None
        now = time.monotonic()
        with self._lock:
            kept = self._answers.get(access_key)
        if kept is not None and now - kept[0] < RECHECK_SECONDS:
            return kept[1]
        answer = self._ask(access_key)
        with self._lock:
            if len(self._answers) >= _REMEMBERED:
                self._answers.clear()
            self._answers[access_key] = (now, answer)
        return answer

    def _ask(self, access_key: str) -> Credential | None:
        K = schema.workload_keys
        with self.backends.store.read() as conn:
            arn = conn.execute(select(K.c.owner_arn).where(K.c.access_key_id == access_key)).scalar()
            record = self.backends.resources.get_by_arn(arn, conn=conn) if arn else None
        issued = record.data.get("_credentials") if record is not None else None
        if not issued or issued.get("AccessKeyId") != access_key:
            return None  # revoked (the job ended, the endpoint or notebook went) or never a workload key
        return Credential(access_key, issued["SecretAccessKey"], record.account_id)


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

        known = _known(self.backends)
        if known is not None and hasattr(known, "resolver"):
            known.resolver = _Lookup(self.backends)

        kinds = [k.name for k in KINDS.values() if isinstance(k, JobKind)]
        R = schema.resources
        with self.backends.store.read() as conn:
            rows = conn.execute(
                select(R.c.arn).where(
                    or_(and_(R.c.kind.in_(kinds), R.c.status.in_(sorted(ACTIVE))), R.c.kind == ENDPOINT_KIND)
                )
            )
            records = [self.backends.resources.get_by_arn(row.arn, conn=conn) for row in rows.fetchall()]
        for record in records:  # each grant writes: outside the read
            if record is not None:
                grant(self.backends, record)

    def stop(self) -> None:
        pass


background_worker(_Regrant)
