"""Long work as persisted state machines, driven forward by one background worker.

A :class:`Controller` declares a resource kind, the statuses in which its
records still need work, and ``reconcile(backends, record)``: advance the record
one step and return how many seconds until it wants to look again (None when
it is done). Everything a step needs lives in the record or on disk, so the
worker can resume every active record when the server starts again.

The worker is event-driven: a Create handler or a process watcher calls
:func:`kick` and the record's next step runs at once on a small thread pool;
the returned delay is only a fallback (timeouts, continuous uploads).

Records kept in a table of their own (Athena query executions) have a
:class:`TableController` instead: the reconciler knows them by the key
``"<name>:<id>"`` and asks the controller for the ids still active at start.

With several servers on one PostgreSQL, a record is stepped only by the server holding its lease
(engines/leases.py): a kicked record nobody holds is taken, one another server holds is forwarded to it,
and every write of a step is fenced by the lease (store/fencing.py), so a server that lost the lease while
paused cannot commit. With SQLite every lease is local and all of this costs nothing.

A step that raises is retried after a delay that doubles from BACKOFF_FIRST
to BACKOFF_CAP and is forgotten on the next success. The count is kept in
memory, not in the record: a failure is most often the store or the disk being
briefly unavailable (so writing the count would likely fail too), and a
restarted server (perhaps a fixed one) should try every record at once.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import and_, or_, select

from ..backends import Backends, background_worker
from ..store import schema
from ..store.fencing import Fence, LeaseLost, fenced
from ..store.resources import Record
from .leases import ELSEWHERE, LOCAL, WAIT, leases

log = logging.getLogger("selfmaker.reconciler")

BACKOFF_FIRST = 1.0  # seconds before a failed step is retried; doubled at each failure in a row
BACKOFF_CAP = 300.0
WAIT_FOR_HEARTBEAT = 0.5  # seconds before a step deferred while this server's heartbeat was overdue runs again

R = schema.resources


@dataclass(frozen=True)
class Controller:
    kind: str  # the Kind name, e.g. "TrainingJob"
    active: frozenset[str]  # statuses that still need work
    reconcile: Callable[[Backends, Record], float | None]


CONTROLLERS: dict[str, Controller] = {}

# Called with (backends, record) after a record's work is done (its reconcile returned None),
# e.g. so a pipeline execution takes its next step the moment one of its jobs ends.
DoneListener = Callable[[Backends, Record], None]
_DONE_LISTENERS: list[DoneListener] = []


def register(controller: Controller) -> Controller:
    CONTROLLERS[controller.kind] = controller
    return controller


@dataclass(frozen=True)
class TableController:
    """Work on records outside the resources table, known to the reconciler as ``"<name>:<id>"``."""

    name: str  # e.g. "athena-query"; never "arn", so keys and ARNs cannot meet
    active: Callable[[Backends], list[str]]  # ids of the records that still need work (read at start)
    reconcile: Callable[[Backends, str], float | None]  # (backends, id): advance one step, as Controller's

    def key(self, record_id: str) -> str:
        return f"{self.name}:{record_id}"


TABLE_CONTROLLERS: dict[str, TableController] = {}


def register_table(controller: TableController) -> TableController:
    TABLE_CONTROLLERS[controller.name] = controller
    return controller


def on_done(listener: DoneListener) -> DoneListener:
    """Register ``listener(backends, record)`` to hear of every record whose work is done."""
    _DONE_LISTENERS.append(listener)
    return listener


def kick(backends: Backends, arn: str, delay: float = 0.0) -> None:
    """Ask for a record's next step now (or after ``delay``). Safe to call from any thread.

    ``arn`` is a resource's ARN, or a :class:`TableController` key."""
    reconciler = backends.services.get("reconciler")
    if reconciler is not None:
        reconciler.schedule(arn, delay)


