"""SageMaker ML Lineage: actions, artifacts and contexts, the associations between them, and QueryLineage.

Actions and contexts are named resources. An artifact has no unique name: it is
identified by its source, so its ARN ends in a digest of SourceUri and
SourceTypes. One source therefore has one artifact per account and region
(creating it again is "already exists", as AWS answers), and the same source
has the same artifact id in every account, which is what the SDK's cross-account
lineage collapsing relies on.

Associations are directed edges in their own table, indexed from both ends.
Like AWS, an entity that still has associations cannot be deleted: remove the
associations first (the SDK's ``delete(disassociate=True)`` does exactly that).
QueryLineage walks the graph breadth first, one whole frontier per depth level
with batched index lookups, so its cost follows the size of the answer, not of
the graph.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.exc import IntegrityError

from ..server.errors import AWSError, already_exists, validation
from ..server.operations import Context, operation
from ..store import schema
from ..store.resources import Record, now
from .kinds import Kind

R = schema.resources
A = schema.associations

# Kinds an association may join, and the member that holds each one's name.
NAME_MEMBERS = {
    "Action": "ActionName",
    "Artifact": "ArtifactName",
    "Context": "ContextName",
    "TrialComponent": "TrialComponentName",
    "Experiment": "ExperimentName",
}
EXPERIMENT_KINDS = {"TrialComponent", "Experiment"}
# QueryLineage's LineageType of each kind. Experiments have none: walks pass through them unreported.
LINEAGE_TYPES = {"Action": "Action", "Artifact": "Artifact", "Context": "Context", "TrialComponent": "TrialComponent"}
BATCH = 500  # ARNs per IN (...) lookup: well under every database's parameter limit


# ---------------------------------------------------------------------------
# Entities


def entity_type(kind: str, data: dict) -> str:
    """An entity's type as lineage reports it: ArtifactType, ActionType, ContextType, or a trial
    component's source type without its "SageMaker" prefix (SageMakerTrainingJob -> TrainingJob,
    the SDK's LineageSourceEnum.TRAINING_JOB)."""
    if kind in ("Action", "Artifact", "Context"):
        return data.get(f"{kind}Type") or ""
    if kind == "TrialComponent":
        source_type = (data.get("Source") or {}).get("SourceType") or ""
        return source_type.removeprefix("SageMaker")
    return ""


def artifact_id(source: dict) -> str:
    """The artifact id of a source: a digest of its URI and its (unordered) source types."""
    types = sorted((t["SourceIdType"], t["Value"]) for t in source.get("SourceTypes") or [])
    canonical = json.dumps([source["SourceUri"], types], separators=(",", ":"))
    return hashlib.md5(canonical.encode(), usedforsecurity=False).hexdigest()


def has_associations(conn, arn: str) -> bool:
    return (
        conn.execute(select(A.c.id).where(or_(A.c.source_arn == arn, A.c.destination_arn == arn)).limit(1)).first()
        is not None
    )


def refuse_delete_while_associated(label: str):
    """An on_delete hook: an entity with associations stays until they are deleted.

    The row is locked first so that an AddAssociation naming it (which share-locks
    it) either commits before our check or finds the entity gone.
    """

    def hook(ctx: Context, record: Record, conn) -> None:
        conn.execute(select(R.c.id).where(R.c.id == record.id).with_for_update())
        if has_associations(conn, record.arn):
            raise validation(
                f"Cannot delete {label} {record.arn} because it has associations. "
                "Delete its associations first (DeleteAssociation)."
            )

    return hook


def _update_entity(*members: str):
    """An on_update hook: set ``members``, upsert Properties, then drop PropertiesToRemove.

    Removal wins over a key that is also in Properties: the SDK's ``save()`` sends every
    loaded property back together with the keys to remove.
    """

    def hook(ctx: Context, params: dict, record: Record) -> None:
        properties = {**(record.data.get("Properties") or {}), **(params.get("Properties") or {})}
        for key in params.get("PropertiesToRemove") or []:
            properties.pop(key, None)
        record.data["Properties"] = properties
        record.data.update({m: params[m] for m in members if m in params})

    return hook


