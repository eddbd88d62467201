"""One benchmark: deploy the model on a candidate configuration, load it, measure, clean up.

The endpoint is a real one, made through the hosting kinds as a CreateModel /
CreateEndpointConfig / CreateEndpoint would make it (so it is visible to
DescribeEndpoint while the benchmark runs, as AWS's are) and deleted afterwards.
The load comes from the load generator (loadgen.py) in its own process, through the
server's own InvokeEndpoint, signed with a key of the job's account: what a client
of the endpoint would see. CPU and memory come from the instances' process trees
(hosting/utilization.py).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

from ...aws.cloudwatch import metric_store
from ...engines import instance_types
from ...objects.access import AccountObjects
from ...objects.base import parse_s3_uri
from ...objects.transfer import fetch
from ...server.credentials import load_credentials
from ...server.errors import AWSError
from ...server.operations import Context
from ..catalog import MODEL
from ..hosting import utilization
from ..hosting.endpoint_configs import ENDPOINT_CONFIG
from ..hosting.endpoints import ENDPOINT
from . import analysis, prices

log = logging.getLogger("selfmaker.recommender")

NAMESPACE = "/aws/sagemaker/InferenceRecommendationsJobs"
STARTUP_SECONDS = 900  # a candidate endpoint that is not InService by then fails its step
TEARDOWN_SECONDS = 60
MAX_PAYLOADS = 100
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's limit
VARIANT = "AllTraffic"


class BenchmarkFailed(Exception):
    """The step's FailureReason."""


class Stopped(Exception):
    """The job was stopped (or the server is stopping) during the step."""


def context(backends, record) -> Context:
    return Context(backends=backends, account_id=record.account_id, region=record.region, service="sagemaker")


# -- payloads -------------------------------------------------------------------------------------------------


def sample_payloads(backends, account_id: str, url: str) -> list[bytes]:
    """The files of the SamplePayloadUrl archive (a tar.gz of payload files, as AWS documents), or one object."""
    if not url.startswith("s3://"):
        raise BenchmarkFailed(f"SamplePayloadUrl {url} is not an s3:// URI.")
    bucket, key = parse_s3_uri(url)
    objects = AccountObjects.of(backends, account_id)
    with tempfile.SpooledTemporaryFile(max_size=MAX_PAYLOAD_BYTES * 4) as spool:
        try:
            fetch(objects, bucket, key, spool)
        except AWSError as err:
            raise BenchmarkFailed(f"Could not read the sample payloads at {url}: {err.message}") from None
        spool.seek(0)
        payloads = []
        try:
            with tarfile.open(fileobj=spool) as tar:
                for member in tar:
                    if member.isfile() and not member.name.rsplit("/", 1)[-1].startswith("."):
                        if member.size > MAX_PAYLOAD_BYTES:
                            raise BenchmarkFailed(f"Sample payload {member.name} is larger than 6 MB.")
                        payloads.append(tar.extractfile(member).read())
                        if len(payloads) >= MAX_PAYLOADS:
                            break
        except tarfile.TarError:
            raise BenchmarkFailed(f"SamplePayloadUrl {url} is not a tar archive of payload files.") from None
    if not payloads:
        raise BenchmarkFailed(f"The archive at {url} holds no payload files.")
    return payloads


def signing_key(settings, account_id: str) -> tuple[str, str]:
    """An access key of the job's account that the server accepts (strict mode: from the credentials file)."""
    if settings.credentials_file:
        for credential in load_credentials(settings.credentials_file).values():
            if credential.account_id == account_id:
                return credential.access_key, credential.secret_key
    if settings.auth_mode == "open" and account_id == settings.default_account:
        return "AKIDINFERENCERECOMMENDER", "unused-in-open-mode"
    raise BenchmarkFailed(f"No access key of account {account_id} in the credentials file to invoke the endpoint with.")


# -- the candidate endpoint ------------------------------------------------------------------------------------


def deploy(backends, record, step: dict, name: str) -> None:
    """Model, endpoint configuration and endpoint ``name`` for the step's candidate (all named ``name``)."""
    ctx = context(backends, record)
    data, candidate = record.data, step["candidate"]
    container = _container(ctx, data)
    environment = {**(container.get("Environment") or {}), **candidate["environment"]}
    model_container = {k: v for k, v in container.items() if k in ("Image", "ModelDataUrl", "ModelDataSource", "Mode")}
    if environment:
        model_container["Environment"] = environment
    MODEL.create(ctx, {"ModelName": name, "ExecutionRoleArn": data["RoleArn"], "PrimaryContainer": model_container})
    variant: dict = {"VariantName": VARIANT, "ModelName": name, "InitialVariantWeight": 1.0}
    if candidate.get("serverless"):
        variant["ServerlessConfig"] = candidate["serverless"]
    else:
        variant.update(InstanceType=candidate["instance_type"], InitialInstanceCount=1)
    ENDPOINT_CONFIG.create(ctx, {"EndpointConfigName": name, "ProductionVariants": [variant]})
    ENDPOINT.create(ctx, {"EndpointName": name, "EndpointConfigName": name})


