"""Algorithm resources through boto3: CRUD and lists, validation that really runs its profile (a training job and
a batch transform job of built-in XGBoost), training and tuning jobs by AlgorithmName, model packages from them."""

from __future__ import annotations

import copy

import pytest
from botocore.exceptions import ClientError

from support.jobs import ROLE, TERMINAL
from support.jobs import wait as wait_job
from support.waiting import status_in, wait_for
from support.xgboost_runtime import XGBOOST_IMAGE

BUCKET = "algorithm-tests"
FIRST_SECONDS = 600  # the first job of a run builds the XGBoost runtime
# label, f1, f2: the label is 2 * f1 + f2
TRAIN_CSV = "\n".join(f"{2 * (i % 7) + i % 3},{i % 7},{i % 3}" for i in range(60)) + "\n"
TEST_CSV = "\n".join(f"{i % 7},{(i * 2) % 3}" for i in range(8)) + "\n"

HYPERPARAMETERS = [
    {
        "Name": "num_round",
        "Type": "Integer",
        "Range": {"IntegerParameterRangeSpecification": {"MinValue": "1", "MaxValue": "50"}},
        "IsTunable": True,
        "IsRequired": True,
    },
    {
        "Name": "max_depth",
        "Type": "Integer",
        "Range": {"IntegerParameterRangeSpecification": {"MinValue": "1", "MaxValue": "10"}},
        "IsTunable": True,
        "DefaultValue": "3",
    },
    {
        "Name": "eta",
        "Type": "Continuous",
        "Range": {"ContinuousParameterRangeSpecification": {"MinValue": "0.01", "MaxValue": "1"}},
        "IsTunable": True,
        "DefaultValue": "0.5",
    },
    {
        "Name": "objective",
        "Type": "Categorical",
        "Range": {"CategoricalParameterRangeSpecification": {"Values": ["reg:squarederror", "reg:absoluteerror"]}},
        "DefaultValue": "reg:squarederror",
    },
    {"Name": "comment", "Type": "FreeText"},
]


def channel(name: str, uri: str, **extra) -> dict:
    return {
        "ChannelName": name,
        "ContentType": "text/csv",
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}},
        **extra,
    }


def training_spec(**change) -> dict:
    spec = {
        "TrainingImage": XGBOOST_IMAGE,
        "SupportedHyperParameters": copy.deepcopy(HYPERPARAMETERS),
        "SupportedTrainingInstanceTypes": ["ml.m5.large", "ml.m5.xlarge"],
        "SupportsDistributedTraining": False,
        "TrainingChannels": [
            {
                "Name": "train",
                "IsRequired": True,
                "SupportedContentTypes": ["text/csv"],
                "SupportedInputModes": ["File"],
            },
            {"Name": "validation", "SupportedContentTypes": ["text/csv"], "SupportedInputModes": ["File"]},
        ],
        "SupportedTuningJobObjectiveMetrics": [{"Type": "Minimize", "MetricName": "train:rmse"}],
    }
    spec.update(change)
    return spec


def training_definition(train_uri: str = f"s3://{BUCKET}/train/", **hyperparameters) -> dict:
    return {
        "TrainingInputMode": "File",
        "HyperParameters": {"num_round": "8", **hyperparameters},
        "InputDataConfig": [channel("train", train_uri)],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/validation-output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }


INFERENCE = {
    "Containers": [{"Image": XGBOOST_IMAGE}],
    "SupportedTransformInstanceTypes": ["ml.m5.large"],
    "SupportedContentTypes": ["text/csv"],
    "SupportedResponseMIMETypes": ["text/csv"],
}


def transform_definition() -> dict:
    return {
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/test/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": f"s3://{BUCKET}/validation-transform", "Accept": "text/csv"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }


def validation(train_uri: str = f"s3://{BUCKET}/train/", transform: bool = True) -> dict:
    profile = {"ProfileName": "smoke", "TrainingJobDefinition": training_definition(train_uri)}
    if transform:
        profile["TransformJobDefinition"] = transform_definition()
    return {"ValidationRole": ROLE, "ValidationProfiles": [profile]}


def wait_algorithm(sm, name: str, timeout: float = FIRST_SECONDS) -> dict:
    return wait_for(
        lambda: sm.describe_algorithm(AlgorithmName=name),
        status_in("AlgorithmStatus", {"Completed", "Failed"}),
        timeout=timeout,
        what=f"algorithm {name} to end its validation",
    )


def error(err) -> tuple[str, str]:
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def boto(module_client):
    s3 = module_client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="train/data.csv", Body=TRAIN_CSV.encode())
    s3.put_object(Bucket=BUCKET, Key="test/data.csv", Body=TEST_CSV.encode())
    s3.put_object(Bucket=BUCKET, Key="garbage/data.csv", Body=b"not,a,number\nat,all,here\n")
    return module_client


