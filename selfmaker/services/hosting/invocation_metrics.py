"""The endpoint metrics of each invocation, folded into CloudWatch statistic sets (and the distributions
their percentiles come from) off the request path.

Per request the router appends one sample to a deque (a microsecond); a thread
folds the samples every quarter second into one statistic set per metric,
dimension set and second, and hands those to the metric store. Fourteen
``metric_store.record`` calls per request would cost more than the rest of
the router's own work.

Metrics (namespace AWS/SageMaker, units as CloudWatch has them), each with the
dimensions {EndpointName, VariantName} and {EndpointName, VariantName,
EndpointConfigName}: Invocations, InvocationsPerInstance (1 / instances),
ModelLatency and OverheadLatency (microseconds), Invocation4XXErrors,
Invocation5XXErrors and InvocationModelErrors (1 or 0 per request, so their
Average is a rate).

The same fold observes each request in the server's Prometheus histograms
(:mod:`selfmaker.observability`), one series per endpoint and variant; a scrape
folds first, so /metrics misses no request already answered.
"""

from __future__ import annotations

import time
from collections import deque
from functools import lru_cache

from ...aws.cloudwatch import distribution, metric_store
from ...backends import background_worker
from ...engines.periodic import Periodic
from ...observability import before_scrape, server_metrics

FOLD_SECONDS = 0.25
NAMESPACE = "AWS/SageMaker"
UNITS = {
    "Invocations": "None",
    "InvocationsPerInstance": "None",
    "ModelLatency": "Microseconds",
    "OverheadLatency": "Microseconds",
    "Invocation4XXErrors": "None",
    "Invocation5XXErrors": "None",
    "InvocationModelErrors": "None",
}


def values(status: int, instances: int, model_seconds: float, total_seconds: float) -> dict[str, float]:
    """One request's value of each metric; ``status`` is the container's (0: it never answered)."""
    return {
        "Invocations": 1.0,
        "InvocationsPerInstance": 1.0 / max(instances, 1),
        "ModelLatency": model_seconds * 1e6,
        "OverheadLatency": max(total_seconds - model_seconds, 0.0) * 1e6,
        "Invocation4XXErrors": float(400 <= status < 500),
        "Invocation5XXErrors": float(status >= 500 or status == 0),
        "InvocationModelErrors": float(not 200 <= status < 300),
    }


@lru_cache(maxsize=4096)
def _series(account_id: str, region: str, endpoint: str, variant: str, config: str) -> tuple:
    """(metric name, unit, series key) of every metric of a variant, under both dimension sets."""
    by_variant = {"EndpointName": endpoint, "VariantName": variant}
    by_config = {**by_variant, "EndpointConfigName": config}
    return tuple(
        (name, unit, metric_store.series_key(account_id, region, NAMESPACE, name, dimensions))
        for name, unit in UNITS.items()
        for dimensions in (by_variant, by_config)
    )


class InvocationMetrics(Periodic):
    """The samples of the requests not yet folded; its thread starts with the first sample."""

    def __init__(self, backends):
        super().__init__("selfmaker-invocation-metrics", FOLD_SECONDS, on_demand=True)
        self.backends = backends
        self._samples: deque = deque()
        self._prometheus = server_metrics(backends)

    def add(self, route, target, status: int, model_seconds: float, total_seconds: float) -> None:
        self._samples.append(
            (
                route.account_id,
                route.region,
                route.endpoint_name,
                target.variant,
                target.config_name,
                len(target.sockets),
                status,
                model_seconds,
                total_seconds,
                int(time.time()),
            )
        )
        self.ensure_started()

    def run(self) -> None:
        self.fold()

    def fold(self) -> None:
        # Each metric's statistic set is folded once per variant and second, and copied to its second
        # dimension set at the end: half the work of folding every sample into both (it runs on the
        # server's two cores, and under the GIL, next to the requests).
        groups: dict[tuple, dict[str, list]] = {}
        samples = self._samples
        prometheus = self._prometheus
        bucket = distribution.bucket
        while samples:
            account, region, endpoint, variant, config, instances, status, model_s, total_s, second = samples.popleft()
            prometheus.observe_invocation((account, region, endpoint, variant), status, model_s, total_s)
            measured = values(status, instances, model_s, total_s)
            group = (account, region, endpoint, variant, config, second)
            sets = groups.get(group)
            if sets is None:
                groups[group] = {name: metric_store.one_value(value) for name, value in measured.items()}
                continue
            for name, value in measured.items():
                stats = sets[name]
                stats[0] += 1
                stats[1] += value
                if value < stats[2]:
                    stats[2] = value
                if value > stats[3]:
                    stats[3] = value
                key = bucket(value)  # for the latency percentiles
                stats[4][key] = stats[4].get(key, 0.0) + 1.0
        if groups:
            buffer = metric_store.buffer(self.backends)
            for (account, region, endpoint, variant, config, second), sets in groups.items():
                given: set[str] = set()
                for name, unit, series in _series(account, region, endpoint, variant, config):
                    stats = sets[name]
                    if name in given:  # the buffer merges into what it is given: each series its own copy
                        stats = [stats[0], stats[1], stats[2], stats[3], dict(stats[4])]
                    given.add(name)
                    buffer.add(series, unit, second, stats)


@before_scrape
def _fold_before_scrape(backends) -> None:
    """The requests answered since the last fold, into the histograms (nothing to do on a server never invoked)."""
    held = backends.services.get("hosting.invocation_metrics")
    if held is not None:
        held.fold()


@background_worker
def invocation_metrics(backends) -> InvocationMetrics:
    """The server's one InvocationMetrics (stopped, and so folded, before the metric store's last flush)."""
    return backends.shared("hosting.invocation_metrics", lambda: InvocationMetrics(backends))
