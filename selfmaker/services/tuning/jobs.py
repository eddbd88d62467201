"""The HyperParameterTuningJob kind: Create, Describe, List, Stop, Delete, ListTrainingJobsForHyperParameterTuningJob.

CreateHyperParameterTuningJob checks the request (ranges, strategy, limits, the objective
metric, and the training job definition as CreateTrainingJob would) and kicks the controller
(controller.py), which starts the trials: real training jobs named
``<tuning job>-<3-digit index>-<8 hex>``. The tuning record keeps each trial's Optuna
parameters (``_Trials``); the trials' statuses and metrics are read from their training jobs,
so Describe and the list of training jobs are always current.
Statuses: InProgress → Completed | Failed, and Stopping → Stopped.
"""

from __future__ import annotations

import os
import re

from ...engines.reconciler import kick, on_done
from ...server.errors import validation
from ...server.operations import Context, operation
from ...store.resources import Record, now
from ..algorithms.resource import algorithm_metric_definitions, for_tuning
from ..jobs.lifecycle import retryable
from ..jobs.training import TRAINING_JOB, metric_definitions
from ..kinds import Kind
from . import autotune, warm_start
from .search import EPOCH_KEYS, MAX_GRID, MAX_RESOURCE, Definitions, Space, infer_max_resource

ACTIVE = frozenset({"InProgress", "Stopping"})
TERMINAL_TRAINING = frozenset({"Completed", "Failed", "Stopped"})
MAX_TRAINING_JOBS = 500  # AWS's default quota per tuning job
MAX_PARALLEL = 100
MAX_RUNTIME = 30 * 24 * 3600
TRIAL_NAME = re.compile(r"^(?P<tuning>.+)-(?P<index>\d{3})-[0-9a-f]{8}$")


def definitions(data: dict) -> list[dict]:
    """The job's training job definitions, each with its ranges and objective (the config's fill in for a
    definition that gives none: the single-definition form keeps them in HyperParameterTuningJobConfig)."""
    config = data["HyperParameterTuningJobConfig"]
    found = [data["TrainingJobDefinition"]] if data.get("TrainingJobDefinition") else data.get("TrainingJobDefinitions")
    return [
        {
            **d,
            "HyperParameterRanges": d.get("HyperParameterRanges") or config.get("ParameterRanges") or {},
            "TuningObjective": d.get("TuningObjective") or config.get("HyperParameterTuningJobObjective") or {},
        }
        for d in found or [{}]
    ]


def several(data: dict) -> bool:
    return len(data.get("TrainingJobDefinitions") or []) > 1


def definition(data: dict, trial: dict | None = None) -> dict:
    """The definition ``trial`` was drawn from (its ``Definition``), else the job's first (or only) one."""
    found = definitions(data)
    if trial and trial.get("Definition"):
        return next(d for d in found if d.get("DefinitionName") == trial["Definition"])
    return found[0]


def ranges(data: dict) -> dict:
    return definition(data)["HyperParameterRanges"]


def objective(data: dict, trial: dict | None = None) -> dict:
    """The objective of ``trial``'s definition (their Types agree: Create checks it)."""
    return definition(data, trial)["TuningObjective"]


def search_space(data: dict) -> Space | Definitions:
    """One definition's ranges as a Space; several definitions as one conditional space (search.Definitions)."""
    if several(data):
        return Definitions({d["DefinitionName"]: Space(d["HyperParameterRanges"]) for d in definitions(data)})
    return Space(ranges(data))


def total_jobs(data: dict) -> int:
    """How many trials the job runs at most: MaxNumberOfTrainingJobs, or for Grid the grid's size."""
    config = data["HyperParameterTuningJobConfig"]
    limit = config["ResourceLimits"].get("MaxNumberOfTrainingJobs")
    if config["Strategy"] == "Grid":
        size = search_space(data).grid_size()
        return min(size, limit) if limit else size
    return limit


