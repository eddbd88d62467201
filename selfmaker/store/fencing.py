"""Fencing: a write made on behalf of a lease commits only while the lease is still ours.

Several servers share one PostgreSQL (docs/scale-out.md, "Several servers"). A server that was paused
(SIGSTOP, a long GC, a frozen VM) may wake after its lease was handed to another server and go on with
the step it was in. Its local clock cannot be trusted to notice in time, so the check is in the database:
while :func:`fenced` is in force on a thread, every write transaction that thread opens first reads its
lease row ``FOR SHARE`` and proceeds only if the row still names this server and token. The row stays
locked until the transaction ends, so a takeover (an UPDATE of that row) either commits before the check
(which then fails: :class:`LeaseLost`, and the whole transaction is rolled back) or waits until the write
has committed; never both servers' writes interleaved.

SQLite is one server's own file: nothing to fence, nothing checked (engines/leases.py holds every lease
locally there).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import bindparam, select

from . import schema

L = schema.leases


class LeaseLost(Exception):
    """The lease this write was made under belongs to another server now (or to a later takeover)."""


@dataclass(frozen=True)
class Fence:
    key: str
    owner: str
    token: int


@dataclass
class Fenced:
    """One :func:`fenced` block: ``lost`` is set once a write in it found the lease gone (even if the code
    that made the write caught the LeaseLost), so the caller stops driving the key."""

    fence: Fence
    lost: bool = False


_FENCE: ContextVar[Fenced | None] = ContextVar("selfmaker_fence", default=None)

_HELD = (
    select(L.c.token)
    .where(L.c.key == bindparam("key"), L.c.owner == bindparam("owner"), L.c.token == bindparam("token"))
    .with_for_update(read=True)
)


@contextmanager
def fenced(fence: Fence):
    """Check ``fence`` in every write transaction this thread opens inside the block."""
    block = Fenced(fence)
    reset = _FENCE.set(block)
    try:
        yield block
    finally:
        _FENCE.reset(reset)


def check(conn) -> None:
    """At the start of a write transaction: raise LeaseLost unless the thread's fence (if any) still holds."""
    block = _FENCE.get()
    if block is None:
        return
    fence = block.fence
    if (
        block.lost
        or conn.execute(_HELD, {"key": fence.key, "owner": fence.owner, "token": fence.token}).first() is None
    ):
        block.lost = True
        raise LeaseLost(f"the lease on {fence.key} (token {fence.token}) is no longer held by {fence.owner}")
