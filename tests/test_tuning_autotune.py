"""Autotune: the settings a tuning job's caller leaves out, chosen at Create; the caller's own values win."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from support.tuning import BUCKET, request, sagemaker_with_bucket, trials, tuning_server, wait

XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"


@pytest.fixture(scope="module")
def srv(make_server, tmp_path_factory):
    server = tuning_server(make_server, tmp_path_factory, "tuning-autotune")
    yield server
    server.stop()


@pytest.fixture
def sm(client, srv):
    return sagemaker_with_bucket(client, srv)


def xgboost_request(name: str, hints: list[dict], **limits) -> dict:
    req = request(name, "Bayesian", parallel=1, most=None)
    config = req["HyperParameterTuningJobConfig"]
    config["ResourceLimits"].update(limits)
    config["HyperParameterTuningJobObjective"] = {"Type": "Minimize", "MetricName": "validation:rmse"}
    config["ParameterRanges"] = {"AutoParameters": hints}
    definition = req["TrainingJobDefinition"]
    definition["AlgorithmSpecification"] = {"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"}
    definition["StaticHyperParameters"] = {"num_round": "5"}
    definition["InputDataConfig"] = [
        {
            "ChannelName": channel,
            "ContentType": "text/csv",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/autotune/{channel}/"}},
        }
        for channel in ("train", "validation")
    ]
    req["Autotune"] = {"Mode": "Enabled"}
    return req


def test_autotune_chooses_ranges_and_limits_for_the_builtin_xgboost_and_the_callers_values_win(sm, client, srv, unique):
    s3 = client("s3", srv)
    rows = "".join(f"{2 * (i % 7) + (i % 3)},{i % 7},{i % 3}\n" for i in range(60))
    for channel in ("train", "validation"):
        s3.put_object(Bucket=BUCKET, Key=f"autotune/{channel}/data.csv", Body=rows.encode())
    name = unique("auto")[-28:]
    hints = [
        {"Name": "eta", "ValueHint": "0.3"},
        {"Name": "max_depth", "ValueHint": "4"},
        {"Name": "objective", "ValueHint": "reg:squarederror"},  # not tunable: kept static at its hint
    ]
    # The caller's MaxNumberOfTrainingJobs and TrainingJobEarlyStoppingType stand; Autotune fills the rest.
    req = xgboost_request(name, hints, MaxNumberOfTrainingJobs=2)
    req["HyperParameterTuningJobConfig"]["TrainingJobEarlyStoppingType"] = "Off"
    sm.create_hyper_parameter_tuning_job(**req)
    job = wait(sm, name, timeout=900)  # the first XGBoost job of a run builds its runtime
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    assert job["Autotune"] == {"Mode": "Enabled"}
    config = job["HyperParameterTuningJobConfig"]
    assert config["ParameterRanges"]["ContinuousParameterRanges"] == [
        {"Name": "eta", "MinValue": "0.1", "MaxValue": "0.5", "ScalingType": "Auto"}
    ]
    assert config["ParameterRanges"]["IntegerParameterRanges"] == [
        {"Name": "max_depth", "MinValue": "1", "MaxValue": "10", "ScalingType": "Auto"}
    ]
    assert "AutoParameters" not in config["ParameterRanges"]
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 2
    assert config["TrainingJobEarlyStoppingType"] == "Off"
    assert config["TuningJobCompletionCriteria"] == {"ConvergenceDetected": {"CompleteOnConvergence": "Enabled"}}
    definition = job["TrainingJobDefinition"]
    assert definition["StaticHyperParameters"] == {"num_round": "5", "objective": "reg:squarederror"}
    assert definition["RetryStrategy"] == {"MaximumRetryAttempts": 1}
    found = trials(sm, name)
    assert len(found) == 2
    for trial in found:
        tuned = trial["TunedHyperParameters"]
        assert set(tuned) == {"eta", "max_depth"}
        assert 0.1 <= float(tuned["eta"]) <= 0.5 and 1 <= int(tuned["max_depth"]) <= 10
        training = sm.describe_training_job(TrainingJobName=trial["TrainingJobName"])
        assert training["HyperParameters"]["objective"] == "reg:squarederror"
        assert training["RetryStrategy"] == {"MaximumRetryAttempts": 1}


def test_autotune_fills_the_limits_it_chooses_when_the_caller_leaves_them_out(sm, unique):
    name = unique("autofill")[-28:]
    sm.create_hyper_parameter_tuning_job(**xgboost_request(name, []))  # no hints, no ranges, no trial budget
    job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    config = job["HyperParameterTuningJobConfig"]
    tuned = {r["Name"] for m in config["ParameterRanges"].values() for r in m}
    # Every range of AWS's XGBoost table but num_round, which the definition sets statically.
    assert tuned == {
        "alpha",
        "colsample_bylevel",
        "colsample_bynode",
        "colsample_bytree",
        "eta",
        "gamma",
        "lambda",
        "max_delta_step",
        "max_depth",
        "min_child_weight",
        "subsample",
    }
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 100  # 10 a range, at most 100
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    wait(sm, name)


@pytest.mark.parametrize(
    "change, message",
    [
        # A custom image's hyperparameters are not eligible: nothing would be tuned.
        (
            lambda r: r["HyperParameterTuningJobConfig"].update(
                ParameterRanges={"AutoParameters": [{"Name": "x", "ValueHint": "2"}]}
            ),
            "Autotune found no hyperparameter it can tune",
        ),
        # AutoParameters are Autotune's hints.
        (
            lambda r: (
                r.pop("Autotune"),
                r["HyperParameterTuningJobConfig"]["ParameterRanges"].update(
                    AutoParameters=[{"Name": "x", "ValueHint": "2"}]
                ),
            ),
            "AutoParameters are for Autotune",
        ),
    ],
)
def test_autotune_refusals_create_nothing(sm, unique, change, message):
    name = unique("autobad")[-28:]
    req = request(name)
    req["Autotune"] = {"Mode": "Enabled"}
    change(req)
    with pytest.raises(ClientError) as raised:
        sm.create_hyper_parameter_tuning_job(**req)
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert message in raised.value.response["Error"]["Message"]
    assert not sm.list_hyper_parameter_tuning_jobs(NameContains=name)["HyperParameterTuningJobSummaries"]


def test_autotune_over_the_callers_own_ranges_of_a_custom_image(sm, unique):
    name = unique("autoown")[-28:]
    req = request(name, most=None, parallel=1)
    req["Autotune"] = {"Mode": "Enabled"}
    sm.create_hyper_parameter_tuning_job(**req)
    job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    config = job["HyperParameterTuningJobConfig"]
    assert config["ParameterRanges"] == request(name)["HyperParameterTuningJobConfig"]["ParameterRanges"]
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 20  # two ranges
    wait(sm, name)
