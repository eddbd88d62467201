"""The server's Prometheus metrics (``GET /metrics``), on ``prometheus_client``: one registry per server.

Each server (each :class:`~selfmaker.backends.Backends`) has its own ``CollectorRegistry``, never the
library's global one, so that tests running several servers in one process keep them apart. It holds:

- the process and platform collectors (``process_*``, ``python_*``): this process's own;
- :class:`ServerMetrics`: latency histograms of endpoint invocations per endpoint and variant, and of
  API operations per service and operation, with error counts (observed by this process);
- the collectors other modules declare with :func:`scrape_collector` (resource counts by status, the
  CloudWatch metric data), read from the store at each scrape.

Label names are the same everywhere: ``account``, ``region``, ``endpoint_name``, ``variant_name``,
``service``, ``operation``, ``code``, ``kind``, ``status`` (docs/metrics.md lists them per metric).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select

from . import __version__
from .store import schema

# The text format generate_latest writes, under the content type every Prometheus version accepts
# (the library's CONTENT_TYPE_LATEST names version 1.0.0, which older scrapers refuse).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# No ``_created`` series beside each counter and histogram: a second series per metric that no query
# here needs (Prometheus infers resets itself). The setting is the library's, for this whole process.
disable_created_metrics()

# From 100 µs (a router's overhead, a Describe on SQLite) to the model's 60 s timeout.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
ENDPOINT_LABELS = ("account", "region", "endpoint_name", "variant_name")
API_LABELS = ("service", "operation")

# Factories of collectors read at scrape time, declared by the modules that own the data (see scrape_collector).
_COLLECTOR_FACTORIES: list[Callable] = []
# Called before each scrape, to bring the in-process metrics up to date (e.g. fold buffered samples).
_BEFORE_SCRAPE: list[Callable] = []


def scrape_collector(factory: Callable) -> Callable:
    """Declare ``factory(backends)``: a collector (``collect()`` yields metric families) of every server's registry."""
    _COLLECTOR_FACTORIES.append(factory)
    return factory


def before_scrape(hook: Callable) -> Callable:
    """Declare ``hook(backends)``, run before each scrape (cheap: it runs on every GET /metrics)."""
    _BEFORE_SCRAPE.append(hook)
    return hook


def status_class(status: int) -> str:
    """A model container's HTTP status as its class ("2xx"...); "none" when it never answered."""
    return f"{status // 100}xx" if 100 <= status < 600 else "none"


