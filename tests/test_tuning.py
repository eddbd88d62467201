"""Hyperparameter tuning jobs: Random, Grid and Bayesian searches over real training jobs, through boto3."""

from __future__ import annotations

import datetime
import itertools
import os
import signal

import pytest
from botocore.exceptions import ClientError

from support.tuning import objective, request, sagemaker_with_bucket, score, trials, tuning_server, wait
from support.waiting import wait_for


@pytest.fixture(scope="module")
def srv(make_server, tmp_path_factory):
    server = tuning_server(make_server, tmp_path_factory, "tuning")
    yield server
    server.stop()


@pytest.fixture
def sm(client, srv):
    return sagemaker_with_bucket(client, srv)


def test_random_search_runs_real_training_jobs_and_finds_the_best(sm, unique):
    name = unique("rand")[-28:]
    sm.create_hyper_parameter_tuning_job(**request(name, most=4, parallel=2))
    job = wait(sm, name)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    assert job["TrainingJobStatusCounters"]["Completed"] == 4
    assert job["ObjectiveStatusCounters"]["Succeeded"] == 4
    found = trials(sm, name, SortBy="FinalObjectiveMetricValue", SortOrder="Descending")
    assert len(found) == 4
    assert job["BestTrainingJob"]["TrainingJobName"] == found[0]["TrainingJobName"]
    for s in found:  # each objective is the script's function of the trial's hyperparameters
        x, y = float(s["TunedHyperParameters"]["x"]), int(s["TunedHyperParameters"]["y"])
        assert abs(score(s) - objective(x, y)) < 1e-4
        assert 0 <= x <= 6 and 0 <= y <= 3
    first = found[0]["TrainingJobName"]
    assert first.startswith(f"{name}-") and len(first.split("-")[-1]) == 8 and len(first.split("-")[-2]) == 3
    training = sm.describe_training_job(TrainingJobName=first)
    assert training["TuningJobArn"] == job["HyperParameterTuningJobArn"]
    assert training["HyperParameters"]["sleep"] == "0"
    tags = sm.list_tags(ResourceArn=training["TrainingJobArn"])["Tags"]
    assert {"Key": "team", "Value": "tuning"} in tags
    listed = sm.list_training_jobs(NameContains=name)["TrainingJobSummaries"]
    assert len(listed) == 4
    summaries = sm.list_hyper_parameter_tuning_jobs(NameContains=name)["HyperParameterTuningJobSummaries"]
    assert [s["HyperParameterTuningJobName"] for s in summaries] == [name]
    assert summaries[0]["Strategy"] == "Random" and summaries[0]["TrainingJobStatusCounters"]["Completed"] == 4
    page = sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=name, MaxResults=3)
    rest = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name, MaxResults=3, NextToken=page["NextToken"]
    )
    assert len(page["TrainingJobSummaries"]) == 3 and len(rest["TrainingJobSummaries"]) == 1
    assert job["ConsumedResources"]["RuntimeInSeconds"] >= 0
    found_by_search = sm.search(
        Resource="HyperParameterTuningJob",
        SearchExpression={"Filters": [{"Name": "HyperParameterTuningJobName", "Operator": "Equals", "Value": name}]},
    )["Results"]
    assert found_by_search[0]["HyperParameterTuningJob"]["BestTrainingJob"] == job["BestTrainingJob"]
    assert {"Key": "team", "Value": "tuning"} in found_by_search[0]["HyperParameterTuningJob"]["Tags"]
    sm.delete_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    with pytest.raises(ClientError):
        sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)


def test_grid_search_tries_every_combination_once_one_at_a_time(sm, unique):
    name = unique("grid")[-28:]
    ranges = {
        "CategoricalParameterRanges": [
            {"Name": "kind", "Values": ["a", "b", "c"]},
            {"Name": "x", "Values": ["2", "3"]},
        ]
    }
    sm.create_hyper_parameter_tuning_job(**request(name, "Grid", ranges=ranges, most=None, parallel=1))
    job = wait(sm, name)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    found = trials(sm, name, SortBy="CreationTime", SortOrder="Ascending")
    combos = {(s["TunedHyperParameters"]["kind"], s["TunedHyperParameters"]["x"]) for s in found}
    assert len(found) == 6 and len(combos) == 6
    assert job["BestTrainingJob"]["TunedHyperParameters"] == {"kind": "b", "x": "3"}
    # MaxParallelTrainingJobs 1: no trial started before the previous one ended.
    described = [sm.describe_training_job(TrainingJobName=s["TrainingJobName"]) for s in found]
    for before, after in itertools.pairwise(described):
        assert after["CreationTime"] >= before["TrainingEndTime"]


