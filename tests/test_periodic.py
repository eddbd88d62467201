"""The periodic worker every flusher and evaluator is built on: real threads, no server."""

from __future__ import annotations

import functools
import logging
import threading
import time

import pytest

from selfmaker.engines import periodic
from selfmaker.engines.periodic import Periodic
from support.waiting import wait_for as support_wait_for

# The suite's one polling loop, polled fast: these tests count steps as they happen.
wait_for = functools.partial(support_wait_for, timeout=3.0, interval=0.005)


class Counter:
    def __init__(self, fail_first: int = 0):
        self.calls: list[str] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.calls.append(threading.current_thread().name)
            if len(self.calls) <= self.fail_first:
                raise RuntimeError("boom")


def test_runs_every_interval_on_its_named_thread():
    job = Counter()
    worker = Periodic("test-every", 0.02, job)
    worker.start()
    try:
        assert wait_for(lambda: len(job.calls) >= 4)
        assert set(job.calls) == {"test-every"}
    finally:
        worker.stop()


def test_first_run_waits_one_interval_unless_run_at_start():
    late, early = Counter(), Counter()
    slow = Periodic("test-late", 60, late)
    eager = Periodic("test-early", 60, early, run_at_start=True)
    slow.start(), eager.start()
    try:
        assert wait_for(lambda: len(early.calls) == 1)
        time.sleep(0.05)
        assert late.calls == []
    finally:
        slow.stop(), eager.stop()


def test_wake_runs_now_and_a_wake_during_a_run_is_not_lost():
    entered, release = threading.Event(), threading.Event()
    calls = []

    def job():
        calls.append(time.monotonic())
        if len(calls) == 1:
            entered.set()
            release.wait(2)

    worker = Periodic("test-wake", 60, job)
    worker.start()
    try:
        worker.wake()
        assert entered.wait(2)  # long before the 60 s interval
        worker.wake()  # arrives while the first run is in progress
        release.set()
        assert wait_for(lambda: len(calls) == 2)
    finally:
        worker.stop(timeout=5)


def test_stop_ends_the_thread_then_runs_once_more():
    job = Counter()
    worker = Periodic("test-stop", 60, job)
    worker.start()
    worker.stop()
    assert job.calls == ["MainThread"]  # the final run, on the caller's thread, after the thread ended
    assert not any(t.name == "test-stop" for t in threading.enumerate())
    job_quiet = Counter()
    quiet = Periodic("test-stop-quiet", 60, job_quiet, final_run=False)
    quiet.start()
    quiet.stop()
    assert job_quiet.calls == []


def test_run_final_is_what_stop_runs():
    class Flusher(Periodic):
        def __init__(self):
            super().__init__("test-final", 60)
            self.seen = []

        def run(self):
            self.seen.append("run")

        def run_final(self):
            self.seen.append("final")

    worker = Flusher()
    worker.start()
    worker.wake()
    assert wait_for(lambda: worker.seen == ["run"])
    worker.stop()
    assert worker.seen == ["run", "final"]


def test_an_exception_is_logged_and_never_kills_the_thread(caplog, monkeypatch):
    monkeypatch.setattr(periodic, "RETRY_SECONDS", 0.05)
    job = Counter(fail_first=2)
    worker = Periodic("test-failing", 0.01, job)
    with caplog.at_level(logging.ERROR, logger="selfmaker.periodic"):
        worker.start()
        try:
            assert wait_for(lambda: len(job.calls) >= 4)
        finally:
            worker.stop()
    failures = [r for r in caplog.records if "test-failing failed" in r.getMessage()]
    assert len(failures) == 2 and failures[0].exc_info[0] is RuntimeError


def test_a_failure_slows_the_next_run_to_the_retry_delay(monkeypatch):
    monkeypatch.setattr(periodic, "RETRY_SECONDS", 0.3)
    job = Counter(fail_first=1)
    worker = Periodic("test-retry", 0.01, job)
    worker.start()
    try:
        assert wait_for(lambda: len(job.calls) == 1)
        time.sleep(0.15)
        assert len(job.calls) == 1  # not 15 runs at the 0.01 s interval
        assert wait_for(lambda: len(job.calls) >= 3)
    finally:
        worker.stop()


def test_on_demand_starts_with_the_first_use_and_never_after_stop():
    job = Counter()
    worker = Periodic("test-lazy", 0.01, job, on_demand=True)
    worker.start()
    time.sleep(0.05)
    assert job.calls == [] and not any(t.name == "test-lazy" for t in threading.enumerate())
    worker.ensure_started()
    assert wait_for(lambda: len(job.calls) >= 1)
    worker.stop()
    count = len(job.calls)
    worker.ensure_started()
    time.sleep(0.05)
    assert len(job.calls) == count and worker.stopping


def test_without_a_job_run_must_be_overridden():
    with pytest.raises(NotImplementedError):
        Periodic("test-nothing", 1).run()


def test_a_job_may_choose_the_wait_before_its_next_run():
    calls = []

    def job():  # fast while "starting" (its first five runs), then the 60 s interval
        calls.append(time.monotonic())
        return 0.01 if len(calls) < 5 else None

    worker = Periodic("test-own-wait", 60, job, run_at_start=True)
    worker.start()
    try:
        assert wait_for(lambda: len(calls) == 5)
        time.sleep(0.1)
        assert len(calls) == 5
    finally:
        worker.stop(), calls.clear()


def test_a_job_may_stop_its_own_worker():
    stopped = threading.Event()

    def job():
        worker.stop()  # from the worker's own thread: must not wait for itself
        stopped.set()

    worker = Periodic("test-self-stop", 0.01, job, final_run=False)
    worker.start()
    assert stopped.wait(2)
    assert wait_for(lambda: not any(t.name == "test-self-stop" for t in threading.enumerate()))