def _container(ctx: Context, data: dict) -> dict:
    from .jobs import model_source

    return model_source(ctx, data["InputConfig"])["container"]


def tear_down(backends, record, name: str) -> None:
    """Delete what :func:`deploy` made (whatever of it exists)."""
    ctx = context(backends, record)
    for kind, member in ((ENDPOINT, "EndpointName"), (ENDPOINT_CONFIG, "EndpointConfigName"), (MODEL, "ModelName")):
        try:
            kind.delete(ctx, {member: name})
        except AWSError:
            pass  # never made, or gone already
    # The next benchmark must not share the host with this one's instances: wait until they are stopped.
    deadline = time.monotonic() + TEARDOWN_SECONDS
    while backends.resources.get(record.account_id, record.region, "Endpoint", name=name) is not None:
        if time.monotonic() > deadline:
            log.warning("candidate endpoint %s was not deleted within %d s", name, TEARDOWN_SECONDS)
            return
        time.sleep(0.2)


def wait_in_service(backends, record, name: str, stop: threading.Event) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        endpoint = backends.resources.get(record.account_id, record.region, "Endpoint", name=name)
        if endpoint is None:
            raise BenchmarkFailed(f"Endpoint {name} disappeared while it was created.")
        if endpoint.status == "InService":
            return
        if endpoint.status == "Failed":
            raise BenchmarkFailed(f"Endpoint {name} failed: {endpoint.data.get('FailureReason')}")
        if time.monotonic() > deadline:
            raise BenchmarkFailed(f"Endpoint {name} was not InService within {STARTUP_SECONDS} seconds.")
        if stop.wait(0.5):
            raise Stopped


# -- the load -------------------------------------------------------------------------------------------------


