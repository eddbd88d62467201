"""Lineage: an interactive graph of the entities around any artifact, action, context, trial component, job,
model package or pipeline execution, grown one association at a time with QueryLineage.

QueryLineage starts only from lineage entities. A job is reached through the trial component SageMaker keeps
for it (``<job>-aws-training-job``), and any other resource (a model package, a pipeline execution, an
endpoint) through the artifact or context whose SourceUri is its ARN, as the SageMaker SDK's lineage helpers
find them. Every step is the API's own call as the session's account: another account's entities are
never reached (QueryLineage walks only the caller's).
"""

from __future__ import annotations

from ...server.errors import AWSError, not_found, validation
from ..web import Route, View, json_response

DIRECTIONS = ("Both", "Ascendants", "Descendants")
# Kinds QueryLineage starts from, by the resource type in their ARN.
LINEAGE_KINDS = {"artifact": "Artifact", "action": "Action", "context": "Context"}
JOB_COMPONENTS = {
    "training-job": "aws-training-job",
    "processing-job": "aws-processing-job",
    "transform-job": "aws-transform-job",
}
MAX_DESCRIBED = 100  # artifacts described per expansion, for their labels


def _resource_type(arn: str) -> tuple[str, str]:
    """(resource type, name) of a SageMaker ARN, or a ValidationException."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sagemaker" or "/" not in parts[5]:
        raise validation(f"{arn!r} is not a SageMaker ARN.")
    resource_type, _, name = parts[5].partition("/")
    return resource_type, name


async def resolve(view: View, arn: str) -> str:
    """The lineage entity that stands for ``arn``."""
    resource_type, name = _resource_type(arn)
    if resource_type in LINEAGE_KINDS or resource_type == "experiment-trial-component":
        return arn
    if resource_type in JOB_COMPONENTS:
        component = f"{name}-{JOB_COMPONENTS[resource_type]}"
        return (await view.call("DescribeTrialComponent", {"TrialComponentName": component}))["TrialComponentArn"]
    for operation, items, member in (
        ("ListArtifacts", "ArtifactSummaries", "ArtifactArn"),
        ("ListContexts", "ContextSummaries", "ContextArn"),
    ):
        found = (await view.call(operation, {"SourceUri": arn, "MaxResults": 1})).get(items, [])
        if found:
            return found[0][member]
    raise not_found(f"No lineage entity stands for {arn}: nothing recorded its lineage.")


async def _labels(view: View, vertices: list[dict]) -> dict[str, dict]:
    """What a node shows: a named entity's name; an artifact (named by a digest) its source URI."""
    out = {}
    described = 0
    for vertex in vertices:
        arn = vertex["Arn"]
        name = arn.rsplit("/", 1)[-1]
        info = {"label": name, "source": ""}
        if vertex.get("LineageType") == "Artifact" and described < MAX_DESCRIBED:
            described += 1
            try:
                artifact = await view.call("DescribeArtifact", {"ArtifactArn": arn})
            except AWSError:
                artifact = {}
            source = (artifact.get("Source") or {}).get("SourceUri", "")
            info = {"label": artifact.get("ArtifactName") or _short(source) or name, "source": source}
        out[arn] = info
    return out


def _short(uri: str) -> str:
    """The end of a long URI, which is what tells artifacts apart (…/train/model.tar.gz)."""
    parts = [p for p in uri.split("/") if p]
    return "…/" + "/".join(parts[-2:]) if len(parts) > 3 else uri


async def neighbourhood(view: View, arn: str, direction: str) -> dict:
    """The entities one association away from ``arn`` in ``direction``, with those associations."""
    answer = await view.call(
        "QueryLineage", {"StartArns": [arn], "Direction": direction, "IncludeEdges": True, "MaxDepth": 1}
    )
    vertices = answer.get("Vertices", [])
    if not any(v["Arn"] == arn for v in vertices):  # the start itself, when no filter selected it
        vertices.insert(0, {"Arn": arn, "Type": None, "LineageType": None})
    labels = await _labels(view, vertices)
    return {
        "nodes": [
            {"id": v["Arn"], "type": v.get("Type") or "", "lineage": v.get("LineageType") or "", **labels[v["Arn"]]}
            for v in vertices
        ],
        "edges": [
            {"source": e["SourceArn"], "target": e["DestinationArn"], "kind": e.get("AssociationType") or ""}
            for e in answer.get("Edges", [])
        ],
    }


async def lineage(view: View):
    arn = view.query("arn").strip()
    if not arn:
        return view.render("lineage/graph.html", title="Lineage", arn="", start=None, graph=None)
    start = await resolve(view, arn)
    graph = await neighbourhood(view, start, "Both")
    return view.render("lineage/graph.html", title="Lineage", arn=arn, start=start, graph=graph)


async def expand(view: View):
    """JSON for the page's script: one more association around a node."""
    direction = view.query("direction", "Both")
    if direction not in DIRECTIONS:
        raise validation(f"The direction is one of {', '.join(DIRECTIONS)}.")
    arn = view.query("arn")
    _resource_type(arn)
    try:
        return json_response(await neighbourhood(view, arn, direction))
    except AWSError as err:
        return json_response({"error": f"{err.code}: {err.message}"}, 404 if err.code == "ResourceNotFound" else 400)


ROUTES = [
    Route("GET", "/lineage", lineage),
    Route("GET", "/lineage/expand", expand),
]
