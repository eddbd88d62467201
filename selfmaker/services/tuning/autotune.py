"""Autotune (``Autotune: {Mode: Enabled}``): the tuning job's settings the caller left out, chosen at Create.

AWS documents what Autotune chooses (ParameterRanges, ResourceLimits, TrainingJobEarlyStoppingType,
RetryStrategy, Strategy, ConvergenceDetected) and that what the caller gives is used instead; it does not
publish how it chooses. SelfMaker's choices (docs/tuning.md, "Autotune"):

* ranges: each ``AutoParameters`` entry (a name and a ValueHint) the algorithm can tune gets its range: the
  built-in XGBoost's from AWS's table of recommended ranges, an algorithm resource's from its
  ``SupportedHyperParameters`` (tunable, with a range). One it cannot tune is "not eligible", as AWS puts it,
  and keeps its ValueHint as a static hyperparameter. A built-in XGBoost definition with no ranges at all gets
  every recommended range it does not set statically. The caller's own ranges stay and win;
* ``MaxNumberOfTrainingJobs``: 10 per tuned hyperparameter, from 10 to 100;
* ``TrainingJobEarlyStoppingType``: Auto (a single definition, not Hyperband);
* ``RetryStrategy``: 1 retry of a training job failing with an InternalServerError;
* ``ConvergenceDetected``: CompleteOnConvergence Enabled.

``Strategy`` and ``MaxParallelTrainingJobs`` are required members of the request, so the caller's always stand.
The resolved settings are what the job keeps: Describe shows them, and the search uses nothing else.
"""

from __future__ import annotations

import copy

from ...container import xgboost_algorithm
from ...server.errors import validation
from ...server.operations import Context
from ..algorithms.resource import ALGORITHM
from ..algorithms.specification import image_algorithm

# AWS's recommended ranges for tuning its XGBoost (Developer Guide, "Tune an XGBoost model"): name -> (member,
# MinValue, MaxValue). max_depth starts at 1 here: 0 (no limit) is refused by XGBoost's depthwise trees.
XGBOOST_RANGES = {
    "alpha": ("ContinuousParameterRanges", "0", "1000"),
    "colsample_bylevel": ("ContinuousParameterRanges", "0.1", "1"),
    "colsample_bynode": ("ContinuousParameterRanges", "0.1", "1"),
    "colsample_bytree": ("ContinuousParameterRanges", "0.5", "1"),
    "eta": ("ContinuousParameterRanges", "0.1", "0.5"),
    "gamma": ("ContinuousParameterRanges", "0", "5"),
    "lambda": ("ContinuousParameterRanges", "0", "1000"),
    "max_delta_step": ("ContinuousParameterRanges", "0", "10"),
    "max_depth": ("IntegerParameterRanges", "1", "10"),
    "min_child_weight": ("ContinuousParameterRanges", "0", "120"),
    "num_round": ("IntegerParameterRanges", "1", "4000"),
    "subsample": ("ContinuousParameterRanges", "0.5", "1"),
}
RANGE_MEMBERS = ("IntegerParameterRanges", "ContinuousParameterRanges", "CategoricalParameterRanges")
_SPEC_MEMBERS = {
    "Integer": ("IntegerParameterRanges", "IntegerParameterRangeSpecification"),
    "Continuous": ("ContinuousParameterRanges", "ContinuousParameterRangeSpecification"),
    "Categorical": ("CategoricalParameterRanges", "CategoricalParameterRangeSpecification"),
}
TRIALS_PER_RANGE, MIN_TRIALS, MAX_TRIALS = 10, 10, 100
RETRIES = 1


def enabled(params: dict) -> bool:
    return (params.get("Autotune") or {}).get("Mode") == "Enabled"


def _algorithm_ranges(ctx: Context, spec: dict) -> dict[str, tuple]:
    """What the definition's algorithm can tune: name -> (member, MinValue, MaxValue) or (member, Values)."""
    if spec.get("AlgorithmName"):
        algorithm = ALGORITHM.load(ctx, spec["AlgorithmName"])
        found: dict[str, tuple] = {}
        for hp in algorithm.data["TrainingSpecification"].get("SupportedHyperParameters") or []:
            member, key = _SPEC_MEMBERS[hp["Type"]]
            bounds = (hp.get("Range") or {}).get(key)
            if not hp.get("IsTunable") or not bounds:
                continue
            found[hp["Name"]] = (
                (member, bounds["Values"]) if "Values" in bounds else (member, bounds["MinValue"], bounds["MaxValue"])
            )
        return found
    if spec.get("TrainingImage") and image_algorithm(ctx, spec) == xgboost_algorithm.__name__:
        return dict(XGBOOST_RANGES)
    return {}


