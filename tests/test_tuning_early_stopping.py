"""Trials stopped early, through boto3: TrainingJobEarlyStoppingType Auto (Optuna's median rule) and the
Hyperband strategy (Optuna's Hyperband pruner), judged on the objective values each trial logs per epoch."""

from __future__ import annotations

import statistics

import pytest

from support.tuning import objective, request, sagemaker_with_bucket, score, trials, tuning_server, wait
from support.waiting import wait_for


@pytest.fixture(scope="module")
def srv(make_server, tmp_path_factory):
    server = tuning_server(make_server, tmp_path_factory, "tuning-early")
    yield server
    server.stop()


@pytest.fixture
def sm(client, srv):
    return sagemaker_with_bucket(client, srv)


@pytest.fixture
def logs(client, srv):
    return client("logs", srv)


def epochs_logged(logs, name: str) -> int:
    """How many epochs a trial's training job logged before it ended (its CloudWatch log)."""
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=name)
    events = logs.get_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=streams["logStreams"][0]["logStreamName"]
    )["events"]
    return sum(1 for e in events if "objective=" in e["message"])


def stop_message(sm, name: str) -> str:
    transitions = sm.describe_training_job(TrainingJobName=name)["SecondaryStatusTransitions"]
    return next((t["StatusMessage"] for t in transitions if t["Status"] == "Stopping"), "")


def test_auto_early_stopping_stops_trials_below_the_median_for_real(sm, logs, unique):
    name = unique("median")[-28:]
    req = request(name, most=5, parallel=1, TrainingJobEarlyStoppingType="Auto", RandomSeed=3)
    req["TrainingJobDefinition"]["StaticHyperParameters"].update(epochs="4", epoch_sleep="1.2")
    sm.create_hyper_parameter_tuning_job(**req)
    job = wait(sm, name)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    assert job["HyperParameterTuningJobConfig"]["TrainingJobEarlyStoppingType"] == "Auto"
    found = trials(sm, name, SortBy="CreationTime", SortOrder="Ascending")
    assert len(found) == 5
    stopped = [s for s in found if s["TrainingJobStatus"] == "Stopped"]
    assert stopped, "no trial was stopped early"
    assert job["TrainingJobStatusCounters"]["Stopped"] == len(stopped)
    assert job["TrainingJobStatusCounters"]["Completed"] == 5 - len(stopped)
    assert job["ObjectiveStatusCounters"]["Succeeded"] == 5  # a trial stopped early still scored
    for s in found[:3]:  # the median rule needs three completed trials to judge against
        assert s["TrainingJobStatus"] == "Completed"
    for s in stopped:
        x, y = float(s["TunedHyperParameters"]["x"]), int(s["TunedHyperParameters"]["y"])
        steps = epochs_logged(logs, s["TrainingJobName"])
        assert steps < 4, "a stopped trial must not have run its course"
        # Every trial gains 1 an epoch, so "below the median of the completed trials at the same epoch" is
        # "its final objective below the median of theirs", whichever epoch it was judged at.
        before = [c for c in found if c["TrainingJobStatus"] == "Completed" and c["CreationTime"] < s["CreationTime"]]
        assert objective(x, y) < statistics.median(score(c) for c in before)
        assert abs(score(s) - (objective(x, y) - (4 - steps))) < 1e-4  # its objective: its last logged value
        training = sm.describe_training_job(TrainingJobName=s["TrainingJobName"])
        assert training["TrainingJobStatus"] == "Stopped" and training["SecondaryStatus"] == "Stopped"
        assert "stopped it early" in stop_message(sm, s["TrainingJobName"])
        assert training["ModelArtifacts"]["S3ModelArtifacts"].endswith("model.tar.gz")  # a graceful stop
    assert job["BestTrainingJob"]["TrainingJobName"] not in {s["TrainingJobName"] for s in stopped}
    assert job["BestTrainingJob"]["TrainingJobStatus"] == "Completed"


def test_hyperband_stops_the_weak_early_and_the_rest_at_max_resource(sm, logs, client, srv, unique):
    """And a restart mid-search changes nothing: the rungs are kept with the trials, the logs read again."""
    name = unique("hyperband")[-28:]
    req = request(
        name,
        "Hyperband",
        most=6,
        parallel=1,  # trials judged in turn: with RandomSeed 7, trials 3 and 5 are pruned at epoch 1
        StrategyConfig={"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 3}},
    )
    req["TrainingJobDefinition"]["StaticHyperParameters"].update(epochs="20", epoch_sleep="1.5")
    sm.create_hyper_parameter_tuning_job(**req)
    wait_for(lambda: trials(sm, name), lambda found: len(found) >= 2, timeout=60, what="a second trial")
    srv.stop()
    srv.start()
    sm, logs = client("sagemaker", srv), client("logs", srv)
    job = wait(sm, name)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    found = trials(sm, name)
    assert len(found) == 6
    # Every trial is stopped: early by Hyperband, or when it reached MaxResource (epochs=20 would run 30 s, past a restart).
    assert job["TrainingJobStatusCounters"]["Stopped"] == 6
    messages = {s["TrainingJobName"]: stop_message(sm, s["TrainingJobName"]) for s in found}
    full = [n for n, m in messages.items() if "MaxResource" in m]
    early = [n for n, m in messages.items() if "stopped it early" in m and "Hyperband" in m]
    assert sorted(n.split("-")[-2] for n in early) == ["003", "005"], messages
    assert len(full) == 4, messages
    for n in early:
        assert epochs_logged(logs, n) < 3
    for n in full:
        assert epochs_logged(logs, n) >= 3
    assert job["BestTrainingJob"]["TrainingJobName"] in full


def test_hyperband_infers_max_resource_from_the_epochs(sm, logs, unique):
    name = unique("hbinfer")[-28:]
    req = request(name, "Hyperband", most=1, parallel=1)
    req["TrainingJobDefinition"]["StaticHyperParameters"].update(epochs="2", epoch_sleep="0")
    sm.create_hyper_parameter_tuning_job(**req)
    job = wait(sm, name)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    assert job["ObjectiveStatusCounters"]["Succeeded"] == 1