def _list_filters(type_member: str):
    def filters(ctx: Context, params: dict) -> list:
        conditions = []
        if params.get("SourceUri") is not None:
            conditions.append(R.c.data["Source"]["SourceUri"].as_string() == params["SourceUri"])
        if params.get(type_member) is not None:
            conditions.append(R.c.data[type_member].as_string() == params[type_member])
        return conditions

    return filters


def _entity_kind(name: str, arn_type: str, *, update_members: tuple[str, ...], **options) -> Kind:
    return Kind(
        name,
        arn_type,
        not_found_code="ResourceNotFound",
        not_found=f"{name} '{{arn}}' does not exist.",
        on_update=_update_entity(*update_members),
        on_delete=refuse_delete_while_associated(arn_type),
        extra_filters=_list_filters(f"{name}Type"),
        default_max_results=10,
        inclusive_time_filters=True,
        **options,
    ).register()


ACTION = _entity_kind(
    "Action",
    "action",
    update_members=("Description", "Status"),
    status_member="Status",
    exists="Action {name} already exists.",
)
CONTEXT = _entity_kind("Context", "context", update_members=("Description",), exists="Context {name} already exists.")
# Described, updated and deleted by ARN; DeleteArtifact, which also accepts a Source, is below.
ARTIFACT = _entity_kind(
    "Artifact",
    "artifact",
    update_members=("ArtifactName",),
    name_member="ArtifactArn",
    name_from=lambda params: artifact_id(params["Source"]),
    operations=("Create", "Describe", "List", "Update"),
    exists="Artifact already exists with the same source: {arn}",
)


@operation("sagemaker", "DeleteArtifact")
def delete_artifact(ctx: Context, params: dict) -> dict:
    by_source = ARTIFACT.arn(ctx, artifact_id(params["Source"])) if params.get("Source") else None
    arn = params.get("ArtifactArn") or by_source
    if arn is None:
        raise validation("Either ArtifactArn or Source must be specified.")
    if by_source and arn != by_source:
        raise validation("ArtifactArn and Source name different artifacts.")
    return ARTIFACT.delete(ctx, {"ArtifactArn": arn})


# ---------------------------------------------------------------------------
# Associations


@dataclass
class Entity:
    arn: str
    kind: str
    type: str
    name: str | None
    created: float
    modified: float

    @property
    def lineage_type(self) -> str | None:
        return LINEAGE_TYPES.get(self.kind)


def _mine(ctx: Context, account_id: str, region: str) -> bool:
    """Lineage joins the caller's own entities of one region: another account's (or region's) ARN names nothing."""
    return account_id == ctx.account_id and region == ctx.region


def _entities(conn, ctx: Context, arns, lock: bool = False) -> dict[str, Entity]:
    """The caller's lineage entities among ``arns``, by ARN; anything else is absent."""
    found: dict[str, Entity] = {}
    arns = list(arns)
    for i in range(0, len(arns), BATCH):
        query = select(R.c.arn, R.c.kind, R.c.account_id, R.c.region, R.c.created_at, R.c.modified_at, R.c.data).where(
            R.c.arn.in_(arns[i : i + BATCH])
        )
        if lock:
            query = query.with_for_update(read=True)
        for arn, kind, account_id, region, created, modified, data in conn.execute(query).all():
            if kind in NAME_MEMBERS and _mine(ctx, account_id, region):
                found[arn] = Entity(arn, kind, entity_type(kind, data), data.get(NAME_MEMBERS[kind]), created, modified)
    return found


def _existing(conn, ctx: Context, arn: str, lock: bool = False) -> Entity:
    entity = _entities(conn, ctx, [arn], lock=lock).get(arn)
    if entity is None:
        raise AWSError("ResourceNotFound", f"Resource {arn} does not exist.")
    return entity


