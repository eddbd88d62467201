"""Compilation jobs through boto3: compiled for real, served by endpoints and batch transform, refused clearly."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from support.clients import make_client
from support.endpoints import deploy, variant
from support.jobs import FIRST_JOB_SECONDS, ROLE, log_lines, neo_python, tar_gz
from support.waiting import status_in, wait_for

GROUP = "/aws/sagemaker/CompilationJobs"
BUCKET = "compilation-tests"
ROWS = [[0.1, 0.9, 0.3, 0.5], [0.8, 0.2, 0.7, 0.1], [0.5, 0.5, 0.5, 0.5]]

# Run in the compilation runtime: a tiny XGBoost model and an RF classifier, and their own predictions of ROWS.
MAKE_MODELS = """
import json, sys, joblib, numpy as np, xgboost as xgb
from sklearn.ensemble import RandomForestClassifier
out, rows = sys.argv[1], np.array(json.loads(sys.argv[2]), dtype="float32")
x = np.random.RandomState(0).rand(200, 4).astype("float32")
booster = xgb.train({"max_depth": 3, "objective": "binary:logistic"}, xgb.DMatrix(x, label=x[:, 0] > 0.5), 10)
booster.save_model(out + "/xgboost-model")
forest = RandomForestClassifier(5, max_depth=3, random_state=0).fit(x, (x[:, 1] > 0.5).astype(int))
joblib.dump(forest, out + "/model.joblib")
print(json.dumps({"xgboost": booster.predict(xgb.DMatrix(rows)).tolist(), "forest": forest.predict(rows).tolist()}))
"""


def wait_job(sm, name: str, until=("COMPLETED", "FAILED", "STOPPED"), timeout: float = FIRST_JOB_SECONDS) -> dict:
    return wait_for(
        lambda: sm.describe_compilation_job(CompilationJobName=name),
        status_in("CompilationJobStatus", until),
        timeout=timeout,
        what=f"compilation job {name} to be {'/'.join(until)}",
    )


def request(name: str, key: str, framework: str, target: dict | None = None, **input_config) -> dict:
    return {
        "CompilationJobName": name,
        "RoleArn": ROLE,
        "InputConfig": {"S3Uri": f"s3://{BUCKET}/{key}", "Framework": framework, **input_config},
        "OutputConfig": {"S3OutputLocation": f"s3://{BUCKET}/compiled/{name}", **(target or {"TargetDevice": "ml_c5"})},
        "StoppingCondition": {"MaxRuntimeInSeconds": 900},
    }


@pytest.fixture(scope="module")
def models(server, tmp_path_factory):
    """The tiny models in S3 (xgb/model.tar.gz, rf/model.tar.gz) and what their own frameworks predict."""
    s3 = make_client("s3", server.url)
    try:
        s3.create_bucket(Bucket=BUCKET)
    except ClientError:
        pass
    out = tmp_path_factory.mktemp("models")
    made = subprocess.run(
        [neo_python(), "-c", MAKE_MODELS, str(out), json.dumps(ROWS)], capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stderr
    s3.put_object(
        Bucket=BUCKET, Key="xgb/model.tar.gz", Body=tar_gz({"xgboost-model": (out / "xgboost-model").read_bytes()})
    )
    s3.put_object(
        Bucket=BUCKET, Key="rf/model.tar.gz", Body=tar_gz({"model.joblib": (out / "model.joblib").read_bytes()})
    )
    s3.put_object(Bucket=BUCKET, Key="bad/model.tar.gz", Body=b"not a tarball")
    return {**json.loads(made.stdout.strip().splitlines()[-1]), "dir": str(out)}


@pytest.fixture(scope="module")
def compiled(server, models):
    """One XGBoost compilation (no DataInputConfig: the shape is derived), done."""
    sm = make_client("sagemaker", server.url)
    sm.create_compilation_job(**request("xgb-c5", "xgb/model.tar.gz", "XGBOOST"), Tags=[{"Key": "team", "Value": "ml"}])
    return wait_job(sm, "xgb-c5")


def test_xgboost_compiles_to_a_shared_library(compiled, client, sm):
    assert compiled["CompilationJobStatus"] == "COMPLETED", compiled.get("FailureReason")
    assert compiled["CompilationStartTime"] <= compiled["CompilationEndTime"]
    uri = compiled["ModelArtifacts"]["S3ModelArtifacts"]
    assert uri == f"s3://{BUCKET}/compiled/xgb-c5/model-ml_c5.tar.gz"
    body = client("s3").get_object(Bucket=BUCKET, Key="compiled/xgb-c5/model-ml_c5.tar.gz")["Body"].read()
    assert compiled["ModelDigests"]["ArtifactDigest"] == "blake2b:" + hashlib.blake2b(body).hexdigest()
    assert compiled["InferenceImage"].endswith("/selfmaker-neo:1.0-inference-cpu-py3")
    assert json.loads(compiled["DerivedInformation"]["DerivedDataInputConfig"]) == {"input": [1, 4]}
    lines = log_lines(client("logs"), GROUP, "xgb-c5")
    assert any("compiled.so" in line for line in lines)
    errors = [float(re.search(r"max relative error (\S+),", line)[1]) for line in lines if "max relative error" in line]
    assert errors and errors[0] < 1e-5, lines[-5:]
    tags = sm.list_tags(ResourceArn=compiled["CompilationJobArn"])["Tags"]
    assert {"Key": "team", "Value": "ml"} in tags


def test_compiled_model_serves_the_same_predictions(compiled, models, client, sm, unique):
    name = unique("neo-model")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": compiled["InferenceImage"],
            "ModelDataUrl": compiled["ModelArtifacts"]["S3ModelArtifacts"],
        },
    )
    assert deploy(sm, name, [variant(name)])["EndpointStatus"] == "InService"
    body = "\n".join(",".join(map(str, row)) for row in ROWS)
    answer = client("sagemaker-runtime").invoke_endpoint(
        EndpointName=name, Body=body, ContentType="text/csv", Accept="text/csv"
    )
    got = [float(v) for v in answer["Body"].read().decode().split(",")]
    assert got == pytest.approx(models["xgboost"], abs=1e-5)
    # Batch transform through the same model server.
    s3 = client("s3")
    s3.put_object(Bucket=BUCKET, Key=f"transform/{name}/in.csv", Body=body.encode())
    sm.create_transform_job(
        TransformJobName=name,
        ModelName=name,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/transform/{name}/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": f"s3://{BUCKET}/transform-out/{name}", "Accept": "text/csv"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    done = wait_for(
        lambda: sm.describe_transform_job(TransformJobName=name),
        status_in("TransformJobStatus", ("Completed", "Failed")),
        timeout=300,
        what=f"transform job {name}",
    )
    assert done["TransformJobStatus"] == "Completed", done.get("FailureReason")
    out = s3.get_object(Bucket=BUCKET, Key=f"transform-out/{name}/in.csv.out")["Body"].read().decode()
    assert [float(v) for v in out.split()] == pytest.approx(models["xgboost"], abs=1e-5)
    sm.delete_endpoint(EndpointName=name)


def test_sklearn_forest_for_a_target_platform(models, compiled, client, sm):
    sm.create_compilation_job(
        **request(
            "rf-linux",
            "rf/model.tar.gz",
            "SKLEARN",
            {"TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"}},
            DataInputConfig='{"input": [1, 4]}',
        )
    )
    done = wait_job(sm, "rf-linux")
    assert done["CompilationJobStatus"] == "COMPLETED", done.get("FailureReason")
    assert done["ModelArtifacts"]["S3ModelArtifacts"].endswith("/model-linux_x86_64.tar.gz")
    assert "DerivedInformation" not in done
    assert any("labels agree" in line for line in log_lines(client("logs"), GROUP, "rf-linux"))
    listed = sm.list_compilation_jobs(NameContains="rf-lin")["CompilationJobSummaries"]
    assert [(j["CompilationJobName"], j["CompilationTargetPlatformOs"]) for j in listed] == [("rf-linux", "LINUX")]


FAILURES = {
    # name: (request changes, the FailureReason's start)
    "f-gpu": (
        dict(key="xgb/model.tar.gz", framework="XGBOOST", target={"TargetDevice": "ml_p3"}),
        "ClientError: InputConfiguration: TargetDevice ml_p3 is an NVIDIA GPU instance",
    ),
    "f-arm": (
        dict(key="xgb/model.tar.gz", framework="XGBOOST", target={"TargetPlatform": {"Os": "LINUX", "Arch": "ARM64"}}),
        "ClientError: InputConfiguration: TargetPlatform LINUX/ARM64 is not supported",
    ),
    "f-torch": (
        dict(key="rf/model.tar.gz", framework="PYTORCH", DataInputConfig='{"input0": [1, 4]}'),
        "ClientError: InputConfiguration: compiling PYTORCH models needs torch",
    ),
    "f-missing": (
        dict(key="nothing/model.tar.gz", framework="XGBOOST"),
        f"ClientError: InputConfiguration: S3 object does not exist. Bucket: {BUCKET}, Key: nothing/model.tar.gz",
    ),
    "f-untar": (
        dict(key="bad/model.tar.gz", framework="XGBOOST"),
        "ClientError: InputConfiguration: Unable to untar input model. Please confirm the model is a tar.gz file",
    ),
    "f-shape": (
        dict(key="rf/model.tar.gz", framework="SKLEARN", DataInputConfig='{"input": [1, 7]}'),
        "ClientError: InputConfiguration: the model takes 4 features; DataInputConfig says 7",
    ),
    "f-json": (
        dict(key="rf/model.tar.gz", framework="SKLEARN", DataInputConfig="[1, 4"),
        "ClientError: InputConfiguration: DataInputConfig is not valid JSON",
    ),
    "f-tf": (
        dict(key="rf/model.tar.gz", framework="TENSORFLOW", DataInputConfig='{"input": [1, 4]}'),
        "ClientError: InputConfiguration: Exactly one .pb or .pbtxt file is allowed for TensorFlow models.",
    ),
    "f-file": (
        dict(key="xgb/model.tar.gz", framework="SKLEARN", DataInputConfig='{"input": [1, 4]}'),
        "ClientError: InputConfiguration: Exactly one .joblib file is allowed for SKLearn models.",
    ),
}


def test_failures_name_their_reason(models, compiled, sm):
    for name, (change, _) in FAILURES.items():
        change = dict(change)
        sm.create_compilation_job(
            **request(name, change.pop("key"), change.pop("framework"), change.pop("target", None), **change)
        )
    for name, (_, reason) in FAILURES.items():
        done = wait_job(sm, name, timeout=300)
        assert done["CompilationJobStatus"] == "FAILED"
        assert done["FailureReason"].startswith(reason), (name, done["FailureReason"])
    failed = sm.list_compilation_jobs(StatusEquals="FAILED", SortBy="Name", SortOrder="Ascending", MaxResults=3)
    assert [j["CompilationJobName"] for j in failed["CompilationJobSummaries"]] == sorted(FAILURES)[:3]
    rest = sm.list_compilation_jobs(
        StatusEquals="FAILED", SortBy="Name", SortOrder="Ascending", NextToken=failed["NextToken"]
    )
    assert [j["CompilationJobName"] for j in rest["CompilationJobSummaries"]] == sorted(FAILURES)[3:]


def test_validation_errors(models, compiled, sm):
    def code_of(**changes):
        with pytest.raises(ClientError) as info:
            sm.create_compilation_job(**{**request("v-job", "xgb/model.tar.gz", "XGBOOST"), **changes})
        return info.value.response["Error"]["Code"], info.value.response["Error"]["Message"]

    both = {
        "S3OutputLocation": f"s3://{BUCKET}/o",
        "TargetDevice": "ml_c5",
        "TargetPlatform": {"Os": "LINUX", "Arch": "X86_64"},
    }
    assert code_of(OutputConfig=both)[0] == "ValidationException"
    assert code_of(OutputConfig={"S3OutputLocation": f"s3://{BUCKET}/o"})[0] == "ValidationException"
    assert (
        code_of(InputConfig={"S3Uri": "https://example.com/m.tar.gz", "Framework": "XGBOOST"})[0]
        == "ValidationException"
    )
    assert code_of(InputConfig={"S3Uri": f"s3://{BUCKET}/m.tar.gz", "Framework": "CAFFE"})[0] == "ValidationException"
    with pytest.raises(ClientError) as info:
        sm.create_compilation_job(**request("xgb-c5", "xgb/model.tar.gz", "XGBOOST"))
    assert info.value.response["Error"]["Code"] == "ResourceInUse"
    with pytest.raises(ClientError) as info:
        sm.describe_compilation_job(CompilationJobName="no-such-job")
    assert info.value.response["Error"]["Code"] == "ResourceNotFound"


def test_stop_then_delete(models, compiled, sm):
    sm.create_compilation_job(**request("to-stop", "xgb/model.tar.gz", "XGBOOST"))
    sm.stop_compilation_job(CompilationJobName="to-stop")
    with pytest.raises(ClientError):  # still stopping, or already stopped: never deleted while running
        if sm.describe_compilation_job(CompilationJobName="to-stop")["CompilationJobStatus"] == "STOPPED":
            raise ClientError({"Error": {"Code": "Skip", "Message": ""}}, "Skip")
        sm.delete_compilation_job(CompilationJobName="to-stop")
    assert wait_job(sm, "to-stop", timeout=120)["CompilationJobStatus"] == "STOPPED"
    sm.delete_compilation_job(CompilationJobName="to-stop")
    with pytest.raises(ClientError):
        sm.describe_compilation_job(CompilationJobName="to-stop")


def test_sdk_v2_compile_then_deploy(sdk_v2, server, models, compiled, client):
    """Model.compile() sends CreateCompilationJob, waits, takes the InferenceImage; deploy() serves the result."""
    s3 = client("s3")
    try:
        s3.create_bucket(Bucket="selfmaker-sdk-tests")
    except ClientError:
        pass
    s3.copy_object(Bucket="selfmaker-sdk-tests", Key="neo/model.tar.gz", CopySource=f"{BUCKET}/xgb/model.tar.gz")
    script = """
    import json
    from sagemaker.deserializers import CSVDeserializer
    from sagemaker.model import Model
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import CSVSerializer
    from sagemaker.session import Session
    _wait = Session.wait_for_endpoint  # v2 polls every 30 s; the tests every half second
    Session.wait_for_endpoint = lambda self, endpoint, poll=30, live_logging=False: _wait(self, endpoint, poll=0.5)
    _compiled = Session.wait_for_compilation_job
    Session.wait_for_compilation_job = lambda self, job, poll=5: _compiled(self, job, poll=0.5)
    role = "arn:aws:iam::123456789012:role/SageMakerRole"
    model = Model(image_uri="unused:1", model_data="s3://selfmaker-sdk-tests/neo/model.tar.gz", role=role,
                  predictor_cls=Predictor)
    model.compile(target_instance_family="ml_c5", input_shape={"input": [1, 4]}, role=role, framework="xgboost",
                  output_path="s3://selfmaker-sdk-tests/neo/compiled", job_name="sdk-neo-xgb")
    predictor = model.deploy(initial_instance_count=1, instance_type="ml.c5.large",
                             serializer=CSVSerializer(), deserializer=CSVDeserializer())
    answer = predictor.predict(ROWS)
    predictor.delete_endpoint()
    print()  # after the SDK's progress dots
    print(json.dumps({"image": model.image_uri, "data": model.model_data, "answer": answer}))
    """
    result = sdk_v2.run(server, script.replace("ROWS", json.dumps(ROWS)))
    assert result["image"].endswith("/selfmaker-neo:1.0-inference-cpu-py3")
    assert result["data"] == "s3://selfmaker-sdk-tests/neo/compiled/model-ml_c5.tar.gz"
    got = [float(v) for row in result["answer"] for v in row]
    assert got == pytest.approx(models["xgboost"], abs=1e-5)


def test_int8_mlp_reports_its_accuracy_cost(server, models, compiled, client, sm, tmp_path):
    """CompilerOptions dtype int8 quantizes an MLP's weights; the job's log says how much accuracy it cost."""
    made = subprocess.run(
        [
            neo_python(),
            "-c",
            "import sys, joblib, numpy as np; from sklearn.neural_network import MLPRegressor; "
            "x = np.random.RandomState(0).rand(300, 4); "
            "joblib.dump(MLPRegressor(hidden_layer_sizes=(64, 64), max_iter=50, random_state=0).fit(x, x[:, 0]), "
            "sys.argv[1] + '/model.joblib')",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    blob = (tmp_path / "model.joblib").read_bytes()
    client("s3").put_object(Bucket=BUCKET, Key="mlp/model.tar.gz", Body=tar_gz({"model.joblib": blob}))
    job = request("mlp-int8", "mlp/model.tar.gz", "SKLEARN", DataInputConfig='{"input": [1, 4]}')
    job["OutputConfig"]["CompilerOptions"] = '{"dtype": "int8"}'
    sm.create_compilation_job(**job)
    done = wait_job(sm, "mlp-int8")
    assert done["CompilationJobStatus"] == "COMPLETED", done.get("FailureReason")
    lines = log_lines(client("logs"), GROUP, "mlp-int8")
    assert any("dynamic int8 quantization" in line for line in lines)
    errors = [float(re.search(r"max relative error (\S+),", line)[1]) for line in lines if "max relative error" in line]
    assert errors and 0 < errors[0] < 1, lines[-5:]


def test_a_job_survives_a_server_killed_mid_way(make_server, models, compiled, client):
    """SIGKILL the server right after the Create: the restarted server resumes the job and completes it."""
    server = make_server("compile-restart").start()
    s3, sm = client("s3", server), client("sagemaker", server)
    s3.create_bucket(Bucket=BUCKET)
    model = (Path(models["dir"]) / "xgboost-model").read_bytes()
    s3.put_object(Bucket=BUCKET, Key="xgb/model.tar.gz", Body=tar_gz({"xgboost-model": model}))
    sm.create_compilation_job(**request("restarted", "xgb/model.tar.gz", "XGBOOST"))
    server.kill()
    server.start()
    sm = client("sagemaker", server)
    done = wait_job(sm, "restarted", timeout=300)
    assert done["CompilationJobStatus"] == "COMPLETED", done.get("FailureReason")
    assert s3.head_object(Bucket=BUCKET, Key="compiled/restarted/model-ml_c5.tar.gz")["ContentLength"] > 0
    server.stop()