def host_parallel(data: dict) -> int:
    """MaxParallelTrainingJobs, capped so the trials' instances do not outnumber the host's processors."""
    processors = len(os.sched_getaffinity(0))
    instances = max((resource_config(d) or {}).get("InstanceCount") or 1 for d in definitions(data))
    wanted = data["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxParallelTrainingJobs"]
    return max(1, min(wanted, processors // instances))


def resource_config(d: dict) -> dict | None:
    """A definition's trials' ResourceConfig: its own, or from HyperParameterTuningResourceConfig (what the SDK v2
    sends), whose InstanceConfigs are AWS's instance types to fall back on when one lacks capacity: one
    machine never lacks it, so the first is used."""
    if d.get("ResourceConfig"):
        return d["ResourceConfig"]
    tuning = d.get("HyperParameterTuningResourceConfig")
    if not tuning:
        return None
    first = (tuning.get("InstanceConfigs") or [{}])[0]
    found = {k: first.get(k, tuning.get(k)) for k in ("InstanceType", "InstanceCount", "VolumeSizeInGB")}
    found["VolumeKmsKeyId"] = tuning.get("VolumeKmsKeyId")
    return {k: v for k, v in found.items() if v is not None}


def trial_request(ctx: Context, data: dict, name: str, tuned: dict[str, str], d: dict) -> dict:
    """The CreateTrainingJob request of one trial of definition ``d``."""
    request = {
        "TrainingJobName": name,
        "AlgorithmSpecification": d["AlgorithmSpecification"],
        "HyperParameters": {**(d.get("StaticHyperParameters") or {}), **tuned},
    }
    for member in (
        "RoleArn",
        "InputDataConfig",
        "VpcConfig",
        "OutputDataConfig",
        "StoppingCondition",
        "EnableNetworkIsolation",
        "EnableInterContainerTrafficEncryption",
        "EnableManagedSpotTraining",
        "CheckpointConfig",
        "RetryStrategy",
        "Environment",
    ):
        if d.get(member) is not None:
            request[member] = d[member]
    if resource_config(d) is not None:
        request["ResourceConfig"] = resource_config(d)
    if data.get("_Tags"):
        request["Tags"] = data["_Tags"]  # AWS gives the trials the tuning job's tags
    return request


def _metric_definitions(ctx: Context, spec: dict) -> list[dict]:
    """A definition's metrics: its own, its algorithm resource's, its built-in algorithm's."""
    found = metric_definitions(ctx.settings, {"AlgorithmSpecification": spec})
    if spec.get("AlgorithmName"):
        found += algorithm_metric_definitions(ctx, spec["AlgorithmName"])
    return found


def objective_regex(ctx: Context, data: dict) -> str | None:
    """The regex of the objective metric's definition (the job's own, else its built-in algorithm's)."""
    name = objective(data)["MetricName"]
    found = [m for m in _metric_definitions(ctx, definition(data)["AlgorithmSpecification"]) if m["Name"] == name]
    return found[0]["Regex"] if found else None


def prunes(data: dict) -> bool:
    """Whether the job stops trials early: Hyperband, or TrainingJobEarlyStoppingType Auto."""
    config = data["HyperParameterTuningJobConfig"]
    return config["Strategy"] == "Hyperband" or (config.get("TrainingJobEarlyStoppingType") or "Off") == "Auto"


def _check_hyperband(config: dict, d: dict, data: dict) -> None:
    hyperband = (config.get("StrategyConfig") or {}).get("HyperbandStrategyConfig")
    if config["Strategy"] != "Hyperband":
        if hyperband:
            raise validation("StrategyConfig.HyperbandStrategyConfig is only for the Hyperband strategy.")
        return
    if (config.get("TrainingJobEarlyStoppingType") or "Off") != "Off":
        raise validation(
            "TrainingJobEarlyStoppingType must be Off with the Hyperband strategy, which stops training jobs early "
            "itself."
        )
    hyperband = hyperband or {}
    low = hyperband.get("MinResource") or 1
    high = hyperband.get("MaxResource") or infer_max_resource(d.get("StaticHyperParameters") or {})
    if high is None:
        raise validation(
            "HyperbandStrategyConfig.MaxResource is required unless StaticHyperParameters gives the number of "
            f"epochs as one of: {', '.join(EPOCH_KEYS)}."
        )
    if not 1 <= high <= MAX_RESOURCE:
        raise validation(f"HyperbandStrategyConfig.MaxResource must be between 1 and {MAX_RESOURCE}.")
    if low > high:
        raise validation("HyperbandStrategyConfig.MinResource must not be greater than MaxResource.")
    data["_Hyperband"] = {"MinResource": low, "MaxResource": high}


def _lowest(found: dict) -> dict[str, str]:
    """Each range's lowest value (a categorical's first): the tuned hyperparameters of the sample trial request
    that CreateHyperParameterTuningJob checks (so an algorithm's required hyperparameters are there)."""
    values = {
        r["Name"]: r["MinValue"]
        for m in ("IntegerParameterRanges", "ContinuousParameterRanges")
        for r in found.get(m) or []
    }
    return values | {r["Name"]: r["Values"][0] for r in found.get("CategoricalParameterRanges") or [] if r["Values"]}


DEFINITION_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,63}$")


def _check_definition(ctx: Context, config: dict, given: dict, d: dict) -> Space:
    """One training job definition (``given`` as sent, ``d`` with the config's ranges and objective filled in)."""
    where = f"Training job definition {given['DefinitionName']}: " if given.get("DefinitionName") else ""
    if given.get("HyperParameterRanges") and config.get("ParameterRanges"):
        raise validation("Give ParameterRanges in HyperParameterTuningJobConfig or in the training job definition.")
    if given.get("TuningObjective") and config.get("HyperParameterTuningJobObjective"):
        raise validation(
            "Give HyperParameterTuningJobObjective in HyperParameterTuningJobConfig or TuningObjective in the "
            "training job definition."
        )
    tuning_resources = d.get("HyperParameterTuningResourceConfig")
    if tuning_resources and d.get("ResourceConfig"):
        raise validation(f"{where}Give ResourceConfig or HyperParameterTuningResourceConfig, and not both.")
    if tuning_resources and tuning_resources.get("InstanceConfigs") and tuning_resources.get("InstanceType"):
        raise validation(
            f"{where}HyperParameterTuningResourceConfig: give InstanceType, InstanceCount and VolumeSizeInGB or "
            "InstanceConfigs, and not both."
        )
    goal = d["TuningObjective"]
    if not goal:
        raise validation(f"{where}HyperParameterTuningJobObjective (Type and MetricName) is required.")
    if d["AlgorithmSpecification"].get("AlgorithmName"):
        for_tuning(ctx, d, d["HyperParameterRanges"], goal)
    elif not d["AlgorithmSpecification"].get("TrainingImage"):
        raise validation(f"{where}AlgorithmSpecification: give TrainingImage or AlgorithmName.")
    space = Space(d["HyperParameterRanges"])
    both = sorted(set(d.get("StaticHyperParameters") or {}) & set(space.distributions))
    if both:
        raise validation(f"{where}Hyperparameters cannot be both static and tuned: {', '.join(both)}.")
    if goal["MetricName"] not in {m["Name"] for m in _metric_definitions(ctx, d["AlgorithmSpecification"])}:
        raise validation(
            f"{where}The objective metric {goal['MetricName']} is not among the algorithm's metrics: define it in "
            "AlgorithmSpecification.MetricDefinitions."
        )
    if config["Strategy"] == "Grid" and space.kinds.keys() != space.categorical.keys():
        raise validation(f"{where}The Grid strategy supports only categorical parameter ranges.")
    return space


def _check_several(params: dict, found: list[dict]) -> None:
    """What AWS asks of several definitions: each named, the names unique, one objective Type; warm start
    and early stopping (Auto, Hyperband) are for a single algorithm."""
    config = params["HyperParameterTuningJobConfig"]
    names = [d.get("DefinitionName") for d in found]
    for name in names:
        if not name or not DEFINITION_NAME.match(name):
            raise validation(
                "Each of several TrainingJobDefinitions needs a DefinitionName of 1 to 64 letters, digits and "
                "hyphens, starting and ending with a letter or digit."
            )
    if len(set(names)) != len(names):
        raise validation("The DefinitionName of each of the TrainingJobDefinitions must be unique.")
    if len({d["TuningObjective"].get("Type") for d in found}) > 1:
        raise validation("The TuningObjective of every training job definition must have the same Type.")
    if params.get("WarmStartConfig"):
        raise validation("WarmStartConfig is available only when tuning a single training job definition.")
    if (config.get("TrainingJobEarlyStoppingType") or "Off") != "Off" or config["Strategy"] == "Hyperband":
        raise validation(
            "Early stopping (TrainingJobEarlyStoppingType Auto, and the Hyperband strategy) is available only when "
            "tuning a single training job definition."
        )


def _on_create(ctx: Context, params: dict, data: dict) -> None:
    if bool(params.get("TrainingJobDefinition")) == bool(params.get("TrainingJobDefinitions")):
        raise validation("Give either TrainingJobDefinition or TrainingJobDefinitions, and not both.")
    if autotune.enabled(params):  # what the caller left out, chosen; checked below as if the caller gave it
        params = autotune.resolve(ctx, params)
        data.update(
            {
                k: params[k]
                for k in ("HyperParameterTuningJobConfig", "TrainingJobDefinition", "TrainingJobDefinitions")
                if k in params
            }
        )
    else:
        autotune.refuse_hints_without_autotune(params)
    config = params["HyperParameterTuningJobConfig"]
    strategy = config["Strategy"]
    given = (
        [params["TrainingJobDefinition"]] if params.get("TrainingJobDefinition") else params["TrainingJobDefinitions"]
    )
    found = definitions(params)
    for raw, d in zip(given, found):
        _check_definition(ctx, config, raw, d)
    if several(params):
        _check_several(params, found)
    space = search_space(params)
    limits = config["ResourceLimits"]
    most, parallel = limits.get("MaxNumberOfTrainingJobs"), limits["MaxParallelTrainingJobs"]
    if strategy == "Grid":
        if space.grid_size() > MAX_GRID:
            raise validation(f"The grid has {space.grid_size()} combinations; at most {MAX_GRID} are allowed.")
    elif most is None:
        raise validation(f"ResourceLimits.MaxNumberOfTrainingJobs is required for the {strategy} strategy.")
    if most is not None and not 1 <= most <= MAX_TRAINING_JOBS:
        raise validation(f"ResourceLimits.MaxNumberOfTrainingJobs must be between 1 and {MAX_TRAINING_JOBS}.")
    if not 1 <= parallel <= MAX_PARALLEL:
        raise validation(f"ResourceLimits.MaxParallelTrainingJobs must be between 1 and {MAX_PARALLEL}.")
    if most is not None and parallel > most:
        raise validation("ResourceLimits.MaxParallelTrainingJobs must not exceed MaxNumberOfTrainingJobs.")
    _check_hyperband(config, found[0], data)
    runtime = limits.get("MaxRuntimeInSeconds")
    if runtime is not None and not 120 <= runtime <= MAX_RUNTIME:
        raise validation(f"ResourceLimits.MaxRuntimeInSeconds must be between 120 and {MAX_RUNTIME}.")
    # The trials' CreateTrainingJob requests must be acceptable: check one per definition as CreateTrainingJob would.
    for d in found:
        name = f"{params['HyperParameterTuningJobName']}-001-00000000"
        sample = trial_request(ctx, {**params, "_Tags": None}, name, _lowest(d["HyperParameterRanges"]), d)
        TRAINING_JOB.on_create(ctx, sample, {"CreationTime": data["CreationTime"]})
    if params.get("WarmStartConfig"):
        assert isinstance(space, Space)  # a warm start is for a single definition (_check_several)
        data["_WarmStart"] = warm_start.snapshot(
            ctx, params, space, TUNING_JOB.load, trial_summaries, definition, ranges, objective
        )
    data.update(HyperParameterTuningJobStatus="InProgress", _Trials=[], _Tags=params.get("Tags") or [])
    if config.get("RandomSeed") is None:
        data["_Seed"] = int.from_bytes(os.urandom(4), "big") % 2**31


# -- the trials, as their training jobs say -----------------------------------------------------------------------


def trial_jobs(backends, record: Record) -> dict[str, Record | None]:
    """The trials' training job records by ARN (None: deleted)."""
    with backends.store.read() as conn:  # one connection for all the trials' reads
        return {
            t["Arn"]: backends.resources.get_by_arn(t["Arn"], conn=conn)
            for t in record.data["_Trials"]
            if t.get("Created")
        }


def trial_summaries(backends, record: Record, found: dict[str, Record | None] | None = None) -> list[dict]:
    """One HyperParameterTrainingJobSummary per trial, read from its training job (``found``: trial_jobs)."""
    data = record.data
    if found is None:
        found = trial_jobs(backends, record)
    out = []
    for trial in data["_Trials"]:
        arn = trial["Arn"]
        job, goal, d = found.get(arn), objective(data, trial), definition(data, trial)
        summary = {
            "TrainingJobName": trial["Name"],
            "TrainingJobArn": arn,
            "TuningJobName": record.name,
            "CreationTime": trial["CreationTime"],
            "TunedHyperParameters": trial["TunedHyperParameters"],
        }
        if d.get("DefinitionName"):
            summary["TrainingJobDefinitionName"] = d["DefinitionName"]
        if job is None:
            status = "Failed" if trial.get("FailureReason") or trial.get("Created") else "InProgress"
            summary.update(TrainingJobStatus=status)
            if status == "Failed":
                summary["FailureReason"] = trial.get("FailureReason") or "The training job was deleted."
        else:
            j = job.data
            summary["TrainingJobStatus"] = j["TrainingJobStatus"]
            for member in ("CreationTime", "TrainingStartTime", "TrainingEndTime", "FailureReason"):
                if j.get(member) is not None:
                    summary[member] = j[member]
            value = next(
                (m["Value"] for m in j.get("FinalMetricDataList") or [] if m["MetricName"] == goal["MetricName"]),
                None,
            )
            if value is not None:
                summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                    "Type": goal["Type"],
                    "MetricName": goal["MetricName"],
                    "Value": value,
                }
        done = summary["TrainingJobStatus"] in TERMINAL_TRAINING
        # A trial the tuning job stopped early still scored: its objective is its last logged value.
        ended_well = summary["TrainingJobStatus"] == "Completed" or (
            summary["TrainingJobStatus"] == "Stopped" and trial.get("EarlyStopped")
        )
        if "FinalHyperParameterTuningJobObjectiveMetric" in summary and ended_well:
            summary["ObjectiveStatus"] = "Succeeded"
        else:
            summary["ObjectiveStatus"] = "Failed" if done else "Pending"
        out.append(summary)
    return out


