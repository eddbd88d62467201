"""ML Lineage through boto3: actions, artifacts, contexts, associations and QueryLineage."""

import datetime as dt
import re
import time

import pytest
from botocore.exceptions import ClientError

from support.server import ACCOUNT, REGION

pytestmark = pytest.mark.both_databases

ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"


def error(call, *args, **kwargs):
    with pytest.raises(ClientError) as err:
        call(*args, **kwargs)
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def pages(call, key, **kwargs):
    """Every item of a paginated list, and how many pages it took."""
    items, count, token = [], 0, None
    while True:
        page = call(**kwargs, **({"NextToken": token} if token else {}))
        items += page[key]
        count += 1
        token = page.get("NextToken")
        if not token:
            return items, count


def artifact(sm, uri, artifact_type="DataSet", **kwargs):
    return sm.create_artifact(Source={"SourceUri": uri}, ArtifactType=artifact_type, **kwargs)["ArtifactArn"]


def action(sm, name, action_type="Training", **kwargs):
    return sm.create_action(ActionName=name, Source={"SourceUri": f"job/{name}"}, ActionType=action_type, **kwargs)[
        "ActionArn"
    ]


def context(sm, name, context_type="Endpoint", **kwargs):
    return sm.create_context(ContextName=name, Source={"SourceUri": f"ep/{name}"}, ContextType=context_type, **kwargs)[
        "ContextArn"
    ]


# ---------------------------------------------------------------------------
# Actions and contexts


def test_action_lifecycle(sm, client, unique):
    name = unique("Act")
    arn = sm.create_action(
        ActionName=name,
        Source={"SourceUri": "s3://b/job", "SourceType": "Job", "SourceId": "42"},
        ActionType="Training",
        Description="trains",
        Status="InProgress",
        Properties={"a": "1", "b": "2"},
        MetadataProperties={"CommitId": "abc", "Repository": "git://r"},
        Tags=[{"Key": "team", "Value": "ml"}],
    )["ActionArn"]
    assert arn == f"{ARN}:action/{name.lower()}"
    described = sm.describe_action(ActionName=name)
    assert described["ActionArn"] == arn and described["ActionName"] == name
    assert described["Source"] == {"SourceUri": "s3://b/job", "SourceType": "Job", "SourceId": "42"}
    assert (described["ActionType"], described["Status"], described["Description"]) == (
        "Training",
        "InProgress",
        "trains",
    )
    assert described["Properties"] == {"a": "1", "b": "2"}
    assert described["MetadataProperties"] == {"CommitId": "abc", "Repository": "git://r"}
    assert "CreatedBy" not in described and "LastModifiedBy" not in described  # no IamIdentity for lineage
    assert isinstance(described["CreationTime"], dt.datetime)
    assert sm.describe_action(ActionName=arn)["ActionName"] == name  # by ARN too
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "ml"}]

    time.sleep(0.01)
    assert (
        sm.update_action(
            ActionName=name,
            Status="Completed",
            Description="trained",
            Properties={"b": "3", "c": "4"},
            PropertiesToRemove=["a", "absent"],
        )["ActionArn"]
        == arn
    )
    updated = sm.describe_action(ActionName=name)
    assert (updated["Status"], updated["Description"]) == ("Completed", "trained")
    assert updated["Properties"] == {"b": "3", "c": "4"}
    assert updated["LastModifiedTime"] > updated["CreationTime"]
    assert updated["Source"] == described["Source"] and updated["ActionType"] == "Training"

    # A key both sent and removed is removed: the SDK's save() sends all loaded properties back.
    sm.update_action(ActionName=name, Properties={"b": "3", "c": "5"}, PropertiesToRemove=["b"])
    assert sm.describe_action(ActionName=name)["Properties"] == {"c": "5"}

    assert sm.delete_action(ActionName=name)["ActionArn"] == arn
    code, message = error(sm.describe_action, ActionName=name)
    assert code == "ResourceNotFound" and arn in message
    assert error(sm.delete_action, ActionName=name)[0] == "ResourceNotFound"
    assert error(sm.update_action, ActionName=name, Status="Failed")[0] == "ResourceNotFound"
    assert error(sm.list_tags, ResourceArn=arn)[0] == "ResourceNotFound"


