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

Then the built-in XGBoost algorithm (the sagemaker-xgboost 1.7-1 image) trains
on generated data (``--xgboost-rows`` rows of 20 features, a fifth of that for
validation, 50 rounds of depth 6) through SelfMaker, interleaved with
``xgboost.train`` called directly, outside any sandbox, in the same runtime on
the same CSV files loaded the same way (pandas, float32), with the same
parameters, evaluation sets and a per-round print; the job's instance type
(ml.m5.4xlarge, capped by the host) gives the sandbox every processor the direct
call has. What is compared is the
training part, ``xgboost.train``: in the job, from the algorithm's own
``Single node training.`` log line (millisecond timestamp) to the CloudWatch
timestamp of its last round's line (shipped within 0.2 s of being written);
directly, a perf_counter around the call. Goal: SelfMaker within 10 %.

Before both, the cold first job, once per runtime installer (``--cold pip,uv``):
a fresh server (fresh data directory, runtimes directory and package caches:
a machine's first job) runs one built-in XGBoost job on 1,000 rows; reported
are CreateTrainingJob -> Completed and the runtime build's own seconds (its
log line). With uv, a second job after the runtime is removed (``selfmaker
runtimes prune``) shows what the package cache saves. Goal: uv at least 3x
faster than pip.

    python benchmarks/jobs.py [--rounds 10] [--xgboost-rounds 3] [--xgboost-rows 50000] [--cold pip,uv]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import log, machine, selfmaker_server, table

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
# 16 vCPUs, capped by the host: the sandbox may use every processor, as the direct call does.
XGBOOST_INSTANCE_TYPE = "ml.m5.4xlarge"
XGBOOST_HYPERPARAMETERS = {"objective": "reg:squarederror", "num_round": "50", "max_depth": "6", "eta": "0.3"}
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


def _completed_job_log(sm, logs, name: str, poll: float) -> tuple[dict, list[dict]]:
    """Wait for training job ``name`` to end; its description and log events (raises unless it Completed)."""
    while (job := sm.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] not in (
        "Completed",
        "Failed",
        "Stopped",
    ):
        time.sleep(poll)
    if job["TrainingJobStatus"] != "Completed":
        raise RuntimeError(f"{name}: {job['TrainingJobStatus']}: {job.get('FailureReason')}")
    stream = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/")[
        "logStreams"
    ][0]["logStreamName"]
    events = logs.get_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream, startFromHead=True, limit=10000
    )["events"]
    return job, events


def run_noop_job(s3, sm, logs, bucket: str, name: str) -> tuple[float, float]:
    """(start latency, end latency) of one no-op training job, in seconds."""
    sent = time.time()
    sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        HyperParameters={
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": f'"s3://{bucket}/code/sourcedir.tar.gz"',
        },
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 600},
    )
    job, events = _completed_job_log(sm, logs, name, poll=0.05)
    stamps = {
        e["message"].split()[0]: float(e["message"].split()[1])
        for e in events
        if e["message"].startswith(("FIRST ", "LAST "))
    }
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


# xgboost.train called directly: the data loaded as the algorithm loads it, the same parameters and evaluation sets,
# and a print per round as the algorithm's callback does; prints the seconds xgboost.train took.
DIRECT = """
import sys, time, pandas as pd, xgboost as xgb
def matrix(path):
    values = pd.read_csv(path, header=None, dtype="float32", engine="c").to_numpy()
    return xgb.DMatrix(values[:, 1:], label=values[:, 0], nthread=-1)
train, validation = matrix(sys.argv[1]), matrix(sys.argv[2])
class Line(xgb.callback.TrainingCallback):
    def after_iteration(self, model, epoch, evals_log):
        print(f"[{epoch}]" + "".join(f"#011{d}-{m}:{h[-1]:.5f}" for d, ms in evals_log.items() for m, h in ms.items()),
              flush=True)
        return False
started = time.perf_counter()
xgb.train({"objective": "reg:squarederror", "max_depth": 6, "eta": 0.3}, train, num_boost_round=50,
          evals=[(train, "train"), (validation, "validation")], verbose_eval=False, callbacks=[Line()])
print("SECONDS", time.perf_counter() - started)
"""


