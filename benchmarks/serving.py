"""Serving benchmark: one small scikit-learn model in process, behind SelfMaker, and behind four peers.

The model is a LogisticRegression over 20 features (scikit-learn 1.2, the
SageMaker scikit-learn 1.2-1 image's runtime); every request is one row.
Side by side in one run, on one machine:

* in process: ``model.predict`` on a 1x20 array, in the runtime's Python (the
  floor: no transport at all);
* the model server alone: SelfMaker's model server process
  (selfmaker.container.inference_server) called over its Unix socket with a
  keep-alive connection, as the router calls it (its own round trip);
* SelfMaker: CreateModel / CreateEndpointConfig / CreateEndpoint (one
  instance), then InvokeEndpoint with a CSV row, sent two ways: requests signed
  once by botocore and replayed raw over keep-alive sockets (what the server
  costs), and through boto3's ``invoke_endpoint`` (what a user's loop sees,
  client cost included);
* the peers, MLflow, BentoML, MLServer (its scikit-learn runtime) and Ray
  Serve, each on the same model (trained alike in its own throwaway virtual
  environment, never needed by the tests) at the settings its documentation
  gives for one CPU-bound model, JSON requests replayed raw
  (benchmarks/serving_peers.py says which settings and why).

Latency p50/p99 and requests per second at concurrency 1 and 16; within each
round every server is measured in turn (the order rotating from round to
round), so a busy moment of the machine hits them all alike. Goals: SelfMaker's
raw p50 at most 0.5 ms above the in-process call, and at least 1.5x the
requests per second of the best peer at concurrency 16.

    python benchmarks/serving.py [--seconds 4] [--rounds 3] [--venvs DIR] [--runtimes-dir DIR] [--peers NAME ...]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    RunResult,
    load_average,
    log,
    machine,
    merge,
    replay,
    selfmaker_server,
    sign_requests,
    table,
)
from serving_peers import PEERS, describe, start_peers

from selfmaker.engines import model_server, runtimes

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
FEATURES = 20
ROW = [round(0.05 * i - 0.4, 2) for i in range(FEATURES)]
CSV_ROW = ",".join(map(str, ROW))

TRAIN = f"""
import sys, numpy as np
from sklearn.linear_model import LogisticRegression
rng = np.random.default_rng(7)
x = rng.normal(size=(500, {FEATURES}))
model = LogisticRegression(max_iter=500).fit(x, (x[:, 0] + x[:, 1] > 0).astype(int))
"""
SAVE_JOBLIB = (
    TRAIN
    + """
import joblib, os
os.makedirs(sys.argv[1], exist_ok=True)
joblib.dump(model, sys.argv[1] + "/model.joblib")
print(int(model.predict(np.array([ROW]))[0]))
""".replace("ROW", repr(ROW))
)
SAVE_MLFLOW = TRAIN + "import mlflow.sklearn; mlflow.sklearn.save_model(model, sys.argv[1])\n"
IN_PROCESS = f"""
import json, sys, time, joblib, numpy as np
model = joblib.load(sys.argv[1] + "/model.joblib")
x = np.array([{ROW}])
for _ in range(200):
    model.predict(x)
times = []
deadline = time.perf_counter() + float(sys.argv[2])
while time.perf_counter() < deadline:
    t0 = time.perf_counter_ns()
    model.predict(x)
    times.append(time.perf_counter_ns() - t0)