def test_action_and_context_names_are_unique(sm, unique):
    name = unique("dup")
    action(sm, name)
    code, message = error(action, sm, name.upper())
    assert code == "ValidationException" and "already exists" in message
    cname = unique("ctx_dup")
    context(sm, cname)
    code, message = error(context, sm, cname)
    assert code == "ValidationException" and "already exists" in message


def test_context_lifecycle(sm, unique):
    name = unique("my_ctx")  # contexts, unlike actions, may have underscores
    arn = sm.create_context(
        ContextName=name,
        Source={"SourceUri": "arn:ep", "SourceType": "Endpoint"},
        ContextType="Endpoint",
        Description="d",
        Properties={"k1": "v1"},
    )["ContextArn"]
    assert arn == f"{ARN}:context/{name.lower()}"
    described = sm.describe_context(ContextName=arn)
    assert (described["ContextName"], described["ContextType"], described["Description"]) == (name, "Endpoint", "d")
    assert described["Source"] == {"SourceUri": "arn:ep", "SourceType": "Endpoint"}
    # What the SDK's Context.save() sends: the loaded properties with one replaced, one removed.
    sm.update_context(ContextName=name, Description="updated", Properties={"k3": "v3"}, PropertiesToRemove=["k1"])
    updated = sm.describe_context(ContextName=name)
    assert (updated["Description"], updated["Properties"]) == ("updated", {"k3": "v3"})
    assert sm.delete_context(ContextName=name)["ContextArn"] == arn
    assert error(sm.describe_context, ContextName=name)[0] == "ResourceNotFound"


# ---------------------------------------------------------------------------
# Artifacts


def test_artifacts_are_identified_by_their_source(sm, unique):
    uri = f"s3://bucket/{unique('data')}"
    arn = artifact(sm, uri, ArtifactName="train-data", Properties={"rows": "10"})
    assert re.fullmatch(rf"{ARN}:artifact/[0-9a-f]{{32}}", arn)
    described = sm.describe_artifact(ArtifactArn=arn)
    assert (described["ArtifactName"], described["ArtifactType"]) == ("train-data", "DataSet")
    assert described["Source"] == {"SourceUri": uri} and described["Properties"] == {"rows": "10"}

    # One artifact per source: creating it again is "already exists" (what the SDK checks for).
    code, message = error(artifact, sm, uri, artifact_type="Model")
    assert code == "ValidationException" and "already exists" in message and arn in message
    # The same URI with source types is another source; the order of the types does not matter.
    types = [{"SourceIdType": "S3ETag", "Value": "e1"}, {"SourceIdType": "Custom", "Value": "x"}]
    versioned = sm.create_artifact(Source={"SourceUri": uri, "SourceTypes": types}, ArtifactType="DataSet")[
        "ArtifactArn"
    ]
    assert versioned != arn
    code, _ = error(sm.create_artifact, Source={"SourceUri": uri, "SourceTypes": types[::-1]}, ArtifactType="DataSet")
    assert code == "ValidationException"
    assert "ArtifactName" not in sm.describe_artifact(ArtifactArn=versioned)  # names are optional...
    other = artifact(sm, uri + "-2", ArtifactName="train-data")  # ...and not unique
    assert other not in (arn, versioned)


