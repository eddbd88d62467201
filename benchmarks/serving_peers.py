"""The model servers benchmarks/serving.py compares SelfMaker with, each serving the same model.

Every peer runs from its own throwaway virtual environment (``peer_venv``), with
its version pinned here, trains the same LogisticRegression there (same data,
same seed: the same coefficients) and serves it at the settings its own
documentation gives for one CPU-bound model, batching off unless the peer's
defaults turn it on (none of these do):

* MLflow: ``mlflow models serve --env-manager local --workers 1`` (its default
  of one uvicorn worker), JSON ``{"inputs": [[...]]}`` to ``/invocations``;
* BentoML: a ``@bentoml.service(workers="cpu_count")`` class whose sync
  ``@bentoml.api`` takes an ``np.ndarray`` (the workers guide's setting for a
  CPU-bound model: one worker process per core, here 2), ``bentoml serve``;
  adaptive batching needs ``batchable=True`` and stays off;
* MLServer: ``mlserver start`` with its scikit-learn runtime
  (``mlserver_sklearn.SKLearnModel``), the default inference pool of one worker
  process (``parallel_workers: 1``) behind its HTTP process, adaptive batching
  off (``max_batch_size`` 0, the default), a V2 inference-protocol request;
* Ray Serve: one deployment, ``num_replicas`` 1 (the default; a replica
  reserves one CPU, and the HTTP proxy, controller, GCS and raylet share the
  other), ``max_ongoing_requests`` at its default, the handler ``async``
  as Serve's examples write it, the dashboard off (it is observability, not
  serving, and its CPU would only be taken from the peer).

Each answer is checked once before any timing: a peer that answered something
else than the model's prediction would be measured doing less work.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HOST, PreparedRequest, ServerProcess, fetch, free_port, installed_version, peer_venv

SKLEARN = ["scikit-learn==1.2.2", "numpy<2"]


@dataclass(frozen=True)
class Peer:
    name: str  # the label in the tables
    venv: str
    packages: tuple[str, ...]
    distribution: str  # whose version the report prints
    settings: str  # what the report says about how it was run


MLFLOW = Peer(
    "MLflow",
    "mlflow",
    ("mlflow==3.17.2", *SKLEARN),
    "mlflow",
    "mlflow models serve, 1 uvicorn worker (default)",
)
BENTOML = Peer(
    "BentoML",
    "bentoml",
    ("bentoml==1.4.40", *SKLEARN),
    "bentoml",
    'workers="cpu_count" (2), sync API, no batching',
)
# uvloop 0.22 made get_event_loop() raise outside a running loop, which MLServer 1.7.1's inference pool
# workers call at start-up: its latest release needs the uvloop it was released with.
MLSERVER = Peer(
    "MLServer",
    "mlserver",
    ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0", *SKLEARN),
    "mlserver",
    "sklearn runtime, parallel_workers 1 (default), max_batch_size 0",
)
RAY_SERVE = Peer(
    "Ray Serve",
    "ray",
    ("ray[serve]==2.60.0", *SKLEARN),
    "ray",
    "1 replica (default), max_ongoing_requests default, no batching",
)
PEERS = (MLFLOW, BENTOML, MLSERVER, RAY_SERVE)


def train(bin_dir: Path, script: str, out_dir: Path) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)  # MLflow's save_model wants to make out_dir itself
    subprocess.run([str(bin_dir / "python"), "-c", script, str(out_dir)], check=True, stdout=subprocess.DEVNULL)


def _post(port: int, path: str, body: dict) -> PreparedRequest:
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return PreparedRequest(path, head.encode() + data)


# ---------------------------------------------------------------------------
# Each peer: a server (not started) and its request for one row


def mlflow_server(bin_dir: Path, model_dir: Path, log_path: Path) -> ServerProcess:
    port = free_port()
    argv = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local"]
    argv += ["--host", HOST, "--port", str(port), "--workers", "1"]
    return ServerProcess("mlflow", argv, port, "/ping", log_path, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})


def mlflow_request(port: int, row: list[float]) -> PreparedRequest:
    return _post(port, "/invocations", {"inputs": [row]})


BENTO_SERVICE = """
import bentoml, joblib, numpy as np

@bentoml.service(workers="cpu_count")
class Classifier:
    def __init__(self):
        self.model = joblib.load({model!r})

    @bentoml.api
    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return self.model.predict(inputs)
