"""sagemaker-runtime InvokeEndpoint: from the caller to one model server instance and back.

Per request: look the endpoint's Route up (one dict read), pick a traffic entry
by share and a production variant by weight (or the TargetVariant), an
instance of it round robin, and forward the body over a pooled keep-alive
connection to that instance's Unix socket. Shadows get a sampled copy on a
small bounded pool that drops work rather than queue it; data capture only
appends to an in-memory buffer (capture.py flushes it). Nothing slow or
fallible that the caller does not need runs before the answer goes back.

A request that fails because its instance went away before answering (the
socket is gone after a deployment swapped the Route, or the process died) is
sent once more, on another instance of the current Route; a keep-alive
connection the server closed while idle is simply reopened.
"""

from __future__ import annotations

import http.client
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ...aws import metric_store
from ...engines.model_server import UnixConnection
from ...server.app import background_worker
from ...server.errors import AWSError
from ...server.operations import Context, operation
from . import capture, routes
from .routes import Route, Target

log = logging.getLogger("selfmaker.router")

MODEL_TIMEOUT = 60.0  # seconds a container has to answer (the container contract)
MAX_PAYLOAD = 6 * 1024 * 1024  # bytes, each way (the request's is enforced by the model's validation)
CONTAINER = "primary"  # how AWS names a model's single container in its error messages
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"
NOT_SUPPORTED = {
    "TargetModel": "multi-model endpoints",
    "TargetContainerHostname": "multi-container endpoints with direct invocation",
    "InferenceComponentName": "inference components",
    "EnableExplanations": "SageMaker Clarify online explanations",
    "SessionId": "stateful sessions",
}


@dataclass(frozen=True, slots=True)
class Invocation:
    body: bytes
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    inference_id: str | None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str | None
    custom_attributes: str | None
    model_seconds: float


class InstanceGone(Exception):
    """The instance closed the connection or its socket vanished before answering."""


class ModelTimeout(Exception):
    pass


class ResponseTooLarge(Exception):
    def __init__(self, status: int, size: int | None):
        super().__init__(status, size)
        self.status, self.size = status, size


def _invalid(message: str) -> AWSError:
    return AWSError("ValidationError", message)  # the runtime's spelling (the control plane's is ValidationException)


# ---------------------------------------------------------------------------
# Connections


class ConnectionPool:
    """Idle keep-alive connections to one model server socket."""

    MAX_IDLE = 64

    def __init__(self, path: str):
        self.path = path
        self._idle: list[UnixConnection] = []
        self._lock = threading.Lock()
        self.closed = False

    def acquire(self) -> tuple[UnixConnection, bool]:
        """A connection, and whether it was used before (and so may have been closed by the server)."""
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return UnixConnection(self.path, timeout=MODEL_TIMEOUT), False

    def release(self, connection: UnixConnection) -> None:
        with self._lock:
            if not self.closed and len(self._idle) < self.MAX_IDLE:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class Instances:
    """The connection pools of every model server socket the router has talked to."""

    def __init__(self):
        self._pools: dict[str, ConnectionPool] = {}
        self._lock = threading.Lock()

    def _pool(self, path: str) -> ConnectionPool:
        pool = self._pools.get(path)
        if pool is None:
            with self._lock:
                pool = self._pools.get(path)
                if pool is None:
                    # A new instance usually means others were retired: forget those whose socket is gone.
                    for gone in [p for p in self._pools if not os.path.exists(p)]:
                        self._pools.pop(gone).close()
                    pool = self._pools[path] = ConnectionPool(path)
        return pool

    def exchange(self, path: str, invocation: Invocation) -> Answer:
        """POST /invocations to the instance on ``path``."""
        pool = self._pool(path)
        headers = {}
        if invocation.content_type:
            headers["Content-Type"] = invocation.content_type
        if invocation.accept:
            headers["Accept"] = invocation.accept
        if invocation.custom_attributes:
            headers[CUSTOM_ATTRIBUTES] = invocation.custom_attributes
        while True:
            connection, reused = pool.acquire()
            started = time.perf_counter()
            try:
                connection.request("POST", "/invocations", body=invocation.body, headers=headers)
                response = connection.getresponse()
                length = response.length
                if length is not None and length > MAX_PAYLOAD:
                    raise ResponseTooLarge(response.status, length)
                body = response.read()
            except TimeoutError:
                connection.close()
                raise ModelTimeout() from None
            except ResponseTooLarge:
                connection.close()
                raise
            except (OSError, http.client.HTTPException) as err:
                connection.close()
                if reused:
                    continue  # the server closed this idle connection: open a fresh one
                raise InstanceGone(f"{type(err).__name__}: {err}") from None
            elapsed = time.perf_counter() - started
            if response.will_close:
                connection.close()
            else:
                pool.release(connection)
            if len(body) > MAX_PAYLOAD:
                raise ResponseTooLarge(response.status, len(body))
            return Answer(response.status, body, response.getheader("Content-Type"),
                          response.getheader(CUSTOM_ATTRIBUTES), elapsed)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


