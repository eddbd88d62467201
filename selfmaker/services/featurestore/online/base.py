"""The online store interface: the latest record per (feature group, record identifier).

Two backends implement it: :mod:`.embedded` (the local SQLite file; default)
and :mod:`.redis_store` (Redis, for several servers sharing one store).
Every write carries the offline journal rows that go with it, and a backend
makes those durable no later than the online change, so an acknowledged
write is never missing from the offline store.

The event-time rule is the backend's to enforce atomically: a put applies
when its event time is at least the stored one (the later write wins a tie,
as in the offline store's dedup order); a delete only when strictly later.
Expired records count as absent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum

from ..journal import OfflineRow


@dataclass
class Stored:
    event_time: float
    expires_at: float | None  # epoch seconds
    deleted: bool  # a soft-delete tombstone
    payload: bytes | None  # the Record as written: JSON list of FeatureValue


@dataclass
class Change:
    kind: str  # "put" | "soft_delete" | "hard_delete"
    record_id: str
    event_time: float
    payload: bytes | None = None
    expires_at: float | None = None


class Outcome(Enum):
    APPLIED = "applied"
    SUPERSEDED = "superseded"  # the stored record is newer: the online store is unchanged
    STALE = "stale"  # a hard delete not later than the stored record: nothing was written at all


class OnlineStore(ABC):
    @abstractmethod
    def get_many(self, grp: str, record_ids: list[str], now: float) -> dict[str, Stored]:
        """The live (not deleted, not expired) records among ``record_ids``."""

    def get(self, grp: str, record_id: str, now: float) -> Stored | None:
        return self.get_many(grp, [record_id], now).get(record_id)

    async def get_many_async(self, grp: str, record_ids: list[str], now: float) -> dict[str, Stored]:
        """``get_many`` from the event loop (GetRecord and BatchGetRecord run there: no hand-off to a worker
        thread). By default the read itself, which suits a store that never waits: a local SQLite WAL file,
        whose readers do not block on its writer. A store across a network overrides it with a read that
        awaits its answer, bounded by a timeout, so a slow store never holds up the loop's other requests."""
        return self.get_many(grp, record_ids, now)

    @abstractmethod
    def write(self, grp: str, change: Change | None, offline: list[OfflineRow], now: float) -> Outcome:
        """Journal ``offline`` durably and apply ``change`` under the event-time rule."""

    @abstractmethod
    def list_ids(self, grp: str, after: str | None, limit: int, include_soft_deleted: bool, now: float) -> list[str]:
        """Record identifiers in byte order after ``after``."""

    @abstractmethod
    def drop_group(self, grp: str) -> None:
        """Remove every record of a deleted group."""

    def purge_expired(self, now: float) -> int:
        """Physically remove expired records (reads already hide them); how many went."""
        return 0

    def close(self) -> None:
        pass