def test_bayesian_search_completes(sm, unique):
    name = unique("bayes")[-28:]
    sm.create_hyper_parameter_tuning_job(**request(name, "Bayesian", most=3, parallel=1))
    job = wait(sm, name)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    assert job["ObjectiveStatusCounters"]["Succeeded"] == 3


def test_target_objective_value_ends_the_search_early(sm, unique):
    name = unique("target")[-28:]
    sm.create_hyper_parameter_tuning_job(
        **request(name, most=20, parallel=1, TuningJobCompletionCriteria={"TargetObjectiveMetricValue": -1000.0})
    )
    job = wait(sm, name)
    assert job["HyperParameterTuningJobStatus"] == "Completed"
    assert len(trials(sm, name)) == 1


def test_stop_stops_the_running_trials(sm, unique):
    name = unique("stop")[-28:]
    req = request(name, most=4, parallel=2)
    req["TrainingJobDefinition"]["StaticHyperParameters"]["sleep"] = "60"
    sm.create_hyper_parameter_tuning_job(**req)
    wait_for(
        lambda: trials(sm, name, StatusEquals="InProgress"),
        lambda found: len(found) >= 1,
        timeout=60,
        what="a running trial",
    )
    sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    job = wait(sm, name, {"Stopped"})
    assert job["TrainingJobStatusCounters"]["InProgress"] == 0
    assert all(s["TrainingJobStatus"] == "Stopped" for s in trials(sm, name))
    with pytest.raises(ClientError) as info:
        sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    assert info.value.response["Error"]["Code"] == "ValidationException"


def _bad(change):
    def apply(req):
        change(req)
        return req

    return apply


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda r: r["HyperParameterTuningJobConfig"]["ParameterRanges"]["ContinuousParameterRanges"][0].update(
                MinValue="7"
            ),
            "must not be greater",
        ),
        (
            lambda r: r["HyperParameterTuningJobConfig"]["ParameterRanges"]["ContinuousParameterRanges"][0].update(
                ScalingType="Logarithmic"
            ),
            "MinValue > 0",
        ),
        (
            lambda r: r["HyperParameterTuningJobConfig"]["ParameterRanges"]["IntegerParameterRanges"][0].update(
                MinValue="0.5"
            ),
            "an integer",
        ),
        (lambda r: r["HyperParameterTuningJobConfig"].update(Strategy="Grid"), "only categorical"),
        (lambda r: r["HyperParameterTuningJobConfig"].update(Strategy="Hyperband"), "MaxResource is required"),
        (
            lambda r: r["HyperParameterTuningJobConfig"].update(
                Strategy="Hyperband",
                StrategyConfig={"HyperbandStrategyConfig": {"MaxResource": 3}},
                TrainingJobEarlyStoppingType="Auto",
            ),
            "must be Off",
        ),
        (
            lambda r: r["HyperParameterTuningJobConfig"].update(
                Strategy="Hyperband", StrategyConfig={"HyperbandStrategyConfig": {"MinResource": 4, "MaxResource": 3}}
            ),
            "MinResource must not be greater",
        ),
        (
            lambda r: r["HyperParameterTuningJobConfig"].update(
                StrategyConfig={"HyperbandStrategyConfig": {"MaxResource": 3}}
            ),
            "only for the Hyperband",
        ),
        (lambda r: r["HyperParameterTuningJobConfig"].update(Strategy="Annealing"), "enum value set"),
        (lambda r: r["HyperParameterTuningJobConfig"]["ResourceLimits"].update(MaxNumberOfTrainingJobs=501), "500"),
        (lambda r: r["HyperParameterTuningJobConfig"]["ResourceLimits"].update(MaxParallelTrainingJobs=5), "exceed"),
        (lambda r: r["HyperParameterTuningJobConfig"]["ResourceLimits"].pop("MaxNumberOfTrainingJobs"), "required"),
        (
            lambda r: r["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"].update(MetricName="auc"),
            "objective metric auc",
        ),
        (lambda r: r["TrainingJobDefinition"]["StaticHyperParameters"].update(x="1"), "both static and tuned"),
    ],
)
def test_bad_requests_are_refused_and_create_nothing(sm, unique, change, message):
    name = unique("bad")[-28:]
    req = request(name)
    change(req)
    with pytest.raises(ClientError) as info:
        sm.create_hyper_parameter_tuning_job(**req)
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert message in info.value.response["Error"]["Message"]
    with pytest.raises(ClientError):
        sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)