print(json.dumps(times))
"""


# ---------------------------------------------------------------------------
# Measurements


OURS = "SelfMaker, raw HTTP"


def _result(label: str, concurrency: int, latencies_ns: list[int], wall: float) -> RunResult:
    from array import array
    from collections import Counter

    return RunResult(
        label,
        concurrency,
        array("q", sorted(latencies_ns)),
        wall,
        float("nan"),
        float("nan"),
        Counter({200: len(latencies_ns)}),
    )


def in_process(python: str, model_dir: Path, seconds: float) -> RunResult:
    out = subprocess.run(
        [python, "-c", IN_PROCESS, str(model_dir), str(seconds)], check=True, capture_output=True, text=True
    ).stdout
    times = json.loads(out)
    return _result("in process: model.predict", 1, times, sum(times) / 1e9)


def start_model_server(python: str, ml_dir: Path) -> tuple[subprocess.Popen, Path]:
    """SelfMaker's model server for the model in ``ml_dir``, answering /ping on its Unix socket."""
    path = model_server.socket_path(ml_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    # benchmarks/against.py: the other commit's model server, as its SelfMaker runs it
    code = os.environ.get("SELFMAKER_BENCH_SERVER_CODE") or str(Path(__file__).resolve().parents[1])
    process = subprocess.Popen(
        [python, "-m", "selfmaker.container.inference_server"],
        cwd=code,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        env={"PYTHONPATH": code, "SAGEMAKER_BASE_DIR": str(ml_dir), "SELFMAKER_BIND_TO_SOCKET": str(path)},
    )
    deadline = time.monotonic() + 60
    while not model_server.ping(path):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("the model server did not start")
        time.sleep(0.05)
    return process, path


def model_server_alone(python: str, ml_dir: Path, seconds: float) -> RunResult:
    """SelfMaker's model server on a Unix socket, called directly over one keep-alive connection."""
    process, path = start_model_server(python, ml_dir)
    try:
        connection = model_server.UnixConnection(path, timeout=30)
        headers = {"Content-Type": "text/csv", "Accept": "application/json"}

        def once() -> None:
            connection.request("POST", "/invocations", body=CSV_ROW.encode(), headers=headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"model server answered {response.status}: {body[:200]!r}")

        for _ in range(200):
            once()
        times = []
        end = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < end:
            t0 = time.perf_counter_ns()
            once()
            times.append(time.perf_counter_ns() - t0)
        return _result("model server alone (Unix socket)", 1, times, time.perf_counter() - started)
    finally:
        process.terminate()
        process.wait(10)


def through_boto3(url: str, endpoint: str, concurrency: int, seconds: float) -> RunResult:
    client = boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}, max_pool_connections=concurrency),
    )
    per_thread: list[list[int]] = [[] for _ in range(concurrency)]

    def call() -> None:
        client.invoke_endpoint(EndpointName=endpoint, Body=CSV_ROW, ContentType="text/csv")["Body"].read()

    for _ in range(50):
        call()
    barrier = threading.Barrier(concurrency + 1)
    end_box: list[float] = []

    def worker(times: list[int]) -> None:
        barrier.wait()
        end = end_box[0]
        while time.perf_counter() < end:
            t0 = time.perf_counter_ns()
            call()
            times.append(time.perf_counter_ns() - t0)

    threads = [threading.Thread(target=worker, args=(t,)) for t in per_thread]
    for thread in threads:
        thread.start()
    end_box.append(time.perf_counter() + seconds)
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    return _result(
        "SelfMaker, boto3 invoke_endpoint",
        concurrency,
        [t for ts in per_thread for t in ts],
        time.perf_counter() - started,
    )


# ---------------------------------------------------------------------------
# Servers