@pytest.fixture(scope="module")
def validated(boto):
    """An algorithm validated by a training and a transform job: (name, its description at the end)."""
    sm = boto("sagemaker")
    name = "xgb-validated"
    sm.create_algorithm(
        AlgorithmName=name,
        AlgorithmDescription="built-in XGBoost, as an algorithm resource",
        TrainingSpecification=training_spec(),
        InferenceSpecification=INFERENCE,
        ValidationSpecification=validation(),
    )
    first = sm.describe_algorithm(AlgorithmName=name)
    assert first["AlgorithmStatus"] == "InProgress"
    assert first["AlgorithmStatusDetails"]["ValidationStatuses"][0]["Name"] == "smoke"
    assert first["AlgorithmStatusDetails"]["ValidationStatuses"][0]["Status"] in ("NotStarted", "InProgress")
    return name, wait_algorithm(sm, name)


# -- the resource ---------------------------------------------------------------------------------------------


def test_create_describe_list_delete(boto, sm, unique):
    prefix = unique("crud")
    names = [f"{prefix}-b", f"{prefix}-a", f"{prefix}-c"]
    arns = [sm.create_algorithm(AlgorithmName=n, TrainingSpecification=training_spec())["AlgorithmArn"] for n in names]
    described = sm.describe_algorithm(AlgorithmName=arns[0])
    assert described["AlgorithmName"] == names[0]
    assert described["AlgorithmStatus"] == "Completed"  # nothing to validate
    assert described["AlgorithmStatusDetails"] == {"ValidationStatuses": []}
    assert described["TrainingSpecification"]["SupportedHyperParameters"] == HYPERPARAMETERS
    with pytest.raises(ClientError) as err:
        sm.create_algorithm(AlgorithmName=names[0], TrainingSpecification=training_spec())
    assert error(err) == ("ValidationException", f"Algorithm {arns[0]} already exists.")

    listed = sm.list_algorithms(NameContains=prefix)["AlgorithmSummaryList"]
    assert [a["AlgorithmName"] for a in listed] == names  # by CreationTime, ascending: AWS's default order
    assert set(listed[0]) == {"AlgorithmName", "AlgorithmArn", "CreationTime", "AlgorithmStatus"}
    by_name = sm.list_algorithms(NameContains=prefix, SortBy="Name", SortOrder="Descending")["AlgorithmSummaryList"]
    assert [a["AlgorithmName"] for a in by_name] == sorted(names, reverse=True)
    page = sm.list_algorithms(NameContains=prefix, SortBy="Name", MaxResults=2)
    rest = sm.list_algorithms(NameContains=prefix, SortBy="Name", MaxResults=2, NextToken=page["NextToken"])
    assert [a["AlgorithmName"] for a in page["AlgorithmSummaryList"] + rest["AlgorithmSummaryList"]] == sorted(names)
    assert "NextToken" not in rest
    later = sm.list_algorithms(NameContains=prefix, CreationTimeAfter=described["CreationTime"])
    assert names[0] not in [a["AlgorithmName"] for a in later["AlgorithmSummaryList"]]

    for name in names:
        sm.delete_algorithm(AlgorithmName=name)
    with pytest.raises(ClientError) as err:
        sm.describe_algorithm(AlgorithmName=names[0])
    assert error(err) == ("ValidationException", f"Algorithm {arns[0]} does not exist.")
    assert sm.list_algorithms(NameContains=prefix)["AlgorithmSummaryList"] == []


def test_builtin_algorithms_are_images_not_algorithm_resources(sm):
    # As on AWS, ListAlgorithms lists the account's own algorithms; built-in XGBoost is run by its image URI.
    assert "xgboost" not in [a["AlgorithmName"] for a in sm.list_algorithms(MaxResults=100)["AlgorithmSummaryList"]]
    with pytest.raises(ClientError) as err:
        sm.describe_algorithm(AlgorithmName="xgboost")
    assert error(err)[0] == "ValidationException"


