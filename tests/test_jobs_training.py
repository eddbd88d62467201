"""Training jobs through boto3: script mode for real, failures, limits, stop, update, delete, bad requests."""

from __future__ import annotations

import io
import subprocess
import tarfile
import time

import pytest
from botocore.exceptions import ClientError

from support.jobs import SKLEARN_IMAGE, code_archive, log_lines, training_request, wait, wait_for_log

GROUP = "/aws/sagemaker/TrainingJobs"


@pytest.fixture
def bucket(client, unique):
    name = unique("jobs-train")
    client("s3").create_bucket(Bucket=name)
    return name


def put_code(client, bucket: str, key: str, **files: str) -> str:
    client("s3").put_object(Bucket=bucket, Key=key, Body=code_archive(files))
    return key


TRAIN = """\
    import argparse, json, os, sys
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--rate", type=float)
    args = parser.parse_args()
    train = os.environ["SM_CHANNEL_TRAIN"]
    rows = sum(len(open(os.path.join(train, f)).readlines()) for f in sorted(os.listdir(train)))
    print(f"epochs={args.epochs} rows={rows}")
    for epoch in range(args.epochs):
        print(f"epoch {epoch} loss={1.0 / (epoch + 1):.3f}")
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w") as f:
        json.dump({"rows": rows, "hosts": json.loads(os.environ["SM_HOSTS"])}, f)
    with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "report.txt"), "w") as f:
        f.write("done")
    """