def _archive(model_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(model_dir / "model.joblib", arcname="model.joblib")
    return buffer.getvalue()


def deploy(url: str, model_dir: Path) -> str:
    options = {
        "endpoint_url": url,
        "region_name": "us-east-1",
        "aws_access_key_id": "bench",
        "aws_secret_access_key": "x",
    }
    s3, sm = boto3.client("s3", **options), boto3.client("sagemaker", **options)
    s3.create_bucket(Bucket="bench-serving")
    s3.put_object(Bucket="bench-serving", Key="model/model.tar.gz", Body=_archive(model_dir))
    sm.create_model(
        ModelName="bench-lr",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://bench-serving/model/model.tar.gz"},
    )
    sm.create_endpoint_config(
        EndpointConfigName="bench-lr",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "bench-lr",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sm.create_endpoint(EndpointName="bench-lr", EndpointConfigName="bench-lr")
    deadline = time.monotonic() + 600
    while (status := sm.describe_endpoint(EndpointName="bench-lr"))["EndpointStatus"] != "InService":
        if status["EndpointStatus"] == "Failed" or time.monotonic() > deadline:
            raise RuntimeError(f"the endpoint did not become InService: {status.get('FailureReason')}")
        time.sleep(0.2)
    return "bench-lr"


# ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each measuring every server in turn")
    parser.add_argument("--venvs", type=Path, help="keep the peers' virtual environments here (default: fresh ones)")
    parser.add_argument("--runtimes-dir", type=Path, help="reuse a runtimes directory (default: a fresh one)")
    parser.add_argument("--peers", nargs="*", choices=[p.venv for p in PEERS], help="only these peers (default: all)")
    args = parser.parse_args()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="selfmaker-bench-serving-") as name:
        tmp = Path(name)
        runtimes_dir = args.runtimes_dir or tmp / "runtimes"
        log("building the scikit-learn runtime (not timed)...")
        python = str(runtimes.ensure(runtimes.resolve(IMAGE), runtimes_dir, lambda line: None) / "python")
        ml_dir = tmp / "ml"
        expected = int(
            subprocess.run(
                [python, "-c", SAVE_JOBLIB, str(ml_dir / "model")], check=True, capture_output=True, text=True
            ).stdout
        )

        results: dict[tuple[str, int], list[RunResult]] = {}
        results[("in process: model.predict", 1)] = [in_process(python, ml_dir / "model", args.seconds)]
        results[("model server alone (Unix socket)", 1)] = [model_server_alone(python, ml_dir, args.seconds)]

        selfmaker = selfmaker_server(tmp / "data", tmp / "selfmaker.log", "--runtimes-dir", str(runtimes_dir))
        wanted = [p for p in PEERS if args.peers is None or p.venv in args.peers]
        peers = start_peers(wanted, ROW, SAVE_JOBLIB, SAVE_MLFLOW, args.venvs or tmp / "venvs", tmp, expected)
        try:
            with selfmaker:
                endpoint = deploy(selfmaker.url, ml_dir / "model")
                [invoke] = sign_requests(
                    selfmaker.url,
                    "sagemaker-runtime",
                    [
                        (
                            "InvokeEndpoint",
                            {"EndpointName": endpoint, "Body": CSV_ROW.encode(), "ContentType": "text/csv"},
                        )
                    ],
                )
                contenders = [(OURS, selfmaker, invoke)]
                contenders += [(f"{peer.name}, raw HTTP", server, request) for peer, server, request, _ in peers]
                for round_index in range(args.rounds):
                    turn = round_index % len(contenders)
                    for concurrency in (1, 16):
                        for label, server, request in contenders[turn:] + contenders[:turn]:
                            result = replay(
                                server, [request], label=label, concurrency=concurrency, duration=args.seconds
                            )
                            if not result.ok:
                                raise RuntimeError(f"{label}: {result.statuses} {result.errors}")
                            results.setdefault((label, concurrency), []).append(result)
                        boto = through_boto3(selfmaker.url, endpoint, concurrency, args.seconds)
                        results.setdefault((boto.label, concurrency), []).append(boto)
                    log(f"round {round_index + 1} of {args.rounds} done (load average {load_average()})")
        finally:
            for _, server, _, _ in peers:
                server.stop()
    report(results, args, peers, load_before)
    return 0


def report(results: dict[tuple[str, int], list[RunResult]], args, peers, load_before: str) -> None:
    merged = {key: merge(runs) for key, runs in results.items()}
    floor = merged[("in process: model.predict", 1)].percentile_ms(50)
    labels = list(dict.fromkeys(label for label, _ in merged))
    rows = []
    for label in labels:
        row = [label]
        for concurrency in (1, 16):
            r = merged.get((label, concurrency))
            row += [r.percentile_ms(50), r.percentile_ms(99), r.throughput] if r else [None, None, None]
        one = merged[(label, 1)]
        row.append(one.percentile_ms(50) - floor if label != "in process: model.predict" else None)
        rows.append(row)
    print(f"machine: {machine()}")
    print(f"load average (1, 5, 15 min): {load_before} before, {load_average()} after")
    print("peers:\n" + describe(peers))
    print(
        table(
            [
                "",
                "p50 ms (c=1)",
                "p99 ms (c=1)",
                "req/s (c=1)",
                "p50 ms (c=16)",
                "p99 ms (c=16)",
                "req/s (c=16)",
                "p50 added ms (c=1)",
            ],
            rows,
            title=f"one row per request; {args.rounds} rounds of {args.seconds:g} s per measurement, servers in turn",
        )
    )
    ours = merged[(OURS, 1)]
    for concurrency in (1, 16):
        s = merged[(OURS, concurrency)]
        for peer, _, _, _ in peers:
            m = merged[(f"{peer.name}, raw HTTP", concurrency)]
            print(f"c={concurrency}: SelfMaker / {peer.name} requests per second: {s.throughput / m.throughput:.2f}x")
    print(
        f"SelfMaker raw p50 over the in-process call: {ours.percentile_ms(50) - floor:.3f} ms "
        f"(model server alone adds "
        f"{merged[('model server alone (Unix socket)', 1)].percentile_ms(50) - floor:.3f} ms)"
    )
    print(
        f"median of per-round SelfMaker raw c=1 p50s: "
        f"{statistics.median(r.percentile_ms(50) for r in results[(OURS, 1)]):.3f} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
