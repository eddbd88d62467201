"""The search of a tuning job, done by Optuna: AWS's ParameterRanges as Optuna distributions, its
strategies as Optuna samplers, and the study rebuilt from the trials the store records.

Nothing of Optuna's is kept between steps: each ask builds a study in memory from the tuning job's
recorded trials (their Optuna parameters, system attributes, state and objective), so a server that
restarts mid-tuning continues the same search. Samplers are seeded from RandomSeed and the trial's
index, so the same history asks for the same next point.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import warnings
from dataclasses import dataclass, field

import numpy
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from ...server.errors import validation

optuna.logging.set_verbosity(optuna.logging.WARNING)

MAX_RANGES = 30  # AWS: at most 30 hyperparameters searched
MAX_CATEGORICAL_VALUES = 30  # AWS: at most 30 values per categorical range
MAX_GRID = 500  # a Grid's combinations count against the same limit as MaxNumberOfTrainingJobs


class Space:
    """A training job definition's ParameterRanges as Optuna distributions, and the way back to hyperparameter
    strings."""

    def __init__(self, ranges: dict):
        self.distributions: dict[str, BaseDistribution] = {}
        self.kinds: dict[str, str] = {}  # name -> "integer" | "continuous" | "reverse" | "categorical"
        self.categorical: dict[str, list[str]] = {}
        for r in ranges.get("IntegerParameterRanges") or []:
            low, high = _number(r, int)
            scaling = r.get("ScalingType") or "Auto"
            if scaling == "ReverseLogarithmic":
                raise validation(f"Integer parameter {r['Name']}: ReverseLogarithmic scaling is for continuous ranges.")
            if scaling == "Logarithmic" and low <= 0:
                raise validation(f"Integer parameter {r['Name']}: Logarithmic scaling needs MinValue > 0.")
            self._add(r["Name"], "integer", IntDistribution(low, high, log=scaling == "Logarithmic"))
        for r in ranges.get("ContinuousParameterRanges") or []:
            low, high = _number(r, float)
            scaling = r.get("ScalingType") or "Auto"
            if scaling == "Logarithmic":
                if low <= 0:
                    raise validation(f"Continuous parameter {r['Name']}: Logarithmic scaling needs MinValue > 0.")
                self._add(r["Name"], "continuous", FloatDistribution(low, high, log=True))
            elif scaling == "ReverseLogarithmic":
                if not (low >= 0 and high < 1):
                    raise validation(
                        f"Continuous parameter {r['Name']}: ReverseLogarithmic scaling needs 0 <= MinValue and "
                        "MaxValue < 1."
                    )
                # Sample 1 - x log-uniformly: values crowd toward MaxValue, as AWS documents.
                self._add(r["Name"], "reverse", FloatDistribution(1 - high, 1 - low, log=True))
            else:  # Linear, and Auto: we choose Linear (AWS's Auto picks a scale by its own rules)
                self._add(r["Name"], "continuous", FloatDistribution(low, high))
        for r in ranges.get("CategoricalParameterRanges") or []:
            values = list(dict.fromkeys(r["Values"]))
            if not values or len(values) > MAX_CATEGORICAL_VALUES:
                raise validation(
                    f"Categorical parameter {r['Name']} needs between 1 and {MAX_CATEGORICAL_VALUES} values."
                )
            self.categorical[r["Name"]] = values
            self._add(r["Name"], "categorical", CategoricalDistribution(values))
        if ranges.get("AutoParameters"):
            raise validation("ParameterRanges.AutoParameters are for Autotune: set Autotune.Mode to Enabled.")
        if not self.distributions:
            raise validation("ParameterRanges must name at least one hyperparameter to tune.")
        if len(self.distributions) > MAX_RANGES:
            raise validation(f"At most {MAX_RANGES} hyperparameters can be tuned; ParameterRanges names more.")

    def _add(self, name: str, kind: str, distribution: BaseDistribution) -> None:
        if name in self.distributions:
            raise validation(f"The hyperparameter {name} appears in more than one parameter range.")
        self.distributions[name] = distribution
        self.kinds[name] = kind

    def hyperparameters(self, params: dict) -> dict[str, str]:
        """Optuna's values for a trial -> the training job's HyperParameters (strings, as AWS passes them)."""
        out = {}
        for name, value in params.items():
            kind = self.kinds[name]
            if kind == "integer":
                out[name] = str(int(value))
            elif kind == "reverse":
                out[name] = repr(1 - float(value))
            elif kind == "continuous":
                out[name] = repr(float(value))
            else:
                out[name] = str(value)
        return out

    def from_hyperparameter(self, name: str, raw: str):
        """A training job's hyperparameter string -> Optuna's value (ValueError if it is not one)."""
        kind = self.kinds[name]
        if kind == "integer":
            return int(raw)
        if kind == "continuous":
            return float(raw)
        if kind == "reverse":
            return 1 - float(raw)
        return str(raw)

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.categorical.values())


DEFINITION_PARAM = "TrainingJobDefinitionName"  # the Optuna parameter choosing a trial's definition
GRID_PARAM = "GridPoint"  # several definitions' grids as one: "<definition>#<index in its grid>"


class Definitions:
    """Several training job definitions as one conditional Optuna search space (define-by-run): a categorical
    ``TrainingJobDefinitionName``, then that definition's own ranges, named ``<definition>:<hyperparameter>``
    (a definition name has no ``:``) so two definitions tuning ``eta`` over different ranges stay apart.
    TPE samples each parameter from the trials that have it: the definition from all trials (it learns which
    definition does better), a definition's ranges from that definition's trials only. Grid tries every
    definition's every combination once: one categorical over all the points."""

    def __init__(self, spaces: dict[str, Space]):
        self.spaces = spaces
        self.distributions: dict[str, BaseDistribution] = {DEFINITION_PARAM: CategoricalDistribution(list(spaces))}
        for definition, space in spaces.items():
            for name, distribution in space.distributions.items():
                self.distributions[f"{definition}:{name}"] = distribution

    def grid_size(self) -> int:
        return sum(space.grid_size() for space in self.spaces.values())

    @functools.cached_property
    def points(self) -> list[str]:
        """Grid only (Create caps the grid's size): every definition's every combination."""
        return [f"{definition}#{i}" for definition, space in self.spaces.items() for i in range(space.grid_size())]

    @functools.cached_property
    def grid(self) -> CategoricalDistribution:
        return CategoricalDistribution(self.points)

    def distributions_of(self, params: dict) -> dict[str, BaseDistribution]:
        if GRID_PARAM in params:
            return {GRID_PARAM: self.grid}
        return {name: self.distributions[name] for name in params}

    def definition_of(self, params: dict) -> str:
        if GRID_PARAM in params:
            return params[GRID_PARAM].rsplit("#", 1)[0]
        return params[DEFINITION_PARAM]

    def hyperparameters(self, params: dict) -> dict[str, str]:
        """A trial's Optuna values -> its definition's tuned HyperParameters (strings)."""
        definition = self.definition_of(params)
        space = self.spaces[definition]
        if GRID_PARAM in params:
            index = int(params[GRID_PARAM].rsplit("#", 1)[1])
            combination = list(itertools.product(*space.categorical.values()))[index]
            return dict(zip(space.categorical, combination))
        prefix = f"{definition}:"
        return space.hyperparameters({k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)})


