"""Compilation benchmark: the framework's own predict vs the compiled artifact, in process and through endpoints.

Three models, trained in the compilation runtime (engines/runtimes.py, the
``selfmaker-neo`` image) on 28 features:

* XGBoost, 300 trees of depth 8 (binary:logistic);
* a scikit-learn RandomForestClassifier, 100 trees of depth 12;
* a small scikit-learn MLPRegressor (256-256), compiled plain and with
  CompilerOptions ``{"dtype": "int8"}`` (ONNX Runtime dynamic quantization).

Each is compiled by a real CreateCompilationJob on a SelfMaker server
(ml_c5), its compiled artifact downloaded, and then, side by side in one run:

* in process, in the runtime's Python: single-row and 100-row latency of the
  framework's predict (``Booster.inplace_predict``, the fastest XGBoost call;
  ``model.predict`` for scikit-learn) vs ``CompiledModel.predict``;
* through endpoints on the same server, one per variant, both served by the
  same model server in the same runtime (the uncompiled one with the
  framework's handlers, the compiled one with the compiled handlers): one CSV
  row and 100 CSV rows per request, signed once and replayed raw over
  keep-alive connections, at concurrency 1.

Goals (issue 15): >= 10x single-row speed-up in process for the tree models,
and >= 1.5x the endpoint requests per second of the uncompiled model.

    python benchmarks/compilation.py [--seconds 3] [--runtimes-dir DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import log, machine, replay, selfmaker_server, sign_requests, table

from selfmaker.engines import runtimes

REPO = Path(__file__).resolve().parents[1]
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BUCKET = "bench-compilation"
COMPILER = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{runtimes.NEO_REPOSITORY}:1.0-compile-xgboost"
FEATURES = 28

TRAIN = f"""
import sys, os, joblib, numpy as np, xgboost as xgb
from sklearn.ensemble import RandomForestClassifier
from sklearn.neural_network import MLPRegressor
out = sys.argv[1]
rng = np.random.default_rng(0)
x = rng.normal(size=(20000, {FEATURES})).astype("float32")
y = (x[:, 0] + x[:, 1] * x[:, 2] + 0.3 * rng.normal(size=len(x)) > 0).astype(int)
for name in ("xgboost", "forest", "mlp"):
    os.makedirs(f"{{out}}/{{name}}", exist_ok=True)
booster = xgb.train({{"max_depth": 8, "eta": 0.1, "objective": "binary:logistic", "nthread": 2}},
                    xgb.DMatrix(x, label=y), num_boost_round=300)
booster.save_model(out + "/xgboost/xgboost-model")
forest = RandomForestClassifier(100, max_depth=12, n_jobs=2, random_state=0).fit(x[:5000], y[:5000])
forest.set_params(n_jobs=1)
joblib.dump(forest, out + "/forest/model.joblib")
mlp = MLPRegressor(hidden_layer_sizes=(256, 256), max_iter=20, random_state=0).fit(x[:5000], x[:5000, 0] * 2)
joblib.dump(mlp, out + "/mlp/model.joblib")
"""

IN_PROCESS = """
import json, sys, time, numpy as np
sys.path.insert(0, sys.argv[5])
from selfmaker.container.compiled_model import CompiledModel
kind, plain_dir, compiled_dir, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
rng = np.random.default_rng(1)
one, hundred = rng.normal(size=(1, FEATURES)).astype("float32"), rng.normal(size=(100, FEATURES)).astype("float32")
if kind == "xgboost":
    import xgboost as xgb
    booster = xgb.Booster(); booster.load_model(plain_dir + "/xgboost-model"); booster.set_param({"nthread": 1})
    plain = booster.inplace_predict
else:
    import joblib
    plain = joblib.load(plain_dir + "/model.joblib").predict
compiled = CompiledModel(compiled_dir).predict