def test_update_and_delete_artifact(sm, unique):
    uri = f"s3://bucket/{unique('model')}"
    types = [{"SourceIdType": "S3Version", "Value": "v1"}]
    arn = sm.create_artifact(
        Source={"SourceUri": uri, "SourceTypes": types}, ArtifactType="Model", Properties={"k1": "v1", "k2": "v2"}
    )["ArtifactArn"]
    sm.update_artifact(ArtifactArn=arn, ArtifactName="renamed", Properties={"k3": "v3"}, PropertiesToRemove=["k1"])
    updated = sm.describe_artifact(ArtifactArn=arn)
    assert updated["ArtifactName"] == "renamed" and updated["Properties"] == {"k2": "v2", "k3": "v3"}

    # DeleteArtifact takes the ARN or the source, and refuses neither or a mismatch.
    assert error(sm.delete_artifact)[0] == "ValidationException"
    other = artifact(sm, uri + "-other")
    assert (
        error(sm.delete_artifact, ArtifactArn=other, Source={"SourceUri": uri, "SourceTypes": types})[0]
        == "ValidationException"
    )
    assert error(sm.delete_artifact, Source={"SourceUri": uri})[0] == "ResourceNotFound"  # no types: another source
    assert sm.delete_artifact(Source={"SourceUri": uri, "SourceTypes": types})["ArtifactArn"] == arn
    assert error(sm.describe_artifact, ArtifactArn=arn)[0] == "ResourceNotFound"
    assert sm.delete_artifact(ArtifactArn=other)["ArtifactArn"] == other
    assert error(sm.delete_artifact, ArtifactArn=other)[0] == "ResourceNotFound"
    assert error(sm.update_artifact, ArtifactArn=other, ArtifactName="x")[0] == "ResourceNotFound"
    # Deleted, the source is free again.
    assert artifact(sm, uri + "-other") == other


# ---------------------------------------------------------------------------
# Lists


def test_list_entities_filters_sorts_and_pages(sm, unique):
    tag = unique("lst")
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    names = [f"{tag}-{i}" for i in range(5)]
    for i, name in enumerate(names):
        sm.create_action(ActionName=name, Source={"SourceUri": f"uri-{tag}"}, ActionType=f"T{tag}{i % 2}")
        context(sm, name, context_type=f"C{tag}")
        artifact(sm, f"s3://{tag}/{i}", artifact_type=f"A{tag}{i % 2}")
    created = [sm.describe_action(ActionName=n)["CreationTime"] for n in names]

    listed, count = pages(
        sm.list_actions, "ActionSummaries", SourceUri=f"uri-{tag}", SortBy="Name", SortOrder="Ascending", MaxResults=2
    )
    assert [a["ActionName"] for a in listed] == names and count == 3
    assert listed[0]["ActionType"] == f"T{tag}0" and listed[0]["Source"]["SourceUri"] == f"uri-{tag}"
    newest_first = sm.list_actions(SourceUri=f"uri-{tag}")["ActionSummaries"]  # CreationTime, Descending
    assert [a["ActionName"] for a in newest_first] == names[::-1]
    odd = sm.list_actions(ActionType=f"T{tag}1", SortBy="CreationTime", SortOrder="Ascending")["ActionSummaries"]
    assert [a["ActionName"] for a in odd] == names[1::2]
    # CreatedAfter/CreatedBefore include the instant itself ("on or after").
    window = sm.list_actions(
        SourceUri=f"uri-{tag}", CreatedAfter=created[1], CreatedBefore=created[3], SortOrder="Ascending"
    )["ActionSummaries"]
    assert [a["ActionName"] for a in window] == names[1:4]
    assert sm.list_actions(SourceUri=f"uri-{tag}", CreatedBefore=before)["ActionSummaries"] == []

    contexts, count = pages(
        sm.list_contexts, "ContextSummaries", ContextType=f"C{tag}", SortBy="Name", SortOrder="Descending", MaxResults=3
    )
    assert [c["ContextName"] for c in contexts] == names[::-1] and count == 2
    assert [c["ContextName"] for c in sm.list_contexts(SourceUri=f"ep/{names[2]}")["ContextSummaries"]] == [names[2]]

    artifacts, count = pages(
        sm.list_artifacts,
        "ArtifactSummaries",
        ArtifactType=f"A{tag}0",
        SortBy="CreationTime",
        SortOrder="Ascending",
        MaxResults=1,
    )
    assert [a["Source"]["SourceUri"] for a in artifacts] == [f"s3://{tag}/{i}" for i in (0, 2, 4)] and count == 3
    assert [a["ArtifactType"] for a in sm.list_artifacts(SourceUri=f"s3://{tag}/3")["ArtifactSummaries"]] == [
        f"A{tag}1"
    ]
    # A token is good only for the list it came from.
    first = sm.list_actions(SourceUri=f"uri-{tag}", MaxResults=1)
    assert (
        error(sm.list_actions, SourceUri=f"uri-{tag}", SortBy="Name", NextToken=first["NextToken"])[0]
        == "ValidationException"
    )


