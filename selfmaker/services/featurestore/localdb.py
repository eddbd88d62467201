"""The feature store's local SQLite file: the embedded online store and the offline journal.

Both live in one WAL-mode file so that a PutRecord's online write and its
offline journal row commit in one transaction (threading and durability: see
selfmaker/store/sqlite_file.py).
"""

from __future__ import annotations

from pathlib import Path

from ...store.sqlite_file import SQLiteFile

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


# Reads map the file rather than read() each page into every thread's own small page cache (2 MB by
# default, less than a few thousand records): a BatchGetRecord of 100 records read its rows in a
# third of the time (docs/benchmarks.md). The mapping is address space, not memory: the pages are the
# OS's page cache, shared by all connections and given back under memory pressure.
MMAP_BYTES = 1 << 30


class LocalDB(SQLiteFile):
    def __init__(self, path: Path):
        super().__init__(path, SCHEMA, mmap_bytes=MMAP_BYTES)