def p50(call, rows):
    for _ in range(50):
        call(rows)
    times, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter_ns(); call(rows); times.append(time.perf_counter_ns() - t0)
    times.sort()
    return times[len(times) // 2] / 1e6

diff = float(np.max(np.abs(np.asarray(plain(hundred), dtype="float64") - np.asarray(compiled(hundred), dtype="float64"))))
print(json.dumps({"plain_1": p50(plain, one), "compiled_1": p50(compiled, one),
                  "plain_100": p50(plain, hundred), "compiled_100": p50(compiled, hundred), "max_abs_diff": diff}))
""".replace("FEATURES", str(FEATURES))

# name -> (framework, plain model directory, CompilerOptions)
JOBS = {
    "xgboost": ("XGBOOST", "xgboost", None),
    "forest": ("SKLEARN", "forest", None),
    "mlp": ("SKLEARN", "mlp", None),
    "mlp-int8": ("SKLEARN", "mlp", '{"dtype": "int8"}'),
}
ENDPOINTS = ("xgboost", "forest", "mlp-int8")


def archive(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)
    return buffer.getvalue()


def clients(url: str):
    options = {"endpoint_url": url, "region_name": "us-east-1", "aws_access_key_id": "b", "aws_secret_access_key": "x"}
    return boto3.client("s3", **options), boto3.client("sagemaker", **options)


def wait(describe, key: str, done: set, timeout: float = 1800) -> dict:
    deadline = time.monotonic() + timeout
    while (status := describe())[key] not in done:
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting: {status}")
        time.sleep(0.5)
    return status


def compile_all(url: str, models: Path, out: Path) -> dict:
    s3, sm = clients(url)
    s3.create_bucket(Bucket=BUCKET)
    for directory in sorted({d for _, d, _ in JOBS.values()}):
        s3.put_object(Bucket=BUCKET, Key=f"plain/{directory}/model.tar.gz", Body=archive(models / directory))
    compiled = {}
    for name, (framework, directory, options) in JOBS.items():
        started = time.monotonic()
        sm.create_compilation_job(
            CompilationJobName=name,
            RoleArn=ROLE,
            InputConfig={
                "S3Uri": f"s3://{BUCKET}/plain/{directory}/model.tar.gz",
                "Framework": framework,
                **({"DataInputConfig": json.dumps({"input": [1, FEATURES]})} if framework == "SKLEARN" else {}),
            },
            OutputConfig={
                "S3OutputLocation": f"s3://{BUCKET}/compiled/{name}",
                "TargetDevice": "ml_c5",
                **({"CompilerOptions": options} if options else {}),
            },
            StoppingCondition={"MaxRuntimeInSeconds": 1800},
        )
        job = wait(
            lambda n=name: sm.describe_compilation_job(CompilationJobName=n),
            "CompilationJobStatus",
            {"COMPLETED", "FAILED", "STOPPED"},
        )
        if job["CompilationJobStatus"] != "COMPLETED":
            raise RuntimeError(f"{name}: {job.get('FailureReason')}")
        log(
            f"compiled {name} in {time.monotonic() - started:.1f} s (job wall time, runtime build excluded after the first)"
        )
        key = job["ModelArtifacts"]["S3ModelArtifacts"].split(f"s3://{BUCKET}/", 1)[1]
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        target = out / name
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            tar.extractall(target, filter="data")
        compiled[name] = {"job": job, "dir": target, "key": key, "size": len(body)}
    return compiled


def deploy(url: str, name: str, image: str, data_key: str) -> str:
    _, sm = clients(url)
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": image, "ModelDataUrl": f"s3://{BUCKET}/{data_key}"},
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    status = wait(lambda: sm.describe_endpoint(EndpointName=name), "EndpointStatus", {"InService", "Failed"}, 600)
    if status["EndpointStatus"] != "InService":
        raise RuntimeError(f"{name}: {status.get('FailureReason')}")
    return name


def csv_rows(count: int) -> bytes:
    return "\n".join(
        ",".join(f"{((i * 7 + j * 3) % 17 - 8) / 4:.2f}" for j in range(FEATURES)) for i in range(count)
    ).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--runtimes-dir", type=Path, help="reuse a runtimes directory (default: a fresh one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="selfmaker-bench-compilation-") as name:
        tmp = Path(name)
        runtimes_dir = args.runtimes_dir or tmp / "runtimes"
        log("building the compilation runtime (not timed)...")
        python = str(runtimes.ensure(runtimes.resolve(COMPILER), runtimes_dir, lambda line: None) / "python")
        log("training the models (not timed)...")
        subprocess.run([python, "-c", TRAIN, str(tmp / "models")], check=True)
        server = selfmaker_server(tmp / "data", tmp / "selfmaker.log", "--runtimes-dir", str(runtimes_dir))
        rows = []
        with server:
            compiled = compile_all(server.url, tmp / "models", tmp / "compiled")
            for job_name, (_, directory, _) in JOBS.items():
                out = subprocess.run(
                    [
                        python,
                        "-c",
                        IN_PROCESS,
                        directory,
                        str(tmp / "models" / directory),
                        str(compiled[job_name]["dir"]),
                        str(args.seconds),
                        str(REPO),
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                m = json.loads(out)
                rows.append(
                    [
                        f"in process: {job_name}",
                        m["plain_1"],
                        m["compiled_1"],
                        m["plain_1"] / m["compiled_1"],
                        m["plain_100"],
                        m["compiled_100"],
                        m["plain_100"] / m["compiled_100"],
                        m["max_abs_diff"],
                    ]
                )
            image = compiled["xgboost"]["job"]["InferenceImage"]
            endpoint_rows = []
            for job_name in ENDPOINTS:
                directory = JOBS[job_name][1]
                plain = deploy(server.url, f"plain-{job_name}", image, f"plain/{directory}/model.tar.gz")
                fast = deploy(server.url, f"compiled-{job_name}", image, compiled[job_name]["key"])
                result = {}
                for count in (1, 100):
                    for label, endpoint in (("plain", plain), ("compiled", fast)):
                        [request] = sign_requests(
                            server.url,
                            "sagemaker-runtime",
                            [
                                (
                                    "InvokeEndpoint",
                                    {
                                        "EndpointName": endpoint,
                                        "Body": csv_rows(count),
                                        "ContentType": "text/csv",
                                        "Accept": "text/csv",
                                    },
                                )
                            ],
                        )
                        run = replay(
                            server, [request], label=f"{label} {job_name}", concurrency=1, duration=args.seconds
                        )
                        if not run.ok:
                            raise RuntimeError(f"{endpoint}: {run.statuses} {run.errors}")
                        result[(label, count)] = run
                endpoint_rows.append(
                    [
                        f"endpoint: {job_name}",
                        result[("plain", 1)].throughput,
                        result[("compiled", 1)].throughput,
                        result[("compiled", 1)].throughput / result[("plain", 1)].throughput,
                        result[("plain", 100)].throughput,
                        result[("compiled", 100)].throughput,
                        result[("compiled", 100)].throughput / result[("plain", 100)].throughput,
                        result[("compiled", 1)].percentile_ms(50),
                    ]
                )
    print(f"machine: {machine()}")
    print(
        table(
            [
                "",
                "1 row: framework ms",
                "1 row: compiled ms",
                "1 row: speed-up",
                "100 rows: framework ms",
                "100 rows: compiled ms",
                "100 rows: speed-up",
                "max abs diff",
            ],
            rows,
            title="in process, p50 latency, one thread",
        )
    )
    print(
        table(
            [
                "",
                "1 row: framework req/s",
                "1 row: compiled req/s",
                "1 row: ratio",
                "100 rows: framework req/s",
                "100 rows: compiled req/s",
                "100 rows: ratio",
                "compiled 1 row p50 ms",
            ],
            endpoint_rows,
            title="through InvokeEndpoint, raw replay, concurrency 1",
        )
    )
    sizes = {name: c["size"] for name, c in compiled.items()}
    print(f"compiled archive sizes (bytes): {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