def best(record: Record, summaries: list[dict]) -> dict | None:
    """The best scored trial; a pruned one's model is half-trained, so it never is (as Optuna's best_trial)."""
    pruned = {t["Name"] for t in record.data["_Trials"] if t.get("EarlyStopped") == "Pruned"}
    scored = [s for s in summaries if s["ObjectiveStatus"] == "Succeeded" and s["TrainingJobName"] not in pruned]
    if not scored:
        return None
    sign = 1 if objective(record.data)["Type"] == "Maximize" else -1
    return max(scored, key=lambda s: sign * s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])


def counters(summaries: list[dict]) -> tuple[dict, dict]:
    jobs = {"Completed": 0, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 0, "Stopped": 0}
    goals = {"Succeeded": 0, "Pending": 0, "Failed": 0}
    for s in summaries:
        status = s["TrainingJobStatus"]
        # A failure of SageMaker's own (InternalServerError) is one a RetryStrategy retries; others are the user's.
        failed = "RetryableError" if retryable(s.get("FailureReason")) else "NonRetryableError"
        key = {"Failed": failed, "Stopping": "InProgress"}.get(status, status)
        jobs[key] = jobs.get(key, 0) + 1
        goals[s["ObjectiveStatus"]] += 1
    return jobs, goals


def _scores(record: Record, summaries: list[dict]) -> list[float]:
    """The scored trials' objectives in the order they ended, as larger-is-better numbers."""
    sign = 1 if objective(record.data)["Type"] == "Maximize" else -1
    ended = sorted(summaries, key=lambda s: s.get("TrainingEndTime") or s["CreationTime"])
    return [
        sign * s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        for s in ended
        if s["ObjectiveStatus"] == "Succeeded"
    ]


