"""The embedded online store: one SQLite table in the feature store's own WAL file.

Chosen by measurement (docs/featurestore.md): a primary-key read here costs
tens of microseconds, far below the HTTP round trip, and the online write and
its offline journal row commit in one local transaction. The metadata
database was slower (SQLAlchemy per call, and it may be a remote PostgreSQL),
and an in-memory map would add a log, its compaction and a memory bound to
save microseconds nobody can see over HTTP.
"""

from __future__ import annotations

from ..journal import Journal, OfflineRow
from ..localdb import LocalDB
from .base import Change, OnlineStore, Outcome, Stored

_EXPIRED = "(online_records.expires_at IS NOT NULL AND online_records.expires_at <= :now)"
_UPSERT = (
    "INSERT INTO online_records (grp, rid, event_time, expires_at, deleted, payload) "
    "VALUES (:grp, :rid, :t, :x, :d, :p) ON CONFLICT (grp, rid) DO UPDATE SET "
    "event_time = excluded.event_time, expires_at = excluded.expires_at, deleted = excluded.deleted, "
    "payload = excluded.payload WHERE excluded.event_time {op} online_records.event_time OR " + _EXPIRED
)
_PUT = _UPSERT.format(op=">=")
_SOFT_DELETE = _UPSERT.format(op=">")


class EmbeddedOnlineStore(OnlineStore):
    def __init__(self, db: LocalDB):
        self.db = db

    def get_many(self, grp: str, record_ids: list[str], now: float) -> dict[str, Stored]:
        conn = self.db.conn()
        if len(record_ids) == 1:
            rows = conn.execute(
                "SELECT rid, event_time, expires_at, deleted, payload FROM online_records WHERE grp = ? AND rid = ?",
                (grp, record_ids[0]),
            ).fetchall()
        else:
            marks = ",".join("?" * len(record_ids))
            rows = conn.execute(
                f"SELECT rid, event_time, expires_at, deleted, payload FROM online_records "
                f"WHERE grp = ? AND rid IN ({marks})",
                (grp, *record_ids),
            ).fetchall()
        return {rid: Stored(t, x, False, p) for rid, t, x, d, p in rows if not d and (x is None or x > now)}

    def write(self, grp: str, change: Change | None, offline: list[OfflineRow], now: float) -> Outcome:
        with self.db.write() as conn:
            if change is not None and change.kind == "hard_delete":
                row = conn.execute(
                    "SELECT event_time, expires_at FROM online_records WHERE grp = ? AND rid = ?",
                    (grp, change.record_id),
                ).fetchall()
                row = row[0] if row else None
                if row and row[0] >= change.event_time and (row[1] is None or row[1] > now):
                    return Outcome.STALE
            if offline:
                Journal.append(conn, grp, offline)
            if change is None:
                return Outcome.APPLIED
            args = {"grp": grp, "rid": change.record_id, "t": change.event_time, "now": now}
            if change.kind == "put":
                cur = conn.execute(_PUT, {**args, "x": change.expires_at, "d": 0, "p": change.payload})
            elif change.kind == "soft_delete":
                cur = conn.execute(_SOFT_DELETE, {**args, "x": None, "d": 1, "p": None})
            else:
                cur = conn.execute("DELETE FROM online_records WHERE grp = ? AND rid = ?", (grp, change.record_id))
                return Outcome.APPLIED
            return Outcome.APPLIED if cur.rowcount else Outcome.SUPERSEDED

    def list_ids(self, grp: str, after: str | None, limit: int, include_soft_deleted: bool, now: float) -> list[str]:
        sql = "SELECT rid FROM online_records WHERE grp = ? AND rid > ? AND (expires_at IS NULL OR expires_at > ?)"
        if not include_soft_deleted:
            sql += " AND deleted = 0"
        rows = self.db.conn().execute(sql + " ORDER BY rid LIMIT ?", (grp, after or "", now, limit)).fetchall()
        return [r[0] for r in rows]

    def drop_group(self, grp: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM online_records WHERE grp = ?", (grp,))

    def purge_expired(self, now: float) -> int:
        with self.db.write() as conn:
            return conn.execute(
                "DELETE FROM online_records WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
            ).rowcount