@operation("sagemaker", "AddAssociation")
def add_association(ctx: Context, params: dict) -> dict:
    source_arn, destination_arn = params["SourceArn"], params["DestinationArn"]
    if source_arn == destination_arn:
        raise validation("An entity cannot be associated with itself.")
    exists = already_exists(
        "ValidationException", f"Association already exists between {source_arn} and {destination_arn}."
    )
    try:
        with ctx.store.write() as conn:
            source = _existing(conn, ctx, source_arn, lock=True)
            destination = _existing(conn, ctx, destination_arn, lock=True)
            if source.kind in EXPERIMENT_KINDS and destination.kind in EXPERIMENT_KINDS:
                raise validation("An association cannot be created between two experiment entities.")
            if conn.execute(
                select(A.c.id).where(A.c.source_arn == source_arn, A.c.destination_arn == destination_arn)
            ).first():
                raise exists
            conn.execute(
                insert(A).values(
                    account_id=ctx.account_id,
                    region=ctx.region,
                    source_arn=source_arn,
                    destination_arn=destination_arn,
                    source_type=source.type,
                    destination_type=destination.type,
                    association_type=params.get("AssociationType"),
                    created_at=now(),
                )
            )
    except IntegrityError:  # the same edge, added concurrently
        raise exists from None
    return {"SourceArn": source_arn, "DestinationArn": destination_arn}


@operation("sagemaker", "DeleteAssociation")
def delete_association(ctx: Context, params: dict) -> dict:
    source_arn, destination_arn = params["SourceArn"], params["DestinationArn"]
    with ctx.store.write() as conn:
        deleted = conn.execute(
            delete(A).where(
                A.c.source_arn == source_arn,
                A.c.destination_arn == destination_arn,
                A.c.account_id == ctx.account_id,
                A.c.region == ctx.region,
            )
        ).rowcount
    if not deleted:
        raise AWSError("ResourceNotFound", f"Association between {source_arn} and {destination_arn} does not exist.")
    return {"SourceArn": source_arn, "DestinationArn": destination_arn}


_ASSOCIATION_SORT = {
    "SourceArn": A.c.source_arn,
    "DestinationArn": A.c.destination_arn,
    "SourceType": A.c.source_type,
    "DestinationType": A.c.destination_type,
    "CreationTime": A.c.created_at,
}
_ASSOCIATION_FILTERS = {
    "SourceArn": A.c.source_arn,
    "DestinationArn": A.c.destination_arn,
    "SourceType": A.c.source_type,
    "DestinationType": A.c.destination_type,
    "AssociationType": A.c.association_type,
}


@operation("sagemaker", "ListAssociations")
def list_associations(ctx: Context, params: dict) -> dict:
    sort_by = params.get("SortBy") or "CreationTime"
    column = _ASSOCIATION_SORT[sort_by]
    descending = (params.get("SortOrder") or "Descending") == "Descending"
    limit = params.get("MaxResults") or 10
    conditions = [A.c.account_id == ctx.account_id, A.c.region == ctx.region]
    conditions += [c == params[m] for m, c in _ASSOCIATION_FILTERS.items() if params.get(m) is not None]
    if params.get("CreatedAfter") is not None:  # "on or after"
        conditions.append(A.c.created_at >= params["CreatedAfter"])
    if params.get("CreatedBefore") is not None:
        conditions.append(A.c.created_at <= params["CreatedBefore"])
    # A token is valid for the same filters and order only; it resumes after (sort value, id).
    scope = [
        "associations",
        {k: v for k, v in params.items() if k not in ("NextToken", "MaxResults")},
        sort_by,
        descending,
    ]
    store = ctx.backends.resources
    if params.get("NextToken"):
        token = store.read_page_token(params["NextToken"], scope)
        value, last_id = token["v"], token["i"]
        after = column < value if descending else column > value
        next_id = A.c.id < last_id if descending else A.c.id > last_id
        conditions.append(or_(after, and_(column == value, next_id)))
    order = (column.desc(), A.c.id.desc()) if descending else (column.asc(), A.c.id.asc())
    with ctx.store.read() as conn:
        rows = conn.execute(select(A).where(*conditions).order_by(*order).limit(limit + 1)).all()
        page = rows[:limit]
        ends = _entities(conn, ctx, {r.source_arn for r in page} | {r.destination_arn for r in page})

    def name(arn):
        entity = ends.get(arn)
        return entity.name if entity else None

    result = {
        "AssociationSummaries": [
            {
                "SourceArn": r.source_arn,
                "DestinationArn": r.destination_arn,
                "SourceType": r.source_type or None,
                "DestinationType": r.destination_type or None,
                "SourceName": name(r.source_arn),
                "DestinationName": name(r.destination_arn),
                "AssociationType": r.association_type,
                "CreationTime": r.created_at,
                "CreatedBy": r.created_by,
            }
            for r in page
        ]
    }
    if len(rows) > limit:
        last = page[-1]
        result["NextToken"] = store.page_token(scope, v=getattr(last, column.key), i=last.id)
    return result