# ---------------------------------------------------------------------------
# Shadows


class ShadowSender:
    """Sends shadow copies on a few threads; drops a copy when they are all busy and the backlog is full."""

    def __init__(self, workers: int = 2, backlog: int = 16):
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="selfmaker-shadow")
        self._slots = threading.BoundedSemaphore(workers + backlog)
        self.dropped = 0

    def offer(self, work, *args) -> None:
        if not self._slots.acquire(blocking=False):
            self.dropped += 1
            return
        try:
            future = self._executor.submit(work, *args)
        except RuntimeError:  # shutting down
            self._slots.release()
            return
        future.add_done_callback(lambda _: self._slots.release())

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Router:
    """The server's one router: instance connections and the shadow sender."""

    def __init__(self, backends):
        self.backends = backends
        self.instances = Instances()
        self.shadows = ShadowSender()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.shadows.close()
        self.instances.close()


_creating = threading.Lock()


@background_worker
def router(backends) -> Router:
    """The server's one Router (the lifespan starts and stops it; in-process callers build it on first use)."""
    found = backends.services.get("hosting.router")
    if found is None:
        with _creating:
            found = backends.services.setdefault("hosting.router", Router(backends))
    return found


# ---------------------------------------------------------------------------
# Choosing where a request goes


def choose(route: Route, variant: str | None) -> Target:
    if variant:
        targets = [t for t in route.variants.get(variant, ()) if t.sockets]
        if not targets:
            if variant in route.variants:
                raise AWSError("ServiceUnavailable", f"Variant {variant} of endpoint {route.endpoint_name} "
                                                     "has no instance ready to serve; try again shortly.", 503)
            raise _invalid(f"Target variant {variant} is not a production variant of endpoint "
                             f"{route.endpoint_name}. Valid variants: {', '.join(sorted(route.variants))}.")
        return random.choice(targets) if len(targets) > 1 else targets[0]
    entries = [(share, targets) for share, targets in route.traffic if share > 0 and any(t.sockets for t in targets)]
    if not entries:
        raise AWSError("ServiceUnavailable",
                       f"Endpoint {route.endpoint_name} has no instance ready to serve; try again shortly.", 503)
    targets = entries[0][1] if len(entries) == 1 else random.choices(
        [t for _, t in entries], weights=[s for s, _ in entries])[0]
    ready = [t for t in targets if t.sockets and t.weight > 0]
    if not ready:
        raise _invalid(f"Endpoint {route.endpoint_name} routes no traffic: every production variant has weight "
                         "0. Name one with TargetVariant, or give one a positive weight.")
    return ready[0] if len(ready) == 1 else random.choices(ready, weights=[t.weight for t in ready])[0]


def forward(backends, router: Router, route: Route, target: Target, invocation: Invocation,
            pinned: bool) -> tuple[Route, Target, Answer]:
    """Send to an instance of ``target``; once more elsewhere if that instance went away unanswered."""
    tried: set[str] = set()
    while True:
        if tried:  # a retry takes the next instance not tried, leaving the round robin's turn to others
            path = next((s for s in target.sockets if s not in tried), target.sockets[0])
        else:
            path = target.sockets[next(target.turns) % len(target.sockets)]
        try:
            return route, target, router.instances.exchange(path, invocation)
        except InstanceGone as err:
            tried.add(path)
            if len(tried) > 1:
                raise AWSError("ServiceUnavailable", f"No instance of variant {target.variant} of endpoint "
                                                     f"{route.endpoint_name} could answer ({err}).", 503) from None
            log.info("instance %s of %s/%s went away (%s); retrying on another", path, route.endpoint_name,
                     target.variant, err)
            # The Route may have moved on (a deployment, a replaced instance): retry on the current one.
            route = routes.lookup(backends, route.account_id, route.region, route.endpoint_name) or route
            target = choose(route, target.variant if pinned else None)


# ---------------------------------------------------------------------------
# Errors as the runtime reports them


def _log_group(route: Route) -> str:
    return f"/aws/sagemaker/Endpoints/{route.endpoint_name}"


def _model_error(route: Route, status: int, message: str, original: str | None = None) -> AWSError:
    kind = "client" if 400 <= status < 500 else "server"
    group = _log_group(route)
    return AWSError(
        "ModelError",
        f'Received {kind} error ({status}) from {CONTAINER} with message "{message}". See the CloudWatch log '
        f"group {group} in account {route.account_id} for more information.",
        424,
        OriginalStatusCode=status,
        OriginalMessage=message if original is None else original,
        LogStreamArn=f"arn:aws:logs:{route.region}:{route.account_id}:log-group:{group}",
    )


# ---------------------------------------------------------------------------
# Metrics


