"""Tuning jobs with several TrainingJobDefinitions: trials spread over the definitions, each trial run as its own
definition says (image, static hyperparameters, ranges, objective metric), the best found across all of them."""

from __future__ import annotations

import copy

import pytest
from botocore.exceptions import ClientError

from selfmaker.services.tuning.search import DEFINITION_PARAM, Definitions, Search, Space
from support.tuning import (
    METRICS,
    objective,
    request,
    sagemaker_with_bucket,
    score,
    trials,
    tuning_server,
    wait,
)


@pytest.fixture(scope="module")
def srv(make_server, tmp_path_factory):
    server = tuning_server(make_server, tmp_path_factory, "tuning-definitions")
    yield server
    server.stop()


@pytest.fixture
def sm(client, srv):
    return sagemaker_with_bucket(client, srv)


def several(name: str, strategy: str = "Random", most=6, **config) -> dict:
    """Two definitions over the test image: ``low`` tunes x in [0, 2] (kind a), ``high`` tunes x in [2, 6] with
    kind b (worth 1 more), and names its objective ``score`` (the same log line, another MetricName)."""
    req = request(name, strategy, most=most, parallel=2, **config)
    single = req.pop("TrainingJobDefinition")
    tuning = req["HyperParameterTuningJobConfig"]
    del tuning["ParameterRanges"], tuning["HyperParameterTuningJobObjective"]
    low, high = copy.deepcopy(single), copy.deepcopy(single)
    low.update(
        DefinitionName="low",
        TuningObjective={"Type": "Maximize", "MetricName": "objective"},
        HyperParameterRanges={"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "2"}]},
        StaticHyperParameters={"sleep": "0", "kind": "a"},
    )
    high.update(
        DefinitionName="high",
        TuningObjective={"Type": "Maximize", "MetricName": "score"},
        HyperParameterRanges={"ContinuousParameterRanges": [{"Name": "x", "MinValue": "2", "MaxValue": "6"}]},
        StaticHyperParameters={"sleep": "0", "kind": "b"},
    )
    high["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "score", "Regex": METRICS[0]["Regex"]}]
    if strategy == "Grid":
        low["HyperParameterRanges"] = {"CategoricalParameterRanges": [{"Name": "x", "Values": ["1", "2"]}]}
        high["HyperParameterRanges"] = {"CategoricalParameterRanges": [{"Name": "x", "Values": ["3", "4", "5"]}]}
    req["TrainingJobDefinitions"] = [low, high]
    return req


def test_trials_spread_over_the_definitions_and_the_best_is_found_across_them(sm, unique):
    name = unique("defs")[-28:]
    sm.create_hyper_parameter_tuning_job(**several(name, most=6))
    job = wait(sm, name)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    assert [d["DefinitionName"] for d in job["TrainingJobDefinitions"]] == ["low", "high"]
    found = trials(sm, name)
    assert len(found) == 6
    used = {s["TrainingJobDefinitionName"] for s in found}
    assert used == {"low", "high"}
    for s in found:
        x = float(s["TunedHyperParameters"]["x"])
        definition = s["TrainingJobDefinitionName"]
        kind, metric, (lo, hi) = ("a", "objective", (0, 2)) if definition == "low" else ("b", "score", (2, 6))
        assert lo <= x <= hi
        assert s["FinalHyperParameterTuningJobObjectiveMetric"]["MetricName"] == metric
        assert abs(score(s) - objective(x, kind=kind)) < 1e-4
        training = sm.describe_training_job(TrainingJobName=s["TrainingJobName"])
        assert training["HyperParameters"]["kind"] == kind  # the definition's static hyperparameters
        assert training["TuningJobArn"] == job["HyperParameterTuningJobArn"]
    top = max(found, key=score)
    assert job["BestTrainingJob"]["TrainingJobName"] == top["TrainingJobName"]
    assert job["BestTrainingJob"]["TrainingJobDefinitionName"] == top["TrainingJobDefinitionName"]
    assert job["TrainingJobStatusCounters"]["Completed"] == 6


def test_grid_over_several_definitions_tries_each_point_once(sm, unique):
    name = unique("defgrid")[-28:]
    sm.create_hyper_parameter_tuning_job(**several(name, "Grid", most=None))
    job = wait(sm, name)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    points = sorted((s["TrainingJobDefinitionName"], s["TunedHyperParameters"]["x"]) for s in trials(sm, name))
    assert points == [("high", "3"), ("high", "4"), ("high", "5"), ("low", "1"), ("low", "2")]
    assert job["BestTrainingJob"]["TunedHyperParameters"] == {"x": "3"}  # 10 + 1 (kind b) at x = 3


def test_hyperparameter_tuning_resource_config_gives_the_trials_their_resources(sm, unique):
    """The SDK v2 sends HyperParameterTuningResourceConfig, not ResourceConfig: the trials get its first
    InstanceConfig (one machine never lacks capacity for it)."""
    name = unique("hporc")[-28:]
    req = request(name, most=1, parallel=1)
    definition = req["TrainingJobDefinition"]
    del definition["ResourceConfig"]
    definition["HyperParameterTuningResourceConfig"] = {
        "InstanceConfigs": [
            {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 2},
            {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 3},
        ],
        "AllocationStrategy": "Prioritized",
    }
    sm.create_hyper_parameter_tuning_job(**req)
    assert wait(sm, name)["HyperParameterTuningJobStatus"] == "Completed"
    training = sm.describe_training_job(TrainingJobName=trials(sm, name)[0]["TrainingJobName"])
    assert training["ResourceConfig"] == {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 2}


def _definitions(req: dict) -> list[dict]:
    return req["TrainingJobDefinitions"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: _definitions(r)[1].update(DefinitionName="low"), "must be unique"),
        (lambda r: _definitions(r)[1].pop("DefinitionName"), "needs a DefinitionName"),
        (lambda r: _definitions(r)[1].update(DefinitionName="bad_name"), "definitionName"),
        (lambda r: _definitions(r)[1]["TuningObjective"].update(Type="Minimize"), "same Type"),
        (lambda r: _definitions(r)[1].pop("TuningObjective"), "HyperParameterTuningJobObjective"),
        (lambda r: _definitions(r)[1]["TuningObjective"].update(MetricName="nope"), "high: The objective metric"),
        (
            lambda r: r["HyperParameterTuningJobConfig"].update(TrainingJobEarlyStoppingType="Auto"),
            "single training job definition",
        ),
        (lambda r: r["HyperParameterTuningJobConfig"].update(Strategy="Hyperband"), "single training job definition"),
        (
            lambda r: r.update(
                WarmStartConfig={
                    "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "p"}],
                    "WarmStartType": "TransferLearning",
                }
            ),
            "single training job definition",
        ),
        (lambda r: r.update(TrainingJobDefinition=_definitions(r)[0]), "either TrainingJobDefinition"),
        (
            lambda r: _definitions(r)[0].update(HyperParameterTuningResourceConfig={"InstanceType": "ml.m5.large"}),
            "low: Give ResourceConfig or HyperParameterTuningResourceConfig",
        ),
        (
            lambda r: _definitions(r)[1]["OutputDataConfig"].update(S3OutputPath="https://example.com/out"),
            "S3OutputPath",
        ),
    ],
)
def test_bad_several_definitions_are_refused_and_create_nothing(sm, unique, change, message):
    name = unique("defbad")[-28:]
    req = several(name)
    change(req)
    with pytest.raises(ClientError) as err:
        sm.create_hyper_parameter_tuning_job(**req)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert message in err.value.response["Error"]["Message"]
    assert not sm.list_hyper_parameter_tuning_jobs(NameContains=name)["HyperParameterTuningJobSummaries"]


