"""Inference Recommender benchmark: does a job measure what an independent load generator measures?

One small scikit-learn model (benchmarks/serving.py's LogisticRegression over 20
features, the SageMaker scikit-learn 1.2-1 image's runtime, one CSV row per request)
goes through a Default job on two instance types (the model's SupportedInstanceTypes).
Then, for each type, the same configuration is deployed as an ordinary endpoint and
driven by benchmarks/_common.py's raw keep-alive replayer (requests signed once by
botocore, replayed from worker processes) at 1, 2, 3, ... concurrent connections, with
the job's plateau rule applied to its own numbers. Side by side in one run:

* the job's MaxInvocations (per minute) and ModelLatency (its P95, µs), with the
  number of users and the load generator's own CPU per request (read from the job's
  record in the server's own database: the API has no member for them);
* the replayer's requests per minute and p95 at the job's number of users, and its
  own plateau.

Goal: the two agree within 15 % on MaxInvocations and on p95 latency.

    python benchmarks/recommender.py [--seconds 6] [--runtimes-dir DIR] [--types ml.c5.large,ml.m5.xlarge]
"""

from __future__ import annotations

import argparse
import io
import json
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's selfmaker, whatever is installed
from _common import ServerProcess, log, machine, replay, selfmaker_server, sign_requests, table
from serving import CSV_ROW, IMAGE, ROLE, SAVE_JOBLIB, _archive

from selfmaker.engines import runtimes
from selfmaker.services.recommender import analysis

BUCKET = "bench-recommender"
OPTIONS = {"region_name": "us-east-1", "aws_access_key_id": "bench", "aws_secret_access_key": "x"}


def payloads_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for i in range(10):
            row = ",".join(str(round(float(v) + 0.01 * i, 3)) for v in CSV_ROW.split(","))
            info = tarfile.TarInfo(f"payloads/row{i}.csv")
            body = row.encode()
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def wait(probe, done, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}: {value}")
        time.sleep(1)


def job_measurements(data_dir: Path, job: str) -> list[dict]:
    """The job's steps as the server stored them (users, p50/p99, load generator CPU)."""
    with sqlite3.connect(data_dir / "metadata.db") as db:
        (raw,) = db.execute(
            "SELECT data FROM resources WHERE kind = 'InferenceRecommendationsJob' AND name = ?", (job,)
        ).fetchone()
    return json.loads(raw)["_Steps"]


def deploy(sm, name: str, instance_type: str) -> None:
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "bench-lr",
                "InstanceType": instance_type,
                "InitialInstanceCount": 1,
            }
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    wait(
        lambda: sm.describe_endpoint(EndpointName=name)["EndpointStatus"],
        lambda s: s in ("InService", "Failed"),
        600,
        f"endpoint {name}",
    )


def replayer_sweep(server: ServerProcess, endpoint: str, seconds: float, max_users: int) -> dict[int, dict]:
    """Requests per minute and p95 (µs) at 1..max_users connections, stopping once the plateau rule holds."""
    requests = sign_requests(
        server.url,
        "sagemaker-runtime",
        [("InvokeEndpoint", {"EndpointName": endpoint, "Body": CSV_ROW.encode(), "ContentType": "text/csv"})],
        access_key="bench",
        secret_key="x",
    )
    found: dict[int, dict] = {}
    for users in range(1, max_users + 1):
        result = replay(server, requests, label=f"replayer x{users}", concurrency=users, duration=seconds)
        if not result.ok:
            raise RuntimeError(f"the replayer saw errors: {result.errors}")
        found[users] = {
            "per_minute": result.throughput * 60,
            "p95_us": result.percentile_ms(95) * 1000,
            "client_cpu_us": 1e6 * result.client_cpu_seconds / max(result.count, 1),
        }
        rates = [found[u]["per_minute"] for u in sorted(found)][-analysis.FLAT_LEVELS :]
        if len(rates) == analysis.FLAT_LEVELS and max(rates) / min(rates) <= 1 + analysis.FLAT_TOLERANCE:
            break
    return found