def test_a_restart_mid_tuning_continues_the_same_search(sm, client, srv, unique):
    """The Optuna study is rebuilt from the store: after a restart the trials go on where they were, and a
    Random search with the same RandomSeed asks for the same points as one that was never interrupted."""
    interrupted, straight = unique("resume")[-28:], unique("straight")[-28:]
    req = request(interrupted, most=4, parallel=1)
    req["TrainingJobDefinition"]["StaticHyperParameters"]["sleep"] = "1"
    sm.create_hyper_parameter_tuning_job(**req)
    wait_for(lambda: trials(sm, interrupted), lambda found: len(found) >= 2, timeout=60, what="a second trial")
    srv.stop()
    srv.start()
    sm = client("sagemaker", srv)
    job = wait(sm, interrupted)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    sm.create_hyper_parameter_tuning_job(**request(straight, most=4, parallel=1))
    assert wait(sm, straight)["HyperParameterTuningJobStatus"] == "Completed"

    def points(name):
        found = trials(sm, name, SortBy="Name", SortOrder="Ascending")
        return [s["TunedHyperParameters"] for s in found], [s["TrainingJobName"].split("-")[-2] for s in found]

    resumed, indexes = points(interrupted)
    assert indexes == ["001", "002", "003", "004"]
    assert resumed == points(straight)[0]


def test_neighbouring_random_seeds_do_not_replay_each_other(sm, unique):
    """RandomSeed 7 and 8 are different searches, not the same one shifted by a trial."""
    points = []
    for seed in (7, 8):
        name = unique(f"seed{seed}")[-28:]
        sm.create_hyper_parameter_tuning_job(**request(name, most=3, parallel=3, RandomSeed=seed))
        assert wait(sm, name)["HyperParameterTuningJobStatus"] == "Completed"
        found = trials(sm, name, SortBy="Name", SortOrder="Ascending")
        points.append([s["TunedHyperParameters"]["x"] for s in found])
    seven, eight = points
    assert len(seven) == len(eight) == 3 and not set(seven) & set(eight), points


def test_trials_that_fail_are_counted_and_fail_the_search(sm, unique):
    name = unique("fails")[-28:]
    req = request(name, most=2, parallel=1)
    req["TrainingJobDefinition"]["StaticHyperParameters"]["sleep"] = "not-a-number"  # the script raises
    sm.create_hyper_parameter_tuning_job(**req)
    job = wait(sm, name)
    assert job["HyperParameterTuningJobStatus"] == "Failed"
    assert "objective" in job["FailureReason"]
    assert job["TrainingJobStatusCounters"]["NonRetryableError"] == 2
    assert job["ObjectiveStatusCounters"]["Failed"] == 2
    assert "BestTrainingJob" not in job
    assert all(s["ObjectiveStatus"] == "Failed" and s.get("FailureReason") for s in trials(sm, name))


FLAT = {"CategoricalParameterRanges": [{"Name": "kind", "Values": ["d", "e", "f", "g"]}]}  # every trial scores 0


def test_best_objective_not_improving_ends_the_search(sm, unique):
    name = unique("patience")[-28:]
    criteria = {"BestObjectiveNotImproving": {"MaxNumberOfTrainingJobsNotImproving": 3}}
    sm.create_hyper_parameter_tuning_job(
        **request(name, ranges=FLAT, most=10, parallel=1, TuningJobCompletionCriteria=criteria)
    )
    job = wait(sm, name)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    assert len(trials(sm, name)) == 4  # the first sets the best, three more do not improve it
    assert job["TuningJobCompletionDetails"]["NumberOfTrainingJobsObjectiveNotImproving"] == 3
    assert "ConvergenceDetectedTime" not in job["TuningJobCompletionDetails"]


def test_convergence_detected_ends_the_search_and_says_when(sm, unique):
    name = unique("converge")[-28:]
    criteria = {"ConvergenceDetected": {"CompleteOnConvergence": "Enabled"}}
    sm.create_hyper_parameter_tuning_job(
        **request(name, ranges=FLAT, most=20, parallel=2, TuningJobCompletionCriteria=criteria)
    )
    job = wait(sm, name)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    found = trials(sm, name)
    assert 10 <= len(found) <= 12, len(found)  # ten scored (the rule's minimum), and what was running then
    details = job["TuningJobCompletionDetails"]
    assert job["CreationTime"] <= details["ConvergenceDetectedTime"] <= job["HyperParameterTuningEndTime"]