def _range(name: str, found: tuple) -> tuple[str, dict]:
    if len(found) == 2:
        return found[0], {"Name": name, "Values": list(found[1])}
    return found[0], {"Name": name, "MinValue": found[1], "MaxValue": found[2], "ScalingType": "Auto"}


def _resolve_ranges(ctx: Context, ranges: dict, definition: dict) -> dict:
    """A definition's ranges with its AutoParameters resolved (the not eligible ones made static in it)."""
    out = {m: list(ranges.get(m) or []) for m in RANGE_MEMBERS}
    given = {r["Name"] for m in RANGE_MEMBERS for r in out[m]}
    static = definition.setdefault("StaticHyperParameters", {})
    tunable = _algorithm_ranges(ctx, definition["AlgorithmSpecification"])
    hints = ranges.get("AutoParameters") or []
    if not hints and not given:  # nothing named: every range the algorithm recommends and the caller left open
        hints = [{"Name": name} for name in tunable if name not in static]
    for hint in hints:
        name = hint["Name"]
        if name in given or name in static:
            continue  # the caller's own range or static value wins
        if name in tunable:
            member, entry = _range(name, tunable[name])
            out[member].append(entry)
            given.add(name)
        elif "ValueHint" in hint:
            static[name] = hint["ValueHint"]  # not eligible: it runs with the value the caller hinted
    if not given:
        raise validation(
            "Autotune found no hyperparameter it can tune: name the ranges in ParameterRanges, or AutoParameters "
            "that the algorithm can tune (the built-in XGBoost's, or an algorithm resource's tunable ones)."
        )
    return {m: v for m, v in out.items() if v}


def resolve(ctx: Context, params: dict) -> dict:
    """The request as the job will run it: what the caller left out chosen by Autotune (see the module)."""
    out = copy.deepcopy(params)
    config = out["HyperParameterTuningJobConfig"]
    several = "TrainingJobDefinitions" in out
    definitions = out.get("TrainingJobDefinitions") or [out.get("TrainingJobDefinition") or {}]
    tuned = 0
    for d in definitions:
        if not d.get("AlgorithmSpecification"):
            continue  # refused by the checks that follow
        if d.get("HyperParameterRanges") is not None:
            d["HyperParameterRanges"] = _resolve_ranges(ctx, d["HyperParameterRanges"], d)
            found = d["HyperParameterRanges"]
        else:
            config["ParameterRanges"] = _resolve_ranges(ctx, config.get("ParameterRanges") or {}, d)
            found = config["ParameterRanges"]
        tuned = max(tuned, sum(len(found.get(m) or []) for m in RANGE_MEMBERS))
        d.setdefault("RetryStrategy", {"MaximumRetryAttempts": RETRIES})
    limits = config["ResourceLimits"]
    if config["Strategy"] != "Grid":
        limits.setdefault("MaxNumberOfTrainingJobs", min(MAX_TRIALS, max(MIN_TRIALS, TRIALS_PER_RANGE * tuned)))
    if not several and config["Strategy"] != "Hyperband":
        config.setdefault("TrainingJobEarlyStoppingType", "Auto")
    criteria = config.setdefault("TuningJobCompletionCriteria", {})
    criteria.setdefault("ConvergenceDetected", {"CompleteOnConvergence": "Enabled"})
    return out


def refuse_hints_without_autotune(params: dict) -> None:
    """AutoParameters are Autotune's hints: without Autotune there is nothing to resolve them."""
    places = [params["HyperParameterTuningJobConfig"].get("ParameterRanges") or {}]
    places += [d.get("HyperParameterRanges") or {} for d in params.get("TrainingJobDefinitions") or []]
    if params.get("TrainingJobDefinition"):
        places.append(params["TrainingJobDefinition"].get("HyperParameterRanges") or {})
    if any(p.get("AutoParameters") for p in places):
        raise validation("ParameterRanges.AutoParameters are for Autotune: set Autotune.Mode to Enabled.")