def _hp(name: str, **change) -> list[dict]:
    hps = copy.deepcopy(HYPERPARAMETERS)
    next(h for h in hps if h["Name"] == name).update(change)
    return hps


BAD_SPECIFICATIONS = [
    (
        {
            "SupportedHyperParameters": _hp(
                "max_depth", Range={"CategoricalParameterRangeSpecification": {"Values": ["1"]}}
            )
        },
        "SupportedHyperParameters max_depth: a Integer hyperparameter's Range is a IntegerParameterRangeSpecification.",
    ),
    (
        {
            "SupportedHyperParameters": _hp(
                "eta", Range={"ContinuousParameterRangeSpecification": {"MinValue": "2", "MaxValue": "1"}}
            )
        },
        "SupportedHyperParameters eta: MinValue 2 is greater than MaxValue 1.",
    ),
    (
        {"SupportedHyperParameters": _hp("max_depth", DefaultValue="12")},
        "SupportedHyperParameters max_depth: DefaultValue: 12 is out of the algorithm's range [1, 10].",
    ),
    (
        {"SupportedHyperParameters": _hp("max_depth", DefaultValue="deep")},
        "SupportedHyperParameters max_depth: DefaultValue: 'deep' is not an integer.",
    ),
    (
        {"SupportedHyperParameters": [*HYPERPARAMETERS, HYPERPARAMETERS[0]]},
        "SupportedHyperParameters: the hyperparameter num_round is defined twice.",
    ),
    (
        {
            "SupportedHyperParameters": _hp(
                "comment", Range={"IntegerParameterRangeSpecification": {"MinValue": "1", "MaxValue": "2"}}
            )
        },
        "SupportedHyperParameters comment: a FreeText hyperparameter takes no Range.",
    ),
    (
        {"SupportedTuningJobObjectiveMetrics": [{"Type": "Maximize", "MetricName": "accuracy"}]},
        "SupportedTuningJobObjectiveMetrics: accuracy is not among the algorithm's MetricDefinitions.",
    ),
    (
        {"TrainingImage": "registry.example.com/nothing:1"},
        "TrainingSpecification.TrainingImage: SelfMaker has no runtime",
    ),
]


@pytest.mark.parametrize("change, message", BAD_SPECIFICATIONS)
def test_bad_specifications_are_refused_and_nothing_is_created(sm, unique, change, message):
    name = unique("bad")
    with pytest.raises(ClientError) as err:
        sm.create_algorithm(AlgorithmName=name, TrainingSpecification=training_spec(**change))
    assert error(err)[0] == "ValidationException"
    assert error(err)[1].startswith(message)
    with pytest.raises(ClientError):
        sm.describe_algorithm(AlgorithmName=name)


@pytest.mark.parametrize(
    "profile_change, message",
    [
        (
            {"HyperParameters": {"num_round": "80"}},
            "ValidationProfile smoke: TrainingJobDefinition: Hyperparameter num_round: 80 is out of the algorithm's "
            "range [1, 50].",
        ),
        (
            {"InputDataConfig": [channel("test", f"s3://{BUCKET}/train/")]},
            "ValidationProfile smoke: TrainingJobDefinition: InputDataConfig: the channel test is not among",
        ),
        (
            {"InputDataConfig": [channel("train", "https://example.com/train/")]},
            "ValidationProfile smoke: TrainingJobDefinition: Channel train: S3Uri 'https://example.com/train/' is not supported",
        ),
    ],
)
def test_bad_validation_profiles_are_refused(boto, sm, unique, profile_change, message):
    spec = validation(transform=False)
    spec["ValidationProfiles"][0]["TrainingJobDefinition"].update(profile_change)
    with pytest.raises(ClientError) as err:
        sm.create_algorithm(
            AlgorithmName=unique("bad"), TrainingSpecification=training_spec(), ValidationSpecification=spec
        )
    assert error(err)[1].startswith(message)


def test_a_transform_profile_needs_an_inference_specification(boto, sm, unique):
    with pytest.raises(ClientError) as err:
        sm.create_algorithm(
            AlgorithmName=unique("bad"), TrainingSpecification=training_spec(), ValidationSpecification=validation()
        )
    assert (
        error(err)[1]
        == "ValidationProfile smoke: a TransformJobDefinition needs the algorithm's InferenceSpecification."
    )


