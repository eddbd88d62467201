"""Long work as persisted state machines, driven forward by one background worker.

A :class:`Controller` declares a resource kind, the statuses in which its
records still need work, and ``reconcile(backends, record)``: advance the record
one step and return how many seconds until it wants to look again (None when
it is done). Everything a step needs lives in the record or on disk, so the
worker can resume every active record when the server starts again.

The worker is event-driven: a Create handler or a process watcher calls
:func:`kick` and the record's next step runs at once on a small thread pool;
the returned delay is only a fallback (timeouts, continuous uploads).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import select

from ..backends import Backends, background_worker
from ..store import schema
from ..store.resources import Record

log = logging.getLogger("selfmaker.reconciler")

R = schema.resources


@dataclass(frozen=True)
class Controller:
    kind: str  # the Kind name, e.g. "TrainingJob"
    active: frozenset[str]  # statuses that still need work
    reconcile: Callable[[Backends, Record], "float | None"]


CONTROLLERS: dict[str, Controller] = {}

# Called with (backends, record) after a record's work is done (its reconcile returned None),
# e.g. so a pipeline execution takes its next step the moment one of its jobs ends.
DoneListener = Callable[[Backends, Record], None]
_DONE_LISTENERS: list[DoneListener] = []


def register(controller: Controller) -> Controller:
    CONTROLLERS[controller.kind] = controller
    return controller


def on_done(listener: DoneListener) -> DoneListener:
    """Register ``listener(backends, record)`` to hear of every record whose work is done."""
    _DONE_LISTENERS.append(listener)
    return listener


def kick(backends: Backends, arn: str, delay: float = 0.0) -> None:
    """Ask for a record's next step now (or after ``delay``). Safe to call from any thread."""
    reconciler = backends.services.get("reconciler")
    if reconciler is not None:
        reconciler.schedule(arn, delay)


class Reconciler:
    """Runs each active record's steps, one at a time per record, on a thread pool."""

    def __init__(self, backends: Backends, threads: int = 4):
        self.backends = backends
        self._due: list[tuple[float, str]] = []  # heap of (when, arn)
        self._wake = threading.Condition()
        self._running: set[str] = set()  # records with a step in flight
        self._again: set[str] = set()  # kicked while in flight: run once more right after
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="reconcile")
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)
        backends.services["reconciler"] = self

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        for arn in self._active_records():
            self.schedule(arn)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _active_records(self) -> list[str]:
        arns = []
        with self.backends.store.read() as conn:
            for c in CONTROLLERS.values():
                rows = conn.execute(select(R.c.arn).where(R.c.kind == c.kind, R.c.status.in_(sorted(c.active))))
                arns.extend(row.arn for row in rows)
        return arns

    # -- scheduling --------------------------------------------------------------

    def schedule(self, arn: str, delay: float = 0.0) -> None:
        with self._wake:
            if arn in self._running:
                if delay <= 0:
                    self._again.add(arn)
                else:
                    heapq.heappush(self._due, (time.monotonic() + delay, arn))
                return
            heapq.heappush(self._due, (time.monotonic() + max(delay, 0.0), arn))
            self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopping:
                    now = time.monotonic()
                    if self._due and self._due[0][0] <= now:
                        break
                    self._wake.wait(self._due[0][0] - now if self._due else None)
                if self._stopping:
                    return
                _, arn = heapq.heappop(self._due)
                if arn in self._running:
                    self._again.add(arn)
                    continue
                # Drop other entries for the same record: this step supersedes them.
                self._due = [(t, a) for t, a in self._due if a != arn]
                heapq.heapify(self._due)
                self._running.add(arn)
            self._pool.submit(self._step, arn)

    def _step(self, arn: str) -> None:
        delay: float | None = None
        done = None
        try:
            record = self.backends.resources.get_by_arn(arn)
            controller = CONTROLLERS.get(record.kind) if record else None
            if controller and record.status in controller.active:
                delay = controller.reconcile(self.backends, record)
                done = record if delay is None else None
        except Exception:
            log.exception("reconciling %s failed; retrying in 5 s", arn)
            delay = 5.0
        for listener in _DONE_LISTENERS if done is not None else ():
            try:
                listener(self.backends, done)
            except Exception:
                log.exception("a listener failed on the end of %s", arn)
        with self._wake:
            self._running.discard(arn)
            if arn in self._again:
                self._again.discard(arn)
                delay = 0.0
            if delay is not None and not self._stopping:
                heapq.heappush(self._due, (time.monotonic() + delay, arn))
                self._wake.notify()


@background_worker
def _reconciler(backends: Backends) -> Reconciler:
    return Reconciler(backends)