def test_warm_start_seeds_from_parents_and_reports_the_overall_best(sm, unique):
    parent, child = unique("parent")[-28:], unique("child")[-28:]
    sm.create_hyper_parameter_tuning_job(**request(parent, most=3, parallel=2))
    assert wait(sm, parent)["HyperParameterTuningJobStatus"] == "Completed"
    warm = {
        "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": parent}],
        "WarmStartType": "IdenticalDataAndAlgorithm",
    }
    req = request(child, "Bayesian", most=2, parallel=1, RandomSeed=11)
    sm.create_hyper_parameter_tuning_job(**req, WarmStartConfig=warm)
    job = wait(sm, child)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    assert job["WarmStartConfig"] == warm
    everything = trials(sm, parent) + trials(sm, child)
    assert len(everything) == 5
    top = max(everything, key=score)
    assert job["OverallBestTrainingJob"]["TrainingJobName"] == top["TrainingJobName"]
    assert job["BestTrainingJob"]["TuningJobName"] == child
    assert job["OverallBestTrainingJob"]["TuningJobName"] in (parent, child)


def test_warm_start_refuses_parents_it_cannot_use(sm, unique):
    running, child = unique("running")[-28:], unique("child")[-28:]
    slow = request(running, most=1, parallel=1)
    slow["TrainingJobDefinition"]["StaticHyperParameters"]["sleep"] = "30"
    sm.create_hyper_parameter_tuning_job(**slow)

    def refused(parent: str, change=lambda r: None, kind="IdenticalDataAndAlgorithm") -> str:
        req = request(child)
        change(req)
        warm = {"ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": parent}], "WarmStartType": kind}
        with pytest.raises(ClientError) as info:
            sm.create_hyper_parameter_tuning_job(**req, WarmStartConfig=warm)
        assert info.value.response["Error"]["Code"] == "ValidationException"
        with pytest.raises(ClientError):
            sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=child)
        return info.value.response["Error"]["Message"]

    assert "must have ended" in refused(running)
    assert "does not exist" in refused("no-such-parent")
    sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=running)
    wait(sm, running)

    def as_integer(req):
        req["HyperParameterTuningJobConfig"]["ParameterRanges"] = {
            "IntegerParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "6"}]
        }

    assert "types cannot change" in refused(running, as_integer, "TransferLearning")
    assert "training image and input data" in refused(
        running,
        lambda r: r["TrainingJobDefinition"]["AlgorithmSpecification"].update(TrainingImage="selfmaker.test/other:1"),
    )


def _kill_attempt(srv, job: str, seen: set[int]) -> int:
    """SIGKILL a trial's running attempt from outside SelfMaker (as the OOM killer would): its instance ends
    without an exit status, which SageMaker reports as an InternalServerError. Returns the attempt's pid."""

    def new_pid() -> int | None:
        for pid_file in srv.data_dir.glob(f"jobs/*/*/training-job/{job.lower()}/algo-1/state/pid"):
            text = pid_file.read_text().split()
            if text and int(text[0]) not in seen:
                return int(text[0])
        return None

    pid = wait_for(new_pid, lambda found: found is not None, timeout=120, what=f"a new attempt of {job}")
    os.killpg(pid, signal.SIGKILL)
    seen.add(pid)
    return pid


def test_trials_failing_with_internal_errors_are_retried_as_their_retry_strategy_says(sm, srv, unique):
    name = unique("retry")[-28:]
    req = request(name, most=2, parallel=1)
    req["TrainingJobDefinition"]["StaticHyperParameters"] = {"sleep": "4"}
    req["TrainingJobDefinition"]["RetryStrategy"] = {"MaximumRetryAttempts": 1}
    sm.create_hyper_parameter_tuning_job(**req)
    first = wait_for(lambda: trials(sm, name), lambda found: len(found) == 1, what="the first trial")[0]
    seen: set[int] = set()
    _kill_attempt(srv, first["TrainingJobName"], seen)  # retried once: it then completes
    second = wait_for(lambda: trials(sm, name), lambda found: len(found) == 2, timeout=120, what="the second trial")
    second_name = next(t["TrainingJobName"] for t in second if t["TrainingJobName"] != first["TrainingJobName"])
    _kill_attempt(srv, second_name, seen)
    _kill_attempt(srv, second_name, seen)  # its retry fails too: MaximumRetryAttempts 1 is spent
    job = wait(sm, name)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    assert job["TrainingJobStatusCounters"]["Completed"] == 1
    assert job["TrainingJobStatusCounters"]["RetryableError"] == 1
    assert job["TrainingJobStatusCounters"]["NonRetryableError"] == 0
    assert job["BestTrainingJob"]["TrainingJobName"] == first["TrainingJobName"]
    retried = sm.describe_training_job(TrainingJobName=first["TrainingJobName"])
    assert retried["TrainingJobStatus"] == "Completed" and retried["RetryStrategy"] == {"MaximumRetryAttempts": 1}
    statuses = [t["Status"] for t in retried["SecondaryStatusTransitions"]]
    assert statuses.count("Starting") == 2 and statuses.count("Training") == 2, statuses
    again = [t for t in retried["SecondaryStatusTransitions"] if t["Status"] == "Starting"][1]
    assert again["StatusMessage"].startswith("Retrying the job (retry 1 of 1) after: InternalServerError")
    failed = sm.describe_training_job(TrainingJobName=second_name)
    assert failed["TrainingJobStatus"] == "Failed"
    assert failed["FailureReason"].startswith("InternalServerError") and "ended abnormally" in failed["FailureReason"]
    assert [t["Status"] for t in failed["SecondaryStatusTransitions"]].count("Starting") == 2