def run_load(
    backends, record, endpoint: str, payloads: list[bytes], content_type: str, stop: threading.Event, deadline: float
) -> tuple[analysis.Progress, dict[int, list[tuple[float, float]]], dict]:
    """Drive ``endpoint`` by the job's traffic pattern until a stopping condition; (progress, utilization by
    level, load generator facts)."""
    data, settings = record.data, backends.settings
    conditions = data.get("StoppingConditions") or {}
    thresholds = conditions.get("ModelLatencyThresholds") or []
    progress = analysis.Progress(
        max_invocations=conditions.get("MaxInvocations"),
        latency_threshold=(float(thresholds[0]["Percentile"][1:]), float(thresholds[0]["ValueInMilliseconds"]))
        if thresholds
        else None,
        stop_when_flat=(conditions.get("FlatInvocations") or "Stop") == "Stop",
    )
    changes, duration = analysis.schedule(data["InputConfig"].get("TrafficPattern"))
    duration = min(duration, max(1.0, deadline - time.time()))
    access_key, secret_key = signing_key(settings, record.account_id)
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    spec = {
        "host": host,
        "port": settings.port,
        "region": record.region,
        "access_key": access_key,
        "secret_key": secret_key,
        "endpoint": endpoint,
        "payloads": [[base64.b64encode(p).decode(), content_type] for p in payloads],
        "schedule": changes,
        "duration": duration,
        "window": analysis.WINDOW_SECONDS,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfmaker.services.recommender.loadgen"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    done = threading.Event()

    def watch() -> None:  # a Stop ends the load at once, even between two windows
        while not done.wait(0.2):
            if stop.is_set():
                _end(proc)
                return

    threading.Thread(target=watch, daemon=True).start()
    usage_by_level: dict[int, list[tuple[float, float]]] = {}
    facts = {"client_cpu_seconds": 0.0, "requests": 0}
    dims = {"JobName": record.name}
    try:
        proc.stdin.write(json.dumps(spec) + "\n")
        proc.stdin.flush()
        before = utilization.usage(backends, endpoint, record.account_id, record.region)
        for line in proc.stdout:
            window = json.loads(line)
            progress.add(window)
            facts["client_cpu_seconds"] = window["cpu_seconds"]
            now_usage = utilization.usage(backends, endpoint, record.account_id, record.region)
            if before is not None and now_usage is not None:
                usage_by_level.setdefault(len(progress.levels) - 1, []).append(
                    (now_usage.cpu_percent_since(before), now_usage.memory_percent)
                )
            before = now_usage
            _publish(backends, record, dims, window)
            if progress.stopped_by or stop.is_set() or time.time() >= deadline:
                break
        if stop.is_set():
            raise Stopped
    finally:
        done.set()
        _end(proc)
        err = proc.stderr.read() if proc.stderr else ""
        proc.wait(10)
    if progress.windows == 0:
        raise BenchmarkFailed(f"The load generator measured nothing: {err.strip()[-300:] or 'no output'}")
    facts["requests"] = progress.requests
    return progress, usage_by_level, facts


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            proc.stdin.close()
        except OSError:
            pass
        proc.terminate()


def _publish(backends, record, dims: dict, window: dict) -> None:
    """The job's CloudWatch metrics for one window (namespace /aws/sagemaker/InferenceRecommendationsJobs)."""
    a, r = record.account_id, record.region
    metric_store.record(backends, a, r, NAMESPACE, "ClientInvocations", dims, window["ok"] + window["errors"], "Count")
    metric_store.record(backends, a, r, NAMESPACE, "ClientInvocationErrors", dims, window["errors"], "Count")
    metric_store.record(backends, a, r, NAMESPACE, "NumberOfUsers", dims, window["users"], "Count")
    for latency in window["latencies_us"][:1000]:  # a sample bounds the work per window
        metric_store.record(backends, a, r, NAMESPACE, "ClientLatency", dims, latency / 1000.0, "Milliseconds")


# -- one step ---------------------------------------------------------------------------------------------------


def run(backends, record, step: dict, stop: threading.Event) -> dict:
    """Run one benchmark; the step members to store (Metrics, EndpointConfiguration, ...). Raises
    BenchmarkFailed (the FailureReason) or Stopped."""
    candidate = step["candidate"]
    payload = record.data["_Payload"]
    payloads = sample_payloads(backends, record.account_id, payload["url"])
    existing = candidate.get("endpoint")
    name = existing or step["EndpointName"]
    started = time.time()
    try:
        if not existing:
            deploy(backends, record, step, name)
        wait_in_service(backends, record, name, stop)
        started = time.time()
        progress, usage_by_level, facts = run_load(
            backends, record, name, payloads, payload["content_type"], stop, record.data["_Deadline"]
        )
    finally:
        if not existing:
            tear_down(backends, record, name)
    ended = time.time()
    measured = progress.metrics()
    if measured is None or measured["MaxInvocations"] <= 0:
        raise BenchmarkFailed(f"No invocation succeeded ({progress.errors} errors of {progress.requests} requests).")
    level = progress.chosen()
    samples = usage_by_level.get(progress.levels.index(level), []) if level else []
    instance_type = candidate.get("instance_type") or _instance_type_of(backends, record, existing)
    out: dict = {
        "InvocationStartTime": round(started, 3),
        "InvocationEndTime": round(ended, 3),
        "EndpointMetrics": {"MaxInvocations": measured["MaxInvocations"], "ModelLatency": measured["ModelLatency"]},
        "_Measured": {
            **measured,
            "stopped_by": progress.stopped_by or "the traffic pattern ended",
            "client_cpu_seconds": facts["client_cpu_seconds"],
            "client_cpu_us_per_request": round(1e6 * facts["client_cpu_seconds"] / max(facts["requests"], 1), 1),
            "requests": facts["requests"],
            "errors": progress.errors,
            "levels": [
                {"users": lv.users, "per_minute": round(lv.rate_per_minute), "seconds": round(lv.seconds, 2)}
                for lv in progress.levels
            ],
        },
    }
    metrics: dict = {"MaxInvocations": measured["MaxInvocations"], "ModelLatency": measured["ModelLatency"]}
    if samples:
        metrics["CpuUtilization"] = round(sum(s[0] for s in samples) / len(samples), 2)
        metrics["MemoryUtilization"] = round(sum(s[1] for s in samples) / len(samples), 2)
    cost_hour = prices.cost_per_hour(backends.settings, instance_type) if not candidate.get("serverless") else None
    if cost_hour is not None:
        metrics["CostPerHour"] = cost_hour
        metrics["CostPerInference"] = prices.cost_per_inference(cost_hour, measured["MaxInvocations"])
    out["Metrics"] = metrics
    config = {"EndpointName": name, "VariantName": VARIANT if not existing else _variant_of(backends, record, name)}
    if candidate.get("serverless"):
        config["ServerlessConfig"] = candidate["serverless"]
    else:
        config.update(InstanceType=instance_type, InitialInstanceCount=1)
    out["EndpointConfiguration"] = config
    return out


def cpus_needed(candidate: dict) -> int:
    """Host processors a benchmark's instance takes (its type's vCPUs, capped by the host)."""
    if candidate.get("endpoint"):
        return 1
    return instance_types.limits(candidate.get("instance_type") or "ml.m5.large").cpus


def _instance_type_of(backends, record, endpoint: str) -> str | None:
    found = backends.resources.get(record.account_id, record.region, "Endpoint", name=endpoint)
    variants = (found.data.get("_live") or {}).get("variants") if found else None
    return variants[0]["instance_type"] if variants else None


def _variant_of(backends, record, endpoint: str) -> str:
    found = backends.resources.get(record.account_id, record.region, "Endpoint", name=endpoint)
    variants = (found.data.get("_live") or {}).get("variants") if found else None
    return variants[0]["name"] if variants else VARIANT


def endpoint_name(job_name: str, index: int) -> str:
    """A candidate endpoint's (and its model's and configuration's) name: the job's, the step's, a nonce."""
    return f"{job_name[:44].rstrip('-')}-ir{index}-{secrets.token_hex(4)}"