# -- validation -------------------------------------------------------------------------------------------------


def test_validation_runs_a_training_and_a_transform_job_before_completing(boto, validated):
    sm, s3 = boto("sagemaker"), boto("s3")
    name, final = validated
    status = final["AlgorithmStatusDetails"]["ValidationStatuses"]
    assert final["AlgorithmStatus"] == "Completed", status
    assert status == [{"Name": "smoke", "Status": "Completed"}]
    jobs = sm.list_training_jobs(NameContains=f"{name}-validation-")["TrainingJobSummaries"]
    assert len(jobs) == 1 and jobs[0]["TrainingJobStatus"] == "Completed"
    job = sm.describe_training_job(TrainingJobName=jobs[0]["TrainingJobName"])
    assert job["AlgorithmSpecification"]["AlgorithmName"] == final["AlgorithmArn"]
    assert "TrainingImage" not in job["AlgorithmSpecification"]
    # The defaults of the algorithm's hyperparameters were applied.
    assert job["HyperParameters"] == {"num_round": "8", "max_depth": "3", "eta": "0.5", "objective": "reg:squarederror"}
    assert {m["MetricName"] for m in job["FinalMetricDataList"]} >= {"train:rmse"}
    transform = sm.describe_transform_job(TransformJobName=job["TrainingJobName"])
    assert transform["TransformJobStatus"] == "Completed"
    assert transform["ModelName"] == job["TrainingJobName"]
    body = s3.get_object(Bucket=BUCKET, Key="validation-transform/data.csv.out")["Body"].read().decode()
    predictions = [float(line) for line in body.split()]
    expected = [2 * (i % 7) + (i * 2) % 3 for i in range(8)]
    assert len(predictions) == 8 and max(abs(p - e) for p, e in zip(predictions, expected)) < 3


def test_validation_that_fails_fails_the_algorithm(boto, sm, unique):
    name = unique("fails")
    sm.create_algorithm(
        AlgorithmName=name,
        TrainingSpecification=training_spec(),
        ValidationSpecification=validation(f"s3://{BUCKET}/garbage/", transform=False),
    )
    with pytest.raises(ClientError) as err:
        sm.delete_algorithm(AlgorithmName=name)
    assert "is being validated" in error(err)[1]
    final = wait_algorithm(sm, name)
    assert final["AlgorithmStatus"] == "Failed"
    [status] = final["AlgorithmStatusDetails"]["ValidationStatuses"]
    assert status["Status"] == "Failed"
    assert status["FailureReason"].startswith(f"The training job {name}-validation-")
    assert "ended Failed" in status["FailureReason"]
    with pytest.raises(ClientError) as err:
        sm.create_training_job(**training_job(unique("use"), name))
    assert error(err)[1] == f"The algorithm {name} is Failed: only a Completed algorithm can be used for training."
    sm.delete_algorithm(AlgorithmName=name)


# -- training jobs by AlgorithmName -----------------------------------------------------------------------------


def training_job(job: str, algorithm: str, **change) -> dict:
    request = {
        "TrainingJobName": job,
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"AlgorithmName": algorithm, "TrainingInputMode": "File"},
        "HyperParameters": {"num_round": "5", "eta": "0.3"},
        "InputDataConfig": [channel("train", f"s3://{BUCKET}/train/")],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/jobs"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }
    for key, value in change.items():
        if key == "spec":
            request["AlgorithmSpecification"].update(value)
        else:
            request[key] = value
    return request


