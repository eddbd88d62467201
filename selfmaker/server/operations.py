"""The operation registry: which (service, operation) pairs SelfMaker implements, and by what.

A handler takes the request context and the validated input and returns a dict
shaped like the operation's output (extra keys are dropped on serialization).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .app import Backends

Handler = Callable[["Context", dict], "dict | None"]

_HANDLERS: dict[tuple[str, str], Handler] = {}


@dataclass
class Context:
    """Who is asking, where, and the backends that answer."""

    backends: "Backends"
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


def operation(service: str, name: str, *, store_read: bool = False,
              normalise: Callable[[dict], dict] | None = None) -> Callable[[Handler], Handler]:
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


def load_all() -> None:
    """Import every module that registers operations (idempotent)."""
    from .. import aws, services  # noqa: F401  (their __init__ imports each family)
    from ..objects import endpoint  # noqa: F401  (declares the S3 operations it serves)