def _number(r: dict, cast) -> tuple:
    try:
        low, high = cast(r["MinValue"]), cast(r["MaxValue"])
    except ValueError:
        kind = "an integer" if cast is int else "a number"
        raise validation(f"Parameter {r['Name']}: MinValue and MaxValue must each be {kind}.") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise validation(f"Parameter {r['Name']}: MinValue ({low}) must not be greater than MaxValue ({high}).")
    return low, high


def _trial_seed(seed: int, index: int) -> int:
    """The seed of trial ``index``: mixed from the pair, so jobs whose RandomSeeds are close (1 and 2)
    do not replay each other's points one trial apart, as ``seed + index`` would."""
    return int(numpy.random.SeedSequence([seed, index]).generate_state(1)[0])


def _sampler(strategy: str, space: Space | Definitions, seed: int, index: int):
    if strategy == "Grid":
        # One seed for the whole job: the grid's order is shuffled once by it, and trial n takes grid point n.
        grid = {GRID_PARAM: space.points} if isinstance(space, Definitions) else space.categorical
        return optuna.samplers.GridSampler(grid, seed=seed)
    if strategy == "Random":
        return optuna.samplers.RandomSampler(seed=_trial_seed(seed, index))
    # Bayesian, and Hyperband's choice of configurations (TPE with Hyperband's brackets, as Optuna pairs them)
    return optuna.samplers.TPESampler(seed=_trial_seed(seed, index))


HYPERBAND_REDUCTION = 3  # Optuna's (and Hyperband's paper's) default: a third of a rung goes on to the next
MEDIAN_STARTUP_TRIALS = 3  # early stopping judges against at least this many completed trials
EPOCH_KEYS = ("epochs", "numepochs", "n-epochs", "n_epochs", "num_epochs")  # AWS infers MaxResource from these
MAX_RESOURCE = 20_000


