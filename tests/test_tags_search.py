"""Tags on any resource ARN, and Search / GetSearchSuggestions across kinds."""

import pytest
from botocore.exceptions import ClientError

from support.server import ACCOUNT, REGION

pytestmark = pytest.mark.both_databases


def test_tags_add_overwrite_list_delete(sm, unique):
    name = unique("tagged")
    arn = sm.create_experiment(ExperimentName=name, Tags=[{"Key": "team", "Value": "a"}])["ExperimentArn"]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "team", "Value": "b"}, {"Key": "stage", "Value": "dev"}])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "b"}, {"Key": "stage", "Value": "dev"}]
    sm.delete_tags(ResourceArn=arn, TagKeys=["team"])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "stage", "Value": "dev"}]


def test_tags_limit_and_unknown_resource(sm, unique):
    arn = sm.create_experiment(ExperimentName=unique("many"))["ExperimentArn"]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    with pytest.raises(ClientError) as err:
        sm.add_tags(ResourceArn=arn, Tags=[{"Key": "one-too-many", "Value": "v"}])
    assert err.value.response["Error"]["Code"] == "ResourceLimitExceeded"
    assert len(sm.list_tags(ResourceArn=arn)["Tags"]) == 50
    with pytest.raises(ClientError) as err:
        sm.add_tags(
            ResourceArn=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:experiment/none-such", Tags=[{"Key": "k", "Value": "v"}]
        )
    assert err.value.response["Error"]["Code"] == "ResourceNotFound"


def test_tags_are_removed_with_the_resource(sm, unique):
    name = unique("gone")
    arn = sm.create_experiment(ExperimentName=name, Tags=[{"Key": "k", "Value": "v"}])["ExperimentArn"]
    sm.delete_experiment(ExperimentName=name)
    sm.create_experiment(ExperimentName=name)
    assert sm.list_tags(ResourceArn=arn)["Tags"] == []


def test_search_filters_sort_and_pages(sm, unique):
    prefix = unique("srch")
    for i, team in enumerate(["red", "blue", "red"]):
        sm.create_experiment(
            ExperimentName=f"{prefix}-{i}", Description=f"run {i}", Tags=[{"Key": "team", "Value": team}]
        )

    def names(**kwargs):
        found, token = [], None
        while True:
            page = sm.search(Resource="Experiment", **kwargs, **({"NextToken": token} if token else {}))
            found += [r["Experiment"]["ExperimentName"] for r in page["Results"]]
            token = page.get("NextToken")
            if not token:
                return found

    mine = {"Name": "ExperimentName", "Operator": "Contains", "Value": prefix}
    red = {"Name": "Tags.team", "Operator": "Equals", "Value": "red"}
    assert names(
        SearchExpression={"Filters": [mine, red]}, SortBy="ExperimentName", SortOrder="Ascending", MaxResults=1
    ) == [f"{prefix}-0", f"{prefix}-2"]
    either = {
        "Operator": "Or",
        "SubExpressions": [
            {"Filters": [{"Name": "ExperimentName", "Operator": "Equals", "Value": f"{prefix}-1"}]},
            {"Filters": [{"Name": "Description", "Operator": "Equals", "Value": "run 2"}]},
        ],
    }
    assert names(SearchExpression=either, SortBy="ExperimentName", SortOrder="Descending") == [
        f"{prefix}-2",
        f"{prefix}-1",
    ]
    no_tag = {"Filters": [mine, {"Name": "Tags.owner", "Operator": "NotExists"}]}
    assert len(names(SearchExpression=no_tag)) == 3
    result = sm.search(Resource="Experiment", SearchExpression={"Filters": [mine]})
    assert result["TotalHits"] == {"Value": 3, "Relation": "EqualTo"}
    assert result["Results"][0]["Experiment"]["Tags"]


def test_search_refuses_a_token_from_another_search(sm, unique):
    prefix = unique("tok")
    for i in range(2):
        sm.create_experiment(ExperimentName=f"{prefix}-{i}")
    expr = {"Filters": [{"Name": "ExperimentName", "Operator": "Contains", "Value": prefix}]}
    token = sm.search(Resource="Experiment", SearchExpression=expr, MaxResults=1)["NextToken"]
    with pytest.raises(ClientError):
        sm.search(Resource="Model", MaxResults=1, NextToken=token)


def test_a_list_token_pages_only_its_own_list(sm, unique):
    prefix = unique("pages")
    for i in range(3):
        sm.create_experiment(ExperimentName=f"{prefix}-{i}", Tags=[{"Key": "k", "Value": "v"}])
    first = sm.list_experiments(MaxResults=2, SortBy="Name", SortOrder="Ascending")
    listed = sm.list_experiments(MaxResults=2, SortBy="Name", SortOrder="Ascending", NextToken=first["NextToken"])
    assert listed["ExperimentSummaries"]
    search = sm.search(Resource="Experiment", MaxResults=1)["NextToken"]
    arn = sm.describe_experiment(ExperimentName=f"{prefix}-0")["ExperimentArn"]
    for call, token in (
        (
            lambda t: sm.list_experiments(MaxResults=2, SortBy="Name", SortOrder="Descending", NextToken=t),
            first["NextToken"],
        ),  # another order
        (lambda t: sm.list_experiments(MaxResults=2, NextToken=t), search),  # another operation
        (lambda t: sm.list_tags(ResourceArn=arn, NextToken=t), first["NextToken"]),
        (lambda t: sm.search(Resource="Experiment", MaxResults=1, NextToken=t), "not-a-token"),
    ):
        with pytest.raises(ClientError) as err:
            call(token)
        assert err.value.response["Error"]["Code"] == "ValidationException"
        assert err.value.response["Error"]["Message"].startswith("Invalid pagination token")


def test_search_suggestions(sm, unique):
    sm.create_experiment(ExperimentName=unique("sugg"), Tags=[{"Key": "project-x", "Value": "1"}])
    suggestions = sm.get_search_suggestions(
        Resource="Experiment", SuggestionQuery={"PropertyNameQuery": {"PropertyNameHint": "Tags.proj"}}
    )
    assert {"PropertyName": "Tags.project-x"} in suggestions["PropertyNameSuggestions"]
    names = [
        s["PropertyName"]
        for s in sm.get_search_suggestions(
            Resource="Experiment", SuggestionQuery={"PropertyNameQuery": {"PropertyNameHint": "Exp"}}
        )["PropertyNameSuggestions"]
    ]
    assert "ExperimentName" in names and "ExperimentArn" in names