def plateau(found: dict[int, dict]) -> int:
    users = sorted(found)
    for i in range(len(users) - analysis.FLAT_LEVELS + 1):
        rates = [found[u]["per_minute"] for u in users[i : i + analysis.FLAT_LEVELS]]
        if max(rates) / min(rates) <= 1 + analysis.FLAT_TOLERANCE:
            return users[i]
    return max(users, key=lambda u: found[u]["per_minute"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="replayer seconds per concurrency level")
    parser.add_argument("--runtimes-dir", type=Path, help="reuse a runtimes directory (default: a fresh one)")
    parser.add_argument("--types", default="ml.c5.large,ml.m5.xlarge", help="the Default job's instance types")
    args = parser.parse_args()
    types = args.types.split(",")
    with tempfile.TemporaryDirectory(prefix="selfmaker-bench-recommender-") as name:
        tmp = Path(name)
        runtimes_dir = args.runtimes_dir or tmp / "runtimes"
        log("building the scikit-learn runtime (not timed)...")
        python = str(runtimes.ensure(runtimes.resolve(IMAGE), runtimes_dir, lambda line: None) / "python")
        (tmp / "model").mkdir()
        subprocess.run([python, "-c", SAVE_JOBLIB, str(tmp / "model")], check=True)
        data_dir = tmp / "data"
        server = selfmaker_server(data_dir, tmp / "selfmaker.log", "--runtimes-dir", str(runtimes_dir))
        with server:
            s3 = boto3.client("s3", endpoint_url=server.url, **OPTIONS)
            sm = boto3.client("sagemaker", endpoint_url=server.url, **OPTIONS)
            s3.create_bucket(Bucket=BUCKET)
            s3.put_object(Bucket=BUCKET, Key="model/model.tar.gz", Body=_archive(tmp / "model"))
            s3.put_object(Bucket=BUCKET, Key="payloads.tar.gz", Body=payloads_archive())
            sm.create_model(
                ModelName="bench-lr",
                ExecutionRoleArn=ROLE,
                PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/model/model.tar.gz"},
            )
            job = "bench-default"
            started = time.monotonic()
            sm.create_inference_recommendations_job(
                JobName=job,
                JobType="Default",
                RoleArn=ROLE,
                InputConfig={
                    "ModelName": "bench-lr",
                    "ContainerConfig": {
                        "Framework": "SKLEARN",
                        "SupportedInstanceTypes": types,
                        "PayloadConfig": {
                            "SamplePayloadUrl": f"s3://{BUCKET}/payloads.tar.gz",
                            "SupportedContentTypes": ["text/csv"],
                        },
                    },
                },
            )
            log("running the Default job...")
            described = wait(
                lambda: sm.describe_inference_recommendations_job(JobName=job),
                lambda d: d["Status"] in ("COMPLETED", "FAILED", "STOPPED"),
                1800,
                "the job",
            )
            job_seconds = time.monotonic() - started
            if described["Status"] != "COMPLETED":
                raise RuntimeError(f"the job ended {described['Status']}: {described.get('FailureReason')}")
            steps = {s["candidate"]["instance_type"]: s for s in job_measurements(data_dir, job)}
            rows, verdicts = [], []
            for instance_type in types:
                step = steps[instance_type]
                if step["Status"] != "COMPLETED":
                    raise RuntimeError(f"{instance_type}: {step.get('FailureReason')}")
                measured = step["_Measured"]
                endpoint = "bench-" + instance_type.replace(".", "-")
                deploy(sm, endpoint, instance_type)
                log(f"replaying against {endpoint}...")
                found = replayer_sweep(server, endpoint, args.seconds, max(measured["users"] + 1, 4))
                if measured["users"] not in found:
                    found.update(replayer_sweep_at(server, endpoint, args.seconds, measured["users"]))
                same = found[measured["users"]]
                own = plateau(found)
                job_rate, job_p95 = step["Metrics"]["MaxInvocations"], step["Metrics"]["ModelLatency"]
                rate_gap = abs(job_rate - same["per_minute"]) / same["per_minute"]
                p95_gap = abs(job_p95 - same["p95_us"]) / same["p95_us"]
                verdicts.append(rate_gap <= 0.15 and p95_gap <= 0.15)
                rows.append(
                    [
                        instance_type,
                        measured["users"],
                        job_rate,
                        round(same["per_minute"]),
                        f"{rate_gap:.1%}",
                        job_p95,
                        round(same["p95_us"]),
                        f"{p95_gap:.1%}",
                        own,
                        round(found[own]["per_minute"]),
                        measured["client_cpu_us_per_request"],
                        round(same["client_cpu_us"], 1),
                        step["Metrics"].get("CpuUtilization"),
                        step["Metrics"].get("MemoryUtilization"),
                        step["Metrics"].get("CostPerInference"),
                        measured["stopped_by"].split(":")[0],
                    ]
                )
                sm.delete_endpoint(EndpointName=endpoint)
    print(json.dumps({"machine": machine(), "job_seconds": round(job_seconds, 1)}))
    print(
        table(
            [
                "type",
                "users",
                "job inv/min",
                "replayer inv/min",
                "gap",
                "job p95 µs",
                "replayer p95 µs",
                "gap",
                "replayer plateau users",
                "its inv/min",
                "job client CPU µs/req",
                "replayer CPU µs/req",
                "CpuUtilization",
                "MemoryUtilization",
                "CostPerInference",
                "job stopped by",
            ],
            rows,
            title=f"Default job ({job_seconds:.0f} s for {len(types)} instance types) vs the raw keep-alive replayer",
        )
    )
    print("agree within 15 %:", all(verdicts))
    return 0 if all(verdicts) else 1


def replayer_sweep_at(server: ServerProcess, endpoint: str, seconds: float, users: int) -> dict[int, dict]:
    requests = sign_requests(
        server.url,
        "sagemaker-runtime",
        [("InvokeEndpoint", {"EndpointName": endpoint, "Body": CSV_ROW.encode(), "ContentType": "text/csv"})],
        access_key="bench",
        secret_key="x",
    )
    result = replay(server, requests, label=f"replayer x{users}", concurrency=users, duration=seconds)
    return {
        users: {
            "per_minute": result.throughput * 60,
            "p95_us": result.percentile_ms(95) * 1000,
            "client_cpu_us": 1e6 * result.client_cpu_seconds / max(result.count, 1),
        }
    }


if __name__ == "__main__":
    sys.exit(main())