def test_script_mode_trains_and_reports_everything(client, sm, bucket, unique):
    s3, logs = client("s3"), client("logs")
    s3.put_object(Bucket=bucket, Key="data/part-1.csv", Body=b"1,2\n3,4\n")
    s3.put_object(Bucket=bucket, Key="data/part-2.csv", Body=b"5,6\n")
    put_code(client, bucket, "code/sourcedir.tar.gz", **{"train.py": TRAIN})
    name = unique("train")
    request = training_request(
        name,
        bucket,
        "code/sourcedir.tar.gz",
        hyperparameters={"epochs": "3", "rate": "0.1"},
        channels={"train": f"s3://{bucket}/data"},
    )
    request["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "train:loss", "Regex": r"loss=([0-9.]+)"}]
    sm.create_training_job(**request)
    job = wait(sm, "training", name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    # DownloadingTrainingImage only for the run's first job of the image, which builds its runtime (or waits for it)
    building = [t for t in job["SecondaryStatusTransitions"] if t["Status"] == "DownloadingTrainingImage"]
    assert all("runtime sagemaker-scikit-learn-1.2-1" in t["StatusMessage"] for t in building)
    assert [t["Status"] for t in job["SecondaryStatusTransitions"] if t not in building] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert job["TrainingStartTime"] <= job["TrainingEndTime"]
    assert job["TrainingTimeInSeconds"] >= 1 and job["BillableTimeInSeconds"] >= 1
    assert job["FinalMetricDataList"][0]["MetricName"] == "train:loss"
    assert job["FinalMetricDataList"][0]["Value"] == pytest.approx(0.333)
    model_uri = job["ModelArtifacts"]["S3ModelArtifacts"]
    assert model_uri == f"s3://{bucket}/output/{name}/output/model.tar.gz"
    body = s3.get_object(Bucket=bucket, Key=f"output/{name}/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.extractfile("model.json").read() == b'{"rows": 3, "hosts": ["algo-1"]}'
    s3.head_object(Bucket=bucket, Key=f"output/{name}/output/output.tar.gz")
    lines = log_lines(logs, GROUP, name)
    assert "epochs=3 rows=3" in lines and "epoch 2 loss=0.333" in lines
    streams = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=f"{name}/")["logStreams"]
    assert [s["logStreamName"] for s in streams] == [f"{name}/algo-1-{int(job['CreationTime'].timestamp())}"]
    summaries = sm.list_training_jobs(NameContains=name)["TrainingJobSummaries"]
    assert [(s["TrainingJobName"], s["TrainingJobStatus"]) for s in summaries] == [(name, "Completed")]
    component = sm.describe_trial_component(TrialComponentName=f"{name}-aws-training-job")
    assert component["Source"]["SourceArn"] == job["TrainingJobArn"]
    assert component["Status"]["PrimaryStatus"] == "Completed"
    assert component["Parameters"]["epochs"] == {"NumberValue": 3}
    assert component["InputArtifacts"]["train"]["Value"] == f"s3://{bucket}/data"
    assert component["InputArtifacts"]["SageMaker.ImageUri"]["Value"] == SKLEARN_IMAGE
    assert component["OutputArtifacts"]["SageMaker.ModelArtifact"]["Value"] == model_uri
    # Lineage: the data and the image contributed to the job's component, which produced the model.
    into = sm.list_associations(DestinationArn=component["TrialComponentArn"])["AssociationSummaries"]
    assert sorted((a["SourceType"], a["AssociationType"]) for a in into) == [
        ("DataSet", "ContributedTo"),
        ("Image", "ContributedTo"),
    ]
    out = sm.list_associations(SourceArn=component["TrialComponentArn"])["AssociationSummaries"]
    assert [(a["DestinationType"], a["AssociationType"]) for a in out] == [("Model", "Produced")]
    model = sm.describe_artifact(ArtifactArn=out[0]["DestinationArn"])
    assert model["Source"]["SourceUri"] == model_uri and model["ArtifactType"] == "Model"


def test_openmp_threads_wait_passively_unless_the_job_says_otherwise(client, sm, bucket, unique):
    """Jobs share the host's cores: OpenMP's idle threads sleep (OMP_WAIT_POLICY=PASSIVE) instead of spinning on
    a core another job or the job's own main thread needs; a job's Environment still decides."""
    put_code(
        client,
        bucket,
        "code/omp.tar.gz",
        **{"train.py": "import os\nprint('OMP=' + repr(os.environ.get('OMP_WAIT_POLICY')))\n"},
    )
    names = {unique("omp-default"): None, unique("omp-active"): {"OMP_WAIT_POLICY": "ACTIVE"}}
    for name, environment in names.items():
        request = training_request(name, bucket, "code/omp.tar.gz")
        sm.create_training_job(**request, **({"Environment": environment} if environment else {}))
    seen = {}
    for name in names:
        job = wait(sm, "training", name)
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        seen[name] = [line for line in log_lines(client("logs"), GROUP, name) if line.startswith("OMP=")]
    assert list(seen.values()) == [["OMP='PASSIVE'"], ["OMP='ACTIVE'"]]


def test_a_gpu_type_on_a_machine_without_gpus_gets_none(client, sm, bucket, unique):
    """SM_NUM_GPUS (and the toolkit's num_gpus) is what the instance has: min(the type's GPUs, this machine's)."""
    from selfmaker.engines.instance_types import host_gpus

    put_code(
        client,
        bucket,
        "code/gpus.tar.gz",
        **{
            "train.py": "import json, os\nprint('GPUS=' + os.environ['SM_NUM_GPUS'], json.loads(os.environ['SM_TRAINING_ENV'])['num_gpus'])\n"
        },
    )
    name = unique("gpus")
    request = training_request(name, bucket, "code/gpus.tar.gz")
    request["ResourceConfig"]["InstanceType"] = "ml.g4dn.xlarge"
    sm.create_training_job(**request)
    job = wait(sm, "training", name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    expected = min(1, host_gpus())
    assert [line for line in log_lines(client("logs"), GROUP, name) if line.startswith("GPUS=")] == [
        f"GPUS={expected} {expected}"
    ]


def test_experiment_config_joins_the_trial(client, sm, bucket, unique):
    experiment, trial, name = unique("exp"), unique("trial"), unique("train")
    sm.create_experiment(ExperimentName=experiment)
    sm.create_trial(TrialName=trial, ExperimentName=experiment)
    put_code(client, bucket, "code/ok.tar.gz", **{"train.py": "print('ok')\n"})
    sm.create_training_job(
        **training_request(
            name, bucket, "code/ok.tar.gz", ExperimentConfig={"ExperimentName": experiment, "TrialName": trial}
        )
    )
    assert wait(sm, "training", name)["TrainingJobStatus"] == "Completed"
    found = sm.list_trial_components(TrialName=trial)["TrialComponentSummaries"]
    assert [c["TrialComponentName"] for c in found] == [f"{name}-aws-training-job"]


def test_requirements_go_to_the_job_not_the_runtime(client, sm, bucket, unique):
    put_code(
        client,
        bucket,
        "code/req.tar.gz",
        **{
            "train.py": "import tabulate, sys\nprint('tabulate from', tabulate.__file__)\n",
            "requirements.txt": "tabulate\n",
        },
    )
    name = unique("train")
    sm.create_training_job(**training_request(name, bucket, "code/req.tar.gz"))
    job = wait(sm, "training", name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    lines = log_lines(client("logs"), GROUP, name)
    assert any(line.startswith("tabulate from /opt/selfmaker/site/") for line in lines), lines


def test_a_script_that_raises_fails_the_job_with_its_message(client, sm, bucket, unique):
    put_code(client, bucket, "code/raise.tar.gz", **{"train.py": "raise ValueError('the data is bad')\n"})
    name = unique("train")
    sm.create_training_job(**training_request(name, bucket, "code/raise.tar.gz"))
    job = wait(sm, "training", name)
    assert job["TrainingJobStatus"] == "Failed"
    assert job["SecondaryStatus"] == "Failed"
    assert job["FailureReason"].startswith("AlgorithmError: ExecuteUserScriptError:")
    assert "ValueError: the data is bad" in job["FailureReason"]
    assert "ModelArtifacts" not in job or not job["ModelArtifacts"]["S3ModelArtifacts"]
    assert any("ValueError: the data is bad" in line for line in log_lines(client("logs"), GROUP, name))


def test_code_that_cannot_be_unpacked_fails_the_job_saying_why(client, sm, bucket, unique):
    escaping = io.BytesIO()
    with tarfile.open(fileobj=escaping, mode="w:gz") as tar:
        member = tarfile.TarInfo("../train.py")
        member.size = 4
        tar.addfile(member, io.BytesIO(b"pass"))
    reasons = {
        "code/garbage.tar.gz": (b"not a tar archive", "is not a tar archive"),
        "code/escaping.tar.gz": (escaping.getvalue(), "holds a member SelfMaker will not unpack: '../train.py'"),
    }
    names = {}
    for key, (body, _) in reasons.items():
        client("s3").put_object(Bucket=bucket, Key=key, Body=body)
        names[key] = unique("code")
        sm.create_training_job(**training_request(names[key], bucket, key))
    for key, (_, why) in reasons.items():
        job = wait(sm, "training", names[key])
        assert job["TrainingJobStatus"] == "Failed"
        assert job["FailureReason"].startswith(f"ClientError: the code s3://{bucket}/{key} {why}"), job["FailureReason"]


def test_failure_file_becomes_the_failure_reason(client, sm, bucket, unique):
    name = unique("train")
    request = training_request(name, bucket, "unused")
    request["HyperParameters"] = {}
    request["AlgorithmSpecification"]["ContainerEntrypoint"] = ["/bin/sh", "-c"]
    request["AlgorithmSpecification"]["ContainerArguments"] = [
        "printf 'custom reason %s' \"$TRAINING_JOB_NAME\" > /opt/ml/output/failure; exit 3"
    ]
    sm.create_training_job(**request)
    job = wait(sm, "training", name)
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"] == f"AlgorithmError: custom reason {name}"


def test_max_runtime_stops_a_sleeping_job(client, sm, bucket, unique):
    put_code(client, bucket, "code/sleep.tar.gz", **{"train.py": "import time\nprint('sleeping')\ntime.sleep(60)\n"})
    name = unique("train")
    sm.create_training_job(**training_request(name, bucket, "code/sleep.tar.gz", max_runtime=2))
    started = time.time()
    job = wait(sm, "training", name)
    assert job["TrainingJobStatus"] == "Stopped"
    assert job["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert time.time() - started < 30
    assert "sleeping" in log_lines(client("logs"), GROUP, name)


def _running(marker: str) -> bool:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0


def test_stop_ends_the_whole_process_tree(client, sm, bucket, unique):
    marker = f"sleep 987.{int(time.time() * 1000) % 100000}"
    put_code(
        client,
        bucket,
        "code/tree.tar.gz",
        **{
            "train.py": f"""\
        import subprocess, time
        subprocess.Popen(["/bin/sh", "-c", "{marker}"], start_new_session=True)
        print("child started", flush=True)
        time.sleep(120)
        """
        },
    )
    name = unique("train")
    sm.create_training_job(**training_request(name, bucket, "code/tree.tar.gz"))
    wait_for_log(client("logs"), GROUP, name, "child started")
    assert _running(marker)
    sm.stop_training_job(TrainingJobName=name)
    assert sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] in ("Stopping", "Stopped")
    job = wait(sm, "training", name)
    assert job["TrainingJobStatus"] == "Stopped" and job["SecondaryStatus"] == "Stopped"
    assert "Stopping" in [t["Status"] for t in job["SecondaryStatusTransitions"]]
    time.sleep(0.3)
    assert not _running(marker)
    with pytest.raises(ClientError) as err:
        sm.stop_training_job(TrainingJobName=name)
    assert err.value.response["Error"]["Code"] == "ValidationException"


def test_update_while_running_and_delete_only_when_ended(client, sm, bucket, unique):
    put_code(client, bucket, "code/wait.tar.gz", **{"train.py": "import time\ntime.sleep(3)\n"})
    name = unique("train")
    sm.create_training_job(**training_request(name, bucket, "code/wait.tar.gz"))
    with pytest.raises(ClientError) as err:
        sm.delete_training_job(TrainingJobName=name)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    sm.update_training_job(TrainingJobName=name, ResourceConfig={"KeepAlivePeriodInSeconds": 60})
    job = sm.describe_training_job(TrainingJobName=name)
    assert "Updating" in [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert job["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 60
    assert wait(sm, "training", name)["TrainingJobStatus"] == "Completed"
    sm.delete_training_job(TrainingJobName=name)
    with pytest.raises(ClientError) as err:
        sm.describe_training_job(TrainingJobName=name)
    assert err.value.response["Error"]["Code"] == "ValidationException"


def test_an_image_without_a_runtime_fails_the_job_clearly(sm, bucket, unique):
    name = unique("train")
    request = training_request(name, bucket, "unused")
    request["AlgorithmSpecification"]["TrainingImage"] = "registry.example.com/team/custom:1"
    sm.create_training_job(**request)
    job = wait(sm, "training", name)
    assert job["TrainingJobStatus"] == "Failed"
    assert "no runtime for the image 'registry.example.com/team/custom:1'" in job["FailureReason"]
    assert "--runtimes-config" in job["FailureReason"]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["AlgorithmSpecification"].update(TrainingInputMode="Pipe"), "Pipe input mode is not supported"),
        (lambda r: r["InputDataConfig"][0].update(InputMode="FastFile"), "FastFile input mode is not supported"),
        (lambda r: r["InputDataConfig"][0].update(CompressionType="Gzip"), "Gzip compression is only allowed"),
        (lambda r: r["OutputDataConfig"].update(S3OutputPath="https://example.com/x"), "is not supported"),
        (
            lambda r: r["InputDataConfig"][0]["DataSource"]["S3DataSource"].update(S3DataType="AugmentedManifestFile"),
            "AugmentedManifestFile is not supported",
        ),
        (lambda r: r.update(ExperimentConfig={"ExperimentName": "no-such-experiment-anywhere"}), "does not exist"),
        (lambda r: r["InputDataConfig"].append(r["InputDataConfig"][0]), "Channel names must be unique"),
    ],
)
def test_bad_requests_are_400s_and_create_nothing(sm, bucket, unique, change, message):
    name = unique("bad")
    request = training_request(name, bucket, "unused", channels={"train": f"s3://{bucket}/data"})
    change(request)
    with pytest.raises(ClientError) as err:
        sm.create_training_job(**request)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert message in err.value.response["Error"]["Message"] or message == "does not exist"
    assert sm.list_training_jobs(NameContains=name)["TrainingJobSummaries"] == []


def test_duplicate_and_missing_names(client, sm, bucket, unique):
    put_code(client, bucket, "code/dup.tar.gz", **{"train.py": "print(1)\n"})
    name = unique("train")
    sm.create_training_job(**training_request(name, bucket, "code/dup.tar.gz"))
    with pytest.raises(ClientError) as err:
        sm.create_training_job(**training_request(name, bucket, "code/dup.tar.gz"))
    assert err.value.response["Error"]["Code"] == "ResourceInUse"
    assert "must be unique" in err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        sm.describe_training_job(TrainingJobName=unique("missing"))
    assert err.value.response["Error"]["Message"] == "Requested resource not found."
    wait(sm, "training", name)


def test_selfmaker_logs_follows_a_job_to_its_end(client, sm, bucket, unique, server):
    import sys

    put_code(
        client,
        bucket,
        "code/cli.tar.gz",
        **{"train.py": "import time\nprint('first line', flush=True)\ntime.sleep(1.5)\nprint('last line')\n"},
    )
    name = unique("train")
    sm.create_training_job(**training_request(name, bucket, "code/cli.tar.gz"))
    result = subprocess.run(
        [sys.executable, "-m", "selfmaker.cli", "logs", "-f", name, "--endpoint-url", server.url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines.index("first line") < lines.index("last line")
    assert result.stderr.strip().endswith(f"{name}: Completed")
    missing = subprocess.run(
        [sys.executable, "-m", "selfmaker.cli", "logs", unique("none"), "--endpoint-url", server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "no job or endpoint named" in missing.stderr
