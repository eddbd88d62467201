"""Routes of endpoints another server drives: InvokeEndpoint answers on any server (docs/scale-out.md).

The server driving an endpoint (its lease holder) keeps the endpoint's Route in memory (routes.py) and
writes the ``host:port`` of its ready instances that listen on TCP into the endpoint's record
(``_addresses``, deployments.py). A server without a Route of its own builds one from the record the same
way (deployments.shared_route: the same weights, shares, shadows and capture, with those addresses as the
readiness) and keeps it ROUTE_TTL seconds, so a deployment step, a replaced instance or a deletion reaches
it within about that long, and at once when an instance refuses a connection (the router asks ``fresh``).
The record is found by the caller's account, region and name, as the server's own Routes are.

An endpoint whose instances listen on Unix sockets (the local executor) is served only by the server on
whose machine they run: elsewhere its Route has no instances, and InvokeEndpoint answers ServiceUnavailable.
"""

from __future__ import annotations

import asyncio
import time

from ...observability import server_metrics
from . import deployments
from .routes import Route

ROUTE_TTL = 1.0  # seconds a Route built from a record is used before the record is read again
MAX_HELD = 10_000  # Routes (and misses) held at once; beyond, the expired ones go

Key = tuple[str, str, str]  # (account, region, endpoint name)


class SharedRoutes:
    """The Routes built from records, each with the time it expires; on the server's event loop only."""

    def __init__(self, backends):
        self.backends = backends
        self._held: dict[Key, tuple[float, Route | None]] = {}
        self._loading: dict[Key, asyncio.Task] = {}

    async def find(self, account_id: str, region: str, name: str, fresh: bool = False) -> Route | None:
        """The endpoint's Route from its record (None: no such endpoint, or it does not serve); ``fresh``: read
        the record again rather than use the one held."""
        key = (account_id, region, name)
        held = self._held.get(key)
        if held is not None and not fresh and held[0] > time.monotonic():
            return held[1]
        loading = self._loading.get(key)
        if loading is None:  # requests that miss together share one read
            loading = self._loading[key] = asyncio.get_running_loop().create_task(self._load(key))
        return await asyncio.shield(loading)

    async def _load(self, key: Key) -> Route | None:
        try:
            route = await asyncio.to_thread(self._build, *key)  # a store read: never on the event loop
        finally:
            self._loading.pop(key, None)
        if len(self._held) >= MAX_HELD:
            now = time.monotonic()
            self._held = {k: held for k, held in self._held.items() if held[0] > now}
            if len(self._held) >= MAX_HELD:  # a flood of names: start over rather than grow
                self._held.clear()
        self._held[key] = (time.monotonic() + ROUTE_TTL, route)
        return route

    def _build(self, account_id: str, region: str, name: str) -> Route | None:
        record = self.backends.resources.get(account_id, region, "Endpoint", name=name)
        route = deployments.shared_route(self.backends, record) if record is not None else None
        # The variants gone from the endpoint (all of them, once deleted) leave this server's /metrics too.
        keep = frozenset(route.variants) | {t.variant for t in route.shadows} if route else frozenset()
        server_metrics(self.backends).forget_endpoint(account_id, region, name, keep=keep)
        return route


def shared_routes(backends) -> SharedRoutes:
    """The server's one SharedRoutes (its tasks belong to the event loop)."""
    return backends.shared("hosting.shared_routes", lambda: SharedRoutes(backends))
