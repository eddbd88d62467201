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
from ..jobs.lifecycle import Run
from ..jobs.training import TRAINING_JOB
from . import jobs, progress, search, warm_start

FALLBACK = 30.0  # seconds; trials' ends kick the job at once
PROGRESS_POLL = 1.0  # seconds between reads of the running trials' objective when the job stops trials early


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


def _search(record: Record) -> search.Search:
    data = record.data
    config, hyperband = data["HyperParameterTuningJobConfig"], data.get("_Hyperband") or {}
    space = jobs.search_space(data)
    prior = (
        [] if isinstance(space, search.Definitions) else warm_start.prior_trials(space, data.get("_WarmStart") or [])
    )
    return search.Search(
        name=f"tuning-{_seed(data)}",  # not the job's name: the same RandomSeed is the same search
        strategy=config["Strategy"],
        space=space,
        direction=jobs.objective(data)["Type"],
        seed=_seed(data),
        early_stopping=(config.get("TrainingJobEarlyStoppingType") or "Off") == "Auto",
        min_resource=hyperband.get("MinResource", 1),
        max_resource=hyperband.get("MaxResource"),
        prior=prior,
    )


def _steps(backends: Backends, record: Record, found: dict) -> dict[str, list[float]]:
    """Each trial's objective values so far, from its training job's log (only a job that prunes reads them)."""
    if not jobs.prunes(record.data):
        return {}
    regex = jobs.objective_regex(_ctx(backends, record), record.data)
    out = {}
    for trial in record.data["_Trials"]:
        job = found.get(trial["Arn"])
        if job is not None and regex:
            out[trial["Name"]] = progress.objective_values(
                Run(TRAINING_JOB, backends, job).instances[0].log_path, regex
            )
    return out