"""


def bentoml_server(bin_dir: Path, model_file: Path, work: Path, log_path: Path) -> ServerProcess:
    work.mkdir(parents=True, exist_ok=True)
    (work / "service.py").write_text(BENTO_SERVICE.format(model=str(model_file)))
    port = free_port()
    argv = [str(bin_dir / "bentoml"), "serve", "service:Classifier", "--working-dir", str(work)]
    argv += ["--host", HOST, "--port", str(port)]
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "BENTOML_HOME": str(work / "home"), "BENTOML_DO_NOT_TRACK": "True"}
    return ServerProcess("bentoml", argv, port, "/readyz", log_path, env=env)


def bentoml_request(port: int, row: list[float]) -> PreparedRequest:
    return _post(port, "/predict", {"inputs": [row]})


def mlserver_server(bin_dir: Path, model_file: Path, work: Path, log_path: Path) -> ServerProcess:
    model = work / "lr"
    model.mkdir(parents=True, exist_ok=True)
    (model / "model-settings.json").write_text(
        json.dumps(
            {"name": "lr", "implementation": "mlserver_sklearn.SKLearnModel", "parameters": {"uri": str(model_file)}}
        )
    )
    port = free_port()
    settings = {"host": HOST, "http_port": port, "grpc_port": free_port(), "metrics_port": free_port()}
    (work / "settings.json").write_text(json.dumps({**settings, "parallel_workers": 1}))
    argv = [str(bin_dir / "mlserver"), "start", str(work)]
    return ServerProcess(
        "mlserver", argv, port, "/v2/models/lr/ready", log_path, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}
    )


def mlserver_request(port: int, row: list[float]) -> PreparedRequest:
    tensor = {"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}
    return _post(port, "/v2/models/lr/infer", {"inputs": [tensor]})


RAY_APP = """
import os, signal, sys, time
import joblib, numpy as np, ray
from ray import serve

@serve.deployment
class Classifier:
    def __init__(self, path):
        self.model = joblib.load(path)

    async def __call__(self, request):
        if request.method == "GET":  # the benchmark's readiness probe
            return "ready"
        data = await request.json()
        return {{"predictions": self.model.predict(np.asarray(data["inputs"])).tolist()}}

def stop(*_):
    serve.shutdown()
    ray.shutdown()
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
ray.init(include_dashboard=False, _temp_dir={temp!r})
serve.start(http_options={{"host": {host!r}, "port": {port}}})
serve.run(Classifier.bind({model!r}), route_prefix="/")
while True:
    time.sleep(3600)
"""


def ray_server(bin_dir: Path, model_file: Path, work: Path, log_path: Path) -> ServerProcess:
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    temp = work.parent / "r"  # Ray's socket paths under it must stay within a Unix socket path's 107 bytes
    (work / "app.py").write_text(RAY_APP.format(temp=str(temp), host=HOST, port=port, model=str(model_file)))
    argv = [str(bin_dir / "python"), str(work / "app.py")]
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "RAY_USAGE_STATS_ENABLED": "0"}
    return ServerProcess("ray-serve", argv, port, "/", log_path, env=env)


def ray_request(port: int, row: list[float]) -> PreparedRequest:
    return _post(port, "/", {"inputs": [row]})


def _prediction(peer: Peer, body) -> object:
    """The predicted label in a peer's answer, wherever its protocol puts it."""
    if peer is BENTOML:
        return body[0]
    if peer is MLSERVER:
        return body["outputs"][0]["data"][0]
    return body["predictions"][0]  # MLflow, and the Ray Serve handler above


def check_prediction(peer: Peer, server: ServerProcess, request: PreparedRequest, expected: int) -> None:
    """The peer's answer is the model's prediction for the row (else it would be measured doing less work)."""
    status, body = fetch(server, request)
    try:
        ok = status == 200 and int(_prediction(peer, body)) == expected
    except (KeyError, IndexError, TypeError, ValueError):
        ok = False
    if not ok:
        raise RuntimeError(f"{peer.name} answered {status} {json.dumps(body)[:300]}, not the prediction {expected}")


def _server(peer: Peer, bin_dir: Path, work: Path, log_path: Path, row: list[float]):
    if peer is MLFLOW:
        server = mlflow_server(bin_dir, work / "model", log_path)
        return server, mlflow_request(server.port, row)
    make, ask = {
        BENTOML: (bentoml_server, bentoml_request),
        MLSERVER: (mlserver_server, mlserver_request),
        RAY_SERVE: (ray_server, ray_request),
    }[peer]
    server = make(bin_dir, work / "model" / "model.joblib", work / "serve", log_path)
    return server, ask(server.port, row)


def start_peers(
    peers: list[Peer], row: list[float], save_joblib: str, save_mlflow: str, venvs: Path, tmp: Path, expected: int
):
    """Every peer installed, its model trained and saved, its server started and its answer checked.

    Returns (peer, server, request, version) per peer; the caller stops the servers.
    """
    started = []
    try:
        for peer in peers:
            bin_dir = peer_venv(peer.venv, list(peer.packages), venvs)
            work = tmp / peer.venv
            train(bin_dir, save_mlflow if peer is MLFLOW else save_joblib, work / "model")
            server, request = _server(peer, bin_dir, work, tmp / f"{peer.venv}.log", row)
            server.start(timeout=240)
            started.append((peer, server, request, installed_version(bin_dir, peer.distribution)))
            check_prediction(peer, server, request, expected)
    except BaseException:
        for _, server, _, _ in started:
            server.stop()
        raise
    return started


def describe(started) -> str:
    return "\n".join(f"- {peer.name} {version}: {peer.settings}" for peer, _, _, version in started)
