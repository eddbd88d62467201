"""The generic resource mechanism (docs/design.md, principle 2).

A family declares a :class:`Kind`; this module derives the rest from the
botocore model (which members hold the name, the ARN and the list) and
registers Create/Describe/List/Update/Delete handlers that share one
implementation of ARNs, name uniqueness, tags, list filters, sorting and
pagination. A kind is one declaration, ``X = Kind(...).register()``.

A family adds behaviour through the hooks, callables given at declaration,
never by subclassing or copying. A handler that does not follow the generic
one at all (a pipeline's versioned definitions, an endpoint's deletion in two
steps) is a plain ``@operation`` beside the kind, and the kind's
``operations`` leaves that verb out. A job kind is the same declaration with
job hooks (:class:`selfmaker.services.jobs.lifecycle.JobKind`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..server.errors import AWSError, already_exists, validation
from ..server.models import service_model
from ..server.operations import Context, operation
from ..store.db import Connection
from ..store.resources import AlreadyExists, ListQuery, Record, now
from . import tagging

KINDS: dict[str, Kind] = {}


@dataclass
class Kind:
    name: str  # e.g. "Experiment": the key in the store and, by default, in operation names
    arn_type: str  # e.g. "experiment" in arn:aws:sagemaker:<region>:<account>:experiment/<name>
    label: str = ""  # how messages name it, e.g. "experiment"
    operations: tuple[str, ...] = ("Create", "Describe", "List", "Update", "Delete")
    name_member: str = ""  # default "<Name>Name"
    arn_member: str = ""  # default "<Name>Arn"
    list_operation: str = ""  # default "List<Name>s"
    status_member: str | None = None  # the data member behind StatusEquals and SortBy=Status
    parent_member: str | None = None  # the data member kept in the parent column, e.g. a trial's ExperimentName
    search_type: str | None = None  # the Search ResourceType and SearchRecord member
    # Messages. {label}, {name} and {arn} are filled in.
    not_found: str = 'Could not find {label} "{arn}".'
    not_found_code: str = "ValidationException"
    exists: str = 'Cannot create already existing {label} "{arn}".'
    exists_code: str = "ValidationException"
    # Behaviour hooks. Describe's and List's (present, shared_access, summarize, extra_filters,
    # list_params) may only read the store: on SQLite they run on the event loop.
    on_create: Callable[[Context, dict, dict], None] | None = None  # (ctx, params, data): fill data
    on_update: Callable[[Context, dict, Record], None] | None = None  # (ctx, params, record): change record
    on_delete: Callable[[Context, Record, Connection], None] | None = None  # in the delete's transaction; raise: refuse
    # (ctx, arn) once the Create or Update is committed, e.g. to kick the controller that drives the record.
    after_create: Callable[[Context, str], None] | None = None
    after_update: Callable[[Context, str], None] | None = None
    present: Callable[[Context, Record], dict] | None = None  # the Describe output
    # Another account's record named by ARN: return to let the caller use it, raise to refuse.
    # Without it, other accounts' resources do not exist for the caller.
    shared_access: Callable[[Context, Record], None] | None = None
    summarize: Callable[[Record], dict] | None = None  # one list entry
    extra_filters: Callable[[Context, dict], list] | None = None  # (ctx, List params) -> SQL conditions
    list_params: Callable[[dict], dict] | None = None  # a List's own spelling -> the common parameters
    default_max_results: int = 100  # the List page size when MaxResults is not given
    inclusive_time_filters: bool = False  # List's Created/Modified After/Before include the bound ("on or after")
    # CreatedBy / LastModifiedBy with the caller's IamIdentity: AWS records one for model package groups,
    # model packages and projects only (UserContext.IamIdentity), not for experiments, lineage or pipelines.
    track_actor: bool = False
    # The name of a new resource whose Create request carries none (artifacts: a digest of their source).
    name_from: Callable[[dict], str] | None = None
    service: str = "sagemaker"
    _list_member: str = field(default="", init=False)

    def __post_init__(self):
        self.label = self.label or self.arn_type.replace("-", " ")
        self.name_member = self.name_member or f"{self.name}Name"
        self.arn_member = self.arn_member or f"{self.name}Arn"
        self.list_operation = self.list_operation or f"List{self.name}s"

    # -- identity ------------------------------------------------------------

    def arn(self, ctx: Context, name: str) -> str:
        return ctx.arn(self.service, f"{self.arn_type}/{name.lower()}")

    def message(self, template: str, ctx: Context, name: str) -> str:
        return template.format(label=self.label, name=name, arn=self.arn(ctx, name))

    def missing(self, ctx: Context, name: str) -> AWSError:
        return AWSError(self.not_found_code, self.message(self.not_found, ctx, name))

    def load(self, ctx: Context, name_or_arn: str, conn=None, lock: bool = False) -> Record:
        """The record named (or ARN'd) in a request, or this kind's not-found error; ``lock``: held until
        the write transaction ``conn`` ends (ResourceStore.get), for a record the request saves."""
        store = ctx.backends.resources
        if name_or_arn.startswith("arn:"):
            # The caller's own resource: resources are regional, and other accounts' do not exist for the
            # caller (the store looks within the caller's account and region) ...
            record = store.get(ctx.account_id, ctx.region, self.name, arn=name_or_arn, conn=conn, lock=lock)
            if record is None and self.shared_access is not None:
                # ... unless the kind shares them by policy: shared_access allows this caller or raises.
                shared = store.get_by_arn(name_or_arn, conn=conn, lock=lock)
                if shared and shared.kind == self.name and shared.region == ctx.region:
                    self.shared_access(ctx, shared)
                    record = shared
            name = name_or_arn.split(":", 5)[-1].split("/", 1)[-1]  # after "<type>/": may hold "/"
        else:
            record = store.get(ctx.account_id, ctx.region, self.name, name=name_or_arn, conn=conn, lock=lock)
            name = name_or_arn
        if record is None:
            raise self.missing(ctx, name)
        return record

    # -- generic handlers ----------------------------------------------------

    def create(self, ctx: Context, params: dict) -> dict:
        name = self.name_from(params) if self.name_from else params[self.name_member]
        arn = self.arn(ctx, name)
        data = {k: v for k, v in params.items() if k != "Tags"}
        created = now()
        data.update({self.arn_member: arn, "CreationTime": created, "LastModifiedTime": created})
        if self.track_actor:
            data["CreatedBy"] = data["LastModifiedBy"] = actor(ctx)
        if self.on_create:
            self.on_create(ctx, params, data)
        status = data.get(self.status_member) if self.status_member else None
        parent = data.get(self.parent_member) if self.parent_member else None
        try:
            with ctx.store.write() as conn:
                ctx.backends.resources.create(
                    account_id=ctx.account_id,
                    region=ctx.region,
                    kind=self.name,
                    name=name,
                    arn=arn,
                    data=data,
                    status=status,
                    parent=parent,
                    created=created,
                    conn=conn,
                )
                if params.get("Tags"):
                    tagging.add(conn, arn, params["Tags"])
        except AlreadyExists:
            raise already_exists(self.exists_code, self.message(self.exists, ctx, name)) from None
        if self.after_create:
            self.after_create(ctx, arn)
        return {self.arn_member: arn}

    def describe(self, ctx: Context, params: dict) -> dict:
        record = self.load(ctx, params[self.name_member])
        return self.present(ctx, record) if self.present else record.data

    def update(self, ctx: Context, params: dict) -> dict:
        with ctx.store.write() as conn:
            record = self.load(ctx, params[self.name_member], conn=conn, lock=True)
            if self.on_update:
                self.on_update(ctx, params, record)
            else:
                record.data.update({k: v for k, v in params.items() if k != self.name_member})
            record.data["LastModifiedTime"] = now()
            if self.track_actor:
                record.data["LastModifiedBy"] = actor(ctx)
            if self.status_member:
                record.status = record.data.get(self.status_member)
            record.modified_at = record.data["LastModifiedTime"]
            ctx.backends.resources.save(record, conn=conn, touch=False)
        if self.after_update:
            self.after_update(ctx, record.arn)
        return {self.arn_member: record.arn}

    def delete(self, ctx: Context, params: dict) -> dict:
        with ctx.store.write() as conn:
            record = self.load(ctx, params[self.name_member], conn=conn, lock=True)
            if self.on_delete:
                self.on_delete(ctx, record, conn)
            ctx.backends.resources.delete(record.arn, conn=conn)
        return {self.arn_member: record.arn}

    def list(self, ctx: Context, params: dict) -> dict:
        if self.list_params:
            params = self.list_params(params)
        query = list_query(params, default_max_results=self.default_max_results)
        query.inclusive_times = self.inclusive_time_filters
        if self.extra_filters:
            query.where.extend(self.extra_filters(ctx, params))
        records, token = ctx.backends.resources.list(ctx.account_id, ctx.region, self.name, query)
        summarize = self.summarize or (lambda r: r.data)
        return {self._list_member: [summarize(r) for r in records], "NextToken": token}

    # -- registration ----------------------------------------------------------

    def register(self) -> Kind:
        if self.name in KINDS:
            raise ValueError(f"kind {self.name} declared twice")
        KINDS[self.name] = self
        model = service_model(self.service)
        for verb in self.operations:
            op_name = self.list_operation if verb == "List" else f"{verb}{self.name}"
            if op_name not in model.operation_names:
                raise ValueError(f"{op_name} is not in the {self.service} model")
            if verb == "List":
                out = model.operation_model(op_name).output_shape
                self._list_member = next(n for n, s in out.members.items() if s.type_name == "list")
            # Describe and List only read the store (their hooks too), unless a mechanism built on Kind
            # (JobKind) redefines them: a redefined handler may write, so it runs on a worker thread.
            method = verb.lower()
            store_read = verb in ("Describe", "List") and getattr(type(self), method) is getattr(Kind, method)
            operation(self.service, op_name, store_read=store_read)(getattr(self, method))
        return self


def actor(ctx: Context) -> dict:
    """The UserContext recorded as CreatedBy / LastModifiedBy: the caller's IAM identity.

    (UserProfileArn and DomainId name SageMaker Studio users, which SelfMaker has none of.)
    """
    from ..aws.sts import caller_identity

    arn, principal_id = caller_identity(ctx)
    return {"IamIdentity": {"Arn": arn, "PrincipalId": principal_id}}


_TIME_FILTERS = {
    "CreationTimeAfter": "created_after",
    "CreatedAfter": "created_after",
    "CreationTimeBefore": "created_before",
    "CreatedBefore": "created_before",
    "LastModifiedTimeAfter": "modified_after",
    "LastModifiedAfter": "modified_after",
    "LastModifiedTimeBefore": "modified_before",
    "LastModifiedBefore": "modified_before",
}


# Some lists spell their SortBy values in upper snake case.
_SORT_NAMES = {
    "NAME": "Name",
    "CREATION_TIME": "CreationTime",
    "LAST_MODIFIED_TIME": "LastModifiedTime",
    "STATUS": "Status",
    "CreatedTime": "CreationTime",
}


def list_query(params: dict, default_sort: str = "CreationTime", default_max_results: int = 100) -> ListQuery:
    """The common list parameters of every List* operation, as a store query."""
    q = ListQuery(
        name_contains=params.get("NameContains"),
        status=params.get("StatusEquals"),
        sort_by=_SORT_NAMES.get(params.get("SortBy"), params.get("SortBy")) or default_sort,
        descending=(params.get("SortOrder") or "Descending") == "Descending",
        max_results=params.get("MaxResults") or default_max_results,
        next_token=params.get("NextToken"),
    )
    for member, attr in _TIME_FILTERS.items():
        if params.get(member) is not None:
            setattr(q, attr, params[member])
    if q.max_results < 1:
        raise validation("MaxResults must be at least 1.")
    return q
