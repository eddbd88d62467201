"""The operation registry: which (service, operation) pairs SelfMaker implements, and by what.

A handler takes the request context and the validated input and returns a dict
shaped like the operation's output (extra keys are dropped on serialization).
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..backends import Backends

Handler = Callable[["Context", dict], "dict | None"]

_HANDLERS: dict[tuple[str, str], Handler] = {}


@dataclass
class Context:
    """Who is asking, where, and the backends that answer."""

    backends: Backends
    account_id: str
    region: str
    service: str = ""
    operation: str = ""
    access_key: str = ""
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # Raw HTTP request parts, for operations whose input is not all in the model (e.g. streaming).
    headers: dict = field(default_factory=dict)

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


# Operations whose handlers only read the metadata store (see protocol.invoke).
_STORE_READS: set[tuple[str, str]] = set()


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
        from .models import service_model

        if name not in service_model(service).operation_names:
            raise ValueError(f"{service} has no operation {name} in its botocore model")
        if (service, name) in _HANDLERS:
            raise ValueError(f"{service}.{name} is implemented twice")
        _HANDLERS[(service, name)] = fn
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


# Every module whose import registers something: operations (directly or by declaring a resource Kind),
# reconciler controllers, background workers (their start order is selfmaker/backends.py's WORKER_ORDER,
# not this one's). Package __init__s register nothing, so a module missing here is not served.
SERVICE_MODULES: tuple[str, ...] = (
    # AWS subsets (below the SageMaker services, which use logs, metrics, alarms, STS and SQS)
    "selfmaker.aws.sts",
    "selfmaker.aws.iam",
    "selfmaker.aws.logs_api",
    "selfmaker.aws.metric_store",
    "selfmaker.aws.cloudwatch.metrics",
    "selfmaker.aws.cloudwatch.alarms",
    "selfmaker.aws.sqs.queues",
    "selfmaker.aws.sqs.messages",
    "selfmaker.aws.athena",
    # the machinery behind long-running resources
    "selfmaker.engines.reconciler",
    # SageMaker, one family after another
    "selfmaker.services.tagging",
    "selfmaker.services.catalog",
    "selfmaker.services.lineage",
    "selfmaker.services.metrics",
    "selfmaker.services.experiments",
    "selfmaker.services.featurestore.control",
    "selfmaker.services.featurestore.runtime",
    "selfmaker.services.featurestore.lifecycle",
    "selfmaker.services.featurestore.worker",
    "selfmaker.services.jobs.credentials",
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
    "selfmaker.services.pipelines.pipelines",
    "selfmaker.services.pipelines.executions",
    "selfmaker.services.pipelines.engine",
    "selfmaker.services.registry",
    "selfmaker.services.search",
    # S3, served by its own streaming endpoint (it declares the operations it serves)
    "selfmaker.objects.endpoint",
)


def load_all() -> None:
    """Import every module that registers operations, controllers or workers (idempotent)."""
    for name in SERVICE_MODULES:
        importlib.import_module(name)
