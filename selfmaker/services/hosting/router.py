"""sagemaker-runtime InvokeEndpoint: from the caller to one model server instance and back.

Per request: look the endpoint's Route up (one dict read), pick a traffic entry
by share and a production variant by weight (or the TargetVariant), an
instance of it round robin, and forward the body over a pooled keep-alive
connection to that instance's Unix socket or TCP address (connections.py). An
endpoint another server drives is routed by the Route its record calls for
(shared_routes.py), so any server answers. The handler is a
coroutine on the server's event loop: forwarding is waiting, and no thread
hand-off is cheaper than one.

Shadows get a sampled copy as background tasks, at most MAX_SHADOWS_IN_FLIGHT
at once (beyond that, copies are dropped, never queued); data capture and
metrics only append to in-memory buffers that threads flush (capture.py,
invocation_metrics.py). Nothing slow or fallible that the caller does not need
runs before the answer goes back.

A request that fails because its instance went away before answering (the
socket is gone after a deployment swapped the Route, or the process died) is
sent once more, on another instance of the current Route; a keep-alive
connection the server closed while idle is simply reopened.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from ...server.errors import AWSError
from ...server.operations import Context, operation
from . import capture, routes
from .connections import (
    Answer,
    BadResponse,
    InstanceGone,
    Instances,
    Invocation,
    ModelTimeout,
    ResponseTooLarge,
)
from .invocation_metrics import invocation_metrics
from .routes import Route, Target
from .shared_routes import shared_routes

log = logging.getLogger("selfmaker.router")

MODEL_TIMEOUT = 60.0  # seconds a container has to answer (the container contract)
MAX_PAYLOAD = 6 * 1024 * 1024  # bytes, each way (the request's is enforced by the model's validation)
MAX_SHADOWS_IN_FLIGHT = 32
CONTAINER = "primary"  # how AWS names a model's single container in its error messages
NOT_SUPPORTED = {
    "TargetModel": "multi-model endpoints",
    "TargetContainerHostname": "multi-container endpoints with direct invocation",
    "InferenceComponentName": "inference components",
    "EnableExplanations": "SageMaker Clarify online explanations",
    "SessionId": "stateful sessions",
}


def _invalid(message: str) -> AWSError:
    return AWSError("ValidationError", message)  # the runtime's spelling (the control plane's is ValidationException)


class Router:
    """The server's one router: connections to instances, and the shadow copies in flight."""

    def __init__(self, backends):
        self.backends = backends
        self.instances = Instances()
        self.shadows: set[asyncio.Task] = set()
        self.shadows_dropped = 0

    def send_shadow(self, route: Route, target: Target, invocation: Invocation) -> None:
        if len(self.shadows) >= MAX_SHADOWS_IN_FLIGHT:
            self.shadows_dropped += 1
            return
        task = asyncio.get_running_loop().create_task(_shadow(self.backends, self, route, target, invocation))
        self.shadows.add(task)
        task.add_done_callback(self.shadows.discard)


def router(backends) -> Router:
    """The server's one Router (its connections and tasks belong to the event loop, and end with it)."""
    return backends.shared("hosting.router", lambda: Router(backends))


# ---------------------------------------------------------------------------
# Choosing where a request goes


async def _current_route(backends, account_id: str, region: str, name: str, fresh: bool = False) -> Route | None:
    """This server's Route of the endpoint if it drives it, else the one its record calls for (shared_routes.py)."""
    route = routes.lookup(backends, account_id, region, name)  # one dict read: the common case
    if route is None:
        route = await shared_routes(backends).find(account_id, region, name, fresh)
    return route


def choose(route: Route, variant: str | None) -> Target:
    if variant:  # that variant, in whichever fleet serves it (both while a deployment shifts traffic)
        entries = [(share, t) for share, t in route.variants.get(variant, ()) if t.sockets]
        if not entries:
            if variant in route.variants:
                raise AWSError(
                    "ServiceUnavailable",
                    f"Variant {variant} of endpoint {route.endpoint_name} "
                    "has no instance ready to serve; try again shortly.",
                    503,
                )
            raise _invalid(
                f"Target variant {variant} is not a production variant of endpoint "
                f"{route.endpoint_name}. Valid variants: {', '.join(sorted(route.variants))}."
            )
        if len(entries) == 1 or not any(share for share, _ in entries):
            return entries[0][1]
        return random.choices([t for _, t in entries], weights=[share for share, _ in entries])[0]
    entries = route.open_traffic
    if not entries:
        raise AWSError(
            "ServiceUnavailable",
            f"Endpoint {route.endpoint_name} has no instance ready to serve; try again shortly.",
            503,
        )
    ready = (
        entries[0][1]
        if len(entries) == 1
        else random.choices([t for _, t in entries], weights=[s for s, _ in entries])[0]
    )
    if not ready:
        raise _invalid(
            f"Endpoint {route.endpoint_name} routes no traffic: every production variant has weight "
            "0. Name one with TargetVariant, or give one a positive weight."
        )
    return ready[0] if len(ready) == 1 else random.choices(ready, weights=[t.weight for t in ready])[0]


