"""One background thread that runs a job every ``interval`` seconds, or at once when woken.

Every flusher and evaluator of the server is one of these (metric data, invocation
metrics, data capture, alarm evaluation, the feature store's offline flushes), so
start, stop, wake and error handling are written once:

- ``start()`` starts the thread (or, with ``on_demand``, arms it: the first
  ``ensure_started()`` starts it, so a server that never captures data has no
  capture thread);
- ``wake()`` runs the job now instead of at the end of the interval;
- a job may return how many seconds to wait before its next run (None: the interval),
  so a worker can poll faster while something it watches is starting;
- ``stop()`` ends the thread, then runs the job once more (``run_final``, unless
  ``final_run=False``) so what was buffered since the last run is not lost at shutdown
  (called from the worker's own thread, by its job, it does not wait for itself);
- an exception is logged and never kills the thread; after one, the next run waits
  at least RETRY_SECONDS, so a store that is down does not flood the log.

Subclass and override :meth:`run`, or pass ``run=`` a function.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("selfmaker.periodic")

RETRY_SECONDS = 1.0
STOP_TIMEOUT = 30.0  # a run in progress may take this long to end before stop() gives up waiting


class Periodic:
    def __init__(
        self,
        name: str,
        interval: float,
        run: Callable[[], float | None] | None = None,
        *,
        run_at_start: bool = False,
        final_run: bool = True,
        on_demand: bool = False,
    ):
        self.name = name
        self.interval = interval
        self._job = run
        self._run_at_start = run_at_start  # first run as soon as the thread starts, not after one interval
        self._final_run = final_run
        self._on_demand = on_demand
        self._woken = threading.Event()
        self._lock = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def run(self) -> float | None:
        """One pass of the job; subclasses override this (or pass ``run=``). It may return the
        seconds until the next run (None: the interval)."""
        if self._job is None:
            raise NotImplementedError(f"{type(self).__name__} has no run()")
        return self._job()

    def run_final(self) -> None:
        """The run ``stop()`` makes after the thread ended; by default, one more :meth:`run`."""
        self.run()

    # -- lifecycle ---------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping

    def start(self) -> None:
        if not self._on_demand:
            self.ensure_started()

    def ensure_started(self) -> None:
        """Start the thread if it is not running (cheap when it is: callers may call it per request)."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()

    def wake(self) -> None:
        """Run the job now (or as soon as the current run ends)."""
        self._woken.set()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._woken.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s did not stop within %.0f s", self.name, timeout)
                return  # a second run beside the stuck one would race with it
        if self._final_run:
            self._run_once(self.run_final)

    # -- the thread ----------------------------------------------------------------

    def _run_once(self, job: Callable[[], float | None] | None = None) -> float:
        """Run the job; the seconds to wait before the next run."""
        try:
            wait = (job or self.run)()
            return self.interval if wait is None else wait
        except Exception:
            log.exception("%s failed; it runs again in %.2g s", self.name, max(self.interval, RETRY_SECONDS))
            return max(self.interval, RETRY_SECONDS)

    def _loop(self) -> None:
        wait = 0.0 if self._run_at_start else self.interval
        while True:
            self._woken.wait(wait)
            # Cleared before the run, so a wake() during the run is kept for the next one.
            self._woken.clear()
            if self._stopping:
                return
            wait = self._run_once()