def test_scaling_types_list_filters_and_the_host_cap_on_parallel_trials(sm, unique):
    name = unique("scales")[-28:]
    ranges = {
        "ContinuousParameterRanges": [
            {"Name": "x", "MinValue": "0", "MaxValue": "6", "ScalingType": "Linear"},
            {"Name": "r", "MinValue": "0.9", "MaxValue": "0.999", "ScalingType": "ReverseLogarithmic"},
            {"Name": "a", "MinValue": "1", "MaxValue": "2", "ScalingType": "Auto"},
        ],
        "IntegerParameterRanges": [{"Name": "y", "MinValue": "1", "MaxValue": "100", "ScalingType": "Logarithmic"}],
    }
    req = request(name, ranges=ranges, most=6, parallel=4)
    req["TrainingJobDefinition"]["StaticHyperParameters"] = {"sleep": "1"}
    sm.create_hyper_parameter_tuning_job(**req)
    job = wait(sm, name)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    found = trials(sm, name)
    assert len(found) == 6
    for s in found:
        tuned = s["TunedHyperParameters"]
        assert 0 <= float(tuned["x"]) <= 6 and 1 <= float(tuned["a"]) <= 2
        assert 0.9 <= float(tuned["r"]) <= 0.999 and 1 <= int(tuned["y"]) <= 100
    # MaxParallelTrainingJobs 4, capped by the host's processors (one instance a trial).
    spans = [(s["TrainingStartTime"], s["TrainingEndTime"]) for s in found]
    most_at_once = max(sum(1 for start, end in spans if start <= moment < end) for moment, _ in spans)
    assert 1 <= most_at_once <= min(4, len(os.sched_getaffinity(0)))
    # ListHyperParameterTuningJobs' filters and sort.
    created = job["CreationTime"]
    listed = sm.list_hyper_parameter_tuning_jobs(
        NameContains=name[:-2],
        StatusEquals="Completed",
        CreationTimeAfter=created - datetime.timedelta(seconds=1),
        SortBy="CreationTime",
        SortOrder="Descending",
    )["HyperParameterTuningJobSummaries"]
    assert name in [s["HyperParameterTuningJobName"] for s in listed]
    assert not sm.list_hyper_parameter_tuning_jobs(NameContains=name, StatusEquals="InProgress")[
        "HyperParameterTuningJobSummaries"
    ]
    assert not sm.list_hyper_parameter_tuning_jobs(
        NameContains=name, CreationTimeBefore=created - datetime.timedelta(seconds=1)
    )["HyperParameterTuningJobSummaries"]


def test_max_runtime_in_seconds_ends_the_search_and_stops_its_trials(sm, unique):
    name = unique("maxrun")[-28:]
    req = request(name, most=3, parallel=1)
    req["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxRuntimeInSeconds"] = 120  # AWS's least
    req["TrainingJobDefinition"]["StaticHyperParameters"] = {"sleep": "600"}
    req["TrainingJobDefinition"]["StoppingCondition"] = {"MaxRuntimeInSeconds": 900}
    sm.create_hyper_parameter_tuning_job(**req)
    job = wait(sm, name, timeout=400)
    assert job["HyperParameterTuningJobStatus"] == "Completed"
    took = (job["HyperParameterTuningEndTime"] - job["CreationTime"]).total_seconds()
    assert 120 <= took < 300
    found = trials(sm, name)
    assert [s["TrainingJobStatus"] for s in found] == ["Stopped"]
    assert job["TrainingJobStatusCounters"]["Stopped"] == 1