def test_lists_default_to_pages_of_ten(sm, unique):
    tag = unique("ten")
    for i in range(11):
        sm.create_action(ActionName=f"{tag}-{i}", Source={"SourceUri": tag}, ActionType="t")
    page = sm.list_actions(SourceUri=tag)
    assert len(page["ActionSummaries"]) == 10 and page["NextToken"]


# ---------------------------------------------------------------------------
# Associations


def test_association_edge_cases(sm, unique):
    data = artifact(sm, f"s3://{unique('b')}/d")
    job = action(sm, unique("job"))
    missing = f"{ARN}:action/{unique('missing')}"
    assert error(sm.add_association, SourceArn=missing, DestinationArn=job)[0] == "ResourceNotFound"
    assert error(sm.add_association, SourceArn=data, DestinationArn=missing)[0] == "ResourceNotFound"
    assert error(sm.add_association, SourceArn=job, DestinationArn=job)[0] == "ValidationException"

    added = sm.add_association(SourceArn=data, DestinationArn=job, AssociationType="ContributedTo")
    assert (added["SourceArn"], added["DestinationArn"]) == (data, job)
    # One association per ordered pair, whatever its type; the reverse direction is another edge.
    for association_type in ("ContributedTo", "AssociatedWith"):
        code, message = error(sm.add_association, SourceArn=data, DestinationArn=job, AssociationType=association_type)
        assert code == "ValidationException" and "already exists" in message
    sm.add_association(SourceArn=job, DestinationArn=data)

    # An entity with associations cannot be deleted; without them it can.
    code, message = error(sm.delete_action, ActionName=job.rsplit("/", 1)[1])
    assert code == "ValidationException" and "associations" in message
    assert error(sm.delete_artifact, ArtifactArn=data)[0] == "ValidationException"
    assert sm.describe_action(ActionName=job)["ActionArn"] == job
    deleted = sm.delete_association(SourceArn=data, DestinationArn=job)
    assert (deleted["SourceArn"], deleted["DestinationArn"]) == (data, job)
    sm.delete_association(SourceArn=job, DestinationArn=data)
    assert error(sm.delete_association, SourceArn=data, DestinationArn=job)[0] == "ResourceNotFound"
    assert sm.list_associations(SourceArn=data)["AssociationSummaries"] == []
    sm.delete_action(ActionName=job.rsplit("/", 1)[1])
    sm.delete_artifact(ArtifactArn=data)


def test_associations_with_experiment_entities(sm, unique):
    data = artifact(sm, f"s3://{unique('b')}/d")
    experiment = sm.create_experiment(ExperimentName=unique("exp"))["ExperimentArn"]
    component = sm.create_trial_component(TrialComponentName=unique("tc"))["TrialComponentArn"]
    sm.add_association(SourceArn=data, DestinationArn=component, AssociationType="ContributedTo")
    sm.add_association(SourceArn=data, DestinationArn=experiment)
    # Not between two experiment entities.
    assert error(sm.add_association, SourceArn=component, DestinationArn=experiment)[0] == "ValidationException"
    [summary] = sm.list_associations(DestinationArn=component)["AssociationSummaries"]
    assert summary["DestinationName"] == component.rsplit("/", 1)[1] and summary["SourceType"] == "DataSet"
    found = sm.query_lineage(StartArns=[data], Direction="Descendants", IncludeEdges=True)
    # The trial component is a vertex; the experiment has no LineageType, so it is not reported.
    assert {(v["Arn"], v["LineageType"]) for v in found["Vertices"]} == {
        (data, "Artifact"),
        (component, "TrialComponent"),
    }
    assert [(e["SourceArn"], e["DestinationArn"]) for e in found["Edges"]] == [(data, component)]
    # A trial component is a lineage entity: it stays while an association names it.
    name = component.rsplit("/", 1)[1]
    assert error(sm.delete_trial_component, TrialComponentName=name)[0] == "ValidationException"
    sm.delete_association(SourceArn=data, DestinationArn=component)
    sm.delete_trial_component(TrialComponentName=name)


