"""WarmStartConfig: a tuning job that starts from up to 5 parent tuning jobs' trials.

At Create the parents (the caller's own, ended) are checked as AWS restricts warm starts (the same
objective, hyperparameter types unchanged; IdenticalDataAndAlgorithm also the same image and input data)
and their scored trials are copied into the new job (``_WarmStart``): the search is seeded with them
(Optuna ``add_trial``, each mapped into the new job's ranges; one outside them is left out), and
``OverallBestTrainingJob`` is the best of theirs and the job's own. A copy, so deleting a parent later
changes neither the search nor the answer.
"""

from __future__ import annotations

from ...server.errors import AWSError, validation
from ...server.operations import Context
from .search import Space

ENDED = frozenset({"Completed", "Stopped", "Failed"})


def _kinds(space: Space) -> dict[str, str]:
    return {name: "continuous" if kind == "reverse" else kind for name, kind in space.kinds.items()}


def snapshot(ctx: Context, params: dict, space: Space, load, summaries, definition, ranges, objective) -> list[dict]:
    """The parents' scored trials as the new job keeps them: [{"Summary", "HyperParameters"}] (checked)."""
    config = params["WarmStartConfig"]
    goal = definition(params).get("TuningObjective") or params["HyperParameterTuningJobConfig"].get(
        "HyperParameterTuningJobObjective"
    )
    if params["HyperParameterTuningJobConfig"]["Strategy"] == "Grid":
        raise validation("WarmStartConfig is not supported with the Grid strategy: a grid tries each point once.")
    names = [p["HyperParameterTuningJobName"] for p in config["ParentHyperParameterTuningJobs"]]
    if len(set(names)) != len(names):
        raise validation("WarmStartConfig.ParentHyperParameterTuningJobs names a tuning job more than once.")
    out = []
    for name in names:
        try:
            parent = load(ctx, name)
        except AWSError:
            raise validation(f"The parent hyperparameter tuning job {name} does not exist.") from None
        if parent.status not in ENDED:
            raise validation(
                f"The parent hyperparameter tuning job {name} is {parent.status}: a parent must have ended "
                "(Completed, Stopped or Failed)."
            )
        parent_goal = objective(parent.data)
        if (parent_goal["MetricName"], parent_goal["Type"]) != (goal["MetricName"], goal["Type"]):
            raise validation(f"The parent hyperparameter tuning job {name} has a different objective metric.")
        parent_space = Space(ranges(parent.data))
        mine, theirs = _kinds(space), _kinds(parent_space)
        changed = sorted(n for n in set(mine) & set(theirs) if mine[n] != theirs[n])
        if changed:
            raise validation(f"Hyperparameter types cannot change from the parent {name}: {', '.join(changed)}.")
        parent_definition, new_definition = definition(parent.data), definition(params)
        if config["WarmStartType"] == "IdenticalDataAndAlgorithm":
            same_image = parent_definition["AlgorithmSpecification"].get("TrainingImage") == new_definition[
                "AlgorithmSpecification"
            ].get("TrainingImage")
            same_data = (parent_definition.get("InputDataConfig") or []) == (
                new_definition.get("InputDataConfig") or []
            )
            if not (same_image and same_data):
                raise validation(
                    f"IdenticalDataAndAlgorithm needs the parent {name}'s training image and input data: use "
                    "TransferLearning to change them."
                )
        static = parent_definition.get("StaticHyperParameters") or {}
        for summary in summaries(ctx.backends, parent):
            if summary["ObjectiveStatus"] != "Succeeded":
                continue
            out.append({"Summary": summary, "HyperParameters": {**static, **summary["TunedHyperParameters"]}})
    return out


def prior_trials(space: Space, kept: list[dict]) -> list[dict]:
    """The parents' trials as Optuna trials in ``space`` (Search.study leaves out those outside its ranges)."""
    out = []
    for entry in kept:
        try:
            params = {name: space.from_hyperparameter(name, entry["HyperParameters"][name]) for name in space.kinds}
        except (KeyError, ValueError):
            continue  # a hyperparameter the parent did not set, or not a number
        value = entry["Summary"]["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        out.append({"Params": params, "State": "COMPLETE", "Value": value})
    return out