def _regression_csv(rows: int, seed: int) -> str:
    generator = random.Random(seed)
    lines = []
    for _ in range(rows):
        features = [generator.random() for _ in range(20)]
        label = 3 * features[0] - 2 * features[1] * features[2] + features[3] ** 2 + generator.gauss(0, 0.1)
        lines.append(",".join(f"{v:.6f}" for v in [label, *features]))
    return "\n".join(lines) + "\n"


def xgboost_job_training_seconds(s3, sm, logs, bucket: str, name: str) -> float:
    """The training part of one built-in XGBoost job, from its log (see the module's docstring)."""
    sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        HyperParameters=XGBOOST_HYPERPARAMETERS,
        AlgorithmSpecification={"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
        InputDataConfig=[
            {
                "ChannelName": channel,
                "ContentType": "text/csv",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/xgb/{channel}/"}},
            }
            for channel in ("train", "validation")
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/output"},
        ResourceConfig={"InstanceType": XGBOOST_INSTANCE_TYPE, "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
    _, events = _completed_job_log(sm, logs, name, poll=0.1)
    start_line = next(e["message"] for e in events if e["message"].endswith("Single node training."))
    started = datetime.strptime(start_line[1 : start_line.index(":INFO]")], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    last_round = [e for e in events if e["message"].startswith("[49]#011")][-1]
    return last_round["timestamp"] / 1000 - started


def xgboost_comparison(url: str, runtimes_dir: Path, rounds: int, rows: int) -> list[tuple[float, float]]:
    """(SelfMaker job, direct xgboost.train) training seconds, interleaved ``rounds`` times."""
    from selfmaker.engines import runtimes

    s3, sm, logs = _clients(url)
    bucket = "bench-xgboost"
    s3.create_bucket(Bucket=bucket)
    data = Path(tempfile.mkdtemp(prefix="selfmaker-bench-xgb-"))
    for channel, count, seed in (("train", rows, 1), ("validation", rows // 5, 2)):
        (data / f"{channel}.csv").write_text(_regression_csv(count, seed))
        s3.put_object(Bucket=bucket, Key=f"xgb/{channel}/{channel}.csv", Body=(data / f"{channel}.csv").read_bytes())
    log("building the XGBoost runtime (first job; not timed)...")
    xgboost_job_training_seconds(s3, sm, logs, bucket, f"xgb-warmup-{int(time.time())}")
    python = runtimes.ensure(runtimes.resolve(XGBOOST_IMAGE), runtimes_dir, log) / "python"
    results = []
    for i in range(rounds):
        job = xgboost_job_training_seconds(s3, sm, logs, bucket, f"xgb-{int(time.time())}-{i}")
        done = subprocess.run(
            [str(python), "-c", DIRECT, str(data / "train.csv"), str(data / "validation.csv")],
            capture_output=True,
            text=True,
            check=True,
        )
        direct = float(done.stdout.split("SECONDS")[-1])
        results.append((job, direct))
        log(f"xgboost round {i + 1}: SelfMaker job {job:.2f} s, direct {direct:.2f} s")
    return results


def _first_job_seconds(url: str, name: str) -> tuple[float, float]:
    """(CreateTrainingJob -> Completed, the runtime build's seconds from its log line) of one XGBoost job."""
    s3, sm, logs = _clients(url)
    bucket = "bench-cold"
    if bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=bucket)
    for channel, count, seed in (("train", 1000, 1), ("validation", 200, 2)):
        s3.put_object(Bucket=bucket, Key=f"xgb/{channel}/{channel}.csv", Body=_regression_csv(count, seed).encode())
    sent = time.time()
    xgboost_job_training_seconds(s3, sm, logs, bucket, name)
    total = time.time() - sent
    _, events = _completed_job_log(sm, logs, name, poll=0.1)
    built = [e["message"] for e in events if " is ready (built in " in e["message"]]
    return total, float(built[0].split("built in ")[1].split()[0]) if built else 0.0


def cold_first_jobs(installers: list[str]) -> list[list]:
    """Rows (case, first job s, build s) of a fresh server's first XGBoost job per installer (module docstring)."""
    from selfmaker.engines import runtime_builds

    rows = []
    for installer in installers:
        with tempfile.TemporaryDirectory(prefix=f"selfmaker-bench-cold-{installer}-") as tmp:
            runtimes_dir = Path(tmp) / "runtimes"
            server = selfmaker_server(
                Path(tmp) / "data",
                Path(tmp) / "server.log",
                "--runtimes-dir",
                str(runtimes_dir),
                "--runtime-installer",
                installer,
            )
            server.env = {"PIP_CACHE_DIR": f"{tmp}/pip-cache"}  # pip's cache as cold as uv's
            with server:
                log(f"cold first job with {installer}...")
                total, build = _first_job_seconds(server.url, f"cold-{installer}-{int(time.time())}")
                rows.append([f"{installer}, cold (fresh runtimes dir and package cache)", total, build])
                if installer == "uv":
                    for runtime in runtime_builds.on_disk(runtimes_dir):
                        runtime_builds.remove(runtimes_dir, runtime.key)
                    log("first job again with uv, runtime removed, package cache kept...")
                    total, build = _first_job_seconds(server.url, f"warm-{installer}-{int(time.time())}")
                    rows.append(["uv, runtime removed, package cache kept", total, build])
            log(f"{installer}: {rows}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--xgboost-rounds", type=int, default=3, help="0 skips the XGBoost comparison")
    parser.add_argument("--xgboost-rows", type=int, default=50_000)
    parser.add_argument("--runtimes-dir", help="reuse a runtimes directory (default: a fresh temporary one)")
    parser.add_argument("--cold", default="pip,uv", help="installers whose cold first job is timed ('' skips it)")
    args = parser.parse_args()
    cold = cold_first_jobs([i for i in args.cold.split(",") if i]) if args.cold else []
    with tempfile.TemporaryDirectory(prefix="selfmaker-bench-jobs-") as tmp:
        runtimes_dir = Path(args.runtimes_dir or f"{tmp}/runtimes").resolve()
        server = selfmaker_server(Path(tmp) / "data", Path(tmp) / "server.log", "--runtimes-dir", str(runtimes_dir))
        with server:
            results = noop_latency(server.url, args.rounds) if args.rounds else []
            xgboost = (
                xgboost_comparison(server.url, runtimes_dir, args.xgboost_rounds, args.xgboost_rows)
                if args.xgboost_rounds
                else []
            )
    print(f"machine: {machine()}, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if cold:
        pip = next((r[1] for r in cold if r[0].startswith("pip")), None)
        uv = next((r[1] for r in cold if r[0].startswith("uv, cold")), None)
        speedup = f"; uv's cold first job {pip / uv:.1f}x faster than pip's" if pip and uv else ""
        print(
            table(
                ["first built-in XGBoost job of a server (s)", "CreateTrainingJob -> Completed", "runtime build"],
                cold,
                title=f"sagemaker-xgboost 1.7-1, 1,000 rows{speedup}",
            )
        )
    if results:
        starts = sorted(r[0] * 1000 for r in results)
        ends = sorted(r[1] * 1000 for r in results)
        print(
            table(
                ["no-op training job (ms)", "median", "min", "max"],
                [
                    ["CreateTrainingJob -> script's first line", statistics.median(starts), starts[0], starts[-1]],
                    ["script's exit -> Completed recorded", statistics.median(ends), ends[0], ends[-1]],
                ],
                title=f"{args.rounds} jobs, one after another",
            )
        )
    if xgboost:
        jobs, direct = sorted(r[0] for r in xgboost), sorted(r[1] for r in xgboost)
        print(
            table(
                ["xgboost.train, 50 rounds (s)", "median", "min", "max"],
                [
                    ["built-in XGBoost job in SelfMaker", statistics.median(jobs), jobs[0], jobs[-1]],
                    ["xgboost.train called directly", statistics.median(direct), direct[0], direct[-1]],
                ],
                title=f"{args.xgboost_rows} rows x 20 features, {args.xgboost_rounds} interleaved rounds; SelfMaker / "
                f"direct, median of the rounds' ratios (robust to the machine's load drifting between rounds): "
                f"{statistics.median(job / alone for job, alone in xgboost):.3f}",
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