def test_list_associations_filters_sorts_and_pages(sm, unique):
    tag = unique("la")
    hub = action(sm, f"{tag}-hub", action_type="Hub")
    inputs = [artifact(sm, f"s3://{tag}/{i}", artifact_type=f"In{i % 2}", ArtifactName=f"in-{i}") for i in range(4)]
    output = context(sm, f"{tag}-out", context_type="Out")
    for i, arn in enumerate(inputs):
        sm.add_association(
            SourceArn=arn, DestinationArn=hub, AssociationType="ContributedTo" if i % 2 else "DerivedFrom"
        )
    sm.add_association(SourceArn=hub, DestinationArn=output, AssociationType="Produced")

    into_hub, count = pages(sm.list_associations, "AssociationSummaries", DestinationArn=hub, MaxResults=3)
    assert count == 2 and [a["SourceArn"] for a in into_hub] == inputs[::-1]  # newest first by default
    first = into_hub[-1]
    assert (
        first["SourceType"],
        first["SourceName"],
        first["DestinationType"],
        first["DestinationName"],
        first["AssociationType"],
    ) == ("In0", "in-0", "Hub", f"{tag}-hub", "DerivedFrom")
    assert "CreatedBy" not in first and isinstance(first["CreationTime"], dt.datetime)

    def arns(**kwargs):
        listed, _ = pages(sm.list_associations, "AssociationSummaries", MaxResults=2, **kwargs)
        return [(a["SourceArn"], a["DestinationArn"]) for a in listed]

    assert arns(SourceArn=hub) == [(hub, output)]
    assert arns(DestinationArn=hub, SourceType="In1", SortOrder="Ascending") == [(inputs[1], hub), (inputs[3], hub)]
    assert arns(DestinationType="Out") == [(hub, output)]
    assert arns(DestinationArn=hub, AssociationType="DerivedFrom", SortOrder="Ascending") == [
        (inputs[0], hub),
        (inputs[2], hub),
    ]
    assert arns(DestinationArn=hub, SortBy="SourceArn", SortOrder="Ascending") == [(a, hub) for a in sorted(inputs)]
    assert arns(DestinationArn=hub, SortBy="SourceArn") == [(a, hub) for a in sorted(inputs, reverse=True)]
    by_type = arns(DestinationArn=hub, SortBy="SourceType", SortOrder="Ascending")
    assert [s for s, _ in by_type[:2]] in ([inputs[0], inputs[2]], [inputs[2], inputs[0]])
    assert {s for s, _ in by_type[2:]} == {inputs[1], inputs[3]}
    related = [(a, hub) for a in inputs] + [(hub, output)]
    mine = set(related)
    ordered = [pair for pair in arns(SortBy="DestinationArn", SortOrder="Ascending") if pair in mine]
    assert [d for _, d in ordered] == sorted(d for _, d in related)
    ordered = [pair for pair in arns(SortBy="DestinationType") if pair in mine]
    assert [d for _, d in ordered] == [output] + [hub] * 4  # "Out" > "Hub"
    ordered = [pair for pair in arns(SortBy="SourceType", SortOrder="Ascending") if pair in mine]
    assert ordered[0] == (hub, output)  # "Hub" < "In0" < "In1"

    created = [
        a["CreationTime"]
        for a in sm.list_associations(DestinationArn=hub, SortOrder="Ascending", MaxResults=10)["AssociationSummaries"]
    ]
    window = arns(DestinationArn=hub, CreatedAfter=created[1], CreatedBefore=created[2], SortOrder="Ascending")
    assert window == [(inputs[1], hub), (inputs[2], hub)]  # inclusive bounds

    token = sm.list_associations(DestinationArn=hub, MaxResults=1)["NextToken"]
    assert error(sm.list_associations, DestinationArn=output, NextToken=token)[0] == "ValidationException"
    assert error(sm.list_associations, DestinationArn=hub, NextToken=token[:-4] + "AAAA")[0] == "ValidationException"