def not_improving(record: Record, summaries: list[dict]) -> int:
    """Trials ended with an objective since the last one that improved on the best."""
    best_value, since = None, 0
    for value in _scores(record, summaries):
        if best_value is None or value > best_value:
            best_value, since = value, 0
        else:
            since += 1
    return since


CONVERGENCE_MIN_TRIALS = 10  # scored trials before convergence can be declared (TPE's random start-up)
CONVERGENCE_WINDOW = 5  # the latest scored trials that must not have improved the best...
CONVERGENCE_TOLERANCE = 1e-3  # ...by more than this fraction of it


def converged(record: Record, summaries: list[dict]) -> bool:
    """SelfMaker's convergence rule (AWS does not publish its own): at least 10 trials scored, and the
    best of the latest 5 improves on the best before them by no more than 0.1% of that best."""
    scores = _scores(record, summaries)
    if len(scores) < CONVERGENCE_MIN_TRIALS:
        return False
    before, recent = max(scores[:-CONVERGENCE_WINDOW]), max(scores[-CONVERGENCE_WINDOW:])
    return recent - before <= CONVERGENCE_TOLERANCE * abs(before)


def present(ctx: Context, record: Record) -> dict:
    data = record.data
    out = {k: v for k, v in data.items() if not k.startswith("_")}
    summaries = trial_summaries(ctx.backends, record)
    out["TrainingJobStatusCounters"], out["ObjectiveStatusCounters"] = counters(summaries)
    top = best(record, summaries)
    if top is not None:
        out["BestTrainingJob"] = top
    if data.get("WarmStartConfig"):  # the best of the parents' trials and this job's
        sign = 1 if objective(data)["Type"] == "Maximize" else -1
        candidates = [*(e["Summary"] for e in data.get("_WarmStart") or []), *([top] if top else [])]
        if candidates:
            out["OverallBestTrainingJob"] = max(
                candidates, key=lambda s: sign * s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
            )
    out["TuningJobCompletionDetails"] = {"NumberOfTrainingJobsObjectiveNotImproving": not_improving(record, summaries)}
    if data.get("_ConvergenceDetectedTime"):
        out["TuningJobCompletionDetails"]["ConvergenceDetectedTime"] = data["_ConvergenceDetectedTime"]
    end = data.get("HyperParameterTuningEndTime") or now()
    out["ConsumedResources"] = {"RuntimeInSeconds": int(end - data["CreationTime"])}
    return out