def _record_metrics(backends, route: Route, target: Target, status: int, model_seconds: float,
                    total_seconds: float) -> None:
    failed = not 200 <= status < 300
    values = (
        ("Invocations", 1.0, "Count"),
        ("InvocationsPerInstance", 1.0 / max(len(target.sockets), 1), "Count"),
        ("ModelLatency", model_seconds * 1e6, "Microseconds"),
        ("OverheadLatency", max(total_seconds - model_seconds, 0.0) * 1e6, "Microseconds"),
        ("Invocation4XXErrors", float(400 <= status < 500), "Count"),
        ("Invocation5XXErrors", float(status >= 500 or status == 0), "Count"),
        ("InvocationModelErrors", float(failed), "Count"),
    )
    by_variant = {"EndpointName": route.endpoint_name, "VariantName": target.variant}
    by_config = {**by_variant, "EndpointConfigName": target.config_name}
    for name, value, unit in values:
        for dimensions in (by_variant, by_config):
            metric_store.record(backends, route.account_id, route.region, "AWS/SageMaker", name, dimensions,
                                value, unit)


# ---------------------------------------------------------------------------
# Shadows and capture: after the answer is known, off the caller's path


def _send_shadow(backends, router: Router, route: Route, target: Target, invocation: Invocation) -> None:
    started = time.perf_counter()
    try:
        path = target.sockets[next(target.turns) % len(target.sockets)]
        answer = router.instances.exchange(path, invocation)
    except ModelTimeout:
        _record_metrics(backends, route, target, 0, MODEL_TIMEOUT, time.perf_counter() - started)
        return
    except (InstanceGone, ResponseTooLarge) as err:
        log.info("shadow %s of %s got no answer: %s", target.variant, route.endpoint_name, err)
        return
    except Exception:  # a shadow must never take anything down with it
        log.exception("shadow %s of %s failed", target.variant, route.endpoint_name)
        return
    _record_metrics(backends, route, target, answer.status, answer.model_seconds, time.perf_counter() - started)
    if route.capture and 200 <= answer.status < 300:
        capture.offer(backends, route, target.variant, invocation, answer, time.time())


@operation("sagemaker-runtime", "InvokeEndpoint")
def invoke_endpoint(ctx: Context, params: dict) -> dict:
    started = time.perf_counter()
    name = params["EndpointName"]
    for member, feature in NOT_SUPPORTED.items():
        if params.get(member):
            raise _invalid(f"{member}: {feature} are not supported by SelfMaker yet.")
    route = routes.lookup(ctx.backends, ctx.account_id, ctx.region, name)
    if route is None:
        raise _invalid(f"Endpoint {name} of account {ctx.account_id} not found.")
    invocation = Invocation(params.get("Body") or b"", params.get("ContentType"), params.get("Accept"),
                            params.get("CustomAttributes"), params.get("InferenceId"))
    wanted = params.get("TargetVariant")
    the_router = router(ctx.backends)
    route, target, answer = _answer(ctx.backends, the_router, route, choose(route, wanted), invocation, wanted,
                                    started)
    for shadow in route.shadows:
        if shadow.sockets and random.random() < shadow.weight:
            the_router.shadows.offer(_send_shadow, ctx.backends, the_router, route, shadow, invocation)
    if route.capture:
        capture.offer(ctx.backends, route, target.variant, invocation, answer, time.time())
    _record_metrics(ctx.backends, route, target, answer.status, answer.model_seconds, time.perf_counter() - started)
    result = {"Body": answer.body, "InvokedProductionVariant": target.variant}
    if answer.content_type:
        result["ContentType"] = answer.content_type
    if answer.custom_attributes:
        result["CustomAttributes"] = answer.custom_attributes
    return result


def _answer(backends, the_router: Router, route: Route, target: Target, invocation: Invocation,
            wanted: str | None, started: float) -> tuple[Route, Target, Answer]:
    """The model's successful answer, or the ModelError (recorded in the metrics) that its failure is."""
    try:
        route, target, answer = forward(backends, the_router, route, target, invocation, pinned=bool(wanted))
    except ModelTimeout:
        _record_metrics(backends, route, target, 0, MODEL_TIMEOUT, time.perf_counter() - started)
        raise _model_error(route, 0, f"Your invocation timed out while waiting for a response from container "
                                     f"{CONTAINER}. Review the latency metrics for each container in Amazon "
                                     "CloudWatch, resolve the issue, and try again.") from None
    except ResponseTooLarge as err:
        _record_metrics(backends, route, target, 500, 0.0, time.perf_counter() - started)
        size = f"{err.size} bytes" if err.size is not None else "more"
        raise _model_error(route, err.status, f"The response from container {CONTAINER} ({size}) exceeds the "
                                              f"maximum payload size of {MAX_PAYLOAD} bytes.") from None
    if not 200 <= answer.status < 300:
        _record_metrics(backends, route, target, answer.status, answer.model_seconds, time.perf_counter() - started)
        raise _model_error(route, answer.status, answer.body.decode("utf-8", "replace"))
    return route, target, answer
