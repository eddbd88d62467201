"""Batch transform jobs through boto3: built-in XGBoost and framework models, for real, end to end."""

from __future__ import annotations

import functools
import gzip
import json
import subprocess
import time

import pytest
from botocore.exceptions import ClientError

from support import xgboost_runtime
from support.jobs import ROLE, SKLEARN_IMAGE, TERMINAL, log_lines, tar_gz
from support.waiting import status_in, wait_for
from support.xgboost_runtime import XGBOOST_IMAGE

GROUP = "/aws/sagemaker/TransformJobs"
BUCKET = "transform-tests"
FIRST_JOB_SECONDS = 600  # the first job of a run may build its runtime

# Two features; the label is 2 * f1 + f2. Test rows carry an id in front.
TRAIN_ROWS = [(2 * (i % 7) + (i % 3), i % 7, i % 3) for i in range(60)]
TEST_ROWS = [(f"id{i}", i % 7, (i * 2) % 3) for i in range(12)]

TRAIN_AND_PREDICT = """
import json, sys, numpy as np, xgboost as xgb
train = np.array(json.loads(sys.argv[1]), dtype=np.float32)
booster = xgb.train({"objective": "reg:squarederror", "max_depth": 3, "eta": 0.5},
                    xgb.DMatrix(train[:, 1:], label=train[:, 0]), num_boost_round=8)
booster.save_model(sys.argv[2] + "/xgboost-model")
test = np.array(json.loads(sys.argv[3]), dtype=np.float32)
print(json.dumps(booster.predict(xgb.DMatrix(test)).tolist()))
"""


def wait(sm, name: str, timeout: float = FIRST_JOB_SECONDS, until=TERMINAL) -> dict:
    return wait_for(
        lambda: sm.describe_transform_job(TransformJobName=name),
        status_in("TransformJobStatus", until),
        timeout=timeout,
        what=f"transform job {name} to be {'/'.join(sorted(until))}",
    )


@pytest.fixture(scope="module")
def boto(module_client):
    """boto("s3") -> a checked client on the session server, for module fixtures and tests alike."""
    module_client("s3").create_bucket(Bucket=BUCKET)
    return module_client


@pytest.fixture(scope="module")
def xgboost_model(boto, tmp_path_factory):
    """A built-in XGBoost Model (an xgboost-model in model.tar.gz) and its predictions for TEST_ROWS."""
    directory = tmp_path_factory.mktemp("xgb-model")
    features = [[f1, f2] for _, f1, f2 in TEST_ROWS]
    done = subprocess.run(
        [
            xgboost_runtime.python(),
            "-c",
            TRAIN_AND_PREDICT,
            json.dumps(TRAIN_ROWS),
            str(directory),
            json.dumps(features),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    predictions = json.loads(done.stdout)
    boto("s3").put_object(
        Bucket=BUCKET,
        Key="models/xgb/model.tar.gz",
        Body=tar_gz({"xgboost-model": (directory / "xgboost-model").read_bytes()}),
    )
    boto("sagemaker").create_model(
        ModelName="transform-xgb",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": XGBOOST_IMAGE, "ModelDataUrl": f"s3://{BUCKET}/models/xgb/model.tar.gz"},
    )
    return "transform-xgb", predictions


def framework_model(boto, name: str, inference: str) -> str:
    """A scikit-learn-image Model whose model.tar.gz holds code/inference.py (and a tiny 'model')."""
    archive = tar_gz({"code/inference.py": inference.encode(), "scale.json": b'{"scale": 10}'})
    boto("s3").put_object(Bucket=BUCKET, Key=f"models/{name}/model.tar.gz", Body=archive)
    boto("sagemaker").create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": SKLEARN_IMAGE,
            "ModelDataUrl": f"s3://{BUCKET}/models/{name}/model.tar.gz",
            "Environment": {"MODEL_GREETING": "hello"},
        },
    )
    return name


