"""The operation registry: which (service, operation) pairs SelfMaker implements, by what, and how
one is run.

A handler takes the request context and the validated input and returns a dict
shaped like the operation's output (extra keys are dropped on serialization).
:func:`invoke` runs one for a request (the wire protocols call it once they have
read the input), :func:`call` for the server itself (a pipeline step creating
its job): both normalise and validate the input against the operation's model
first, so either is refused the same way.
"""

from __future__ import annotations

import importlib
import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import anyio

from .errors import AWSError, not_implemented
from .models import operation_model, service_model
from .validate import validate

if TYPE_CHECKING:
    from botocore.model import OperationModel

    from ..backends import Backends

Handler = Callable[["Context", dict], "dict | None"]

_HANDLERS: dict[tuple[str, str], Handler] = {}


def new_request_id() -> str:
    """A random (version 4) UUID, as AWS request IDs are. Drawn from ``random`` (seeded from the OS once, and
    again in a forked child): str(uuid.uuid4()) asks the kernel for 16 bytes on every request, and an ID
    needs to be unique, not secret."""
    bits = (_random_bits(128) & ~_UUID_FIXED_BITS) | _UUID_V4_BITS
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_random_bits = random.getrandbits
_UUID_FIXED_BITS = (0xF000 << 64) | (0xC000 << 48)  # the version nibble and the variant's two bits
_UUID_V4_BITS = (0x4000 << 64) | (0x8000 << 48)


@dataclass
class Context:
    """Who is asking, where, and the backends that answer."""

    backends: Backends
    account_id: str
    region: str
    service: str = ""
    operation: str = ""
    access_key: str = ""
    request_id: str = field(default_factory=new_request_id)
    # Raw HTTP request parts, for operations whose input is not all in the model (e.g. streaming).
    headers: dict = field(default_factory=dict)
    error_code: str = ""  # the AWS error code the request was answered with, if any (for /metrics)

    @property
    def store(self):
        return self.backends.store

    @property
    def objects(self):
        return self.backends.objects

    @property
    def settings(self):
        return self.backends.settings

    def arn(self, service: str, resource: str, region: str | None = None, account: str | None = None) -> str:
        region = self.region if region is None else region
        account = self.account_id if account is None else account
        return f"arn:aws:{service}:{region}:{account}:{resource}"


# Operations whose handlers only read the metadata store (see invoke).
_STORE_READS: set[tuple[str, str]] = set()


# Operations whose handler is a coroutine (it waits on the event loop), known at registration rather than
# asked of inspect on every request.
_WAITERS: set[tuple[str, str]] = set()

# Input rewrites that run before validation, by operation (see `operation`).
_NORMALISERS: dict[tuple[str, str], Callable[[dict], dict]] = {}


def operation(
    service: str, name: str, *, store_read: bool = False, normalise: Callable[[dict], dict] | None = None
) -> Callable[[Handler], Handler]:
    """Register ``fn`` as the implementation of ``service``'s operation ``name``.

    ``store_read``: the handler only reads the metadata store (no writes, no files, no
    network), so on SQLite it may run on the event loop instead of a worker thread.
    ``normalise``: rewrites the raw input before it is validated, for legacy spellings
    the service still accepts but its current model no longer allows.
    """

    def register(fn: Handler) -> Handler:
        if name not in service_model(service).operation_names:
            raise ValueError(f"{service} has no operation {name} in its botocore model")
        if (service, name) in _HANDLERS:
            raise ValueError(f"{service}.{name} is implemented twice")
        _HANDLERS[(service, name)] = fn
        if inspect.iscoroutinefunction(fn):
            _WAITERS.add((service, name))
        if store_read:
            _STORE_READS.add((service, name))
        if normalise:
            _NORMALISERS[(service, name)] = normalise
        return fn

    return register


def normaliser_for(service: str, name: str) -> Callable[[dict], dict] | None:
    return _NORMALISERS.get((service, name))


def is_store_read(service: str, name: str) -> bool:
    return (service, name) in _STORE_READS


_EXTRA: set[tuple[str, str]] = set()


def declare_implemented(service: str, names) -> None:
    """For protocols served outside the registry (S3's streaming endpoint): count them as implemented."""
    _EXTRA.update((service, n) for n in names)


def handler_for(service: str, name: str) -> Handler | None:
    return _HANDLERS.get((service, name))


def implemented(service: str) -> set[str]:
    return {op for (svc, op) in (*_HANDLERS, *_EXTRA) if svc == service}


# ---------------------------------------------------------------------------
# Running an operation


# The code each service gives a request that breaks its model's constraints (default ValidationException).
VALIDATION_CODES = {
    "sts": "ValidationError",
    "iam": "ValidationError",
    "cloudformation": "ValidationError",
    "logs": "InvalidParameterException",
    "sagemaker-featurestore-runtime": "ValidationError",
    "sagemaker-runtime": "ValidationError",
    "athena": "InvalidRequestException",
}


# Operations that take NaN and infinities and answer them themselves. BatchPutMetrics reports such a value
# as that metric's VALIDATION_ERROR and stores the rest: a training loop whose loss went NaN keeps its
# other metrics. Everywhere else, a non-finite double is a ValidationException (none is ever stored).
NON_FINITE_ACCEPTED = {("sagemaker-metrics", "BatchPutMetrics")}


def _call(ctx: Context, op: OperationModel, params: dict):
    handler = handler_for(ctx.service, op.name)
    if handler is None:
        raise not_implemented(ctx.service, op.name)
    if normalise := normaliser_for(ctx.service, op.name):
        params = normalise(params)
    try:
        params = validate(params, op.input_shape, finite=(ctx.service, op.name) not in NON_FINITE_ACCEPTED)
    except AWSError as err:
        err.code = VALIDATION_CODES.get(ctx.service, err.code)
        raise
    return handler(ctx, params)


