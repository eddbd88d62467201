"""Which server drives what, when several servers share one PostgreSQL (docs/scale-out.md, "Several servers").

Every server process registers a row in ``servers`` with a fresh id and renews its ``expires_at`` (the
database's clock) every ``lease_seconds / 5``. A lease (table ``leases``) names a reconciled record (its
ARN or table-controller key) or a singleton worker (``worker:<name>``) and the server that holds it; it is
valid exactly as long as its owner's heartbeat is, so renewing every lease a server holds is one UPDATE of
one row, whatever their number. A lease is taken in one of three ways, all in batches of keys:

- a server steps a record nobody holds (it created it, or was kicked for it): INSERT ... ON CONFLICT DO NOTHING;
- every heartbeat, a server scans the active records for ones whose owner's heartbeat expired (or that have
  no lease) and takes them over: an UPDATE that bumps ``token``, conditioned on the owner being dead, so of
  several servers scanning at once exactly one wins each key;
- a server that finishes a record deletes its lease.

A server that fails to renew (it was paused past its expiry) never comes back under the same id: it drops
every lease it believed it held and registers again as a new server, then competes for work like any other.
A write a controller makes under a lease carries a fence (store/fencing.py) that the database checks in the
write's own transaction, so even a step already in flight when the pause ended cannot commit.

A server that is not the owner of a record it is kicked for (a StopTrainingJob arrives through the load
balancer at another server) forwards the kick with PostgreSQL's NOTIFY; the owner steps it at once.

On SQLite there is one server: every lease is held locally and nothing touches the database.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from ..backends import Backends, background_worker
from ..store import schema
from ..store.db import normalise_url
from ..store.fencing import Fence, LeaseLost, fenced
from ..store.resources import now
from .periodic import Periodic

log = logging.getLogger("selfmaker.leases")

S, L = schema.servers, schema.leases
CHANNEL = "selfmaker_kick"  # NOTIFY channel of kicks forwarded to a record's owner
FORGET_DEAD_AFTER = 3600.0  # seconds after its expiry a dead server's row (and any lease left to it) is deleted
TAKEOVER_LOCK_TIMEOUT = "2s"  # a paused server mid-write holds a lease row: try that key again next heartbeat

# The outcome of :meth:`Leases.claim` when the record is not ours to step.
ELSEWHERE = "elsewhere"  # another live server holds it: forward the kick
WAIT = "wait"  # our own heartbeat is overdue: step it once renewed (or lost)

LOCAL = Fence("", "local", 0)  # SQLite: the one server holds everything; store.write checks nothing


def _db_now():
    """The database's clock in epoch seconds: expiry is judged by one clock, not by each server's."""
    return func.extract("epoch", func.clock_timestamp())


class Leases:
    def __init__(self, backends: Backends):
        self.store = backends.store
        self.local = self.store.is_sqlite
        self.ttl = backends.settings.lease_seconds
        self.node = f"{socket.gethostname()}:{backends.settings.data_dir}"
        self.server_id = ""
        self._held: dict[str, int] = {}  # key -> token, for leases this server holds
        self._valid_until = 0.0  # time.monotonic() until which our heartbeat is surely unexpired
        self._lock = threading.Lock()
        self._next_forget = 0.0  # time.monotonic() of the next clean-up of long-dead servers
        self._leading_tried: dict[str, float] = {}  # singleton worker -> when we last tried to lead it
        # Set by the reconciler: the keys of every record that needs work (scanned for orphans), and what to
        # do with keys taken over by the scan or kicked to us by another server.
        self.active_keys: Callable[[], Iterable[str]] = list
        self.on_acquired: Callable[[list[str]], None] = lambda keys: None
        self._heartbeat = Periodic("leases", self.ttl / 5, self._tick, final_run=False)
        self._listener: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if self.local:
            return
        self._register()
        self._heartbeat.start()
        self._listener = threading.Thread(target=self._listen, name="lease-kicks", daemon=True)
        self._listener.start()

    def stop(self) -> None:
        """A clean stop hands everything over at once: the others take our leases at their next heartbeat."""
        if self.local:
            return
        self._stopping.set()
        self._heartbeat.stop()
        try:
            with self.store.write() as conn:
                conn.execute(delete(L).where(L.c.owner == self.server_id))
                conn.execute(delete(S).where(S.c.id == self.server_id))
        except Exception:
            log.exception("could not hand over this server's leases; they expire in %.0f s", self.ttl)
        with self._lock:
            self._held.clear()

    def _register(self) -> None:
        server_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        with self.store.write() as conn:
            conn.execute(
                S.insert().values(id=server_id, node=self.node, started_at=now(), expires_at=_db_now() + self.ttl)
            )
            # An earlier server on this node (same host and data directory) is dead: a restarted server
            # takes its work over at once instead of waiting for its heartbeat to expire.
            conn.execute(update(S).where(S.c.node == self.node, S.c.id != server_id).values(expires_at=0.0))
        with self._lock:
            self.server_id = server_id
            self._held.clear()
            self._valid_until = started + self.ttl * 0.8
        log.info("server %s joined (leases of %.0f s)", server_id, self.ttl)

    # -- the heartbeat ---------------------------------------------------------------

    def _tick(self) -> None:
        started = time.monotonic()
        with self.store.write() as conn:
            renewed = conn.execute(
                update(S)
                .where(S.c.id == self.server_id, S.c.expires_at > _db_now())
                .values(expires_at=_db_now() + self.ttl)
            ).rowcount
        if renewed:
            with self._lock:
                self._valid_until = started + self.ttl * 0.8
        else:
            log.warning("server %s missed its heartbeat: it gives up every lease and joins again", self.server_id)
            self._register()
        taken = self.acquire(self.active_keys())
        if taken:
            log.info("took over %d records: %s", len(taken), ", ".join(sorted(taken)[:5]))
            self.on_acquired(sorted(taken))
        if started >= self._next_forget:
            self._next_forget = started + 60.0
            self._forget_dead()

    def _forget_dead(self) -> None:
        with self.store.write() as conn:
            dead = select(S.c.id).where(S.c.expires_at < _db_now() - FORGET_DEAD_AFTER)
            conn.execute(delete(L).where(L.c.owner.in_(dead)))
            conn.execute(delete(S).where(S.c.id.in_(dead)))

    # -- leases ----------------------------------------------------------------------

    def valid(self) -> bool:
        return self.local or time.monotonic() < self._valid_until

    def acquire(self, keys: Iterable[str]) -> dict[str, int]:
        """Take every key in ``keys`` that no live server holds (ours already count as taken); their tokens."""
        if self.local:
            return dict.fromkeys(keys, 0)
        with self._lock:
            wanted = sorted({k for k in keys if k not in self._held})
            me = self.server_id
        if not wanted or not self.valid():
            return {}
        taken: dict[str, int] = {}
        with self.store.write() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = '{TAKEOVER_LOCK_TIMEOUT}'"))
            fresh = pg_insert(L).values([{"key": k, "owner": me, "token": 1} for k in wanted])
            for key, token in conn.execute(fresh.on_conflict_do_nothing().returning(L.c.key, L.c.token)):
                taken[key] = token
            live = select(S.c.id).where(S.c.expires_at > _db_now(), S.c.id != me)
            rest = [k for k in wanted if k not in taken]
            if rest:
                takeover = (
                    update(L)
                    .where(L.c.key.in_(rest), L.c.owner.not_in(live))
                    .values(owner=me, token=L.c.token + 1)
                    .returning(L.c.key, L.c.token)
                )
                for key, token in conn.execute(takeover):
                    taken[key] = token
        with self._lock:
            if self.server_id == me:  # not re-registered meanwhile (then these rows name our former self)
                self._held.update(taken)
            else:
                taken = {}
        return taken

    def claim(self, key: str) -> Fence | str:
        """The fence to step ``key`` under, taking the lease if no live server holds it; else ELSEWHERE or WAIT."""
        if self.local:
            return LOCAL
        if not self.valid():
            return WAIT
        token = self._held.get(key)
        if token is None:
            token = self.acquire([key]).get(key)
            if token is None:
                return ELSEWHERE if self.valid() else WAIT
        return Fence(key, self.server_id, token)

    def holds(self, key: str) -> bool:
        return self.local or key in self._held

    def release(self, fence: Fence) -> None:
        """The record needs no more work: its lease goes (anyone may take it if it needs work again)."""
        if fence is LOCAL:
            return
        with self._lock:
            self._held.pop(fence.key, None)
        with self.store.write() as conn:
            conn.execute(delete(L).where(L.c.key == fence.key, L.c.owner == fence.owner, L.c.token == fence.token))

    def lost(self, fence: Fence) -> None:
        """A write under ``fence`` found the lease taken over: forget it."""
        with self._lock:
            if self._held.get(fence.key) == fence.token:
                del self._held[fence.key]
        log.warning("lost the lease on %s to another server; this server no longer drives it", fence.key)

    # -- singleton workers -------------------------------------------------------------

    def as_leader(self, name: str, job: Callable[[], float | None]) -> float | None:
        """Run ``job`` if this server leads the singleton worker ``name`` (taking the lead when it is free),
        with its writes fenced by that lease; on the other servers, do nothing."""
        if self.local:
            return job()
        key = f"worker:{name}"
        if key not in self._held:
            last = self._leading_tried.get(key, 0.0)
            if time.monotonic() - last < self.ttl / 5:
                return None
            self._leading_tried[key] = time.monotonic()
        fence = self.claim(key)
        if not isinstance(fence, Fence):
            return None
        try:
            with fenced(fence) as block:
                wait = job()
            if block.lost:
                raise LeaseLost(key)
            return wait
        except LeaseLost:
            self.lost(fence)
            return None

    # -- kicks between servers -----------------------------------------------------------

    def forward(self, key: str) -> None:
        """Tell the owner of ``key`` to step it (PostgreSQL NOTIFY; delivered when this transaction commits)."""
        with self.store.write() as conn:
            conn.execute(select(func.pg_notify(CHANNEL, key)))

    def _listen(self) -> None:
        import psycopg  # only with PostgreSQL (the `postgres` extra): an embedded store never gets here

        url = normalise_url(self.store.url).replace("postgresql+psycopg://", "postgresql://", 1)
        while not self._stopping.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stopping.is_set():
                        kicked = [n.payload for n in conn.notifies(timeout=1.0) if n.payload in self._held]
                        if kicked:
                            self.on_acquired(kicked)
            except Exception:
                if not self._stopping.is_set():
                    log.exception("lost the connection that hears kicks from other servers; reconnecting")
                    self._stopping.wait(1.0)


def leases(backends: Backends) -> Leases:
    return backends.shared("leases", lambda: Leases(backends))


@background_worker
def _leases(backends: Backends) -> Leases:
    return leases(backends)