def _optuna_trials(data: dict, summaries: list[dict], steps: dict[str, list[float]]) -> list[dict]:
    out = []
    for trial, summary in zip(data["_Trials"], summaries):
        logged = steps.get(trial["Name"]) or []
        entry = {"Params": trial["Params"], "SystemAttrs": trial.get("SystemAttrs") or {}, "Steps": logged}
        early = trial.get("EarlyStopped")
        if early == "Pruned":
            entry["State"] = "PRUNED"
        elif summary["ObjectiveStatus"] == "Succeeded":
            entry.update(State="COMPLETE", Value=summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
        elif early == "MaxResource" and logged:  # stopping at MaxResource: its course is run
            entry.update(State="COMPLETE", Value=logged[-1])
        else:
            entry["State"] = "FAIL" if summary["ObjectiveStatus"] == "Failed" else "RUNNING"
        out.append(entry)
    return out


_STOP_MESSAGES = {
    "Pruned": "Stopping the job: the hyperparameter tuning job stopped it early, as its objective metric is not "
    "improving enough ({rule})",
    "MaxResource": "Stopping the job: it reached the Hyperband strategy's MaxResource ({steps} epochs)",
}


def _stop_early(backends: Backends, record: Record, trial: dict) -> None:
    rule = "Hyperband" if record.data["HyperParameterTuningJobConfig"]["Strategy"] == "Hyperband" else "early stopping"
    message = _STOP_MESSAGES[trial["EarlyStopped"]].format(rule=rule, steps=trial.get("Judged"))
    try:
        TRAINING_JOB.stop(_ctx(backends, record), {"TrainingJobName": trial["Name"]}, message=message)
    except AWSError:
        pass  # it ended meanwhile


def _early_stopping(backends: Backends, record: Record, summaries: list[dict], steps: dict) -> Record | None:
    """Judge each running trial's new steps (Hyperband, or the median rule); stop those that are done for.
    The verdict is recorded (committed) before the training job is stopped, so a restart in between stops
    it then. Returns the record as it is now, None if a Stop landed meanwhile."""
    plan = _search(record)
    trials = _optuna_trials(record.data, summaries, steps)
    for index, (trial, summary) in enumerate(zip(list(record.data["_Trials"]), summaries)):
        if summary["TrainingJobStatus"] != "InProgress":
            continue
        if trial.get("EarlyStopped"):  # judged, but the server stopped before the training job did
            _stop_early(backends, record, trial)
            continue
        judged = trial.get("Judged", 0)
        if len(trials[index]["Steps"]) <= judged:
            continue
        verdict, attrs, step = plan.judge(trials, index, judged)

        def note(d: dict, name=trial["Name"], verdict=verdict, attrs=attrs, step=step) -> None:
            for t in d["_Trials"]:
                if t["Name"] == name:
                    t.update(SystemAttrs=attrs, Judged=step)
                    if verdict:
                        t["EarlyStopped"] = verdict

        fresh = _commit(backends, record, note)
        if fresh is None:
            return None
        record = fresh
        trials[index]["SystemAttrs"] = attrs  # the next trial's judgement sees this one's rungs
        if verdict:
            stopped = next(t for t in record.data["_Trials"] if t["Name"] == trial["Name"])
            trials[index].update(State="PRUNED" if verdict == "Pruned" else "COMPLETE")
            if verdict == "MaxResource":
                trials[index]["Value"] = trials[index]["Steps"][-1]
            _stop_early(backends, record, stopped)
    return record


def _criteria_met(record: Record, summaries: list[dict], top: dict | None) -> bool:
    """Whether TuningJobCompletionCriteria ends the search: the target reached, the best not improving for
    MaxNumberOfTrainingJobsNotImproving trials, or convergence (jobs.converged) with CompleteOnConvergence."""
    data = record.data
    criteria = data["HyperParameterTuningJobConfig"].get("TuningJobCompletionCriteria") or {}
    target = criteria.get("TargetObjectiveMetricValue")
    if target is not None and top is not None:
        value = top["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        if value >= target if jobs.objective(data)["Type"] == "Maximize" else value <= target:
            return True
    patience = (criteria.get("BestObjectiveNotImproving") or {}).get("MaxNumberOfTrainingJobsNotImproving")
    if patience is not None and jobs.not_improving(record, summaries) >= patience:
        return True
    return bool(
        data.get("_ConvergenceDetectedTime")
        and (criteria.get("ConvergenceDetected") or {}).get("CompleteOnConvergence") == "Enabled"
    )


def _note_convergence(backends: Backends, record: Record, summaries: list[dict]) -> Record | None:
    """Record when the search first converged (reported whether or not CompleteOnConvergence ends it)."""
    if record.data.get("_ConvergenceDetectedTime") or not jobs.converged(record, summaries):
        return record
    return _commit(backends, record, lambda d: d.setdefault("_ConvergenceDetectedTime", now()))


def _create_trial(backends: Backends, record: Record, trial: dict) -> None:
    """Create a recorded trial's training job (as CreateTrainingJob would), or record why it could not be."""
    ctx = _ctx(backends, record)
    definition = jobs.definition(record.data, trial)
    request = jobs.trial_request(ctx, record.data, trial["Name"], trial["TunedHyperParameters"], definition)
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
    found = jobs.trial_jobs(backends, record)
    summaries = jobs.trial_summaries(backends, record, found)
    top = jobs.best(record, summaries)
    limits = data["HyperParameterTuningJobConfig"]["ResourceLimits"]
    deadline = limits.get("MaxRuntimeInSeconds")
    over_time = deadline is not None and now() >= data["CreationTime"] + deadline
    total = jobs.total_jobs(data)
    if record.status == "InProgress":
        fresh = _note_convergence(backends, record, summaries)
        if fresh is None:
            return 0.0  # stopped meanwhile: the next step sees it
        record, data = fresh, fresh.data
    if record.status == "Stopping" or over_time or _criteria_met(record, summaries, top):
        if _stop_running(backends, record, summaries):
            return 1.0
        _conclude(backends, record, "Stopped" if record.status == "Stopping" else "Completed", summaries)
        return None
    steps = _steps(backends, record, found)
    if steps:
        fresh = _early_stopping(backends, record, summaries, steps)
        if fresh is None:
            return 0.0  # stopped meanwhile: the next step sees it
        record, data = fresh, fresh.data
    running = sum(1 for s in summaries if s["TrainingJobStatus"] in ("InProgress", "Stopping"))
    if len(summaries) < total and running < jobs.host_parallel(data):
        plan = _search(record)
        params, attrs = plan.ask(_optuna_trials(data, summaries, steps))
        index = len(summaries) + 1
        trial = {
            "Name": f"{record.name}-{index:03d}-{secrets.token_hex(4)}",
            "Params": params,
            "SystemAttrs": attrs,
            "TunedHyperParameters": plan.space.hyperparameters(params),
            "CreationTime": now(),
        }
        if isinstance(plan.space, search.Definitions):
            trial["Definition"] = plan.space.definition_of(params)
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
        wait = PROGRESS_POLL if jobs.prunes(data) else FALLBACK  # pruning reads the trials' logs as they go
        if deadline is not None:  # look again when MaxRuntimeInSeconds passes
            return max(0.0, min(wait, data["CreationTime"] + deadline - now()))
        return wait
    if top is None:
        _conclude(backends, record, "Failed", summaries, "No training job completed with the objective metric.")
    else:
        _conclude(backends, record, "Completed", summaries)
    return None


register(Controller("HyperParameterTuningJob", jobs.ACTIVE, reconcile))