def call(ctx: Context, operation_name: str, params: dict):
    """Run an operation from inside the server (a pipeline step creating its job) as a request would:
    the same input validation, the same handler, the same AWSError a client would get."""
    inner = replace(ctx, operation=operation_name)
    return _call(inner, operation_model(inner.service, operation_name), params)


async def invoke(ctx: Context, op: OperationModel, params: dict):
    """Run the handler off the event loop: handlers do blocking database and file I/O.

    Except reads of an SQLite store: they never wait (WAL readers do not block on the
    writer), so their time is Python CPU time, and a worker thread only adds handoffs.
    Under concurrent requests, threads that release the GIL at every SQLite call fight
    over it, and that costs as much again as the work (benchmarks/control_plane.py:
    Describe and List at 8 clients take about half the CPU per request on the loop).
    """
    key = (ctx.service, op.name)
    if key in _WAITERS:
        # Handlers that wait (SQS long polling) are coroutines: a waiter holds no thread.
        return await _call(ctx, op, params)
    if key in _STORE_READS and ctx.backends.store.is_sqlite:
        return _call(ctx, op, params)
    return await anyio.to_thread.run_sync(_call, ctx, op, params)


# Every module whose import registers something: operations (directly or by declaring a resource Kind),
# reconciler controllers, background workers (their start order is selfmaker/backends.py's WORKER_ORDER,
# not this one's). Package __init__s register nothing, so a module missing here is not served.
SERVICE_MODULES: tuple[str, ...] = (
    # AWS subsets (below the SageMaker services, which use logs, metrics, alarms, STS and SQS)
    "selfmaker.aws.sts",
    "selfmaker.aws.iam",
    "selfmaker.aws.logs.log_operations",
    "selfmaker.aws.cloudwatch.metric_store",
    "selfmaker.aws.cloudwatch.metrics",
    "selfmaker.aws.cloudwatch.alarms",
    "selfmaker.aws.sqs.queues",
    "selfmaker.aws.sqs.messages",
    "selfmaker.aws.athena",
    "selfmaker.aws.events.rules",
    "selfmaker.aws.events.outbox",
    "selfmaker.aws.events.delivery",
    # the machinery behind long-running resources
    "selfmaker.engines.leases",
    "selfmaker.engines.reconciler",
    "selfmaker.engines.background_builds",
    # SageMaker, one family after another
    "selfmaker.services.tagging",
    "selfmaker.services.catalog",
    "selfmaker.services.lineage",
    "selfmaker.services.experiment_metrics",
    "selfmaker.services.experiments",
    "selfmaker.services.featurestore.control",
    "selfmaker.services.featurestore.runtime",
    "selfmaker.services.featurestore.lifecycle",
    "selfmaker.services.featurestore.worker",
    "selfmaker.services.algorithms.resource",
    "selfmaker.services.algorithms.validation",
    "selfmaker.services.jobs.compilation",
    "selfmaker.services.jobs.credentials",
    "selfmaker.services.jobs.logship",
    "selfmaker.services.jobs.processing",
    "selfmaker.services.jobs.training",
    "selfmaker.services.jobs.transform",
    "selfmaker.services.hosting.fleet",
    "selfmaker.services.hosting.deployments",
    "selfmaker.services.hosting.endpoint_configs",
    "selfmaker.services.hosting.endpoints",
    "selfmaker.services.hosting.inference_experiments",
    "selfmaker.services.hosting.capture",
    "selfmaker.services.hosting.invocation_metrics",
    "selfmaker.services.hosting.router",
    "selfmaker.services.hosting.utilization",
    "selfmaker.services.notebooks.lifecycle_configs",
    "selfmaker.services.notebooks.instances",
    "selfmaker.services.notebooks.controller",
    "selfmaker.services.pipelines.pipeline_resource",
    "selfmaker.services.pipelines.executions",
    "selfmaker.services.pipelines.engine",
    "selfmaker.services.registry",
    "selfmaker.services.edge.fleets",
    "selfmaker.services.edge.devices",
    "selfmaker.services.edge.packaging",
    "selfmaker.services.edge.plans",
    "selfmaker.services.edge.runtime",
    "selfmaker.services.recommender.jobs",
    "selfmaker.services.recommender.controller",
    "selfmaker.services.tuning.jobs",
    "selfmaker.services.tuning.controller",
    "selfmaker.services.search",
    # SageMaker's state changes, emitted to EventBridge as they are stored
    "selfmaker.services.state_change_events",
    # CloudFormation: stacks of the resources above, made through their own operations
    "selfmaker.aws.cloudformation.types_sagemaker",
    "selfmaker.aws.cloudformation.types_aws",
    "selfmaker.aws.cloudformation.types_events",
    "selfmaker.aws.cloudformation.engine",
    "selfmaker.aws.cloudformation.stacks",
    "selfmaker.aws.cloudformation.change_sets",
    # Service Catalog (provisioned products are stacks) and SageMaker Projects (provisioned products)
    "selfmaker.aws.servicecatalog.catalog",
    "selfmaker.aws.servicecatalog.provisioning",
    "selfmaker.services.projects.projects",
    # S3, served by its own streaming endpoint (it declares the operations it serves)
    "selfmaker.objects.endpoint",
)


def load_all() -> None:
    """Import every module that registers operations, controllers or workers (idempotent)."""
    for name in SERVICE_MODULES:
        importlib.import_module(name)
