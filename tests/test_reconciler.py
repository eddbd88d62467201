"""The reconciler's scheduling: exponential backoff on errors and lazy skipping of stale entries.

Real threads and a real (throwaway SQLite) store, no server: steps are TableControllers whose
work is a Python function, so each test sees exactly when the reconciler ran a step.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time

import pytest

from selfmaker.backends import Backends
from selfmaker.config import Settings
from selfmaker.engines import reconciler as rec
from support.waiting import wait_for as support_wait_for

_names = itertools.count()


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    built = Backends.build(Settings(data_dir=tmp_path_factory.mktemp("reconciler")))
    return built


class Steps:
    """A TableController whose step records its time and does what the test says."""

    def __init__(self, behaviour):
        self.behaviour = behaviour  # (call number, id) -> delay | None, or raises
        self.times: list[float] = []
        self.lock = threading.Lock()
        self.controller = rec.register_table(rec.TableController(f"test{next(_names)}", lambda b: [], self._step))

    def _step(self, backends, record_id: str):
        with self.lock:
            self.times.append(time.monotonic())
            n = len(self.times)
        return self.behaviour(n, record_id)

    def key(self, record_id: str = "r") -> str:
        return self.controller.key(record_id)

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:])]


@pytest.fixture
def make_reconciler(backends):
    started = []

    def make(**kwargs) -> rec.Reconciler:
        r = rec.Reconciler(backends, **kwargs)
        r.start()
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()


# The suite's one polling loop, polled fast: these tests count steps as they happen.
wait_for = functools.partial(support_wait_for, timeout=5.0, interval=0.005)


def fail(n, _):
    raise RuntimeError(f"step {n} failed")


def test_errors_back_off_exponentially_up_to_the_cap(make_reconciler):
    steps = Steps(fail)
    r = make_reconciler(backoff_first=0.04, backoff_cap=0.16)
    r.schedule(steps.key())
    assert wait_for(lambda: len(steps.times) >= 6)
    gaps = steps.gaps()[:5]
    for gap, expected in zip(gaps, (0.04, 0.08, 0.16, 0.16, 0.16)):
        assert expected <= gap < expected + 0.1, gaps


def test_success_resets_the_backoff(make_reconciler):
    # Steps 1-3 fail (0.04, 0.08, 0.16 s), step 4 succeeds and asks to come back in 0.01 s,
    # step 5 fails again: the next wait is the first one again, not 0.32 s.
    def behaviour(n, _):
        if n == 4:
            return 0.01
        if n <= 5:
            raise RuntimeError(f"step {n}")
        return None

    steps = Steps(behaviour)
    r = make_reconciler(backoff_first=0.04, backoff_cap=10)
    r.schedule(steps.key())
    assert wait_for(lambda: len(steps.times) == 6)
    gaps = steps.gaps()
    assert 0.16 <= gaps[2] < 0.26, gaps
    assert gaps[4] < 0.14, gaps  # after the success: 0.04 s, not 0.32 s
    time.sleep(0.2)
    assert len(steps.times) == 6  # step 6 returned None: done


def test_failures_are_counted_per_record(make_reconciler):
    failing = Steps(fail)
    healthy = Steps(lambda n, _: 0.03 if n < 10 else None)
    r = make_reconciler(backoff_first=0.05, backoff_cap=5)
    r.schedule(failing.key())
    r.schedule(healthy.key())
    assert wait_for(lambda: len(healthy.times) == 10)
    assert max(healthy.gaps()) < 0.1  # another record's failures do not slow this one


def test_a_kick_sooner_supersedes_the_later_entry(make_reconciler):
    steps = Steps(lambda n, _: None)
    r = make_reconciler()
    r.schedule(steps.key(), delay=0.3)
    r.schedule(steps.key())
    assert wait_for(lambda: len(steps.times) == 1)
    time.sleep(0.45)  # the 0.3 s entry is still in the heap: popped, found stale, skipped
    assert len(steps.times) == 1


def test_a_later_kick_does_not_postpone_a_sooner_one(make_reconciler):
    steps = Steps(lambda n, _: None)
    r = make_reconciler()
    start = time.monotonic()
    r.schedule(steps.key(), delay=0.05)
    r.schedule(steps.key(), delay=30)
    assert wait_for(lambda: len(steps.times) == 1, timeout=2)
    assert steps.times[0] - start < 1


def test_many_kicks_run_one_step_and_the_heap_stays_small(make_reconciler):
    steps = Steps(lambda n, _: None)
    r = make_reconciler()
    for i in range(5000):  # each one sooner than the last: 5,000 entries, all but one stale
        r.schedule(steps.key(), delay=50 - i * 0.01)
    assert len(r._heap) < 200  # compacted along the way, not one entry per kick
    r.schedule(steps.key())
    assert wait_for(lambda: len(steps.times) == 1)
    time.sleep(0.1)
    assert len(steps.times) == 1


def test_a_kick_during_a_step_runs_it_once_more_right_after(make_reconciler):
    entered, release = threading.Event(), threading.Event()

    def behaviour(n, _):
        if n == 1:
            entered.set()
            release.wait(2)
        return 60  # come back in a minute

    steps = Steps(behaviour)
    r = make_reconciler()
    r.schedule(steps.key())
    assert entered.wait(2)
    r.schedule(steps.key())
    r.schedule(steps.key())  # two kicks while running: one more step, not two
    release.set()
    assert wait_for(lambda: len(steps.times) == 2)
    time.sleep(0.1)
    assert len(steps.times) == 2


def test_records_step_one_at_a_time_but_in_parallel_with_others(make_reconciler):
    barrier = threading.Barrier(2, timeout=2)

    def behaviour(n, record_id):
        barrier.wait()
        return

    steps = Steps(behaviour)
    r = make_reconciler()
    r.schedule(steps.key("a"))
    r.schedule(steps.key("b"))  # both must be in their steps at once to pass the barrier
    assert wait_for(lambda: len(steps.times) == 2)
    assert not barrier.broken


def test_active_table_records_are_resumed_at_start(backends):
    seen = []
    controller = rec.register_table(
        rec.TableController(f"test{next(_names)}", lambda b: ["x", "y"], lambda b, record_id: seen.append(record_id))
    )
    r = rec.Reconciler(backends)
    r.start()
    try:
        assert wait_for(lambda: sorted(seen) == ["x", "y"])
    finally:
        r.stop()
        rec.TABLE_CONTROLLERS.pop(controller.name)
