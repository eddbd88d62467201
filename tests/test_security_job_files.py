"""Door: the server reads what a job left in its /opt/ml (outputs, model, failure, message) and host paths it names.

A job's script plants symbolic links to the server's own files (its credentials file, its metadata database, its
whole data directory) where the server will read after the job: none of the host's bytes may reach the caller's
bucket, FailureReason or ExitMessage. The links are skipped with a line in the job's log. A failure file of
100 KB gives a 1,024-character FailureReason. ``file://`` host paths (``sagemaker_submit_directory``: the other
URI members only take s3://) are refused unless the operator allowed their directory, and a link inside an allowed
directory does not lead out of it.
"""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from support.jobs import ROLE, SKLEARN_IMAGE, log_lines, processing_request, s3_input, s3_output, wait

SECRET = "host-secret-7c1f-never-in-a-bucket"
KEY = "AKIAJOBFILES00000001"
SQLITE = b"SQLite format 3"


@pytest.fixture(scope="module")
def host(make_server, tmp_path_factory):
    """An open-mode server with a credentials file (the secret the jobs go after) and one allowed host directory
    holding a data file and a link out of it, to that credentials file."""
    tmp = tmp_path_factory.mktemp("job-files")
    credentials = tmp / "credentials"
    credentials.write_text(f"[{KEY}]\nsecret_access_key = {SECRET}\naccount_id = 444455556666\n")
    allowed = tmp / "allowed"
    allowed.mkdir()
    (allowed / "train.py").write_text("import os\nprint('code', sorted(os.listdir('/opt/ml/code')), flush=True)\n")
    (allowed / "leak").symlink_to(credentials)
    srv = make_server("job-files", ["--credentials-file", str(credentials), "--allow-local-path", str(allowed)])
    srv.start()
    targets = {
        "credentials": str(credentials),
        "database": str(srv.data_dir / "metadata.db"),
        "data_dir": str(srv.data_dir),
    }
    return SimpleNamespace(server=srv, allowed=allowed, targets=targets)


@pytest.fixture
def s3(client, host):
    return client("s3", host.server)


@pytest.fixture
def sm(client, host):
    return client("sagemaker", host.server)


def script_input(s3, bucket: str, name: str, script: str) -> tuple[list[str], dict]:
    """The entrypoint running ``script`` and the input bringing it to /opt/ml/processing/code/."""
    s3.put_object(Bucket=bucket, Key=f"code/{name}.py", Body=textwrap.dedent(script).encode())
    return (
        ["python3", f"/opt/ml/processing/code/{name}.py"],
        s3_input("code", f"s3://{bucket}/code/{name}.py", "/opt/ml/processing/code"),
    )


def objects_under(s3, bucket: str, prefix: str = "") -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def assert_nothing_of_the_host(blob: bytes | str) -> None:
    blob = blob.encode() if isinstance(blob, str) else blob
    assert SECRET.encode() not in blob
    assert SQLITE not in blob


PLANT_OUTPUTS = """\
    import json, os, shutil
    t = json.loads(os.environ["TARGETS"])
    out = "/opt/ml/processing/output"
    open(out + "/real.txt", "w").write("made by the job")
    os.symlink(t["credentials"], out + "/credentials")
    os.symlink(t["database"], out + "/metadata.db")
    os.symlink(t["data_dir"], out + "/data-dir")
    os.makedirs(out + "/sub")
    os.symlink(t["credentials"], out + "/sub/credentials")
    os.mkfifo(out + "/fifo")  # opening it for reading would block the server forever
    shutil.rmtree("/opt/ml/processing/linked")  # an output's LocalPath itself, replaced by a link to the data dir
    os.symlink(t["data_dir"], "/opt/ml/processing/linked")
    os.makedirs("/opt/ml/output", exist_ok=True)
    os.symlink(t["credentials"], "/opt/ml/output/message")
    """

PLANT_FAILURE = """\
    import json, os, sys
    t = json.loads(os.environ["TARGETS"])
    os.makedirs("/opt/ml/output", exist_ok=True)
    os.symlink(t["credentials"], "/opt/ml/output/failure")
    os.symlink(t["database"], "/opt/ml/output/message")
    sys.exit(1)
    """