REFUSED_JOBS = [
    (
        {"HyperParameters": {"num_round": "500"}},
        "Hyperparameter num_round: 500 is out of the algorithm's range [1, 50].",
    ),
    ({"HyperParameters": {"num_round": "5", "eta": "fast"}}, "Hyperparameter eta: 'fast' is not a number."),
    ({"HyperParameters": {"num_round": "5.7"}}, "Hyperparameter num_round: '5.7' is not an integer."),
    (
        {"HyperParameters": {"num_round": "5", "objective": "binary:logistic"}},
        "Hyperparameter objective: 'binary:logistic' is not one of the algorithm's values",
    ),
    ({"HyperParameters": {"eta": "0.3"}}, "Hyperparameter num_round is required by the algorithm and has no default"),
    (
        {"HyperParameters": {"num_round": "5", "gamma": "1"}},
        "HyperParameters: gamma is not supported by the algorithm (it supports: comment, eta, max_depth, num_round, "
        "objective).",
    ),
    ({"InputDataConfig": [channel("validation", f"s3://{BUCKET}/train/")]}, "InputDataConfig: the algorithm requires"),
    (
        {"InputDataConfig": [channel("train", f"s3://{BUCKET}/train/", ContentType="application/json")]},
        "Channel train: the content type application/json is not supported by the algorithm (text/csv).",
    ),
    (
        {"ResourceConfig": {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1}},
        "ResourceConfig.InstanceType ml.c5.xlarge is not supported by the algorithm",
    ),
    (
        {"ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1}},
        "ResourceConfig.InstanceCount: the algorithm does not support distributed training.",
    ),
    ({"spec": {"TrainingImage": XGBOOST_IMAGE}}, "AlgorithmSpecification: give AlgorithmName or TrainingImage"),
]


@pytest.mark.parametrize("change, message", REFUSED_JOBS)
def test_training_jobs_are_checked_against_the_algorithm(boto, sm, unique, change, message):
    name = unique("algo")
    sm.create_algorithm(AlgorithmName=name, TrainingSpecification=training_spec())
    job = unique("refused")
    with pytest.raises(ClientError) as err:
        sm.create_training_job(**training_job(job, name, **change))
    assert error(err)[0] == "ValidationException"
    assert error(err)[1].startswith(message)
    assert sm.list_training_jobs(NameContains=job)["TrainingJobSummaries"] == []


def test_metric_definitions_are_the_algorithms_when_it_has_some(boto, sm, unique):
    own = unique("own-metrics")
    metrics = [{"Name": "train:rmse", "Regex": "train-rmse:([0-9.]+)"}]
    sm.create_algorithm(AlgorithmName=own, TrainingSpecification=training_spec(MetricDefinitions=metrics))
    with pytest.raises(ClientError) as err:
        sm.create_training_job(**training_job(unique("job"), own, spec={"MetricDefinitions": metrics}))
    assert error(err)[1].startswith("AlgorithmSpecification.MetricDefinitions cannot be given with an algorithm")
    with pytest.raises(ClientError) as err:
        sm.create_training_job(**training_job(unique("job"), "no-such-algorithm"))
    assert error(err)[1].endswith("algorithm/no-such-algorithm does not exist.")


def test_training_job_by_algorithm_name_runs_its_image_with_its_defaults(boto, sm, validated, unique):
    name, _ = validated
    job = unique("by-name")
    sm.create_training_job(**training_job(job, name))
    done = wait_job(sm, "training", job)
    assert done["TrainingJobStatus"] == "Completed", done.get("FailureReason")
    assert done["AlgorithmSpecification"] == {"AlgorithmName": name, "TrainingInputMode": "File"}
    assert done["HyperParameters"] == {
        "num_round": "5",
        "eta": "0.3",
        "max_depth": "3",
        "objective": "reg:squarederror",
    }
    assert done["ModelArtifacts"]["S3ModelArtifacts"].endswith(f"/jobs/{job}/output/model.tar.gz")
    assert "train:rmse" in {m["MetricName"] for m in done["FinalMetricDataList"]}  # the image's built-in metrics


# -- tuning -------------------------------------------------------------------------------------------------------


def tuning_job(name: str, algorithm: str, ranges: dict) -> dict:
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Random",
            "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "train:rmse"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 1},
            "ParameterRanges": ranges,
            "RandomSeed": 7,
        },
        "TrainingJobDefinition": {
            "AlgorithmSpecification": {"AlgorithmName": algorithm, "TrainingInputMode": "File"},
            "RoleArn": ROLE,
            "StaticHyperParameters": {"eta": "0.4"},
            "InputDataConfig": [channel("train", f"s3://{BUCKET}/train/")],
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/tuning"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 300},
        },
    }


NUM_ROUND = {"IntegerParameterRanges": [{"Name": "num_round", "MinValue": "2", "MaxValue": "6"}]}


