"""Stopping a job is graceful: SIGTERM first, so a script can save its work, which is then uploaded."""

from __future__ import annotations

import io
import tarfile

import pytest

from support.jobs import code_archive, log_lines, training_request, wait, wait_for_log

GROUP = "/aws/sagemaker/TrainingJobs"

# Traps SIGTERM, saves a "checkpoint" in the model directory and exits cleanly.
CHECKPOINTING = """\
    import os, signal, sys, time
    def save(signum, frame):
        with open(os.path.join(os.environ["SM_MODEL_DIR"], "checkpoint.txt"), "w") as f:
            f.write(f"saved at step {step}")
        print("checkpoint saved", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, save)
    step = 0
    print("training", flush=True)
    while True:
        step += 1
        time.sleep(0.05)
    """


@pytest.fixture
def bucket(client, unique):
    name = unique("jobs-stop")
    client("s3").create_bucket(Bucket=name)
    client("s3").put_object(Bucket=name, Key="code/ckpt.tar.gz", Body=code_archive({"train.py": CHECKPOINTING}))
    return name


def model_files(client, uri: str) -> dict[str, str]:
    bucket, key = uri[len("s3://") :].split("/", 1)
    body = client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()}


def wait_for_line(client, job: str, text: str) -> None:
    wait_for_log(client("logs"), GROUP, job, text)


def test_stop_training_job_lets_the_script_save_and_uploads_the_model(client, sm, bucket, unique):
    name = unique("ckpt")
    sm.create_training_job(**training_request(name, bucket, "code/ckpt.tar.gz"))
    wait_for_line(client, name, "training")
    sm.stop_training_job(TrainingJobName=name)
    job = wait(sm, "training", name, timeout=60)
    assert job["TrainingJobStatus"] == "Stopped"
    assert "checkpoint saved" in log_lines(client("logs"), GROUP, name)
    files = model_files(client, job["ModelArtifacts"]["S3ModelArtifacts"])
    assert files["checkpoint.txt"].startswith("saved at step ")


def test_max_runtime_is_graceful_too(client, sm, bucket, unique):
    name = unique("ckpt-limit")
    sm.create_training_job(**training_request(name, bucket, "code/ckpt.tar.gz", max_runtime=2))
    job = wait(sm, "training", name)
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    assert "checkpoint.txt" in model_files(client, job["ModelArtifacts"]["S3ModelArtifacts"])


def test_a_script_ignoring_sigterm_is_killed_after_the_grace_period(client, sm, bucket, unique, make_server):
    srv = make_server("grace", ["--stop-grace-seconds", "3"]).start()
    s3, sm_short = client("s3", srv), client("sagemaker", srv)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket,
        Key="code/stubborn.tar.gz",
        Body=code_archive(
            {
                "train.py": """\
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(300)
        """
            }
        ),
    )
    name = unique("stubborn")
    sm_short.create_training_job(**training_request(name, bucket, "code/stubborn.tar.gz"))
    wait_for_log(client("logs", srv), GROUP, name, "ignoring SIGTERM")
    sm_short.stop_training_job(TrainingJobName=name)
    job = wait(sm_short, "training", name, timeout=30)
    assert job["TrainingJobStatus"] == "Stopped"
    stopping = next(t for t in job["SecondaryStatusTransitions"] if t["Status"] == "Stopping")
    # SIGKILL never comes before the grace period (the script ignored SIGTERM, so only SIGKILL ended it).
    assert (job["TrainingEndTime"] - stopping["StartTime"]).total_seconds() >= 3
