"""The Inference Recommender controller: a job's benchmarks, one step at a time (or MaxParallelOfTests).

The job record holds its steps (``_Steps``: candidate, status, endpoint, results), so
the reconciler resumes it after a restart: a step that was running is run again from
its start (its candidate endpoint, if left behind, is deleted first); finished steps
stay finished. A benchmark lasts minutes, so it runs on a thread of its own
(:class:`Runs`); the reconcile step only starts, watches and concludes.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading

from ...backends import Backends, background_worker
from ...engines.reconciler import Controller, kick, register
from ...store.resources import Record, now
from . import benchmark, execution_log
from .jobs import ACTIVE, MAX_RECOMMENDATIONS

log = logging.getLogger("selfmaker.recommender")

POLL = 5.0  # fallback re-check while benchmarks run (a finished benchmark kicks the job at once)
DONE = frozenset({"COMPLETED", "FAILED", "STOPPED"})


class Runs:
    """The benchmark threads of this server: (job ARN, step index) -> (thread, stop event)."""

    def __init__(self, backends: Backends):
        self.backends = backends
        self._runs: dict[tuple[str, int], tuple[threading.Thread, threading.Event]] = {}
        self._lock = threading.Lock()
        self._closing = False

    def running(self, arn: str) -> dict[int, threading.Event]:
        with self._lock:
            return {i: ev for (a, i), (t, ev) in self._runs.items() if a == arn and t.is_alive()}

    def start(self, record: Record, index: int) -> None:
        stop = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(record, index, stop), name=f"ir-{record.name}-{index}", daemon=True
        )
        with self._lock:
            if self._closing:
                return
            self._runs[(record.arn, index)] = (thread, stop)
        thread.start()

    def stop(self, arn: str) -> None:
        for stop in self.running(arn).values():
            stop.set()

    def _run(self, record: Record, index: int, stop: threading.Event) -> None:
        step = record.data["_Steps"][index]
        try:
            result, status = benchmark.run(self.backends, record, step, stop), "COMPLETED"
        except benchmark.Stopped:
            result, status = {}, "STOPPED"
        except benchmark.BenchmarkFailed as failure:
            result, status = {"FailureReason": str(failure)[:1024]}, "FAILED"
        except Exception as exc:  # a bug: the step fails with what is known, the job goes on
            log.exception("benchmark %d of %s failed", index, record.arn)
            result, status = {"FailureReason": f"The benchmark failed: {type(exc).__name__}"}, "FAILED"
        if self._closing and status == "STOPPED":
            return  # the server is stopping: the step stays IN_PROGRESS and runs again after the restart

        applied = []

        def change(fresh: Record, _conn) -> bool:
            steps = fresh.data["_Steps"]
            if steps[index].get("EndpointName") != step.get("EndpointName"):
                return False  # a newer run of this step owns it
            steps[index].update(result, Status=status)
            applied.append(True)
            return True

        self.backends.resources.mutate(change, arn=record.arn)
        if applied:
            _log(self.backends, record, _step_outcome(index, status, result))
        kick(self.backends, record.arn)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            runs = list(self._runs.values())
        for _, stop in runs:
            stop.set()
        for thread, _ in runs:
            thread.join(30)


def runs(backends: Backends) -> Runs:
    return backends.shared("recommender.runs", lambda: Runs(backends))


class _RunsWorker:
    """At a clean stop, ends the running benchmarks (their endpoints deleted) before the fleet stops."""

    def __init__(self, backends: Backends):
        self.backends = backends

    def start(self) -> None:
        pass

    def stop(self) -> None:
        found = self.backends.services.get("recommender.runs")
        if found is not None:
            found.close()


background_worker(_RunsWorker)


# -- the execution log (execution_log.py) -------------------------------------------------------------------------


def _log(backends: Backends, record: Record, message: str) -> None:
    execution_log.write(backends, record.account_id, record.region, record.name, message)


def _describe(candidate: dict) -> str:
    if candidate.get("endpoint"):
        return f"the existing endpoint {candidate['endpoint']}"
    what = candidate.get("instance_type") or "a serverless endpoint"
    if candidate.get("environment"):
        what += " with " + ", ".join(f"{k}={v}" for k, v in candidate["environment"].items())
    return what


def _step_outcome(index: int, status: str, result: dict) -> str:
    if status == "COMPLETED":
        metrics = result["Metrics"]
        cost = f", CostPerHour {metrics['CostPerHour']}" if "CostPerHour" in metrics else ""
        return (
            f"Benchmark {index} COMPLETED: MaxInvocations {metrics['MaxInvocations']} per minute, "
            f"ModelLatency {metrics['ModelLatency']} microseconds{cost}."
        )
    if status == "FAILED":
        return f"Benchmark {index} FAILED: {result['FailureReason']}"
    return f"Benchmark {index} STOPPED."


# -- the reconcile step -----------------------------------------------------------------------------------------


def _commit(backends: Backends, record: Record, mutate) -> Record:
    def change(fresh: Record, _conn) -> bool:
        if fresh.status != record.status:
            return False  # a Stop landed meanwhile: look again
        mutate(fresh.data)
        fresh.status = fresh.data["Status"]
        fresh.data["LastModifiedTime"] = now()
        return True

    return backends.resources.mutate(change, arn=record.arn) or record


def _max_parallel(data: dict) -> int:
    return ((data["InputConfig"].get("ResourceLimit") or {}).get("MaxParallelOfTests")) or 1


def reconcile(backends: Backends, record: Record) -> float | None:
    data, pool = record.data, runs(backends)
    if record.status == "PENDING":
        _commit(backends, record, lambda d: d.update(Status="IN_PROGRESS"))
        return 0.0
    live = pool.running(record.arn)
    if record.status == "STOPPING" or now() >= data["_Deadline"]:
        stopping = record.status == "STOPPING"
        pool.stop(record.arn)
        if live:
            return 1.0
        _conclude(backends, record, stopped=stopping)
        return None
    steps = data["_Steps"]
    restart = [i for i, s in enumerate(steps) if s["Status"] == "IN_PROGRESS" and i not in live]
    for i in restart:  # left running by a server that stopped: start it again, on a fresh endpoint
        if steps[i].get("EndpointName") and not steps[i]["candidate"].get("endpoint"):
            benchmark.tear_down(backends, record, steps[i]["EndpointName"])
    pending = [i for i, s in enumerate(steps) if s["Status"] == "PENDING"]
    to_start, failed = [], {}
    busy = sum(benchmark.cpus_needed(steps[i]["candidate"]) for i in live)
    host = len(os.sched_getaffinity(0))
    slots = _max_parallel(data) - len(live)
    for i in restart + pending:
        if slots <= 0:
            break
        need = benchmark.cpus_needed(steps[i]["candidate"])
        if (live or to_start) and busy + need > host:
            failed[i] = (
                f"Running this benchmark beside {len(live) + len(to_start)} other(s) (MaxParallelOfTests "
                f"{_max_parallel(data)}) would oversubscribe the host: it needs {need} processor(s), "
                f"{busy} of the host's {host} are taken."
            )
            continue
        to_start.append(i)
        busy += need
        slots -= 1
    if to_start or failed:

        def mutate(d: dict) -> None:
            for i in to_start:
                candidate = d["_Steps"][i]["candidate"]
                name = candidate.get("endpoint") or benchmark.endpoint_name(d["JobName"], i)
                d["_Steps"][i].update(Status="IN_PROGRESS", EndpointName=name)
            for i, reason in failed.items():
                d["_Steps"][i].update(Status="FAILED", FailureReason=reason)

        record = _commit(backends, record, mutate)
        if record.status != "IN_PROGRESS":
            return 0.0
        for i, reason in failed.items():
            _log(backends, record, f"Benchmark {i} FAILED: {reason}")
        for i in to_start:
            step = record.data["_Steps"][i]
            _log(backends, record, f"Benchmark {i}: {_describe(step['candidate'])}, endpoint {step['EndpointName']}.")
            pool.start(record, i)
        return POLL
    if live:
        return POLL
    _conclude(backends, record, stopped=False)
    return None


def _recommendation(job_name: str, step: dict) -> dict:
    candidate = step["candidate"]
    model_config: dict = {}
    if candidate.get("environment"):
        model_config["EnvironmentParameters"] = [
            {"Key": k, "ValueType": "String", "Value": v} for k, v in candidate["environment"].items()
        ]
    if candidate.get("inference_spec"):
        model_config["InferenceSpecificationName"] = candidate["inference_spec"]
    return {
        "RecommendationId": f"{job_name}/{secrets.token_hex(4)}",
        "Metrics": step["Metrics"],
        "EndpointConfiguration": step["EndpointConfiguration"],
        "ModelConfiguration": model_config,
        "InvocationStartTime": step["InvocationStartTime"],
        "InvocationEndTime": step["InvocationEndTime"],
    }


def _rank(step: dict) -> tuple:
    """Cheapest per inference first; then lower latency; unpriced configurations last."""
    metrics = step["Metrics"]
    cost = metrics.get("CostPerInference")
    return (cost is None, cost if cost is not None else 0.0, metrics["ModelLatency"], -metrics["MaxInvocations"])


def _conclude(backends: Backends, record: Record, stopped: bool) -> None:
    def mutate(d: dict) -> None:
        steps = d["_Steps"]
        for step in steps:
            if step["Status"] in ("PENDING", "IN_PROGRESS"):
                step["Status"] = "STOPPED"
                if not stopped:
                    step["FailureReason"] = "The job reached JobDurationInSeconds before this benchmark ended."
        done = [s for s in steps if s["Status"] == "COMPLETED"]
        deployed = [s for s in done if not s["candidate"].get("endpoint")]
        existing = [s for s in done if s["candidate"].get("endpoint")]
        if deployed:
            ranked = sorted(deployed, key=_rank)[:MAX_RECOMMENDATIONS]
            d["InferenceRecommendations"] = [_recommendation(d["JobName"], s) for s in ranked]
        if existing:
            d["EndpointPerformances"] = [
                {"Metrics": s["EndpointMetrics"], "EndpointInfo": {"EndpointName": s["EndpointName"]}} for s in existing
            ]
        if stopped:
            d["Status"] = "STOPPED"
        elif done:
            d["Status"] = "COMPLETED"
        else:
            reasons = [s.get("FailureReason") for s in steps if s.get("FailureReason")]
            d["Status"] = "FAILED"
            d["FailureReason"] = (reasons[0] if reasons else "No benchmark completed.")[:1024]
        d["CompletionTime"] = now()

    done = _commit(backends, record, mutate)
    if done.status in DONE:
        data = done.data
        outcome = data.get("FailureReason") or f"{len(data.get('InferenceRecommendations') or [])} recommendation(s)"
        _log(backends, done, f"Job {done.name} {done.status}: {outcome}.")


register(Controller("InferenceRecommendationsJob", ACTIVE, reconcile))