class ServerMetrics:
    """What this process observes. The labelled children are cached: ``labels()`` takes a lock each call."""

    def __init__(self, registry: CollectorRegistry):
        self.model_latency = Histogram(
            "selfmaker_endpoint_model_latency_seconds",
            "Time the model container took to answer an invocation (requests it answered).",
            ENDPOINT_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.overhead_latency = Histogram(
            "selfmaker_endpoint_overhead_latency_seconds",
            "Time SelfMaker added to an invocation: the router's total minus the model's (requests it answered).",
            ENDPOINT_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.invocations = Counter(
            "selfmaker_endpoint_invocations",
            "Invocations routed to a variant (shadow copies included), by the model's HTTP status class "
            '("none": no answer, e.g. a timeout).',
            (*ENDPOINT_LABELS, "status_class"),
            registry=registry,
        )
        self.api_latency = Histogram(
            "selfmaker_api_request_duration_seconds",
            "Time to answer an API request, errors included, by service and operation.",
            API_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.api_errors = Counter(
            "selfmaker_api_errors",
            "API requests answered with an error, by service, operation and AWS error code.",
            (*API_LABELS, "code"),
            registry=registry,
        )
        self._lock = threading.Lock()
        self._endpoint_children: dict[tuple, tuple] = {}
        self._api_children: dict[tuple[str, str], Any] = {}  # the histogram's labelled children

    def observe_invocation(
        self, labels: tuple[str, str, str, str], status: int, model_seconds: float, total_seconds: float
    ) -> None:
        children = self._endpoint_children.get(labels)
        if children is None:
            with self._lock:
                children = self._endpoint_children.setdefault(
                    labels,
                    (self.model_latency.labels(*labels), self.overhead_latency.labels(*labels), {}),
                )
        model, overhead, by_status = children
        cls = status_class(status)
        counter = by_status.get(cls)
        if counter is None:
            counter = by_status.setdefault(cls, self.invocations.labels(*labels, cls))
        counter.inc()
        if status:  # no answer has no model latency: it would drag the quantiles down (or up, at a timeout)
            model.observe(model_seconds)
            overhead.observe(max(total_seconds - model_seconds, 0.0))

    def forget_endpoint(self, account: str, region: str, endpoint: str, keep: frozenset[str] = frozenset()) -> None:
        """Drop the series of an endpoint's variants other than ``keep`` (all of them: a deleted endpoint), so
        /metrics stops naming what no longer exists. A request still in flight may bring one back, once."""
        with self._lock:
            gone = [
                labels
                for labels in self._endpoint_children
                if labels[:3] == (account, region, endpoint) and labels[3] not in keep
            ]
            for labels in gone:
                by_status = self._endpoint_children.pop(labels)[2]
                self.model_latency.remove(*labels)
                self.overhead_latency.remove(*labels)
                for cls in by_status:
                    self.invocations.remove(*labels, cls)

    def observe_api(self, service: str, operation: str, seconds: float, error_code: str = "") -> None:
        """One API request. ``operation`` comes from the caller: anything the model does not name is "unknown"
        (a label per made-up name would let any client grow the registry without bound)."""
        if operation not in _operation_names(service):
            operation = "unknown"
        key = (service, operation)
        child = self._api_children.get(key)
        if child is None:
            with self._lock:
                child = self._api_children.setdefault(key, self.api_latency.labels(service, operation))
        child.observe(seconds)
        if error_code:
            self.api_errors.labels(service, operation, error_code).inc()


@cache
def _operation_names(service: str) -> frozenset[str]:
    from .server.models import service_model  # the layer above: its models, read once per service

    try:
        return frozenset(service_model(service).operation_names)
    except Exception:  # not a service we have a model of: every operation is "unknown"
        return frozenset()


class _Registry:
    """A server's registry and the metrics it observes itself."""

    def __init__(self, backends):
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(GC_COLLECTOR)
        Info("selfmaker", "The SelfMaker server.", registry=self.registry).info(
            {"version": __version__, "database": backends.store.engine.dialect.name}
        )
        self.metrics = ServerMetrics(self.registry)
        self.registry.register(_ResourceCounts(backends))
        for factory in _COLLECTOR_FACTORIES:
            self.registry.register(factory(backends))


def _held(backends) -> _Registry:
    return backends.shared("observability.registry", lambda: _Registry(backends))


def server_metrics(backends) -> ServerMetrics:
    return _held(backends).metrics


def exposition(backends) -> bytes:
    """The Prometheus text of everything in the server's registry (blocking: the store is read)."""
    held = _held(backends)
    for hook in _BEFORE_SCRAPE:
        hook(backends)
    return generate_latest(held.registry)


class _ResourceCounts:
    """``selfmaker_resources``: resources that have a status (jobs, endpoints, executions...), by status.

    Read from the store at each scrape, so every server sharing one database reports the same numbers."""

    def __init__(self, backends):
        self.backends = backends

    def collect(self) -> Iterable[Metric]:
        table = schema.resources
        family = GaugeMetricFamily(
            "selfmaker_resources",
            "Resources by account, region, kind (TrainingJob, Endpoint, PipelineExecution...) and status.",
            labels=("account", "region", "kind", "status"),
        )
        query = (
            select(table.c.account_id, table.c.region, table.c.kind, table.c.status, func.count())
            .where(table.c.status.is_not(None))
            .group_by(table.c.account_id, table.c.region, table.c.kind, table.c.status)
        )
        with self.backends.store.read() as conn:
            for account, region, kind, status, count in conn.execute(query):
                family.add_metric((account, region, kind, status), count)
        yield family