HUGE_FAILURE = """\
    import os, sys
    os.makedirs("/opt/ml/output", exist_ok=True)
    open("/opt/ml/output/failure", "w").write("x" * 100_000)
    open("/opt/ml/output/message", "w").write("m" * 100_000)
    sys.exit(1)
    """

PLANT_MODEL = """\
    import json, os
    t = json.loads(os.environ["TARGETS"])
    open("/opt/ml/model/real.bin", "w").write("weights")
    os.symlink(t["credentials"], "/opt/ml/model/credentials")
    os.symlink(t["data_dir"], "/opt/ml/model/data-dir")
    os.makedirs("/opt/ml/model/sub")
    os.symlink(t["database"], "/opt/ml/model/sub/metadata.db")
    open("/opt/ml/output/data/real.txt", "w").write("data")
    os.symlink(t["credentials"], "/opt/ml/output/data/credentials")
    """


def test_links_a_job_plants_never_lead_the_server_to_host_files(s3, sm, client, host, unique):
    bucket = unique("job-files")
    s3.create_bucket(Bucket=bucket)
    env = {"TARGETS": json.dumps(host.targets)}
    names = {kind: unique(kind) for kind in ("outputs", "failure", "huge", "model", "code")}
    entrypoint, code = script_input(s3, bucket, "outputs", PLANT_OUTPUTS)
    sm.create_processing_job(
        **processing_request(
            names["outputs"],
            entrypoint,
            Environment=env,
            inputs=[code],
            outputs=[
                s3_output("out", f"s3://{bucket}/out", "/opt/ml/processing/output"),
                s3_output("linked", f"s3://{bucket}/linked", "/opt/ml/processing/linked"),
            ],
        )
    )
    entrypoint, code = script_input(s3, bucket, "failure", PLANT_FAILURE)
    sm.create_processing_job(**processing_request(names["failure"], entrypoint, inputs=[code], Environment=env))
    entrypoint, code = script_input(s3, bucket, "huge", HUGE_FAILURE)
    sm.create_processing_job(**processing_request(names["huge"], entrypoint, inputs=[code]))
    s3.put_object(Bucket=bucket, Key="code/model.py", Body=textwrap.dedent(PLANT_MODEL).encode())
    sm.create_training_job(
        TrainingJobName=names["model"],
        RoleArn=ROLE,
        Environment=env,
        AlgorithmSpecification={
            "TrainingImage": SKLEARN_IMAGE,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["python3", "/opt/ml/input/data/code/model.py"],
        },
        InputDataConfig=[
            {
                "ChannelName": "code",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/code/model.py"}},
            }
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/training"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )
    sm.create_training_job(  # v2 script mode with its code in the operator's allowed directory
        TrainingJobName=names["code"],
        RoleArn=ROLE,
        HyperParameters={"sagemaker_program": '"train.py"', "sagemaker_submit_directory": f'"file://{host.allowed}"'},
        AlgorithmSpecification={"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/code-training"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )
    logs = client("logs", host.server)

    # Outputs: only the job's own file is uploaded; the links, the FIFO and the linked LocalPath are skipped.
    job = wait(sm, "processing", names["outputs"])
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    assert objects_under(s3, bucket, "out") == {"out/real.txt": b"made by the job"}
    assert objects_under(s3, bucket, "linked") == {}
    assert_nothing_of_the_host(job.get("ExitMessage", ""))
    lines = log_lines(logs, "/aws/sagemaker/ProcessingJobs", names["outputs"])
    skipped = "\n".join(line for line in lines if "skipped" in line)
    for path in (
        "/opt/ml/processing/output/credentials",
        "/opt/ml/processing/output/data-dir",
        "/opt/ml/processing/output/sub/credentials",
        "/opt/ml/processing/output/fifo",
        "/opt/ml/processing/linked",
        "/opt/ml/output/message",
    ):
        assert f"skipped {path}: " in skipped
    assert str(host.server.data_dir) not in skipped

    # Failure and message files that are links: the generic reason, nothing of the host.
    job = wait(sm, "processing", names["failure"])
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"] == "AlgorithmError: See job logs for more information (exit code 1 on algo-1)"
    assert "ExitMessage" not in job
    assert "SelfMaker: skipped /opt/ml/output/failure: a symbolic link" in "\n".join(
        log_lines(logs, "/aws/sagemaker/ProcessingJobs", names["failure"])
    )

    # A 100 KB failure file: a 1,024-character FailureReason (and ExitMessage).
    job = wait(sm, "processing", names["huge"])
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"] == ("AlgorithmError: " + "x" * 1024)[:1024]
    assert job["ExitMessage"] == "m" * 1024

    # model.tar.gz and output.tar.gz hold the job's files, not what its links point at.
    job = wait(sm, "training", names["model"])
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    produced = objects_under(s3, bucket, "training")
    prefix = f"training/{names['model']}/output/"
    assert set(produced) == {prefix + "model.tar.gz", prefix + "output.tar.gz"}
    for blob in produced.values():
        assert_nothing_of_the_host(blob)
    with tarfile.open(fileobj=io.BytesIO(produced[prefix + "model.tar.gz"])) as tar:
        assert sorted(m.name for m in tar.getmembers() if m.isfile()) == ["real.bin"]
        assert all(m.isfile() or m.isdir() for m in tar.getmembers())
        assert_nothing_of_the_host(b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()))
    with tarfile.open(fileobj=io.BytesIO(produced[prefix + "output.tar.gz"])) as tar:
        assert [m.name for m in tar.getmembers()] == ["real.txt"]

    # Code from an allowed host directory: its plain files, not the link out of it.
    job = wait(sm, "training", names["code"])
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    lines = log_lines(logs, "/aws/sagemaker/TrainingJobs", names["code"])
    assert "code ['train.py']" in lines
    assert any(line.startswith(f"SelfMaker: skipped file://{host.allowed}/leak: a symbolic link") for line in lines)


def refusal(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    return caught.value.response["Error"]["Message"]


def test_host_paths_outside_the_allowed_directories_are_refused_at_create(s3, sm, host, unique):
    bucket = unique("job-hostpaths")
    s3.create_bucket(Bucket=bucket)
    code = f"s3://{bucket}/code/sourcedir.tar.gz"
    training = {
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": f'"{code}"'},
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }
    message = refusal(
        lambda: sm.create_training_job(
            TrainingJobName=unique("submit"),
            **{
                **training,
                "HyperParameters": {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": '"file:///etc"'},
            },
        )
    )
    assert "sagemaker_submit_directory" in message and "--allow-local-path" in message
    # A path that climbs out of the allowed directory, or a link in it, is judged where it lands.
    for name, path in (("climb", f"{host.allowed}/../credentials"), ("link", f"{host.allowed}/leak")):
        refusal(
            lambda: sm.create_training_job(
                TrainingJobName=unique(name),
                **{
                    **training,
                    "HyperParameters": {
                        "sagemaker_program": '"train.py"',
                        "sagemaker_submit_directory": f'"file://{path}"',
                    },
                },
            )
        )
    for name in ("submit", "climb", "link"):
        assert not [
            j
            for j in sm.list_training_jobs(NameContains=name)["TrainingJobSummaries"]
            if j["TrainingJobName"].startswith(name + "-")
        ]


def test_a_failure_reason_names_no_host_path(s3, sm, host, unique):
    """A manifest key climbing out of the channel fails the job; the reason does not name the host directory."""
    bucket = unique("job-manifest")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket,
        Key="manifest.json",
        Body=json.dumps([{"prefix": f"s3://{bucket}/in/"}, "../../../../../escape"]).encode(),
    )
    name = unique("escape")
    sm.create_processing_job(
        **processing_request(
            name,
            ["true"],
            inputs=[
                s3_input("m", f"s3://{bucket}/manifest.json", "/opt/ml/processing/input/m", S3DataType="ManifestFile")
            ],
        )
    )
    job = wait(sm, "processing", name)
    assert job["ProcessingJobStatus"] == "Failed"
    assert "would land outside its directory" in job["FailureReason"]
    assert str(host.server.data_dir) not in job["FailureReason"]
