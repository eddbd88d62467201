"""The offline store's write-ahead journal: every acknowledged write, until it is in a Parquet file.

A write appends its offline row here, durably, before the client hears
"200". The flusher then moves rows to the offline store in two steps that
make a crash at any point harmless:

1. *assign*: in one transaction, pending rows are grouped into batches, each
   with the object key and write_time its file will have;
2. *write, then complete*: the batch's file is written, and only then are its
   rows and the batch deleted, in one transaction.

A batch interrupted between the two is written again to the same key with the
same bytes on the next run (or start-up), so every row lands exactly once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .localdb import LocalDB


@dataclass
class OfflineRow:
    values: dict  # feature name -> typed value; only the record id and event time for a delete marker
    event_time: float  # epoch seconds: the partition
    api_invocation_ms: int
    is_deleted: bool = False

    def encode(self) -> bytes:
        return json.dumps(
            {"v": self.values, "t": self.event_time, "a": self.api_invocation_ms, "d": self.is_deleted},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> OfflineRow:
        data = json.loads(raw)
        return cls(data["v"], data["t"], data["a"], data["d"])


@dataclass
class Batch:
    batch: str
    grp: str
    bucket: str
    key: str
    write_time_ms: int
    seqs: list[int]


class Journal:
    def __init__(self, db: LocalDB):
        self.db = db

    @staticmethod
    def append(conn, grp: str, rows: list[OfflineRow]) -> None:
        """Append inside the caller's write transaction (the online write's, for the embedded store)."""
        conn.executemany("INSERT INTO offline_journal (grp, row) VALUES (?, ?)", [(grp, r.encode()) for r in rows])

    def append_now(self, grp: str, rows: list[OfflineRow]) -> None:
        with self.db.write() as conn:
            self.append(conn, grp, rows)

    def unassigned(self, limit: int, grp: str | None = None) -> list[tuple[int, str, OfflineRow]]:
        sql = "SELECT seq, grp, row FROM offline_journal WHERE batch IS NULL"
        args: tuple = ()
        if grp is not None:
            sql += " AND grp = ?"
            args = (grp,)
        rows = self.db.conn().execute(sql + " ORDER BY seq LIMIT ?", (*args, limit)).fetchall()
        return [(seq, g, OfflineRow.decode(raw)) for seq, g, raw in rows]

    def assign(self, batches: list[Batch]) -> None:
        with self.db.write() as conn:
            for b in batches:
                conn.execute(
                    "INSERT INTO offline_batches (batch, grp, bucket, object_key, write_time_ms) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (b.batch, b.grp, b.bucket, b.key, b.write_time_ms),
                )
                conn.executemany("UPDATE offline_journal SET batch = ? WHERE seq = ?", [(b.batch, s) for s in b.seqs])

    def batches(self, grp: str | None = None) -> list[Batch]:
        sql = "SELECT batch, grp, bucket, object_key, write_time_ms FROM offline_batches"
        args: tuple = ()
        if grp is not None:
            sql += " WHERE grp = ?"
            args = (grp,)
        return [Batch(*row, seqs=[]) for row in self.db.conn().execute(sql + " ORDER BY batch", args).fetchall()]

    def batch_rows(self, batch: str) -> list[OfflineRow]:
        rows = self.db.conn().execute("SELECT row FROM offline_journal WHERE batch = ? ORDER BY seq", (batch,))
        return [OfflineRow.decode(raw) for (raw,) in rows.fetchall()]

    def complete(self, batch: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM offline_journal WHERE batch = ?", (batch,))
            conn.execute("DELETE FROM offline_batches WHERE batch = ?", (batch,))

    def pending(self, grp: str | None = None) -> int:
        if grp is None:
            return self.db.conn().execute("SELECT count(*) FROM offline_journal").fetchall()[0][0]
        return self.db.conn().execute("SELECT count(*) FROM offline_journal WHERE grp = ?", (grp,)).fetchall()[0][0]

    def oldest_ms(self) -> int | None:
        """The api_invocation_time of the oldest unassigned row (the flush deadline runs from it)."""
        rows = (
            self.db.conn()
            .execute("SELECT row FROM offline_journal WHERE batch IS NULL ORDER BY seq LIMIT 1")
            .fetchall()
        )
        return OfflineRow.decode(rows[0][0]).api_invocation_ms if rows else None
