"""Runtime builds off the reconciler's threads, so a job waiting for one can still be stopped at once.

A job's start step asks :meth:`BackgroundBuilds.wait` for its runtime. A built runtime answers at once; else
the step joins the build of that runtime already running in this server, or starts one on a thread of its
own, and returns: the job stays ``Starting`` and its step runs again when the build ends (``wake``). In
between the reconciler is free to run the job's next step, so StopTrainingJob (and the others) stop it
without waiting for the build. When the last job waiting for a build leaves (stopped, or failed), the
build is cancelled: its installer is killed and the half-built runtime removed (runtime_builds.Cancellation).

Across servers and the ``selfmaker runtimes`` command the runtime's file lock still keeps to one build at a
time (runtime_builds.locked): a build thread here may wait for another process's build. Nothing here is
persisted: after a restart a job still ``Starting`` asks again, and a build interrupted by the restart
starts over (an unfinished runtime has no READY marker).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..backends import Backends, background_worker
from . import runtime_builds, runtimes

log = logging.getLogger("selfmaker.runtimes")

STOP_JOIN_SECONDS = 10.0  # at server stop: how long to wait for a cancelled build's thread to clean up


@dataclass
class _Waiter:
    log: Callable[[str], None]  # the job's log (a build's progress goes to the first waiter's)
    wake: Callable[[], None]  # runs the job's step again


@dataclass
class _Build:
    runtime: runtimes.Runtime
    message: str  # the SecondaryStatus message of the job that started it
    waiters: dict[str, _Waiter] = field(default_factory=dict)  # insertion order: the first one hears the build
    cancellation: runtime_builds.Cancellation = field(default_factory=runtime_builds.Cancellation)
    done: bool = False
    error: runtimes.RuntimeBuildError | None = None
    thread: threading.Thread | None = None


class BackgroundBuilds:
    """This server's runtime builds in progress, by runtime key, and the jobs waiting for each."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends
        runtimes_dir = backends.settings.runtimes_dir
        assert runtimes_dir is not None  # Settings resolves it (default: under the data directory)
        self.runtimes_dir = runtimes_dir
        self._lock = threading.Lock()
        self._building: dict[str, _Build] = {}  # runtime key -> its build in progress (or just ended)
        self._joined: dict[str, _Build] = {}  # job -> the build it waits for

    def wait(
        self, who: str, runtime: runtimes.Runtime, log: Callable[[str], None], wake: Callable[[], None]
    ) -> str | None:
        """None when ``runtime`` is built (or needs no build); else the message saying why ``who`` waits,
        having started or joined its build (``wake()`` is called when it ends). Raises RuntimeBuildError
        for the build ``who`` waited for, if it failed."""
        with self._lock:
            build = self._joined.get(who)
            if build is not None:
                if not build.done:
                    return build.message if next(iter(build.waiters)) == who else _waiting(runtime)
                del self._joined[who]
                build.waiters.pop(who, None)
                if build.error is not None:
                    raise build.error
            if runtimes.is_built(runtime, self.runtimes_dir):
                return None
            build = self._building.get(runtime.key)
            if build is not None and not build.done and not build.cancellation.cancelled:
                build.waiters[who] = _Waiter(log, wake)
                self._joined[who] = build
                log(f"SelfMaker: waiting for the runtime {runtime.key}, which another job is building")
                return _waiting(runtime)
            build = _Build(runtime, f"Building runtime {runtime.name}")
            build.waiters[who] = _Waiter(log, wake)
            self._joined[who] = build
            self._building[runtime.key] = build
            build.thread = threading.Thread(
                target=self._run, args=(build,), name=f"runtime-build-{runtime.key}", daemon=True
            )
        build.thread.start()
        return build.message

    def leave(self, who: str) -> None:
        """``who`` waits no more (it was stopped, or failed); the build it waited for is cancelled if no one
        else waits for it."""
        with self._lock:
            build = self._joined.pop(who, None)
            if build is None:
                return
            build.waiters.pop(who, None)
            orphaned = not build.waiters and not build.done
        if orphaned:
            log.info("cancelling the build of runtime %s: no job waits for it", build.runtime.key)
            build.cancellation.cancel()

    def _say(self, build: _Build, line: str) -> None:
        with self._lock:
            first = next(iter(build.waiters.values()), None)
        if first is not None:
            first.log(line)

    def _building_message(self, build: _Build, message: str) -> None:
        """runtimes.ensure's word on what the build does: it may wait for another process's build first."""
        with self._lock:
            changed, build.message = build.message != message, message
            waiters = list(build.waiters.values()) if changed else []
        for waiter in waiters:  # their SecondaryStatus says so
            waiter.wake()

    def _run(self, build: _Build) -> None:
        try:
            runtimes.ensure(
                build.runtime,
                self.runtimes_dir,
                lambda line: self._say(build, line),
                building=lambda message: self._building_message(build, message),
                cancellation=build.cancellation,
                **runtimes.options(self.backends.settings),
            )
        except runtimes.RuntimeBuildError as err:
            build.error = err
        except Exception as err:  # a bug must not leave the jobs waiting forever: they fail with it
            log.exception("building runtime %s failed", build.runtime.key)
            build.error = runtimes.RuntimeBuildError(f"the runtime build failed in SelfMaker: {err}")
        with self._lock:
            build.done = True
            if self._building.get(build.runtime.key) is build:
                del self._building[build.runtime.key]
            waiters = list(build.waiters.values())
        for waiter in waiters:
            waiter.wake()

    # -- the server's worker: nothing to start; at stop, no installer outlives the server ----------------

    def start(self) -> None:
        pass

    def stop(self) -> None:
        with self._lock:
            builds = list(self._building.values())
        for build in builds:
            build.cancellation.cancel()
        for build in builds:
            if build.thread is not None:
                build.thread.join(STOP_JOIN_SECONDS)


def _waiting(runtime: runtimes.Runtime) -> str:
    return f"Waiting for runtime {runtime.name} (another job is building it)"


def background_builds(backends: Backends) -> BackgroundBuilds:
    return backends.shared("engines.background_builds", lambda: BackgroundBuilds(backends))


@background_worker
def _builds_worker(backends: Backends) -> BackgroundBuilds:
    return background_builds(backends)
