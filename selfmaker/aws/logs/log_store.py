"""CloudWatch Logs storage, and the Python API the rest of SelfMaker uses to write and read logs.

Jobs and endpoints write with :func:`append_events` (no HTTP, one transaction
per batch, group and stream created on first use), and read with
:func:`read_events` / :func:`follow` (the ``selfmaker logs`` command is a client
of the wire API instead: selfmaker/cli_logs.py). The wire operations in
:mod:`.log_operations` are built on the same table helpers.

Groups are scoped by account and region; streams belong to a group; events
belong to a stream. Times are epoch milliseconds throughout, as the API speaks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from ...server.errors import AWSError
from ...store import schema

G, S, E = schema.log_groups, schema.log_streams, schema.log_events


def now_ms() -> int:
    return int(time.time() * 1000)


# -- errors, worded as CloudWatch Logs words them ---------------------------------


def group_not_found() -> AWSError:
    return AWSError("ResourceNotFoundException", "The specified log group does not exist.")


def stream_not_found() -> AWSError:
    return AWSError("ResourceNotFoundException", "The specified log stream does not exist.")


def invalid_parameter(message: str) -> AWSError:
    return AWSError("InvalidParameterException", message)


def group_arn(account_id: str, region: str, group: str) -> str:
    return f"arn:aws:logs:{region}:{account_id}:log-group:{group}"


def stream_arn(account_id: str, region: str, group: str, stream: str) -> str:
    return f"{group_arn(account_id, region, group)}:log-stream:{stream}"


# -- table helpers (call inside a store transaction) -------------------------------


def has_prefix(column, prefix: str):
    """A case-sensitive prefix test that works alike on SQLite and PostgreSQL (LIKE does not)."""
    return func.substr(column, 1, len(prefix)) == prefix


def bytewise(column, conn):
    """Order names by code point, as AWS does, whatever the PostgreSQL database collation."""
    return column.collate("C") if conn.dialect.name == "postgresql" else column


def _insert_if_absent(conn, table, **values) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True if the row is new. Safe against concurrent writers."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing().returning(table.c.id)
    return conn.execute(statement).first() is not None


def find_group(conn, account_id: str, region: str, name: str):
    return conn.execute(select(G).where(G.c.account_id == account_id, G.c.region == region, G.c.name == name)).first()


def create_group(conn, account_id: str, region: str, name: str, log_group_class: str = "STANDARD") -> bool:
    """Create a log group; False if it already exists."""
    return _insert_if_absent(
        conn, G, account_id=account_id, region=region, name=name, created_ms=now_ms(), log_group_class=log_group_class
    )


def find_stream(conn, group_id: int, name: str):
    return conn.execute(select(S).where(S.c.group_id == group_id, S.c.name == name)).first()


def create_stream(conn, group_id: int, name: str) -> bool:
    """Create a log stream; False if it already exists."""
    return _insert_if_absent(conn, S, group_id=group_id, name=name, created_ms=now_ms(), stored_bytes=0)


def insert_events(conn, group_id: int, stream_id: int, events: Sequence[tuple[int, str]]) -> None:
    """Store a batch of (timestamp ms, message) in one statement and update the stream's summary."""
    if not events:
        return
    ingested = now_ms()
    conn.execute(
        E.insert(),
        [
            {"group_id": group_id, "stream_id": stream_id, "timestamp": ts, "message": msg, "ingested_ms": ingested}
            for ts, msg in events
        ],
    )
    first = min(ts for ts, _ in events)
    last = max(ts for ts, _ in events)
    size = sum(len(msg.encode("utf-8")) for _, msg in events)
    # Expressions rather than read-modify-write: concurrent batches on PostgreSQL must not lose updates.
    conn.execute(
        S.update()
        .where(S.c.id == stream_id)
        .values(
            first_event_ms=case(
                (or_(S.c.first_event_ms.is_(None), S.c.first_event_ms > first), first), else_=S.c.first_event_ms
            ),
            last_event_ms=case(
                (or_(S.c.last_event_ms.is_(None), S.c.last_event_ms < last), last), else_=S.c.last_event_ms
            ),
            last_ingested_ms=ingested,
            stored_bytes=S.c.stored_bytes + size,
        )
    )


def delete_stream_events(conn, stream_id: int) -> None:
    conn.execute(E.delete().where(E.c.stream_id == stream_id))
    conn.execute(S.delete().where(S.c.id == stream_id))


def delete_group_contents(conn, group_id: int) -> None:
    conn.execute(E.delete().where(E.c.group_id == group_id))
    conn.execute(S.delete().where(S.c.group_id == group_id))
    conn.execute(G.delete().where(G.c.id == group_id))


# -- the internal API -------------------------------------------------------------


@dataclass(frozen=True)
class LogEvent:
    id: int  # ingestion order: pass the last one seen as ``after`` to read on
    stream: str
    timestamp: int
    message: str
    ingested_ms: int


def append_events(
    store, account_id: str, region: str, group: str, stream: str, events: Iterable[tuple[int, str]]
) -> int:
    """Write (timestamp ms, message) events to group/stream, creating both if needed; return how many.

    One transaction per call, so pass lines in batches. Empty messages are
    skipped, as CloudWatch Logs does not store them.
    """
    batch = [(int(ts), msg) for ts, msg in events if msg]
    with store.write() as conn:
        create_group(conn, account_id, region, group)
        group_id = find_group(conn, account_id, region, group).id
        create_stream(conn, group_id, stream)
        insert_events(conn, group_id, find_stream(conn, group_id, stream).id, batch)
    return len(batch)


def read_events(
    store, account_id: str, region: str, group: str, stream_prefix: str = "", after: int = 0, limit: int = 1000
) -> list[LogEvent]:
    """Events written after event id ``after`` to the group's streams named ``stream_prefix*``, oldest first.

    Ordered by ingestion, not by timestamp, so a reader that follows ``after``
    never misses an event that arrives late with an earlier timestamp. A group
    that does not exist yet has no events.
    """
    with store.read() as conn:
        found = find_group(conn, account_id, region, group)
        if found is None:
            return []
        streams = select(S.c.id).where(S.c.group_id == found.id)
        if stream_prefix:
            streams = streams.where(has_prefix(S.c.name, stream_prefix))
        rows = conn.execute(
            select(E.c.id, S.c.name, E.c.timestamp, E.c.message, E.c.ingested_ms)
            .join(S, S.c.id == E.c.stream_id)
            .where(E.c.stream_id.in_(streams.scalar_subquery()), E.c.id > after)
            .order_by(E.c.id)
            .limit(limit)
        )
        return [LogEvent(*row) for row in rows]


def follow(
    store,
    account_id: str,
    region: str,
    group: str,
    stream_prefix: str = "",
    after: int = 0,
    poll_seconds: float = 1.0,
    stop: Callable[[], bool] | None = None,
) -> Iterator[LogEvent]:
    """Yield events as they are written, like ``tail -f``, until ``stop()`` is true and all is read.

    ``stop`` is checked before each read, so events written just before it
    turned true (a job's last lines) are still yielded. Without ``stop`` it
    follows forever.
    """
    while True:
        finished = stop() if stop else False
        batch = read_events(store, account_id, region, group, stream_prefix, after)
        yield from batch
        if batch:
            after = batch[-1].id
            continue
        if finished:
            return
        time.sleep(poll_seconds)