def test_tuning_an_algorithm(boto, sm, validated, unique):
    name, _ = validated
    bad = [
        (
            {"IntegerParameterRanges": [{"Name": "num_round", "MinValue": "2", "MaxValue": "60"}]},
            "out of the algorithm",
        ),
        (
            {"CategoricalParameterRanges": [{"Name": "objective", "Values": ["reg:squarederror"]}]},
            "CategoricalParameterRanges: the algorithm has no tunable hyperparameter objective.",
        ),
    ]
    for ranges, message in bad:
        with pytest.raises(ClientError) as err:
            sm.create_hyper_parameter_tuning_job(**tuning_job(unique("tune-bad"), name, ranges))
        assert message in error(err)[1]
    request = tuning_job(unique("tune-bad"), name, NUM_ROUND)
    request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"] = "validation:rmse"
    with pytest.raises(ClientError) as err:
        sm.create_hyper_parameter_tuning_job(**request)
    assert "not among the algorithm's SupportedTuningJobObjectiveMetrics (train:rmse)" in error(err)[1]

    tuning = unique("tune")
    sm.create_hyper_parameter_tuning_job(**tuning_job(tuning, name, NUM_ROUND))
    done = wait_for(
        lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning),
        status_in("HyperParameterTuningJobStatus", TERMINAL),
        timeout=FIRST_SECONDS,
        what=f"tuning job {tuning} to end",
    )
    assert done["HyperParameterTuningJobStatus"] == "Completed"
    assert done["TrainingJobStatusCounters"]["Completed"] == 2
    trial = sm.describe_training_job(TrainingJobName=done["BestTrainingJob"]["TrainingJobName"])
    assert trial["AlgorithmSpecification"]["AlgorithmName"] == name
    assert trial["HyperParameters"]["max_depth"] == "3" and trial["HyperParameters"]["eta"] == "0.4"


# -- model packages -----------------------------------------------------------------------------------------------


def test_model_package_from_an_algorithm(boto, sm, validated, unique):
    name, _ = validated
    job = sm.list_training_jobs(NameContains=f"{name}-validation-")["TrainingJobSummaries"][0]["TrainingJobName"]
    artifacts = sm.describe_training_job(TrainingJobName=job)["ModelArtifacts"]["S3ModelArtifacts"]
    with pytest.raises(ClientError) as err:
        sm.create_model_package(
            ModelPackageName=unique("pkg"),
            SourceAlgorithmSpecification={"SourceAlgorithms": [{"AlgorithmName": "nope", "ModelDataUrl": artifacts}]},
        )
    assert error(err)[1].endswith("algorithm/nope does not exist.")
    package = unique("pkg")
    source = {"SourceAlgorithms": [{"AlgorithmName": name, "ModelDataUrl": artifacts}]}
    sm.create_model_package(ModelPackageName=package, SourceAlgorithmSpecification=source)
    assert sm.describe_model_package(ModelPackageName=package)["SourceAlgorithmSpecification"] == source


def test_a_restarted_server_carries_the_validation_on(make_server, client):
    """Killed while the validation's training job runs, the server picks the validation up where it was: the same
    jobs (found by name, not made twice), then the transform, then Completed."""
    srv = make_server("algorithms-restart").start()
    try:
        s3, sm = client("s3", srv), client("sagemaker", srv)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="train/data.csv", Body=TRAIN_CSV.encode())
        s3.put_object(Bucket=BUCKET, Key="test/data.csv", Body=TEST_CSV.encode())
        name = "xgb-restarted"
        sm.create_algorithm(
            AlgorithmName=name,
            TrainingSpecification=training_spec(),
            InferenceSpecification=INFERENCE,
            ValidationSpecification=validation(),
        )
        wait_for(
            lambda: sm.list_training_jobs(NameContains=f"{name}-validation-")["TrainingJobSummaries"],
            bool,
            timeout=60,
            what="the validation's training job",
        )
        srv.stop()
        srv.start()
        sm = client("sagemaker", srv)
        final = wait_algorithm(sm, name)
        assert final["AlgorithmStatus"] == "Completed", final["AlgorithmStatusDetails"]
        assert len(sm.list_training_jobs(NameContains=f"{name}-validation-")["TrainingJobSummaries"]) == 1
        assert len(sm.list_transform_jobs(NameContains=f"{name}-validation-")["TransformJobSummaries"]) == 1
    finally:
        srv.stop()