async def forward(
    backends, router: Router, route: Route, target: Target, invocation: Invocation, pinned: bool
) -> tuple[Route, Target, Answer]:
    """Send to an instance of ``target``; once more elsewhere if that instance went away unanswered."""
    tried: set[str] = set()
    while True:
        if tried:  # a retry takes the next instance not tried, leaving the round robin's turn to others
            path = next((s for s in target.sockets if s not in tried), target.sockets[0])
        else:
            path = target.sockets[next(target.turns) % len(target.sockets)]
        try:
            answer = await router.instances.exchange(path, invocation, MODEL_TIMEOUT, MAX_PAYLOAD)
            return route, target, answer
        except InstanceGone as err:
            tried.add(path)
            if len(tried) > 1:
                raise AWSError(
                    "ServiceUnavailable",
                    f"No instance of variant {target.variant} of endpoint {route.endpoint_name} could answer ({err}).",
                    503,
                ) from None
            log.info(
                "instance %s of %s/%s went away (%s); retrying on another",
                path,
                route.endpoint_name,
                target.variant,
                err,
            )
            # The Route may have moved on (a deployment, a replaced instance): retry on the current one.
            route = await _current_route(backends, route.account_id, route.region, route.endpoint_name, True) or route
            target = choose(route, target.variant if pinned else None)


# ---------------------------------------------------------------------------
# Errors as the runtime reports them


def _model_error(route: Route, status: int, message: str) -> AWSError:
    kind = "client" if 400 <= status < 500 else "server"
    group = f"/aws/sagemaker/Endpoints/{route.endpoint_name}"
    return AWSError(
        "ModelError",
        f'Received {kind} error ({status}) from {CONTAINER} with message "{message}". See the CloudWatch log '
        f"group {group} in account {route.account_id} for more information.",
        424,
        OriginalStatusCode=status,
        OriginalMessage=message,
        LogStreamArn=f"arn:aws:logs:{route.region}:{route.account_id}:log-group:{group}",
    )


async def _answer(
    backends, router: Router, route: Route, target: Target, invocation: Invocation, pinned: bool, started: float
) -> tuple[Route, Target, Answer]:
    """The model's successful answer, or the ModelError (recorded in the metrics) that its failure is."""
    metrics = invocation_metrics(backends)
    try:
        route, target, answer = await forward(backends, router, route, target, invocation, pinned)
    except ModelTimeout:
        metrics.add(route, target, 0, MODEL_TIMEOUT, time.perf_counter() - started)
        raise _model_error(
            route,
            0,
            f"Your invocation timed out while waiting for a response from container "
            f"{CONTAINER}. Review the latency metrics for each container in Amazon "
            "CloudWatch, resolve the issue, and try again.",
        ) from None
    except ResponseTooLarge as err:
        metrics.add(route, target, 0, 0.0, time.perf_counter() - started)  # no usable answer
        size = f"{err.size} bytes" if err.size is not None else "more"
        raise _model_error(
            route,
            err.status,
            f"The response from container {CONTAINER} ({size}) exceeds the "
            f"maximum payload size of {MAX_PAYLOAD} bytes.",
        ) from None
    except BadResponse as err:
        metrics.add(route, target, 0, 0.0, time.perf_counter() - started)
        raise _model_error(route, 0, f"The container {CONTAINER} answered something that is not HTTP: {err}") from None
    metrics.add(route, target, answer.status, answer.model_seconds, time.perf_counter() - started)
    if not 200 <= answer.status < 300:
        raise _model_error(route, answer.status, answer.body.decode("utf-8", "replace"))
    return route, target, answer


async def _shadow(backends, router: Router, route: Route, target: Target, invocation: Invocation) -> None:
    """A shadow copy: its answer is recorded (metrics, capture) and discarded; its failures stay here."""
    started = time.perf_counter()
    try:
        path = target.sockets[next(target.turns) % len(target.sockets)]
        answer = await router.instances.exchange(path, invocation, MODEL_TIMEOUT, MAX_PAYLOAD)
    except ModelTimeout:
        invocation_metrics(backends).add(route, target, 0, MODEL_TIMEOUT, time.perf_counter() - started)
        return
    except (InstanceGone, ResponseTooLarge, BadResponse) as err:
        log.info("shadow %s of %s got no answer: %s", target.variant, route.endpoint_name, err)
        return
    except Exception:  # a shadow must never take anything down with it
        log.exception("shadow %s of %s failed", target.variant, route.endpoint_name)
        return
    invocation_metrics(backends).add(route, target, answer.status, answer.model_seconds, time.perf_counter() - started)
    if 200 <= answer.status < 300:
        capture.offer(backends, route, target.variant, invocation, answer, time.time())


@operation("sagemaker-runtime", "InvokeEndpoint")
async def invoke_endpoint(ctx: Context, params: dict) -> dict:
    started = time.perf_counter()
    name = params["EndpointName"]
    for member, feature in NOT_SUPPORTED.items():
        if params.get(member):
            raise _invalid(f"{member}: {feature} are not supported by SelfMaker yet.")
    # This server's own Route in one dict read, as _current_route's common case, without a coroutine of its own.
    route = routes.lookup(ctx.backends, ctx.account_id, ctx.region, name) or await shared_routes(ctx.backends).find(
        ctx.account_id, ctx.region, name
    )
    if route is None:
        raise _invalid(f"Endpoint {name} of account {ctx.account_id} not found.")
    invocation = Invocation(
        params.get("Body") or b"",
        params.get("ContentType"),
        params.get("Accept"),
        params.get("CustomAttributes"),
        params.get("InferenceId"),
    )
    wanted = params.get("TargetVariant")
    the_router = router(ctx.backends)
    route, target, answer = await _answer(
        ctx.backends, the_router, route, choose(route, wanted), invocation, bool(wanted), started
    )
    for shadow in route.shadows:
        if shadow.sockets and random.random() < shadow.weight:
            the_router.send_shadow(route, shadow, invocation)
    capture.offer(ctx.backends, route, target.variant, invocation, answer, time.time())
    result = {"Body": answer.body, "InvokedProductionVariant": target.variant}
    if answer.content_type:
        result["ContentType"] = answer.content_type
    if answer.custom_attributes:
        result["CustomAttributes"] = answer.custom_attributes
    return result