def _summary(record: Record) -> dict:
    data = record.data
    out = {
        k: data[k]
        for k in (
            "HyperParameterTuningJobName",
            "HyperParameterTuningJobArn",
            "HyperParameterTuningJobStatus",
            "CreationTime",
            "HyperParameterTuningEndTime",
            "LastModifiedTime",
        )
        if k in data
    }
    config = data["HyperParameterTuningJobConfig"]
    out.update(Strategy=config["Strategy"], ResourceLimits=config["ResourceLimits"])
    # The list's counters are the controller's last count (a list reads no training job).
    out["TrainingJobStatusCounters"] = data.get("_JobCounters") or {}
    out["ObjectiveStatusCounters"] = data.get("_ObjectiveCounters") or {}
    return out


def _on_delete(ctx: Context, record: Record, conn) -> None:
    if record.status in ACTIVE:
        raise validation(
            f"The hyperparameter tuning job {record.name} is {record.status}: stop it and wait for it to end "
            "before deleting it."
        )


TUNING_JOB = Kind(
    "HyperParameterTuningJob",
    "hyper-parameter-tuning-job",
    label="hyperparameter tuning job",
    operations=("Create", "Describe", "List", "Delete"),
    status_member="HyperParameterTuningJobStatus",
    search_type="HyperParameterTuningJob",
    on_create=_on_create,
    on_delete=_on_delete,
    after_create=lambda ctx, arn: kick(ctx.backends, arn),
    present=present,
    summarize=_summary,
    not_found="Amazon SageMaker can't find a tuning job with name {name}",
    not_found_code="ResourceNotFound",
    exists="Tuning job names must be unique within an AWS account and region, and a tuning job with this name "
    "already exists ({arn})",
    exists_code="ResourceInUse",
).register()