SCALING = """
import json, os

def model_fn(model_dir):
    with open(os.path.join(model_dir, "scale.json")) as f:
        return json.load(f)["scale"]

def input_fn(data, content_type):
    assert content_type == "text/csv", content_type
    return [float(x) for x in data.strip().split(",")]

def predict_fn(values, scale):
    return [v * scale for v in values]

def output_fn(prediction, accept):
    return ",".join(f"{v:g}" for v in prediction) + "|" + os.environ["MODEL_GREETING"] + \\
        "|" + os.environ["SAGEMAKER_BATCH_STRATEGY"] + "|" + os.environ.get("JOB_SETTING", ""), accept
"""

FAILING = """
def model_fn(model_dir):
    return None

def predict_fn(data, model):
    raise ValueError("feature count mismatch: expected 3, got 2")
"""

NOT_LOADING = """
def model_fn(model_dir):
    raise RuntimeError("cannot load this model")
"""

SLOW = """
import time

def model_fn(model_dir):
    time.sleep(300)
"""


def request(name: str, model: str, source: str, output: str, **extra) -> dict:
    body = {
        "TransformJobName": name,
        "ModelName": model,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": source}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": output, "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return body


def read(boto, key: str) -> str:
    return boto("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


def test_builtin_xgboost_multirecord_join_and_filters(boto, sm, client, xgboost_model, unique):
    model, predictions = xgboost_model
    name = unique("xgb-transform")
    rows = [",".join(map(str, row)) for row in TEST_ROWS]
    boto("s3").put_object(Bucket=BUCKET, Key=f"{name}/in/part-a.csv", Body="\n".join(rows[:7]) + "\n")
    boto("s3").put_object(Bucket=BUCKET, Key=f"{name}/in/nested/part-b.csv", Body="\n".join(rows[7:]))
    arn = sm.create_transform_job(
        **request(
            name,
            model,
            f"s3://{BUCKET}/{name}/in/",
            f"s3://{BUCKET}/{name}/out",
            BatchStrategy="MultiRecord",
            MaxPayloadInMB=1,
            MaxConcurrentTransforms=2,
            TransformOutput={"Accept": "text/csv"},
            DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
        )
    )["TransformJobArn"]
    job = wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert job["TransformJobArn"] == arn and job["ModelName"] == model
    assert job["TransformStartTime"] <= job["TransformEndTime"]
    output = read(boto, f"{name}/out/part-a.csv.out") + read(boto, f"{name}/out/nested/part-b.csv.out")
    lines = output.splitlines()
    assert [line.split(",")[0] for line in lines] == [row[0] for row in TEST_ROWS]
    assert [float(line.split(",")[1]) for line in lines] == pytest.approx(predictions, rel=1e-5)
    assert output.endswith("\n")
    logged = log_lines(client("logs"), GROUP, name)
    assert any("MaxConcurrentTransforms=2, MaxPayloadInMB=1, BatchStrategy=MULTI_RECORD" in line for line in logged)
    assert any("serving the model" in line for line in logged)
    summaries = sm.list_transform_jobs(NameContains=name)["TransformJobSummaries"]
    assert [(s["TransformJobName"], s["TransformJobStatus"]) for s in summaries] == [(name, "Completed")]
    component = sm.describe_trial_component(TrialComponentName=f"{name}-aws-transform-job")
    assert component["Source"]["SourceArn"] == arn
    assert component["InputArtifacts"]["SageMaker.ModelArtifact"]["Value"].endswith("models/xgb/model.tar.gz")
    assert component["OutputArtifacts"]["output"]["Value"] == f"s3://{BUCKET}/{name}/out"


def test_framework_model_with_inference_handlers_on_two_instances(boto, sm, client, unique):
    model = framework_model(boto, unique("scaling"), SCALING)
    name = unique("fw-transform")
    for index, body in enumerate(["1,2\n3,4\n", "5\n", "6,7\n8\n9\n"]):
        boto("s3").put_object(Bucket=BUCKET, Key=f"{name}/in/f{index}.csv.gz", Body=gzip.compress(body.encode()))
    sm.create_transform_job(
        **request(
            name,
            model,
            f"s3://{BUCKET}/{name}/in",
            f"s3://{BUCKET}/{name}/out/",
            BatchStrategy="SingleRecord",
            MaxConcurrentTransforms=2,
            Environment={"JOB_SETTING": "set"},
            TransformInput={"CompressionType": "Gzip"},
            TransformResources={"InstanceCount": 2},
        )
    )
    job = wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    outputs = {i: read(boto, f"{name}/out/f{i}.csv.gz.out") for i in range(3)}
    suffix = "|hello|SINGLE_RECORD|set"
    assert outputs == {
        0: f"10,20{suffix}\n30,40{suffix}\n",
        1: f"50{suffix}\n",
        2: f"60,70{suffix}\n80{suffix}\n90{suffix}\n",
    }
    streams = client("logs").describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=f"{name}/")["logStreams"]
    assert sorted(s["logStreamName"].rsplit("-", 1)[0] for s in streams) == [f"{name}/algo-1", f"{name}/algo-2"]


def test_model_error_fails_the_job_with_the_models_status_and_message(boto, sm, client, unique):
    model = framework_model(boto, unique("failing"), FAILING)
    name = unique("failing-transform")
    boto("s3").put_object(Bucket=BUCKET, Key=f"{name}/in/data.csv", Body=b"1,2\n")
    sm.create_transform_job(
        **request(
            name,
            model,
            f"s3://{BUCKET}/{name}/in/",
            f"s3://{BUCKET}/{name}/out",
            ModelClientConfig={"InvocationsMaxRetries": 1, "InvocationsTimeoutInSeconds": 30},
        )
    )
    job = wait(sm, name)
    assert job["TransformJobStatus"] == "Failed"
    assert job["FailureReason"].startswith(
        f"ClientError: See job logs for more details. s3://{BUCKET}/{name}/in/data.csv: the model answered 500: "
    )
    assert "feature count mismatch: expected 3, got 2" in job["FailureReason"]
    logged = log_lines(client("logs"), GROUP, name)
    assert sum(f"s3://{BUCKET}/{name}/in/data.csv: ClientError: 500" in line for line in logged) == 2  # 1 retry
    assert any("Traceback" in line for line in logged)
    with pytest.raises(ClientError) as caught:
        boto("s3").head_object(Bucket=BUCKET, Key=f"{name}/out/data.csv.out")
    assert caught.value.response["Error"]["Code"] == "404"


def test_model_that_cannot_load_fails_the_job(boto, sm, unique):
    model = framework_model(boto, unique("not-loading"), NOT_LOADING)
    name = unique("not-loading-transform")
    boto("s3").put_object(Bucket=BUCKET, Key=f"{name}/in/data.csv", Body=b"1,2\n")
    sm.create_transform_job(**request(name, model, f"s3://{BUCKET}/{name}/in/", f"s3://{BUCKET}/{name}/out"))
    job = wait(sm, name)
    assert job["TransformJobStatus"] == "Failed"
    assert job["FailureReason"] == (
        "ClientError: the model server of algo-1 exited (code 1) before the transform "
        f"was done; see the job's logs in {GROUP}"
    )


def test_stop_transform_job(boto, sm, unique):
    model = framework_model(boto, unique("slow"), SLOW)
    name = unique("slow-transform")
    boto("s3").put_object(Bucket=BUCKET, Key=f"{name}/in/data.csv", Body=b"1,2\n")
    sm.create_transform_job(**request(name, model, f"s3://{BUCKET}/{name}/in/", f"s3://{BUCKET}/{name}/out"))
    wait(sm, name, until={"InProgress"})
    time.sleep(0.5)  # let the model server start loading
    sm.stop_transform_job(TransformJobName=name)
    job = wait(sm, name, timeout=60)
    assert job["TransformJobStatus"] == "Stopped"
    with pytest.raises(ClientError) as caught:
        sm.stop_transform_job(TransformJobName=name)
    assert caught.value.response["Error"]["Code"] == "ValidationException"


@pytest.mark.parametrize(
    "change, code, message",
    [
        (
            {"ModelName": "no-such-model"},
            "ValidationException",
            'Could not find model "arn:aws:sagemaker:us-east-1:123456789012:model/no-such-model".',
        ),
        (
            {"DataCaptureConfig": {"DestinationS3Uri": "s3://b/capture"}},
            "ValidationException",
            "DataCaptureConfig is not supported by SelfMaker for batch transform jobs yet.",
        ),
        ({"TransformInput": {"SplitType": "RecordIO"}}, "ValidationException", "SplitType RecordIO is not supported"),
        ({"DataProcessing": {"InputFilter": "$..x[?(@.a)]"}}, "ValidationException", "is not a JSONPath SelfMaker"),
        (
            {"MaxPayloadInMB": 50, "MaxConcurrentTransforms": 4},
            "ValidationException",
            "MaxConcurrentTransforms * MaxPayloadInMB cannot be greater than 100 MB",
        ),
        (
            {
                "TransformInput": {
                    "DataSource": {"S3DataSource": {"S3DataType": "AugmentedManifestFile", "S3Uri": "s3://b/in"}}
                }
            },
            "ValidationException",
            "S3DataType AugmentedManifestFile is not supported",
        ),
        ({"TransformOutput": {"S3OutputPath": "https://example.com/out"}}, "ValidationException", "is not supported"),
    ],
)
def test_bad_requests_are_refused(boto, sm, xgboost_model, unique, change, code, message):
    name = unique("bad-transform")
    with pytest.raises(ClientError) as caught:
        sm.create_transform_job(**request(name, xgboost_model[0], f"s3://{BUCKET}/in/", f"s3://{BUCKET}/out", **change))
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert message in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as missing:
        sm.describe_transform_job(TransformJobName=name)
    assert missing.value.response["Error"]["Message"] == f"Could not find requested job with name {name}"


def test_duplicate_name_is_refused(boto, sm, xgboost_model, unique):
    name = unique("dup-transform")
    boto("s3").put_object(Bucket=BUCKET, Key=f"{name}/in/data.csv", Body=b"id,1,2\n")
    # MultiRecord without a SplitType is accepted: the whole file is the one record
    body = request(
        name,
        xgboost_model[0],
        f"s3://{BUCKET}/{name}/in/data.csv",
        f"s3://{BUCKET}/{name}/out",
        BatchStrategy="MultiRecord",
        TransformInput={"SplitType": "None"},
        TransformOutput={"Accept": "text/csv"},
        DataProcessing={"InputFilter": "$[1:]"},
    )
    sm.create_transform_job(**body)
    with pytest.raises(ClientError) as caught:
        sm.create_transform_job(**body)
    assert caught.value.response["Error"]["Code"] == "ResourceInUse"
    assert wait(sm, name)["TransformJobStatus"] == "Completed"
    assert len(read(boto, f"{name}/out/data.csv.out").splitlines()) == 1  # an S3Uri naming one object


STAMPING = """
import time

def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    time.sleep(0.3)
    return f"{data.strip()} at {time.time_ns()}", accept
"""


def test_a_restarted_server_resumes_with_the_files_not_yet_written(make_server, client, unique):
    server = make_server("transform-crash").start()
    make = functools.partial(client, srv=server)

    make("s3").create_bucket(Bucket=BUCKET)
    model = framework_model(make, unique("stamping"), STAMPING)
    name = unique("crash-transform")
    for i in range(8):
        make("s3").put_object(Bucket=BUCKET, Key=f"{name}/in/f{i}.csv", Body=f"{i}\n".encode())
    make("sagemaker").create_transform_job(
        **request(name, model, f"s3://{BUCKET}/{name}/in/", f"s3://{BUCKET}/{name}/out")
    )

    def outputs() -> dict[str, str]:
        found = make("s3").list_objects_v2(Bucket=BUCKET, Prefix=f"{name}/out/").get("Contents", [])
        return {o["Key"]: read(make, o["Key"]) for o in found}

    before = wait_for(
        outputs, lambda written: len(written) >= 2, timeout=FIRST_JOB_SECONDS, interval=0.05, what="two outputs written"
    )
    server.kill()
    server.start()
    job = wait(make("sagemaker"), name, timeout=60)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    after = outputs()
    assert sorted(after) == [f"{name}/out/f{i}.csv.out" for i in range(8)]
    assert all(after[key].startswith(f"{key.rsplit('/f', 1)[1][0]} at ") for key in after)
    assert {key: after[key] for key in before} == before  # written before the crash: not transformed again
