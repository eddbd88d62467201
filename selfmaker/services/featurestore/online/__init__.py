"""Online store backends, chosen by URL (docs/design.md, principle 4): embedded (default) or redis://."""

from __future__ import annotations

from ..journal import Journal
from ..localdb import LocalDB
from .base import Change, OnlineStore, Outcome, Stored


def open_online_store(url: str | None, db: LocalDB, journal: Journal) -> OnlineStore:
    """``None``/``embedded`` (the local SQLite file) or ``redis://[:password@]host:port/db`` (also rediss://)."""
    if not url or url == "embedded":
        from .embedded import EmbeddedOnlineStore

        return EmbeddedOnlineStore(db)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis_store import RedisOnlineStore

        return RedisOnlineStore(url, journal)
    raise ValueError(f"unsupported online store URL {url!r}: use 'embedded' or redis://host:port/db")


__all__ = ["Change", "OnlineStore", "Outcome", "Stored", "open_online_store"]
