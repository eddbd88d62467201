"""The edge agent: register, fetch deployments, verify and load models, serve them locally, report in.

One loop thread talks to the server (GetDeviceRegistration every CacheTTL,
GetDeployments every --poll-interval, SendHeartbeat every --heartbeat-interval and
right after a deployment); a threaded HTTP server on a loopback port answers
predictions (the local API, docs/edge.md). Models live under
``<state-dir>/models/<handle>/<archive sha1>/``; ``<state-dir>/state.json`` names the ones
serving and the deployments tried, so a restarted agent serves again without downloading.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..container.compiled_model import CompiledModel
from .model import LoadError, load
from .package import PackageError, check_sha1, unpack

AGENT_VERSION = "1.0.0"
log = logging.getLogger("selfmaker.edge_agent")


@dataclass
class Serving:
    """One model handle's loaded model, and what the heartbeat says of it."""

    handle: str
    model_name: str
    model_version: str
    directory: Path
    sha1: str
    model: CompiledModel
    deployment: str
    inferences: int = 0
    errors: int = 0
    latency_total: float = 0.0
    latest_inference: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Agent:
    def __init__(self, args):
        self.args = args
        self.fleet, self.device = args.fleet, args.device
        self.state_dir = Path(args.state_dir)
        (self.state_dir / "models").mkdir(parents=True, exist_ok=True)
        self.key = bytes.fromhex(Path(args.signing_key_file).read_text().strip()) if args.signing_key_file else None
        config = Config(retries={"max_attempts": 2, "mode": "standard"}, s3={"addressing_style": "path"})
        session = boto3.session.Session(region_name=args.region)
        self.edge = session.client("sagemaker-edge", endpoint_url=args.endpoint_url, config=config)
        self.s3 = session.client("s3", endpoint_url=args.endpoint_url, config=config)
        self.serving: dict[str, Serving] = {}
        self.tried: dict[str, str] = {}  # "<deployment>/<handle>" -> the archive SHA-1 last tried
        self.results: list[dict] = []  # DeploymentResults not yet sent
        self.registered = False
        self.cache_ttl = 60.0
        self.started = time.time()
        self.stop = threading.Event()
        self._restore()

    # -- state kept across restarts --------------------------------------------------------------------

    def _save(self) -> None:
        state = {
            "tried": self.tried,
            "serving": {
                h: {
                    "ModelName": s.model_name,
                    "ModelVersion": s.model_version,
                    "Sha1": s.sha1,
                    "Deployment": s.deployment,
                }
                for h, s in self.serving.items()
            },
        }
        partial = self.state_dir / "state.json.part"
        partial.write_text(json.dumps(state))
        os.replace(partial, self.state_dir / "state.json")

    def _restore(self) -> None:
        try:
            state = json.loads((self.state_dir / "state.json").read_text())
        except (OSError, ValueError):
            return
        self.tried = state.get("tried", {})
        for handle, s in state.get("serving", {}).items():
            directory = self.state_dir / "models" / handle / s["Sha1"]
            try:
                model = load(directory)
            except LoadError as err:
                log.warning("could not reload %s after a restart: %s", handle, err)
                continue
            self.serving[handle] = Serving(
                handle, s["ModelName"], s["ModelVersion"], directory, s["Sha1"], model, s["Deployment"]
            )

    # -- the loop ----------------------------------------------------------------------------------------

    def run(self) -> None:
        next_registration = next_poll = next_beat = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                if now >= next_registration:
                    self._check_registration()
                    next_registration = now + (self.cache_ttl if self.registered else self.args.poll_interval)
                if self.registered and now >= next_poll:
                    if self._apply(self.edge.get_deployments(DeviceName=self.device, DeviceFleetName=self.fleet)):
                        next_beat = 0.0  # report a deployment's result at once
                    next_poll = now + self.args.poll_interval
                if self.registered and time.monotonic() >= next_beat:
                    self._heartbeat()
                    next_beat = time.monotonic() + self.args.heartbeat_interval
            except ClientError as err:
                log.warning("the server refused: %s", err)
                if err.response.get("Error", {}).get("Code") == "AccessDeniedException":
                    next_registration = 0.0  # deregistered: ask again
            except BotoCoreError as err:
                log.warning("the server is unreachable: %s", err)
            self.stop.wait(min(self.args.poll_interval, self.args.heartbeat_interval, 1.0) / 2)

    def _check_registration(self) -> None:
        answer = self.edge.get_device_registration(DeviceName=self.device, DeviceFleetName=self.fleet)
        was, self.registered = self.registered, answer.get("DeviceRegistration") == "REGISTERED"
        self.cache_ttl = float(answer.get("CacheTTL") or 60)
        if was != self.registered:
            log.info("device %s/%s is %s", self.fleet, self.device, answer.get("DeviceRegistration"))

    # -- deployments ---------------------------------------------------------------------------------------

    def _apply(self, answer: dict) -> bool:
        applied = False
        for deployment in answer.get("Deployments") or []:
            new = [
                d
                for d in deployment.get("Definitions") or []
                if d.get("State") == "DEPLOY"
                and self.tried.get(f"{deployment['DeploymentName']}/{d['ModelHandle']}") != d["Checksum"]["Sum"]
                and (
                    d["ModelHandle"] not in self.serving or self.serving[d["ModelHandle"]].sha1 != d["Checksum"]["Sum"]
                )
            ]
            if new:
                self._deploy(deployment, new)
                applied = True
        return applied

    def _deploy(self, deployment: dict, definitions: list[dict]) -> None:
        name, policy = deployment["DeploymentName"], deployment.get("FailureHandlingPolicy", "ROLLBACK_ON_FAILURE")
        started = time.time()
        ready: dict[str, Serving] = {}
        failed: dict[str, str] = {}
        for definition in definitions:
            handle, sha1 = definition["ModelHandle"], definition["Checksum"]["Sum"]
            self.tried[f"{name}/{handle}"] = sha1
            try:
                ready[handle] = self._fetch(name, handle, definition["S3Url"], sha1)
            except (PackageError, LoadError) as err:
                failed[handle] = str(err)
            except (ClientError, BotoCoreError) as err:
                failed[handle] = f"download failed: {err}"
        rollback = bool(failed) and policy == "ROLLBACK_ON_FAILURE"
        models = []
        for definition in definitions:
            handle = definition["ModelHandle"]
            entry = {"ModelHandle": handle, "DesiredState": "DEPLOY"}
            if handle in ready and not rollback:
                previous = self.serving.get(handle)
                self.serving[handle] = ready[handle]
                if previous is not None and previous.directory != ready[handle].directory:
                    shutil.rmtree(previous.directory, ignore_errors=True)
                entry.update(State="DEPLOY", Status="SUCCESS")
            else:
                reason = failed.get(handle) or "rolled back: another model of the deployment failed"
                if handle in ready:
                    shutil.rmtree(ready[handle].directory, ignore_errors=True)
                if policy == "DO_NOTHING" and handle in failed:
                    # No rollback: the previous model of this handle is not kept serving.
                    gone = self.serving.pop(handle, None)
                    if gone is not None:
                        shutil.rmtree(gone.directory, ignore_errors=True)
                entry.update(
                    State="UNDEPLOY" if handle not in self.serving else "DEPLOY", Status="FAIL", StatusReason=reason
                )
            serving = self.serving.get(handle) if entry["Status"] == "SUCCESS" else ready.get(handle)
            if serving is not None:
                entry.update(ModelName=serving.model_name, ModelVersion=serving.model_version)
            models.append(entry)
        ok = not failed
        message = "deployed" if ok else ("; ".join(f"{h}: {r}" for h, r in failed.items()))
        if rollback:
            message += " (rolled back: the previous models keep serving)"
        self.results.append(
            {
                "DeploymentName": name,
                "DeploymentStatus": "SUCCESS" if ok else "FAIL",
                "DeploymentStatusMessage": message[:1000],
                "DeploymentStartTime": started,
                "DeploymentEndTime": time.time(),
                "DeploymentModels": models,
            }
        )
        self._save()
        log.info("deployment %s: %s", name, message)

    def _fetch(self, deployment: str, handle: str, url: str, sha1: str) -> Serving:
        bucket, _, key = url[len("s3://") :].partition("/")
        directory = self.state_dir / "models" / handle / sha1
        archive = directory.with_suffix(".tar.gz")
        archive.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(directory, ignore_errors=True)
        try:
            self.s3.download_file(bucket, key, str(archive))
            check_sha1(archive, sha1)
            manifest = unpack(archive, directory, self.key)
            model = load(directory)
        except Exception:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        finally:
            archive.unlink(missing_ok=True)
        return Serving(handle, manifest["ModelName"], manifest["ModelVersion"], directory, sha1, model, deployment)

    # -- heartbeats ------------------------------------------------------------------------------------------

    def _heartbeat(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        now = time.time()
        agent_metrics = [
            ("UptimeSeconds", now - self.started),
            ("ProcessCpuSeconds", usage.ru_utime + usage.ru_stime),
            ("MaxRssKilobytes", float(usage.ru_maxrss)),
            ("LoadedModels", float(len(self.serving))),
        ]
        models = []
        for s in list(self.serving.values()):
            if len(s.model_name) < 4:
                continue  # sagemaker-edge's Model.ModelName is 4-255 characters: not reportable
            with s.lock:
                metrics = [
                    ("InferenceCount", float(s.inferences)),
                    ("InferenceErrors", float(s.errors)),
                    ("AverageLatencyMs", 1000 * s.latency_total / s.inferences if s.inferences else 0.0),
                ]
                latest = s.latest_inference
            entry = {
                "ModelName": s.model_name,
                "ModelVersion": s.model_version,
                "ModelMetrics": [
                    {"Dimension": s.handle, "MetricName": n, "Value": v, "Timestamp": now} for n, v in metrics
                ],
            }
            if latest is not None:
                entry["LatestInference"] = latest
            models.append(entry)
        request = {
            "AgentVersion": AGENT_VERSION,
            "DeviceName": self.device,
            "DeviceFleetName": self.fleet,
            "AgentMetrics": [
                {"Dimension": "agent", "MetricName": n, "Value": v, "Timestamp": now} for n, v in agent_metrics
            ],
            "Models": models,
        }
        if self.results:
            request["DeploymentResult"] = self.results[0]
        self.edge.send_heartbeat(**request)
        if self.results:
            self.results.pop(0)

    # -- the local API -----------------------------------------------------------------------------------------

    def describe(self, s: Serving) -> dict:
        return {
            "ModelHandle": s.handle,
            "ModelName": s.model_name,
            "ModelVersion": s.model_version,
            "Deployment": s.deployment,
            "Backend": s.model.backend,
            "Inferences": s.inferences,
        }

    def predict(self, handle: str, body: dict) -> dict:
        s = self.serving.get(handle)
        if s is None:
            raise KeyError(handle)
        data = body.get("inputs") if "inputs" in body else body.get("instances")
        if data is None:
            raise ValueError('the body needs "instances" (rows) or "inputs" (name -> array)')
        begun = time.perf_counter()
        try:
            out = s.model.predict(data)
        except Exception:
            with s.lock:
                s.errors += 1
            raise
        with s.lock:
            s.inferences += 1
            s.latency_total += time.perf_counter() - begun
            s.latest_inference = time.time()
        return {"predictions": out.tolist(), "ModelName": s.model_name, "ModelVersion": s.model_version}


def _handler(agent: Agent):
    class LocalAPI(BaseHTTPRequestHandler):
        def _answer(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/health":
                return self._answer(200, {"Registered": agent.registered, "Models": len(agent.serving)})
            if self.path == "/models":
                return self._answer(200, {"Models": [agent.describe(s) for s in list(agent.serving.values())]})
            if self.path.startswith("/models/") and (s := agent.serving.get(self.path[len("/models/") :])):
                return self._answer(200, agent.describe(s))
            return self._answer(404, {"Error": f"no such resource {self.path}"})

        def do_POST(self):
            if not (self.path.startswith("/models/") and self.path.endswith(":predict")):
                return self._answer(404, {"Error": f"no such resource {self.path}"})
            handle = self.path[len("/models/") : -len(":predict")]
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length > agent.args.max_body_bytes:
                    return self._answer(413, {"Error": f"the body is larger than {agent.args.max_body_bytes} bytes"})
                body = json.loads(self.rfile.read(length) or b"{}")
                return self._answer(200, agent.predict(handle, body))
            except KeyError:
                return self._answer(404, {"Error": f"no model is deployed under the handle {handle}"})
            except (ValueError, TypeError) as err:
                return self._answer(400, {"Error": str(err)[:500]})
            except Exception as err:  # the runtime refused the input (shape, type)
                return self._answer(400, {"Error": f"{type(err).__name__}: {str(err)[:500]}"})

        def log_message(self, *args):  # requests are not logged line by line
            pass

    return LocalAPI


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="selfmaker edge-agent", description=__doc__.split("\n")[0])
    parser.add_argument("--fleet", required=True, help="the device fleet (DeviceFleetName)")
    parser.add_argument("--device", required=True, help="this device's DeviceName")
    parser.add_argument("--endpoint-url", default=os.environ.get("AWS_ENDPOINT_URL"), help="the SelfMaker server")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    parser.add_argument("--state-dir", default="./selfmaker-edge", help="downloaded models and the agent's state")
    parser.add_argument("--host", default="127.0.0.1", help="the local API's address (loopback by default)")
    parser.add_argument("--port", type=int, default=7611, help="the local API's port (0: any free port)")
    parser.add_argument("--poll-interval", type=float, default=10.0, help="seconds between GetDeployments calls")
    parser.add_argument("--heartbeat-interval", type=float, default=20.0, help="seconds between heartbeats")
    parser.add_argument(
        "--signing-key-file", help="the account's package signing key, hex (selfmaker edge-signing-key)"
    )
    parser.add_argument("--max-body-bytes", type=int, default=8 << 20, help="the largest prediction request")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def run(args) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    agent = Agent(args)
    if agent.key is None:
        log.warning("no --signing-key-file: package signatures are not verified (checksums and manifests are)")
    server = ThreadingHTTPServer((args.host, args.port), _handler(agent))
    server.daemon_threads = True
    host, port = server.server_address[:2]
    (Path(args.state_dir) / "agent.json").write_text(json.dumps({"url": f"http://{host}:{port}", "pid": os.getpid()}))
    print(f"edge agent {args.fleet}/{args.device}: local API on http://{host}:{port}", flush=True)
    threading.Thread(target=server.serve_forever, name="local-api", daemon=True).start()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: agent.stop.set())
    try:
        agent.run()
    except KeyboardInterrupt:
        pass
    server.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
