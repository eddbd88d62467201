"""Scale-out benchmark: no-op jobs and a 20-step fan-out pipeline, on the local executor and on Ray.

Three set-ups, each a fresh server (SQLite, its own object store) whose test image runs on this Python (no
runtime to build, as tests/support/pipelines.py does):

* ``local``: the local executor (bubblewrap on this machine);
* ``ray-1`` / ``ray-2``: ``--executor ray`` on a Ray cluster started here (ray.cluster_utils: a head with no
  CPUs and one or two worker nodes of ``--node-cpus`` logical CPUs each; an ml.m5.large instance asks 2).

Measured per set-up:

* per-job overhead: ``--sequential`` no-op processing jobs one after another, each from just before
  CreateProcessingJob to the client seeing Completed (polling every 50 ms): what a job costs beyond its script;
* throughput: ``--jobs`` no-op processing jobs created at once, jobs per second until the last Completed;
* the pipeline: a ``--steps``-step fan-out (independent Processing steps), StartPipelineExecution to Succeeded.

Every Ray node here is a process group on the same machine: the simulation shows the executor's overhead and
that the work is spread, not that throughput grows with machines (docs/benchmarks.md says more).

    python benchmarks/scale_out.py [--jobs 100] [--sequential 5] [--steps 20] [--node-cpus 4]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import log, machine, selfmaker_server, table

IMAGE = "selfmaker.test/python:3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
NOOP = ["python3", "-c", "print('no-op')"]


def _clients(url: str):
    options = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="x")
    return boto3.client("sagemaker", **options)


def _request(name: str) -> dict:
    return {
        "ProcessingJobName": name,
        "RoleArn": ROLE,
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}
        },
        "AppSpecification": {"ImageUri": IMAGE, "ContainerEntrypoint": NOOP},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


def _wait(sm, name: str, poll: float) -> None:
    while True:
        job = sm.describe_processing_job(ProcessingJobName=name)
        if job["ProcessingJobStatus"] in ("Completed", "Failed", "Stopped"):
            if job["ProcessingJobStatus"] != "Completed":
                raise RuntimeError(f"{name}: {job['ProcessingJobStatus']}: {job.get('FailureReason')}")
            return
        time.sleep(poll)


def per_job_overhead(sm, count: int, tag: str) -> list[float]:
    seconds = []
    for i in range(count + 1):  # the first one warms up (the cluster's first worker process, imports)
        started = time.time()
        name = f"seq-{tag}-{i}"
        sm.create_processing_job(**_request(name))
        _wait(sm, name, 0.05)
        if i:
            seconds.append(time.time() - started)
    return seconds


def throughput(sm, count: int, tag: str) -> float:
    names = [f"par-{tag}-{i}" for i in range(count)]
    started = time.time()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: sm.create_processing_job(**_request(n)), names))
        list(pool.map(lambda n: _wait(sm, n, 0.5), names))
    return count / (time.time() - started)


def pipeline(sm, steps: int, tag: str) -> float:
    code = base64.b64encode(b"print('step')").decode()
    entry = ["python3", "-c", f"import base64; exec(base64.b64decode('{code}'))"]
    definition = {
        "Version": "2020-12-01",
        "Steps": [
            {
                "Name": f"step-{i}",
                "Type": "Processing",
                "Arguments": {
                    **{k: v for k, v in _request("x").items() if k != "ProcessingJobName"},
                    "AppSpecification": {"ImageUri": IMAGE, "ContainerEntrypoint": entry},
                },
            }
            for i in range(steps)
        ],
    }
    name = f"fan-out-{tag}"
    sm.create_pipeline(
        PipelineName=name,
        RoleArn=ROLE,
        ClientRequestToken=str(uuid.uuid4()),
        PipelineDefinition=json.dumps(definition),
    )
    started = time.time()
    arn = sm.start_pipeline_execution(PipelineName=name, ClientRequestToken=str(uuid.uuid4()))["PipelineExecutionArn"]
    while (status := sm.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"]) not in (
        "Succeeded",
        "Failed",
        "Stopped",
    ):
        time.sleep(0.2)
    if status != "Succeeded":
        raise RuntimeError(f"pipeline {name}: {status}")
    return time.time() - started


def measure(setup: str, tmp: Path, flags: list[str], args) -> dict:
    config = tmp / "runtimes.json"
    config.write_text(json.dumps({"images": {IMAGE: {"python": sys.executable}}}))
    server = selfmaker_server(
        tmp / f"data-{setup}", tmp / f"server-{setup}.log", "--runtimes-config", str(config), *flags, name=setup
    )
    with server:
        sm = _clients(server.url)
        log(f"{setup}: {args.sequential} jobs one after another...")
        seq = per_job_overhead(sm, args.sequential, setup)
        log(f"{setup}: per-job median {statistics.median(seq):.2f} s; {args.jobs} jobs at once...")
        rate = throughput(sm, args.jobs, setup) if args.jobs else 0.0
        log(f"{setup}: {rate:.2f} jobs/s; a {args.steps}-step fan-out pipeline...")
        fan = pipeline(sm, args.steps, setup) if args.steps else 0.0
        log(f"{setup}: pipeline {fan:.1f} s")
    return {"setup": setup, "per_job": seq, "throughput": rate, "pipeline": fan, "load": os.getloadavg()[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--sequential", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--node-cpus", type=int, default=4)
    parser.add_argument("--setups", default="local,ray-1,ray-2")
    args = parser.parse_args()
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    results = []
    with tempfile.TemporaryDirectory(prefix="selfmaker-bench-scale-") as tmp:
        for setup in args.setups.split(","):
            if setup == "local":
                results.append(measure(setup, Path(tmp), [], args))
                continue
            from ray.cluster_utils import Cluster

            cluster = Cluster(
                initialize_head=True,
                connect=False,
                head_node_args={"num_cpus": 0, "include_dashboard": False, "object_store_memory": 100 << 20},
            )
            for _ in range(int(setup.split("-")[1])):
                cluster.add_node(num_cpus=args.node_cpus, memory=64 << 30, object_store_memory=100 << 20)
            cluster.wait_for_nodes()
            try:
                results.append(measure(setup, Path(tmp), ["--executor", "ray", "--ray-address", cluster.address], args))
            finally:
                cluster.shutdown()
    print(f"machine: {machine()}")
    local = next((r for r in results if r["setup"] == "local"), None)
    rows = []
    for r in results:
        median = statistics.median(r["per_job"])
        ratio = f"{median / statistics.median(local['per_job']):.2f}x" if local else "-"
        rows.append([r["setup"], median, min(r["per_job"]), ratio, r["throughput"], r["pipeline"], r["load"]])
    print(
        table(
            ["set-up", "per-job (s), median", "min", "vs local", "jobs/s", "pipeline (s)", "load (1 min)"],
            rows,
            title=f"no-op processing jobs: {args.sequential} one after another, {args.jobs} at once; a {args.steps}-step "
            f"fan-out pipeline; Ray worker nodes of {args.node_cpus} CPUs",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
