"""The registry of resource types a stack can hold, and what a type's create/update/delete is handed.

A type is one ``ResourceType(...)`` declaration, registered with ``.register()`` from a module listed in
SERVICE_MODULES (``types_sagemaker``, ``types_aws``, ``types_events``; other types are added
the same way). Its ``create``, ``update`` and ``delete`` take an :class:`Action` and return True when done or
False to be called again (a resource with an asynchronous status: an Endpoint until InService). They keep
their progress in ``action.state``, which the engine stores after every call, so a restarted server resumes
a half-done resource instead of starting it again. A type makes its resource through SelfMaker's own
operation handlers (``action.call``): the same validation and errors as the API.
"""

from __future__ import annotations

import inspect
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from ...server.errors import AWSError
from ...server.models import operation_model
from ...server.operations import Context, call

if TYPE_CHECKING:
    from ...backends import Backends


class ResourceFailed(Exception):
    """A resource could not be made, changed or removed: ``reason`` is what its events and the stack say."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Action:
    """One resource's create, update or delete, as its type sees it."""

    backends: Backends
    account_id: str
    region: str
    stack_name: str
    stack_id: str
    logical_id: str
    type_name: str
    properties: dict  # resolved; the new ones on an update
    previous: dict | None = None  # the properties before an update
    physical_id: str | None = None
    attributes: dict = field(default_factory=dict)  # Fn::GetAtt's answers, filled by create/update
    state: dict = field(default_factory=dict)  # the type's progress, persisted between calls
    stack_tags: list = field(default_factory=list)

    def context(self, service: str) -> Context:
        return Context(backends=self.backends, account_id=self.account_id, region=self.region, service=service)

    def call(self, service: str, operation: str, params: dict) -> dict:
        """Run one of SelfMaker's operations in the stack's account, as a request would run."""
        result = call(self.context(service), operation, params)
        if inspect.isawaitable(result):  # a coroutine handler (SQS's long-polling ones): run it to its end here
            awaitable = result

            async def finish():
                return await awaitable

            result = anyio.run(finish)
        return result or {}

    def name(self, member: str | None, max_length: int = 63, lower: bool = False) -> str:
        """The resource's name: its property when the template names it, else one CloudFormation-style
        (``<stack>-<logical id>-<random>``), made once and kept in the state so a retry uses the same."""
        if member and self.properties.get(member):
            return str(self.properties[member])
        if "generated_name" not in self.state:
            suffix = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(12))
            prefix = f"{self.stack_name}-{self.logical_id}"[: max_length - len(suffix) - 1]
            self.state["generated_name"] = f"{prefix}-{suffix}"
        name = self.state["generated_name"]
        return name.lower() if lower else name

    def fail(self, reason: str) -> ResourceFailed:
        return ResourceFailed(reason)


Step = Callable[[Action], bool]


@dataclass(frozen=True)
class ResourceType:
    name: str  # AWS::Service::Thing
    create: Step
    delete: Step
    update: Step | None = None  # None: every change replaces the resource
    updatable: frozenset[str] = frozenset()  # properties that change in place; a change of any other replaces
    attributes: frozenset[str] = frozenset()  # the names Fn::GetAtt takes
    name_property: str | None = None  # the property that names it: a custom name cannot be replaced
    capability: str | None = None  # CAPABILITY_IAM for types that make IAM resources
    properties: frozenset[str] | None = None  # the properties it takes (None: any)
    description: str = ""  # for docs/cloudformation.md

    def register(self) -> ResourceType:
        if self.name in REGISTRY:
            raise ValueError(f"resource type {self.name} is registered twice")
        REGISTRY[self.name] = self
        return self

    def check_properties(self, properties: dict) -> None:
        if self.properties is None:
            return
        unknown = sorted(set(properties) - self.properties)
        if unknown:
            raise ResourceFailed(f"Encountered unsupported property {unknown[0]}")

    def replaces(self, previous: dict, new: dict) -> bool:
        """Whether going from ``previous`` to ``new`` properties needs a new resource."""
        changed = {k for k in set(previous) | set(new) if previous.get(k) != new.get(k)}
        return self.update is None or bool(changed - self.updatable)


REGISTRY: dict[str, ResourceType] = {}


def unsupported(type_name: str) -> ResourceFailed:
    return ResourceFailed(
        f"Resource type {type_name} is not supported by SelfMaker's CloudFormation; it makes "
        f"{', '.join(sorted(REGISTRY))} (see docs/cloudformation.md)"
    )


def coerce(value, shape):
    """A template value shaped as the operation's input wants it: CloudFormation passes parameters as strings
    and converts them by the resource's schema ("1" for an integer), so a stack may say InitialInstanceCount: "1"."""
    if shape is None:
        return value
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {k: coerce(v, shape.members.get(k)) for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [coerce(v, shape.member) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: coerce(v, shape.value) for k, v in value.items()}
    if isinstance(value, str):
        try:
            if kind in ("integer", "long"):
                return int(value)
            if kind in ("float", "double"):
                return float(value)
        except ValueError:
            return value
        if kind == "boolean" and value.lower() in ("true", "false"):
            return value.lower() == "true"
    if kind == "string" and isinstance(value, bool):
        return "true" if value else "false"
    if kind == "string" and isinstance(value, int | float):
        return str(value)
    return value


def api_params(service: str, operation: str, properties: dict) -> dict:
    """``properties`` as ``operation``'s input, converted by its shape."""
    return coerce(properties, operation_model(service, operation).input_shape)


def not_found(err: AWSError) -> bool:
    """Whether a Describe's error says the resource is gone (SageMaker says it with ValidationException)."""
    if err.code in (
        "ResourceNotFound",
        "ResourceNotFoundException",
        "NoSuchEntity",
        "QueueDoesNotExist",
        "NoSuchBucket",
    ):
        return True
    message = err.message.lower()
    # SageMaker's words: "Could not find model ...", "... does not exist.", and the notebook's "RecordNotFound"
    return any(words in message for words in ("could not find", "not found", "does not exist", "recordnotfound"))