# ---------------------------------------------------------------------------
# QueryLineage, on a small graph with a cycle:
#
#   ds1 ─┐                        ┌──────── monitor <─┐
#        ├─> train ─> model ─> deploy ─> ep ──────────┘   (monitor ─> model closes the cycle)
#   ds2 ─┘


@pytest.fixture
def graph(sm, unique):
    tag = unique("g")
    g = {
        "ds1": artifact(sm, f"s3://{tag}/ds1", "DataSet", Properties={"split": "train"}),
        "ds2": artifact(sm, f"s3://{tag}/ds2", "DataSet", Properties={"split": "test"}),
        "train": action(sm, f"{tag}-train", "Training", Properties={"split": "train"}),
        "model": artifact(sm, f"s3://{tag}/model", "Model"),
        "deploy": action(sm, f"{tag}-deploy", "ModelDeployment"),
        "ep": context(sm, f"{tag}-ep", "Endpoint"),
        "monitor": action(sm, f"{tag}-monitor", "Monitoring"),
    }
    edges = [
        ("ds1", "train", "ContributedTo"),
        ("ds2", "train", "ContributedTo"),
        ("train", "model", "Produced"),
        ("model", "deploy", "ContributedTo"),
        ("deploy", "ep", "AssociatedWith"),
        ("ep", "monitor", "AssociatedWith"),
        ("monitor", "model", "DerivedFrom"),
    ]
    for source, destination, association_type in edges:
        sm.add_association(SourceArn=g[source], DestinationArn=g[destination], AssociationType=association_type)
    g["_edges"] = {(source, destination): t for source, destination, t in edges}
    return g


def query(sm, g, start, **kwargs):
    """(vertex names in order, {(source, destination): type}) of a QueryLineage answer."""
    names = {arn: name for name, arn in g.items() if not name.startswith("_")}
    answer = sm.query_lineage(StartArns=[g[start]], **kwargs)
    vertices = [names[v["Arn"]] for v in answer["Vertices"]]
    edges = {(names[e["SourceArn"]], names[e["DestinationArn"]]): e.get("AssociationType") for e in answer["Edges"]}
    return vertices, edges


def test_query_directions(sm, graph):
    vertices, edges = query(sm, graph, "ds1", Direction="Descendants", IncludeEdges=True)
    assert vertices[0] == "ds1" and set(vertices) == {"ds1", "train", "model", "deploy", "ep", "monitor"}
    assert vertices.index("train") < vertices.index("model") < vertices.index("deploy") < vertices.index("ep")
    assert edges == {k: v for k, v in graph["_edges"].items() if k[0] != "ds2"}  # the cycle ends the walk

    vertices, edges = query(sm, graph, "ep", Direction="Ascendants", IncludeEdges=True)
    assert set(vertices) == {"ep", "deploy", "model", "train", "monitor", "ds1", "ds2"}
    assert edges == graph["_edges"]

    vertices, _ = query(sm, graph, "ds1", Direction="Both")
    assert set(vertices) == {"ds1", "ds2", "train", "model", "deploy", "ep", "monitor"}  # ds2 via train

    # Without IncludeEdges only vertices come back; Vertex.Type is the entity's type.
    answer = sm.query_lineage(StartArns=[graph["model"]], Direction="Descendants", MaxDepth=1)
    assert answer["Edges"] == []
    assert sorted((v["Type"], v["LineageType"]) for v in answer["Vertices"]) == [
        ("Model", "Artifact"),
        ("ModelDeployment", "Action"),
    ]


def test_query_depth(sm, graph):
    assert query(sm, graph, "ds1", Direction="Descendants", MaxDepth=0)[0] == ["ds1"]
    assert query(sm, graph, "ds1", Direction="Descendants", MaxDepth=2)[0] == ["ds1", "train", "model"]
    vertices, edges = query(sm, graph, "ep", Direction="Ascendants", MaxDepth=2, IncludeEdges=True)
    assert set(vertices) == {"ep", "deploy", "model"}
    assert set(edges) == {("deploy", "ep"), ("model", "deploy")}
    # Edges are the associations the walk crossed: none leave the last level.
    vertices, edges = query(sm, graph, "ds1", Direction="Both", MaxDepth=1, IncludeEdges=True)
    assert (set(vertices), set(edges)) == ({"ds1", "train"}, {("ds1", "train")})
    assert error(sm.query_lineage, StartArns=[graph["ds1"]], MaxDepth=-1)[0] == "ValidationException"


