"""The database engine, its migrations, and transactions that are safe under concurrent requests."""

from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from . import fencing, schema

MIGRATIONS = Path(__file__).with_name("migrations")
IDLE_IN_TRANSACTION_MS = 60_000
MIGRATION_LOCK = 0x5E1F3A4E  # the PostgreSQL advisory lock servers take while they migrate


def normalise_url(url: str) -> str:
    # Plain postgresql:// would pick psycopg2; we ship psycopg 3.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _json_loads(text):
    """Read a JSON column: orjson is several times faster than json, and a page of a list
    parses one document per row. json still reads what orjson refuses (NaN, huge integers)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=16, json_deserializer=_json_loads
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            # WAL: readers never block the writer; NORMAL sync is durable across process crashes.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(
        url,
        pool_size=16,
        max_overflow=16,
        pool_pre_ping=True,
        json_deserializer=_json_loads,
        # A server paused in the middle of a transaction (SIGSTOP, a frozen VM) holds its row locks, the lease
        # rows other servers must take over among them: PostgreSQL ends such a session after a minute.
        connect_args={"options": f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"},
    )


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (a no-op when it is there already)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # servers starting together: one migrates, the others wait
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


class Store:
    """Connections for reading, and serialized transactions for writing.

    SQLite allows one writer at a time; taking a process-wide lock before the
    write transaction avoids SQLITE_BUSY upgrade deadlocks between our own
    threads. PostgreSQL needs no such lock.
    """

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write_lock = threading.Lock() if self.is_sqlite else None
        migrate(self.engine)

    @contextmanager
    def read(self):
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self):
        with self._write_lock or nullcontext(), self.engine.begin() as conn:
            if not self.is_sqlite:  # a write on behalf of a lease commits only while the lease holds
                fencing.check(conn)
            yield conn

    def secret(self, key: str, size: int = 32) -> bytes:
        """A random value created once and kept for the life of the database."""
        with self.read() as conn:
            row = conn.execute(select(schema.server_state.c.value).where(schema.server_state.c.key == key)).first()
        if row:
            return row[0]
        try:
            with self.write() as conn:
                row = conn.execute(select(schema.server_state.c.value).where(schema.server_state.c.key == key)).first()
                if row:
                    return row[0]
                value = os.urandom(size)
                conn.execute(schema.server_state.insert().values(key=key, value=value))
                return value
        except IntegrityError:  # another server (same PostgreSQL) created it first: theirs is the one
            return self.secret(key, size)

    def close(self) -> None:
        self.engine.dispose()


__all__ = ["Connection", "Store"]