def _plan(strategy: str = "Bayesian") -> Search:
    spaces = {
        "good": Space({"ContinuousParameterRanges": [{"Name": "eta", "MinValue": "0", "MaxValue": "1"}]}),
        "bad": Space({"IntegerParameterRanges": [{"Name": "eta", "MinValue": "1", "MaxValue": "9"}]}),
    }
    return Search(name="t", strategy=strategy, space=Definitions(spaces), direction="Maximize", seed=5)


def test_tpe_learns_which_definition_does_better_and_asks_the_same_after_a_restart():
    """The search itself (no server): TPE picks the definition as a parameter of its own, learns from all trials
    which definition scores better, and a rebuilt study (a restart) asks for the same next point."""
    plan, history = _plan(), []
    for _ in range(30):
        params, attrs = plan.ask(history)
        assert plan.ask(history) == (params, attrs)  # the same history asks the same point: restart-safe
        definition = plan.space.definition_of(params)
        value = 1.0 if definition == "good" else 0.0
        history.append({"Params": params, "SystemAttrs": attrs, "State": "COMPLETE", "Value": value})
    late = [t["Params"][DEFINITION_PARAM] for t in history[15:]]
    assert late.count("good") >= 12  # after TPE's 10 random start-up trials it keeps to the better definition
    hyper = plan.space.hyperparameters(history[0]["Params"])
    assert list(hyper) == ["eta"]
