"""A private SQLite file used from many threads: the object index, the feature store's records.

Connections are per thread (sqlite3 objects must not cross threads); writes take a
process-wide lock so our own threads queue in Python instead of spinning in SQLite's
busy handler. WAL with synchronous=NORMAL survives a killed process: the guarantee
the metadata store gives too.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path


class SQLiteFile:
    def __init__(self, path: Path, schema: str, mmap_bytes: int = 0):
        self.path = Path(path)
        self.mmap_bytes = mmap_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        with sqlite3.connect(self.path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")  # persistent: set once, not per connection
            conn.executescript(schema)
        conn.close()

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (autocommit: reads see the latest committed state)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA synchronous=NORMAL")
            if self.mmap_bytes:
                conn.execute(f"PRAGMA mmap_size={int(self.mmap_bytes)}")
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
