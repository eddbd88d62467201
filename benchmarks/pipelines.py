"""Pipelines benchmark: how fast an execution moves from one step to the next.

A 20-step fan-out/fan-in pipeline of no-op processing steps (one first step,
18 in parallel after it, one last step after all of them), on an image mapped
to the host's Python so that no runtime build or framework import blurs the
engine's own time. Measured, from the server's own records:

* hand-off: from a job's end (its ProcessingEndTime, recorded once outputs and
  logs are done) to the StartTime of each step that depends on it, in the
  execution's step list: the engine's reaction time (goal: p50 <= 100 ms);
  and to the CreationTime of that step's job (the 18 of the fan-out are
  created side by side);
* wall time of the execution against the sum of its steps' own times (start
  to end of each step) and against its critical path (first + slowest middle
  + last step);
* the same with ``--concurrent`` executions started at once;
* Prefect running the same graph (benchmarks/pipelines_prefect.py: a local
  Prefect server, a process work pool, the default task runner, each task a
  ``python -c pass`` subprocess), its runs interleaved with SelfMaker's, times
  from Prefect's own records (``--no-prefect`` leaves it out). Goals: the
  hand-off p50 at most Prefect's, the wall time within 1.2x of the critical path.

    python benchmarks/pipelines.py [--rounds 3] [--concurrent 20] [--venvs DIR] [--no-prefect]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, log, machine, selfmaker_server, table
from pipelines_prefect import Prefect

IMAGE = "selfmaker.bench/python:3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
MIDDLE = 18


def processing_step(name: str, depends_on: list[str]) -> dict:
    """A no-op Processing step (also the console benchmark's 200-step graph)."""
    return {
        "Name": name,
        "Type": "Processing",
        "DependsOn": depends_on,
        "Arguments": {
            "ProcessingResources": {
                "ClusterConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1}
            },
            "AppSpecification": {"ImageUri": IMAGE, "ContainerEntrypoint": ["python3", "-c", "pass"]},
            "RoleArn": ROLE,
            "StoppingCondition": {"MaxRuntimeInSeconds": 300},
        },
    }


def fan_out_fan_in() -> str:
    middle = [f"Middle{i:02d}" for i in range(MIDDLE)]
    steps = [
        processing_step("First", []),
        *(processing_step(name, ["First"]) for name in middle),
        processing_step("Last", middle),
    ]
    return json.dumps(
        {"Version": "2020-12-01", "Metadata": {}, "Parameters": [], "PipelineExperimentConfig": None, "Steps": steps}
    )


def _client(url: str):
    return boto3.client(
        "sagemaker",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="x",
        config=Config(max_pool_connections=50),
    )


def run_execution(sm, pipeline: str) -> dict:
    arn = sm.start_pipeline_execution(PipelineName=pipeline, ClientRequestToken=str(uuid.uuid4()))[
        "PipelineExecutionArn"
    ]
    while True:
        execution = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
        if execution["PipelineExecutionStatus"] not in ("Executing", "Stopping"):
            break
        time.sleep(0.2)
    if execution["PipelineExecutionStatus"] != "Succeeded":
        raise RuntimeError(f"{arn}: {execution['PipelineExecutionStatus']}: {execution.get('FailureReason')}")
    steps = {
        s["StepName"]: s
        for s in sm.list_pipeline_execution_steps(PipelineExecutionArn=arn, MaxResults=100)["PipelineExecutionSteps"]
    }
    ends, created = {}, {}
    for name, step in steps.items():
        job = sm.describe_processing_job(ProcessingJobName=step["Metadata"]["ProcessingJob"]["Arn"].split("/")[-1])
        ends[name], created[name] = job["ProcessingEndTime"].timestamp(), job["CreationTime"].timestamp()
    start = {name: s["StartTime"].timestamp() for name, s in steps.items()}
    middle = [name for name in steps if name.startswith("Middle")]
    last_middle_end = max(ends[name] for name in middle)
    handoffs = [start[name] - ends["First"] for name in middle] + [start["Last"] - last_middle_end]
    job_handoffs = [created[name] - ends["First"] for name in middle] + [created["Last"] - last_middle_end]
    own = {name: s["EndTime"].timestamp() - s["StartTime"].timestamp() for name, s in steps.items()}
    middle_own = [own[name] for name in steps if name.startswith("Middle")]
    return {
        "handoffs": handoffs,
        "job_handoffs": job_handoffs,
        "wall": execution["LastModifiedTime"].timestamp() - execution["CreationTime"].timestamp(),
        "sum": sum(own.values()),
        "critical": own["First"] + max(middle_own) + own["Last"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="executions run one after another")
    parser.add_argument("--concurrent", type=int, default=20, help="executions started at once")
    parser.add_argument("--venvs", type=Path, help="keep Prefect's virtual environment here (default: a fresh one)")
    parser.add_argument("--no-prefect", action="store_true", help="leave the Prefect comparison out")
    args = parser.parse_args()
    load_before = load_average()
    prefect_runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="selfmaker-bench-pipelines-") as tmp:
        config = Path(tmp) / "runtimes.json"
        config.write_text(json.dumps({"images": {IMAGE: {"python": sys.executable}}}))
        server = selfmaker_server(Path(tmp) / "data", Path(tmp) / "server.log", "--runtimes-config", str(config))
        prefect = None if args.no_prefect else Prefect(args.venvs or Path(tmp) / "venvs", Path(tmp))
        with server, prefect or contextlib.nullcontext():
            sm = _client(server.url)
            sm.create_pipeline(
                PipelineName="fan",
                RoleArn=ROLE,
                ClientRequestToken=str(uuid.uuid4()),
                PipelineDefinition=fan_out_fan_in(),
            )
            run_execution(sm, "fan")  # warm-up
            if prefect:
                prefect.run()
            sequential = []
            for i in range(args.rounds):  # one SelfMaker execution, then one Prefect run: the same moments of load
                sequential.append(run_execution(sm, "fan"))
                log(
                    f"round {i + 1}: wall {sequential[-1]['wall']:.2f} s, "
                    f"hand-off p50 {statistics.median(sequential[-1]['handoffs']) * 1000:.0f} ms"
                )
                if prefect:
                    prefect_runs.append(prefect.run())
                    log(
                        f"round {i + 1}, Prefect: wall {prefect_runs[-1]['wall']:.2f} s, "
                        f"hand-off p50 {statistics.median(prefect_runs[-1]['handoffs']) * 1000:.0f} ms"
                    )
            if prefect:
                prefect.__exit__()  # its server and worker would only take CPU from the concurrent runs
            log(f"{args.concurrent} executions at once...")
            began = time.time()
            with ThreadPoolExecutor(args.concurrent) as pool:
                concurrent = list(pool.map(lambda _: run_execution(_client(server.url), "fan"), range(args.concurrent)))
            concurrent_wall = time.time() - began
    print(f"machine: {machine()}")
    print(f"load average (1, 5, 15 min): {load_before} before, {load_average()} after")
    if prefect:
        print(f"Prefect {prefect.version}: local server (SQLite), process work pool, default task runner")
    rows = []
    measured = [(f"SelfMaker, 1 at a time ({args.rounds} runs)", sequential)]
    if prefect_runs:
        measured.append((f"Prefect, 1 at a time ({args.rounds} runs)", prefect_runs))
    measured.append((f"SelfMaker, {args.concurrent} at once", concurrent))
    for label, results in measured:
        handoffs = sorted(h * 1000 for r in results for h in r["handoffs"])
        job_handoffs = sorted(h * 1000 for r in results for h in r.get("job_handoffs", ()))
        wall = statistics.median(r["wall"] for r in results)
        critical = statistics.median(r["critical"] for r in results)
        rows.append(
            [
                label,
                statistics.median(handoffs),
                handoffs[int(len(handoffs) * 0.9)],
                statistics.median(job_handoffs) if job_handoffs else None,
                job_handoffs[int(len(job_handoffs) * 0.9)] if job_handoffs else None,
                wall,
                critical,
                wall / critical,
                statistics.median(r["sum"] for r in results),
            ]
        )
    print(
        table(
            [
                "20-step fan-out/fan-in",
                "end -> step start p50 ms",
                "p90 ms",
                "end -> job created p50 ms",
                "p90 ms",
                "wall s",
                "critical path s",
                "wall / critical",
                "sum of steps s",
            ],
            rows,
            title="no-op steps, each a subprocess",
        )
    )
    if prefect_runs:
        pickup = statistics.median(r["pickup"] for r in prefect_runs)
        print(f"\nPrefect: the worker picked each run up {pickup:.1f} s (median) after it was created (not in wall)")
    print(f"\n{args.concurrent} executions ({args.concurrent * 20} jobs) at once: all done in {concurrent_wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
