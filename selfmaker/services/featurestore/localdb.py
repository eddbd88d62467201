"""The feature store's local SQLite file: the embedded online store and the offline journal.

Both live in one WAL-mode file so that a PutRecord's online write and its
offline journal row commit in one transaction. Connections are per thread
(sqlite3 objects must not cross threads); writes take a process-wide lock so
our own threads queue in Python instead of spinning in SQLite's busy handler.
WAL with synchronous=NORMAL survives a killed process; it is the same
guarantee the metadata store gives.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS online_records (
    grp TEXT NOT NULL,
    rid TEXT NOT NULL,
    event_time REAL NOT NULL,
    expires_at REAL,
    deleted INTEGER NOT NULL DEFAULT 0,
    payload BLOB,
    PRIMARY KEY (grp, rid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_online_expiry ON online_records (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS offline_journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    grp TEXT NOT NULL,
    row BLOB NOT NULL,
    batch TEXT
);
CREATE INDEX IF NOT EXISTS ix_journal_batch ON offline_journal (batch, seq);
CREATE TABLE IF NOT EXISTS offline_batches (
    batch TEXT PRIMARY KEY,
    grp TEXT NOT NULL,
    bucket TEXT NOT NULL,
    object_key TEXT NOT NULL,
    write_time_ms INTEGER NOT NULL
);
"""


class LocalDB:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        with sqlite3.connect(self.path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")  # persistent: set once, not per connection
            conn.executescript(SCHEMA)
        conn.close()

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def write(self):
        """A write transaction; it commits when the block ends and rolls back if it raises."""
        conn = self.conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass  # closed from another thread already
            self._all.clear()
        self._local = threading.local()