@dataclass
class Search:
    """What a tuning job's study is made of; ``study`` rebuilds it from the recorded trials."""

    name: str  # the study's name: Hyperband draws a trial's bracket from (name, trial number)
    strategy: str
    space: Space | Definitions
    direction: str  # Maximize | Minimize
    seed: int
    early_stopping: bool = False  # TrainingJobEarlyStoppingType Auto
    min_resource: int = 1  # Hyperband's
    max_resource: int | None = None
    prior: list[dict] = field(default_factory=list)  # a warm start's parent trials (COMPLETE), before the job's own

    def pruner(self) -> optuna.pruners.BasePruner:
        if self.strategy == "Hyperband":
            pruner = optuna.pruners.HyperbandPruner(
                min_resource=self.min_resource, max_resource=self.max_resource, reduction_factor=HYPERBAND_REDUCTION
            )
            # Brackets exist from the start (min and max resource are given), so the sampler's and the
            # pruner's views of a trial's bracket agree even before anything was pruned.
            pruner._try_initialization(None)  # type: ignore[arg-type]  # never reads the study when both are given
            return pruner
        if self.early_stopping:
            return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=0)
        return optuna.pruners.NopPruner()

    def study(self, trials: list[dict]) -> optuna.Study:
        """An in-memory study holding ``trials`` (each {"Params", "SystemAttrs", "State": COMPLETE | RUNNING |
        FAIL | PRUNED, "Value"?, "Steps"?: the objective's values so far}), its sampler seeded for the next one."""
        study = optuna.create_study(
            study_name=self.name,
            sampler=_sampler(self.strategy, self.space, self.seed, len(trials)),
            pruner=self.pruner(),
            direction="maximize" if self.direction == "Maximize" else "minimize",
        )
        for t in self.prior:
            try:
                study.add_trial(self._trial(t))
            except ValueError:
                continue  # a parent's point outside this job's ranges
        for t in trials:
            study.add_trial(self._trial(t))
        return study

    def _trial(self, t: dict) -> optuna.trial.FrozenTrial:
        state = TrialState[t["State"]]
        distributions = (
            self.space.distributions_of(t["Params"])
            if isinstance(self.space, Definitions)
            else self.space.distributions
        )
        return create_trial(
            params=t["Params"],
            distributions=distributions,
            system_attrs=t.get("SystemAttrs") or {},
            intermediate_values=dict(enumerate(t.get("Steps") or [], start=1)),
            state=state,
            value=t.get("Value") if state == TrialState.COMPLETE else None,
        )

    def ask(self, trials: list[dict]) -> tuple[dict, dict]:
        """The next point: (Optuna params, Optuna system attributes), given the recorded ``trials``."""
        study = self.study(trials)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not isinstance(self.space, Definitions):
                trial = study.ask(self.space.distributions)
            elif self.strategy == "Grid":
                trial = study.ask({GRID_PARAM: self.space.grid})
            else:
                trial = study.ask()
                definition = trial.suggest_categorical(DEFINITION_PARAM, list(self.space.spaces))
                for name, distribution in self.space.spaces[str(definition)].distributions.items():
                    _suggest(trial, f"{definition}:{name}", distribution)
        attrs = study._storage.get_trial_system_attrs(trial._trial_id)
        return dict(trial.params), _jsonable(attrs)

    def judge(self, trials: list[dict], index: int, judged: int) -> tuple[str | None, dict, int]:
        """Whether running trial ``index`` stops now, looking at each step it logged after ``judged`` in
        turn: ("Pruned" | "MaxResource" | None, its system attributes after, the last step judged)."""
        study = self.study(trials)
        trial_id = study.get_trials(deepcopy=False)[index - len(trials)]._trial_id  # the job's own come last
        storage, pruner = study._storage, study.pruner
        steps = len(trials[index].get("Steps") or [])
        verdict, step = None, judged
        for step in range(judged + 1, steps + 1):
            if self.max_resource is not None and step >= self.max_resource:
                verdict = "MaxResource"
                break
            # The trial as it was at ``step`` (its system attributes as the pruner left them at the last one).
            view = copy.copy(storage.get_trial(trial_id))
            view.intermediate_values = {s: v for s, v in view.intermediate_values.items() if s <= step}
            if pruner.prune(study, view):
                verdict = "Pruned"
                break
        return verdict, _jsonable(storage.get_trial_system_attrs(trial_id)), step


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> None:
    """Ask ``trial`` for ``name`` from ``distribution`` through Optuna's public suggest API."""
    if isinstance(distribution, IntDistribution):
        trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log)
    elif isinstance(distribution, FloatDistribution):
        trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)
    else:
        trial.suggest_categorical(name, list(distribution.choices))  # type: ignore[attr-defined]


def infer_max_resource(static: dict[str, str]) -> int | None:
    for key in EPOCH_KEYS:
        if key in static:
            try:
                return int(static[key])
            except ValueError:
                raise validation(f"StaticHyperParameters.{key} must be an integer to serve as MaxResource.") from None
    return None


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
