"""What one server is built on: the shared :class:`Backends`, and the background workers that run on them.

This module sits below every service, engine and AWS subset (they import it; it imports none of
them), so a service reaches the store, the object store or another service's shared object
without importing the ASGI application (selfmaker/server/app.py), which sits on top.

Background workers (flushers, reconcilers) register with :func:`background_worker` when their
module is imported (selfmaker/server/operations.py's ``SERVICE_MODULES`` loads them all). They
start in the order :data:`WORKER_ORDER` declares, never in import order, and stop in reverse.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .config import Settings
from .store import Store
from .store.resources import ResourceStore

if TYPE_CHECKING:  # layers above this one (see Backends.build): named for the types only
    from .objects.base import ObjectStore
    from .server.auth import Authenticator

# The modules that register a background worker, in the order the workers START; they stop in the
# reverse order, all before the metadata store closes. Read bottom-up for the stop order:
WORKER_ORDER: tuple[str, ...] = (
    # This server's heartbeat and leases (several servers on one PostgreSQL): first to start, so every worker
    # below knows what it may drive; last to stop, when nothing drives anything any more, handing all over.
    # Which workers are singletons (leader-elected through a lease) and which are per-server: docs/scale-out.md.
    "selfmaker.engines.leases",
    # Data flushers first, so they stop last: whatever the workers below still hand them at their
    # own stop (the invocation counts folded at shutdown) reaches the store in their final flush.
    "selfmaker.aws.cloudwatch.metric_store",  # CloudWatch metric data, flushed to the store
    "selfmaker.services.featurestore.worker",  # the offline store's journal, flushed to objects
    "selfmaker.aws.athena",  # query runner over the offline store; its stop waits for running queries
    # Log shippers of instances still running at a clean stop: stopped after the fleet and the
    # reconciler, which finish the shippers of the instances they stop themselves.
    "selfmaker.services.jobs.logship",
    # Before the reconciler resumes the jobs still running, their access keys are valid again.
    "selfmaker.services.jobs.credentials",
    # The fleet before the reconciler, which starts endpoints' instances on it; at stop the reconciler
    # has stopped before the fleet shuts its instances down, so nothing starts replacements meanwhile.
    "selfmaker.services.hosting.fleet",
    "selfmaker.services.hosting.capture",  # data capture, flushed to objects at stop
    "selfmaker.services.hosting.invocation_metrics",  # folds into the metric store, so stops before it
    "selfmaker.services.hosting.utilization",  # CPU and memory of the instances, into the metric store
    "selfmaker.aws.cloudwatch.alarms",  # reads the metric store
    # Inference Recommender's benchmarks: stopped after the reconciler, before the fleet stops their endpoints.
    "selfmaker.services.recommender.controller",
    # Notebook instances: their kernels' keys valid again before the reconciler resumes them; their
    # JupyterLabs ended at a clean stop once the reconciler no longer starts them.
    "selfmaker.services.notebooks.controller",
    # EventBridge deliveries (SQS messages, pipeline starts): stopped after the reconciler, whose pipeline
    # runs it may still start are resumed from the store at the next start anyway.
    "selfmaker.aws.events.delivery",
    # Runtime builds the jobs wait for: stopped (their installers killed) once the reconciler no longer
    # starts jobs that would join them.
    "selfmaker.engines.background_builds",
    # Last to start, first to stop: it drives everything above it.
    "selfmaker.engines.reconciler",
)

WorkerFactory = Callable[["Backends"], Any]

# module name -> the factory it registered: takes the Backends, returns an object with start() and stop().
_WORKERS: dict[str, WorkerFactory] = {}


def background_worker(factory: WorkerFactory) -> WorkerFactory:
    """Register ``factory`` as its module's background worker (one per module, declared in WORKER_ORDER)."""
    module = factory.__module__
    if module not in WORKER_ORDER:
        raise ValueError(
            f"{module} registers a background worker but has no place in WORKER_ORDER "
            "(selfmaker/backends.py): declare when it starts relative to the others"
        )
    if _WORKERS.get(module, factory) is not factory:
        raise ValueError(f"{module} registers two background workers; WORKER_ORDER orders one per module")
    _WORKERS[module] = factory
    return factory


def worker_factories() -> list[WorkerFactory]:
    """The registered workers in start order. Every module WORKER_ORDER names must have registered one
    (load_all imports them), so a worker that went missing is an error, not a silent gap."""
    missing = [m for m in WORKER_ORDER if m not in _WORKERS]
    if missing:
        raise RuntimeError(f"background workers declared in WORKER_ORDER but not registered: {missing}")
    return [_WORKERS[m] for m in WORKER_ORDER]


T = TypeVar("T")
_SHARED_LOCK = threading.RLock()  # factories may ask for other shared objects


@dataclass
class Backends:
    """Everything a handler may use, built once per server."""

    settings: Settings
    store: Store
    resources: ResourceStore
    objects: ObjectStore
    authenticator: Authenticator  # checks every request's signature
    services: dict = field(default_factory=dict)  # per-server state a service family builds on first use
    workers: list = field(default_factory=list)  # the running background workers, in start order

    @classmethod
    def build(cls, settings: Settings) -> Backends:
        # Imported here, late: the object store and the authenticator speak HTTP (selfmaker.server.http,
        # .auth), a layer above this module; importing them at the top would make the layers a circle.
        from .objects import open_object_store
        from .server.auth import make_authenticator

        if settings.database_url is None or settings.object_store_url is None:  # Settings.__post_init__ fills both
            raise ValueError("Settings without a database URL or an object store URL")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(settings.database_url)
        return cls(
            settings=settings,
            store=store,
            resources=ResourceStore(store),
            objects=open_object_store(settings.object_store_url),
            authenticator=make_authenticator(settings),
        )

    def shared(self, name: str, factory: Callable[[], T]) -> T:
        """The server's one ``name`` object (a fleet, a buffer, a runner), made by ``factory()`` on first use."""
        found = self.services.get(name)
        if found is None:
            with _SHARED_LOCK:
                found = self.services.get(name)
                if found is None:
                    found = self.services[name] = factory()
        return found

    def start_workers(self) -> None:
        """Start every registered background worker, in WORKER_ORDER."""
        for factory in worker_factories():
            worker = factory(self)
            worker.start()
            self.workers.append(worker)

    def close(self) -> None:
        self.store.close()
