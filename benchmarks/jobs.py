"""Jobs benchmark: how long SelfMaker takes to start a training job's script and to report its end.

For a no-op script-mode training job (the scikit-learn image's runtime, built
before timing starts), over ``--rounds`` jobs run one after another:

* start latency: from just before the client sends CreateTrainingJob to the
  wall-clock time the script records on its first line;
* end latency: from the time the script records just before it exits to the
  StartTime of the job's ``Completed`` SecondaryStatusTransition (when the
  server recorded the end, after shipping logs and uploading model.tar.gz).

Both are differences of wall clocks on the same machine, so no polling
interval enters them. Goal: at most 0.5 s each.

    python benchmarks/jobs.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ServerProcess, free_port, log, machine, table  # noqa: E402

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
NOOP = "import time\nprint('FIRST', repr(time.time()), flush=True)\nprint('LAST', repr(time.time()), flush=True)\n"


def _archive(source: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = len(source)
        tar.addfile(info, io.BytesIO(source.encode()))
    return buffer.getvalue()


def _clients(url: str):
    options = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="x")
    return boto3.client("s3", **options), boto3.client("sagemaker", **options), boto3.client("logs", **options)


def run_noop_job(s3, sm, logs, bucket: str, name: str) -> tuple[float, float]:
    """(start latency, end latency) of one no-op training job, in seconds."""
    sent = time.time()
    sm.create_training_job(
        TrainingJobName=name, RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        HyperParameters={"sagemaker_program": '"train.py"',
                         "sagemaker_submit_directory": f'"s3://{bucket}/code/sourcedir.tar.gz"'},
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 600})
    while True:
        job = sm.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"):
            break
        time.sleep(0.05)
    if job["TrainingJobStatus"] != "Completed":
        raise RuntimeError(f"{name}: {job['TrainingJobStatus']}: {job.get('FailureReason')}")
    stream = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                       logStreamNamePrefix=f"{name}/")["logStreams"][0]["logStreamName"]
    events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream,
                                 startFromHead=True)["events"]
    stamps = {e["message"].split()[0]: float(e["message"].split()[1]) for e in events
              if e["message"].startswith(("FIRST ", "LAST "))}
    completed = next(t for t in job["SecondaryStatusTransitions"] if t["Status"] == "Completed")
    return stamps["FIRST"] - sent, completed["StartTime"].timestamp() - stamps["LAST"]


def noop_latency(url: str, rounds: int) -> list[tuple[float, float]]:
    s3, sm, logs = _clients(url)
    bucket = "bench-jobs"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="code/sourcedir.tar.gz", Body=_archive(NOOP))
    log("building the scikit-learn runtime (first job; not timed)...")
    run_noop_job(s3, sm, logs, bucket, f"warmup-{int(time.time())}")
    results = []
    for i in range(rounds):
        results.append(run_noop_job(s3, sm, logs, bucket, f"noop-{int(time.time())}-{i}"))
        log(f"round {i + 1}: start {results[-1][0] * 1000:.0f} ms, end {results[-1][1] * 1000:.0f} ms")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runtimes-dir", help="reuse a runtimes directory (default: a fresh temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="selfmaker-bench-jobs-") as tmp:
        port = free_port()
        argv = [sys.executable, "-m", "selfmaker.cli", "serve", "--port", str(port), "--data-dir", f"{tmp}/data",
                "--runtimes-dir", args.runtimes_dir or f"{tmp}/runtimes"]
        with ServerProcess("selfmaker", argv, port, "/_selfmaker/health", Path(tmp) / "server.log") as server:
            results = noop_latency(server.url, args.rounds)
    starts = sorted(r[0] * 1000 for r in results)
    ends = sorted(r[1] * 1000 for r in results)
    print(f"machine: {machine()}")
    print(table(["no-op training job (ms)", "median", "min", "max"], [
        ["CreateTrainingJob -> script's first line", statistics.median(starts), starts[0], starts[-1]],
        ["script's exit -> Completed recorded", statistics.median(ends), ends[0], ends[-1]],
    ], title=f"{args.rounds} jobs, one after another"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