class Reconciler:
    """Runs each active record's steps, one at a time per record, on a thread pool.

    Scheduling is a heap of (when, key) plus ``_due``, the one time each key is due at.
    A key asked for again earlier pushes a new entry and leaves the old one in the heap:
    an entry whose time is no longer its key's due time is stale and skipped when
    popped, so no step rebuilds the heap (it is compacted only when stale entries
    outnumber live ones).
    """

    def __init__(
        self,
        backends: Backends,
        threads: int = 4,
        *,
        backoff_first: float = BACKOFF_FIRST,
        backoff_cap: float = BACKOFF_CAP,
    ):
        self.backends = backends
        self.backoff_first, self.backoff_cap = backoff_first, backoff_cap
        self._heap: list[tuple[float, str]] = []  # (when, key), stale entries included
        self._due: dict[str, float] = {}  # key -> when its next step is due (not running)
        self._wake = threading.Condition()
        self._running: set[str] = set()  # records with a step in flight
        self._again: set[str] = set()  # kicked while in flight: run once more right after
        self._failures: dict[str, int] = {}  # key -> steps failed in a row
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="reconcile")
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)
        self.leases = leases(backends)
        backends.services["reconciler"] = self

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        # Resume what needs work and no live server drives (all of it, on SQLite or a restart of the only
        # server); from then on the leases' heartbeat hands over what other servers leave behind.
        for key in self.leases.acquire(self._active_records()):
            self.schedule(key)
        self.leases.active_keys = self._active_records
        self.leases.on_acquired = self._schedule_all
        self._thread.start()

    def _schedule_all(self, keys: list[str]) -> None:
        for key in keys:
            self.schedule(key)

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _active_records(self) -> list[str]:
        keys: list[str] = []
        wanted = [and_(R.c.kind == c.kind, R.c.status.in_(sorted(c.active))) for c in CONTROLLERS.values()]
        if wanted:  # one query, as the leases' heartbeat runs this every few seconds
            with self.backends.store.read() as conn:
                keys.extend(row.arn for row in conn.execute(select(R.c.arn).where(or_(*wanted))))
        for table in TABLE_CONTROLLERS.values():
            keys.extend(table.key(record_id) for record_id in table.active(self.backends))
        return keys

    # -- scheduling --------------------------------------------------------------

    def schedule(self, arn: str, delay: float = 0.0) -> None:
        with self._wake:
            if arn in self._running and delay <= 0:
                self._again.add(arn)
                return
            self._push(arn, time.monotonic() + max(delay, 0.0))

    def _push(self, key: str, when: float) -> None:
        """Make ``key`` due at ``when`` unless it is due sooner already (caller holds ``_wake``)."""
        current = self._due.get(key)
        if current is not None and current <= when:
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, key))
        if len(self._heap) > 2 * len(self._due) + 64:  # mostly stale: compact, rarely (amortized O(1))
            self._heap = [(t, k) for k, t in self._due.items()]
            heapq.heapify(self._heap)
        self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopping:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._wake.wait(self._heap[0][0] - now if self._heap else None)
                if self._stopping:
                    return
                when, key = heapq.heappop(self._heap)
                if self._due.get(key) != when:
                    continue  # stale: the key was asked for sooner, and that entry is (or was) its step
                del self._due[key]
                if key in self._running:
                    self._again.add(key)
                    continue
                self._running.add(key)
            self._pool.submit(self._step, key)

    def _step(self, key: str) -> None:
        delay: float | None = None
        done: Record | None = None
        fence: Fence | str = ELSEWHERE
        try:
            fence = self.leases.claim(key)
            if fence == WAIT:
                delay = WAIT_FOR_HEARTBEAT
            elif fence == ELSEWHERE:  # another server drives it: tell that server, forget it here
                self.leases.forward(key)
            else:
                assert isinstance(fence, Fence)
                with fenced(fence) as block:
                    delay, done = self._reconcile(key)
                if block.lost:  # a write found the lease gone, and the controller caught the error
                    raise LeaseLost(key)
                if delay is None and fence is not LOCAL and self._finished(key):
                    self.leases.release(fence)
        except LeaseLost:
            assert isinstance(fence, Fence)
            self.leases.lost(fence)
            delay, done = None, None
        except Exception:
            failures = self._failures.get(key, 0) + 1
            delay = min(self.backoff_first * 2 ** (failures - 1), self.backoff_cap)
            log.exception("reconciling %s failed (%d in a row); retrying in %.3g s", key, failures, delay)
            self._failures[key] = failures
        else:
            self._failures.pop(key, None)
        if done is not None:
            for listener in _DONE_LISTENERS:
                try:
                    listener(self.backends, done)
                except Exception:
                    log.exception("a listener failed on the end of %s", key)
        with self._wake:
            self._running.discard(key)
            if key in self._again:
                self._again.discard(key)
                delay = 0.0
            if delay is not None and not self._stopping:
                self._push(key, time.monotonic() + delay)

    def _finished(self, key: str) -> bool:
        """Whether ``key`` needs no more work (its lease may go): a record that waits in an active status
        for a kick (a callback step, say) keeps its lease, so the kick reaches this server."""
        if not key.startswith("arn:"):
            return True
        record = self.backends.resources.get_by_arn(key)
        controller = CONTROLLERS.get(record.kind) if record else None
        return record is None or controller is None or record.status not in controller.active

    def _reconcile(self, key: str) -> tuple[float | None, Record | None]:
        """One step of ``key``'s controller: the delay it asks for, and the record if its work is done."""
        table = TABLE_CONTROLLERS.get(key.split(":", 1)[0]) if not key.startswith("arn:") else None
        if table is not None:
            return table.reconcile(self.backends, key.split(":", 1)[1]), None
        record = self.backends.resources.get_by_arn(key)
        controller = CONTROLLERS.get(record.kind) if record else None
        if record is None or controller is None or record.status not in controller.active:
            return None, None
        delay = controller.reconcile(self.backends, record)
        return delay, record if delay is None else None


@background_worker
def _reconciler(backends: Backends) -> Reconciler:
    return Reconciler(backends)
