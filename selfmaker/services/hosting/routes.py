"""Where an endpoint's requests go: the Route the router reads on every request.

The endpoint controller (deployments) publishes a Route once the endpoint's
instances answer /ping, publishes the next one as a deployment shifts traffic,
and withdraws it when the endpoint stops serving. A Route is immutable and is
replaced by one dict assignment, so a request in flight keeps the Route it
started with and never sees a half-updated one.

This table holds the Routes of the endpoints this server drives; the others'
come from their records (shared_routes.py).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class Target:
    """One variant's ready instances."""

    variant: str
    weight: float  # production: relative weight within its traffic entry; shadow: sampling fraction 0..1
    sockets: tuple[str, ...]  # addresses (Unix socket paths, or host:port) of the instances answering /ping
    config_name: str  # the EndpointConfigName this variant's fleet belongs to

    @cached_property
    def turns(self) -> itertools.count:
        """Round robin over the sockets: next(turns) % len(sockets) (next() on a count is atomic)."""
        return itertools.count()


@dataclass(frozen=True)
class Route:
    account_id: str
    region: str
    endpoint_name: str
    endpoint_arn: str
    # (share of the endpoint's traffic, production targets) per fleet: one entry normally, two while a
    # blue/green deployment shifts traffic from the old fleet to the new one; shares sum to 1.
    traffic: tuple[tuple[float, tuple[Target, ...]], ...]
    shadows: tuple[Target, ...] = ()
    capture: dict | None = None  # the endpoint config's DataCaptureConfig when capture is enabled

    @cached_property
    def variants(self) -> dict[str, tuple[tuple[float, Target], ...]]:
        """(share of its traffic entry, target) by production variant name, across entries (for TargetVariant)."""
        found: dict[str, list[tuple[float, Target]]] = {}
        for share, targets in self.traffic:
            for target in targets:
                found.setdefault(target.variant, []).append((share, target))
        return {name: tuple(entries) for name, entries in found.items()}

    @cached_property
    def open_traffic(self) -> tuple[tuple[float, tuple[Target, ...]], ...]:
        """The traffic entries with a share and an instance ready, each with its targets that take traffic
        (a positive weight, an instance ready): worked out once per Route, not on every request."""
        return tuple(
            (share, tuple(t for t in targets if t.sockets and t.weight > 0))
            for share, targets in self.traffic
            if share > 0 and any(t.sockets for t in targets)
        )


def _table(backends) -> dict[tuple[str, str, str], Route]:
    return backends.services.setdefault("hosting.routes", {})


def publish(backends, route: Route) -> None:
    _table(backends)[(route.account_id, route.region, route.endpoint_name)] = route


def withdraw(backends, account_id: str, region: str, endpoint_name: str) -> None:
    _table(backends).pop((account_id, region, endpoint_name), None)


def lookup(backends, account_id: str, region: str, endpoint_name: str) -> Route | None:
    return _table(backends).get((account_id, region, endpoint_name))