def test_query_filters(sm, graph):
    def names(start, **kwargs):
        return set(query(sm, graph, start, **kwargs)[0])

    # Filters choose what is returned; the walk still goes through everything else.
    assert names("ep", Direction="Ascendants", Filters={"Types": ["DataSet"]}) == {"ds1", "ds2"}
    assert names("ep", Direction="Ascendants", Filters={"LineageTypes": ["Action"]}) == {"deploy", "train", "monitor"}
    assert names(
        "ep", Direction="Ascendants", Filters={"LineageTypes": ["Artifact", "Context"], "Types": ["Model", "Endpoint"]}
    ) == {"model", "ep"}
    assert names("ep", Direction="Ascendants", Filters={"LineageTypes": ["TrialComponent"]}) == set()
    # Properties: any one of the pairs.
    assert names("ds2", Filters={"Properties": {"split": "train"}}) == {"ds1", "train"}
    assert names("ds2", Filters={"Properties": {"split": "test", "x": "y"}}) == {"ds2"}

    described = {n: sm.describe_artifact(ArtifactArn=graph[n]) for n in ("ds1", "model")}
    # ds1 is older than model; strict bounds.
    assert "ds1" not in names("ds1", Filters={"CreatedAfter": described["ds1"]["CreationTime"]})
    assert names("ds1", Filters={"CreatedBefore": described["model"]["CreationTime"]}) == {"ds1", "ds2", "train"}
    time.sleep(0.01)
    sm.update_artifact(ArtifactArn=graph["model"], Properties={"v": "2"})
    modified = sm.describe_artifact(ArtifactArn=graph["model"])["LastModifiedTime"]
    assert names("ds1", Filters={"ModifiedAfter": modified - dt.timedelta(milliseconds=1)}) == {"model"}
    assert "model" not in names("ds1", Filters={"ModifiedBefore": modified})


def test_query_include_edges_returns_the_paths_to_matches(sm, graph):
    vertices, edges = query(sm, graph, "ep", Direction="Ascendants", IncludeEdges=True, Filters={"Types": ["DataSet"]})
    # The datasets, and the entities and associations on the way to them (not the monitor loop).
    assert set(vertices) == {"ep", "deploy", "model", "train", "ds1", "ds2"}
    assert set(edges) == {("deploy", "ep"), ("model", "deploy"), ("train", "model"), ("ds1", "train"), ("ds2", "train")}


def test_query_pages(sm, graph):
    full, full_edges = query(sm, graph, "ds1", Direction="Both", IncludeEdges=True)
    seen, seen_edges, token, count = [], {}, None, 0
    while True:
        kwargs = {"NextToken": token} if token else {}
        answer = sm.query_lineage(StartArns=[graph["ds1"]], Direction="Both", IncludeEdges=True, MaxResults=3, **kwargs)
        assert len(answer["Vertices"]) <= 3
        seen += [v["Arn"] for v in answer["Vertices"]]
        seen_edges.update({(e["SourceArn"], e["DestinationArn"]): 1 for e in answer["Edges"]})
        count += 1
        token = answer.get("NextToken")
        if not token:
            break
    assert count == 3 and seen == [graph[n] for n in full]
    assert len(seen_edges) == len(full_edges) == 7
    first = sm.query_lineage(StartArns=[graph["ds1"]], Direction="Both", MaxResults=3)
    assert (
        error(
            sm.query_lineage,
            StartArns=[graph["ds1"]],
            Direction="Descendants",
            MaxResults=3,
            NextToken=first["NextToken"],
        )[0]
        == "ValidationException"
    )


def test_query_start_must_exist(sm, graph, unique):
    assert error(sm.query_lineage, StartArns=[f"{ARN}:artifact/{'0' * 32}"])[0] == "ResourceNotFound"
    assert error(sm.query_lineage, StartArns=[])[0] == "ValidationException"