# ---------------------------------------------------------------------------
# QueryLineage


@dataclass
class Vertex:
    arn: str
    kind: str
    type: str
    created: float
    modified: float

    @property
    def lineage_type(self) -> str | None:
        return LINEAGE_TYPES.get(self.kind)


@dataclass
class Walk:
    """What a breadth-first walk found: vertices in discovery order, and the edges it crossed."""

    vertices: dict[str, Vertex] = field(default_factory=dict)  # insertion order = discovery order
    edges: dict[tuple[str, str], str | None] = field(default_factory=dict)  # (source, destination) -> type
    # vertex -> the vertices one level closer to the start it was first reached from: the edges of
    # the shortest paths, which "the entities on the path" to a match are taken from.
    reached_from: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def _edges_at(conn, frontier: list[str], direction: str) -> list:
    """Every association leaving (Descendants), entering (Ascendants) or touching (Both) the frontier."""
    columns = {
        "Descendants": [A.c.source_arn],
        "Ascendants": [A.c.destination_arn],
        "Both": [A.c.source_arn, A.c.destination_arn],
    }[direction]
    rows = []
    for column in columns:
        for i in range(0, len(frontier), BATCH):
            rows += conn.execute(
                select(
                    A.c.source_arn, A.c.destination_arn, A.c.association_type, A.c.source_type, A.c.destination_type
                ).where(column.in_(frontier[i : i + BATCH]))
            ).all()
    return rows


def _vertices(conn, ctx: Context, types: dict[str, str]) -> dict[str, Vertex]:
    """The caller's lineage entities among ``types`` (ARN -> the type its associations recorded).

    A walk never parses a resource document, and looks rows up by ARN alone: with the kind and
    account in the WHERE clause too, SQLite may prefer scanning every entity of the account.
    """
    found = {}
    arns = list(types)
    for i in range(0, len(arns), BATCH):
        query = select(R.c.arn, R.c.kind, R.c.account_id, R.c.region, R.c.created_at, R.c.modified_at).where(
            R.c.arn.in_(arns[i : i + BATCH])
        )
        for arn, kind, account_id, region, created, modified in conn.execute(query).all():
            if kind in NAME_MEMBERS and _mine(ctx, account_id, region):
                found[arn] = Vertex(arn, kind, types[arn], created, modified)
    return found


def walk(conn, ctx: Context, start: Vertex, direction: str, max_depth: int) -> Walk:
    found = Walk()
    found.vertices[start.arn] = start
    frontier = [start.arn]
    for _ in range(max_depth):
        if not frontier:
            break
        at_frontier = set(frontier)
        steps = []  # (near, far, edge key, association type)
        unseen: dict[str, str] = {}  # far ARN -> its type
        for source, destination, association_type, source_type, destination_type in _edges_at(
            conn, frontier, direction
        ):
            key = (source, destination)
            if direction != "Ascendants" and source in at_frontier:
                steps.append((source, destination, key, association_type))
                if destination not in found.vertices:
                    unseen[destination] = destination_type
            if direction != "Descendants" and destination in at_frontier:
                steps.append((destination, source, key, association_type))
                if source not in found.vertices:
                    unseen[source] = source_type
        new = _vertices(conn, ctx, unseen)
        for arn in sorted(new):  # a deterministic order within a level
            found.vertices[arn] = new[arn]
        for near, far, key, association_type in steps:
            if far in found.vertices:  # an edge to a deleted or foreign resource leads nowhere
                found.edges[key] = association_type
                if far in new:
                    found.reached_from[far].add(near)
        frontier = sorted(new)
    return found