@operation("sagemaker", "StopHyperParameterTuningJob")
def stop(ctx: Context, params: dict) -> dict:
    with ctx.store.write() as conn:
        record = TUNING_JOB.load(ctx, params["HyperParameterTuningJobName"], conn=conn, lock=True)
        if record.status == "Stopping":
            return {}
        if record.status != "InProgress":
            raise validation(
                f"The hyperparameter tuning job {record.name} is {record.status}: only a job in progress can be "
                "stopped."
            )
        record.data.update(HyperParameterTuningJobStatus="Stopping", LastModifiedTime=now())
        record.status = "Stopping"
        ctx.backends.resources.save(record, conn=conn)
    kick(ctx.backends, record.arn)
    return {}


_SORT_KEYS = {
    "Name": lambda s: s["TrainingJobName"],
    "CreationTime": lambda s: s["CreationTime"],
    "Status": lambda s: s["TrainingJobStatus"],
}


@operation("sagemaker", "ListTrainingJobsForHyperParameterTuningJob", store_read=True)
def list_training_jobs(ctx: Context, params: dict) -> dict:
    record = TUNING_JOB.load(ctx, params["HyperParameterTuningJobName"])
    summaries = trial_summaries(ctx.backends, record)
    if params.get("StatusEquals"):
        summaries = [s for s in summaries if s["TrainingJobStatus"] == params["StatusEquals"]]
    sort_by = params.get("SortBy") or "Name"
    descending = (params.get("SortOrder") or "Ascending") == "Descending"
    if sort_by == "FinalObjectiveMetricValue":
        # Jobs without an objective come last whichever the order (as AWS lists them).
        scored = [s for s in summaries if "FinalHyperParameterTuningJobObjectiveMetric" in s]
        rest = [s for s in summaries if "FinalHyperParameterTuningJobObjectiveMetric" not in s]
        scored.sort(key=lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"], reverse=descending)
        summaries = scored + rest
    else:
        summaries.sort(key=_SORT_KEYS[sort_by], reverse=descending)
    size = params.get("MaxResults") or 100
    scope = f"tuning-jobs:{record.arn}:{params.get('StatusEquals')}:{sort_by}:{descending}"
    start = 0
    if params.get("NextToken"):
        start = ctx.backends.resources.read_page_token(params["NextToken"], scope)["start"]
    out: dict = {"TrainingJobSummaries": summaries[start : start + size]}
    if start + size < len(summaries):
        out["NextToken"] = ctx.backends.resources.page_token(scope, start=start + size)
    return out


@on_done
def _trial_done(backends, record: Record) -> None:
    """A trial ended: its tuning job takes its next step now (starts the next trial, or concludes)."""
    if record.kind != "TrainingJob" or not record.data.get("TuningJobArn"):
        return
    kick(backends, record.data["TuningJobArn"])
