"""The tuning controller: one reconcile step starts trials, notices their ends, and concludes.

A step reads the trials' training jobs, stops the search when it is over (the budget spent,
TargetObjectiveMetricValue reached, MaxRuntimeInSeconds passed, or a Stop), and otherwise
starts trials while fewer than the job's parallel limit run (``jobs.host_parallel``: the host's
processors cap MaxParallelTrainingJobs). A new trial is first recorded (its name and Optuna
parameters, committed), then its training job is created, so a restart between the two creates
the same job. Trials that end kick the tuning job (``jobs._trial_done``); the returned delay is
only a fallback.
"""

from __future__ import annotations

import secrets

from ...backends import Backends
from ...engines.reconciler import Controller, register
from ...server.errors import AWSError
from ...server.models import operation_model
from ...server.operations import Context, call
from ...server.validate import validate
from ...store.resources import Record, now
from ..jobs.training import TRAINING_JOB
from . import jobs, search

FALLBACK = 30.0  # seconds; trials' ends kick the job at once


def _ctx(backends: Backends, record: Record) -> Context:
    return Context(backends=backends, account_id=record.account_id, region=record.region, service="sagemaker")


def _commit(backends: Backends, record: Record, mutate) -> Record | None:
    """Apply ``mutate(data)`` if the record's status did not change meanwhile (a Stop); None if it did."""

    def change(fresh: Record, _conn) -> bool:
        if fresh.status != record.status:
            return False
        mutate(fresh.data)
        fresh.status = fresh.data["HyperParameterTuningJobStatus"]
        fresh.data["LastModifiedTime"] = now()
        return True

    return backends.resources.mutate(change, arn=record.arn)


def _seed(data: dict) -> int:
    seed = data["HyperParameterTuningJobConfig"].get("RandomSeed")
    return seed if seed is not None else data["_Seed"]


def _optuna_trials(data: dict, summaries: list[dict]) -> list[dict]:
    out = []
    for trial, summary in zip(data["_Trials"], summaries):
        entry = {"Params": trial["Params"], "SystemAttrs": trial.get("SystemAttrs") or {}}
        if summary["ObjectiveStatus"] == "Succeeded":
            entry.update(State="COMPLETE", Value=summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
        else:
            entry["State"] = "FAIL" if summary["ObjectiveStatus"] == "Failed" else "RUNNING"
        out.append(entry)
    return out


def _target_reached(data: dict, top: dict | None) -> bool:
    target = (data["HyperParameterTuningJobConfig"].get("TuningJobCompletionCriteria") or {}).get(
        "TargetObjectiveMetricValue"
    )
    if target is None or top is None:
        return False
    value = top["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
    return value >= target if jobs.objective(data)["Type"] == "Maximize" else value <= target


def _create_trial(backends: Backends, record: Record, trial: dict) -> None:
    """Create a recorded trial's training job (as CreateTrainingJob would), or record why it could not be."""
    ctx = _ctx(backends, record)
    request = jobs.trial_request(ctx, record.data, trial["Name"], trial["TunedHyperParameters"])
    reason = None
    try:
        params = validate(request, operation_model("sagemaker", "CreateTrainingJob").input_shape)
        params["TuningJobArn"] = record.arn  # Describe shows it; _trial_done finds the tuning job by it
        TRAINING_JOB.create(ctx, params)
    except AWSError as err:
        if not err.exists:
            reason = f"{err.code}: {err.message}"[:1024]

    def mark(data: dict) -> None:
        for t in data["_Trials"]:
            if t["Name"] == trial["Name"]:
                t["Created"] = reason is None
                if reason:
                    t["FailureReason"] = reason

    if _commit(backends, record, mark) is None:  # a Stop landed: record it all the same
        backends.resources.mutate(lambda fresh, _c: (mark(fresh.data), True)[1], arn=record.arn)


def _stop_running(backends: Backends, record: Record, summaries: list[dict]) -> int:
    ctx, running = _ctx(backends, record), 0
    for s in summaries:
        if s["TrainingJobStatus"] in ("InProgress", "Stopping"):
            running += 1
            if s["TrainingJobStatus"] == "InProgress":
                try:
                    call(ctx, "StopTrainingJob", {"TrainingJobName": s["TrainingJobName"]})
                except AWSError:
                    pass  # it ended meanwhile
    return running


def _conclude(backends: Backends, record: Record, status: str, summaries: list[dict], reason: str = "") -> None:
    job_counters, goal_counters = jobs.counters(summaries)

    def finish(data: dict) -> None:
        data.update(HyperParameterTuningJobStatus=status, HyperParameterTuningEndTime=now())
        data.update(_JobCounters=job_counters, _ObjectiveCounters=goal_counters)
        if reason:
            data["FailureReason"] = reason[:1024]

    _commit(backends, record, finish)


def reconcile(backends: Backends, record: Record) -> float | None:
    data = record.data
    # A trial recorded but not created (the server stopped in between): create it now.
    for trial in data["_Trials"]:
        if "Created" not in trial:
            _create_trial(backends, record, trial)
            return 0.0
    summaries = jobs.trial_summaries(backends, record)
    top = jobs.best(record, summaries)
    limits = data["HyperParameterTuningJobConfig"]["ResourceLimits"]
    deadline = limits.get("MaxRuntimeInSeconds")
    over_time = deadline is not None and now() >= data["CreationTime"] + deadline
    total = jobs.total_jobs(data)
    if record.status == "Stopping" or over_time or _target_reached(data, top):
        if _stop_running(backends, record, summaries):
            return 1.0
        _conclude(backends, record, "Stopped" if record.status == "Stopping" else "Completed", summaries)
        return None
    running = sum(1 for s in summaries if s["TrainingJobStatus"] in ("InProgress", "Stopping"))
    if len(summaries) < total and running < jobs.host_parallel(data):
        space = search.Space(jobs.ranges(data))
        params, attrs = search.ask(
            data["HyperParameterTuningJobConfig"]["Strategy"],
            space,
            jobs.objective(data)["Type"],
            _seed(data),
            _optuna_trials(data, summaries),
        )
        index = len(summaries) + 1
        trial = {
            "Name": f"{record.name}-{index:03d}-{secrets.token_hex(4)}",
            "Params": params,
            "SystemAttrs": attrs,
            "TunedHyperParameters": space.hyperparameters(params),
            "CreationTime": now(),
        }
        trial["Arn"] = TRAINING_JOB.arn(_ctx(backends, record), trial["Name"])
        job_counters, goal_counters = jobs.counters(summaries)

        def add(d: dict) -> None:
            d["_Trials"].append(trial)
            d.update(_JobCounters=job_counters, _ObjectiveCounters=goal_counters)

        fresh = _commit(backends, record, add)
        if fresh is None:
            return 0.0  # stopped meanwhile: the next step sees it
        _create_trial(backends, fresh, trial)
        return 0.0  # the next trial, if there is room for one
    if running:
        job_counters, goal_counters = jobs.counters(summaries)
        if data.get("_JobCounters") != job_counters:
            _commit(backends, record, lambda d: d.update(_JobCounters=job_counters, _ObjectiveCounters=goal_counters))
        if deadline is not None:  # look again when MaxRuntimeInSeconds passes
            return max(0.0, min(FALLBACK, data["CreationTime"] + deadline - now()))
        return FALLBACK
    if top is None:
        _conclude(backends, record, "Failed", summaries, "No training job completed with the objective metric.")
    else:
        _conclude(backends, record, "Completed", summaries)
    return None


register(Controller("HyperParameterTuningJob", jobs.ACTIVE, reconcile))