def _matching(conn, found: Walk, filters: dict) -> list[str]:
    """The walk's vertices that the filters select, in discovery order."""

    def selected(v: Vertex) -> bool:
        if v.lineage_type is None:
            return False
        if filters.get("Types") and v.type not in filters["Types"]:
            return False
        if filters.get("LineageTypes") and v.lineage_type not in filters["LineageTypes"]:
            return False
        for member, t in (("CreatedBefore", v.created), ("ModifiedBefore", v.modified)):
            if filters.get(member) is not None and not t < filters[member]:
                return False
        for member, t in (("CreatedAfter", v.created), ("ModifiedAfter", v.modified)):
            if filters.get(member) is not None and not t > filters[member]:
                return False
        return True

    matched = [arn for arn, v in found.vertices.items() if selected(v)]
    wanted = filters.get("Properties")
    if wanted:  # several pairs: an entity matches if it has any one of them
        properties = {}
        for i in range(0, len(matched), BATCH):
            query = select(R.c.arn, R.c.data).where(R.c.arn.in_(matched[i : i + BATCH]))
            properties.update((arn, data.get("Properties") or {}) for arn, data in conn.execute(query).all())
        matched = [arn for arn in matched if any(properties[arn].get(k) == v for k, v in wanted.items())]
    return matched


def _on_paths(found: Walk, matched: list[str]) -> set[str]:
    """The matched vertices and every vertex on a shortest path from the start to one of them."""
    keep, stack = set(matched), list(matched)
    while stack:
        for near in found.reached_from.get(stack.pop(), ()):
            if near not in keep:
                keep.add(near)
                stack.append(near)
    return {arn for arn in keep if found.vertices[arn].lineage_type}


@operation("sagemaker", "QueryLineage")
def query_lineage(ctx: Context, params: dict) -> dict:
    """Walk up to MaxDepth (10) associations from the start; report what the filters select.

    As the AWS guide describes it: Both follows associations either way from every vertex
    reached, not only from the start; filters choose the vertices returned while the walk
    goes on through the others (an endpoint's datasets are found through its model and
    training job); IncludeEdges adds the entities and associations on the way to those
    vertices. Without MaxResults the whole answer comes in one response, which is what the
    SDK's LineageQuery (it never pages) needs; with it, vertices come in pages and each edge
    with the later of its two ends.
    """
    start_arns = params.get("StartArns") or []
    if not start_arns:
        raise validation("StartArns must name the entity to start from.")
    direction = params.get("Direction") or "Both"
    max_depth = 10 if params.get("MaxDepth") is None else params["MaxDepth"]
    if max_depth < 0:
        raise validation("MaxDepth must be between 0 and 10.")
    limit = params.get("MaxResults")
    if limit is not None and limit < 1:
        raise validation("MaxResults must be between 1 and 50.")
    include_edges = bool(params.get("IncludeEdges"))
    filters = params.get("Filters") or {}

    with ctx.store.read() as conn:
        start = _existing(conn, ctx, start_arns[0])
        found = walk(
            conn, ctx, Vertex(start.arn, start.kind, start.type, start.created, start.modified), direction, max_depth
        )
        matched = _matching(conn, found, filters)
    if include_edges:  # also the entities on the paths to the matches, and the edges between them
        keep = _on_paths(found, matched)
        vertices = [arn for arn in found.vertices if arn in keep]
        edges = [key for key in found.edges if key[0] in keep and key[1] in keep]
    else:
        vertices, edges = matched, []

    offset, token = 0, None
    if limit is not None:  # pages of vertices; each edge goes with the later of its two ends
        scope = ["QueryLineage", {k: v for k, v in params.items() if k not in ("NextToken", "MaxResults")}]
        if params.get("NextToken"):
            offset = ctx.backends.resources.read_page_token(params["NextToken"], scope)["o"]
        position = {arn: i for i, arn in enumerate(vertices)}
        edges = [e for e in edges if offset <= max(position[e[0]], position[e[1]]) < offset + limit]
        if offset + limit < len(vertices):
            token = ctx.backends.resources.page_token(scope, o=offset + limit)
        vertices = vertices[offset : offset + limit]

    def vertex(arn):
        v = found.vertices[arn]
        return {"Arn": arn, "Type": v.type or None, "LineageType": v.lineage_type}

    return {
        "Vertices": [vertex(arn) for arn in vertices],
        "Edges": [{"SourceArn": s, "DestinationArn": d, "AssociationType": found.edges[(s, d)]} for s, d in edges],
        "NextToken": token,
    }
