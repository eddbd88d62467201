"""The generic resource mechanism, through boto3: ARNs, uniqueness, describe, list semantics, delete."""

import datetime as dt

import pytest
from botocore.exceptions import ClientError

from support.server import ACCOUNT, REGION

pytestmark = pytest.mark.both_databases

ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def make_model(sm, name):
    return sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})


def test_create_describe_delete_model(sm, unique):
    name = unique("Model")
    arn = make_model(sm, name)["ModelArn"]
    assert arn == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/{name.lower()}"
    described = sm.describe_model(ModelName=name)
    assert described["ModelName"] == name
    assert described["ModelArn"] == arn
    assert described["PrimaryContainer"]["Image"] == IMAGE
    assert isinstance(described["CreationTime"], dt.datetime)
    # Responses carry only populated members: no empty VpcConfig for pydantic to choke on.
    assert "VpcConfig" not in described
    sm.delete_model(ModelName=name)
    with pytest.raises(ClientError) as err:
        sm.describe_model(ModelName=name)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert err.value.response["Error"]["Message"].startswith("Could not find model")


def test_names_are_unique_case_insensitively(sm, unique):
    name = unique("dup")
    make_model(sm, name)
    with pytest.raises(ClientError) as err:
        make_model(sm, name.upper())
    assert "Cannot create already existing model" in err.value.response["Error"]["Message"]


def test_list_sort_filter_and_paginate(sm, unique):
    prefix = unique("lst")
    names = [f"{prefix}-{i}" for i in range(7)]
    for n in names:
        make_model(sm, n)
    listed = []
    token = None
    while True:
        kwargs = {"NameContains": prefix, "SortBy": "Name", "SortOrder": "Ascending", "MaxResults": 3}
        if token:
            kwargs["NextToken"] = token
        page = sm.list_models(**kwargs)
        assert len(page["Models"]) <= 3
        listed += [m["ModelName"] for m in page["Models"]]
        token = page.get("NextToken")
        if not token:
            break
    assert listed == sorted(names)
    newest_first = [m["ModelName"] for m in sm.list_models(NameContains=prefix)["Models"]]
    assert newest_first == list(reversed(names))


def test_next_token_survives_concurrent_writes(sm, unique):
    prefix = unique("pg")
    for i in range(4):
        make_model(sm, f"{prefix}-{i}")
    first = sm.list_models(NameContains=prefix, SortBy="Name", SortOrder="Ascending", MaxResults=2)
    sm.delete_model(ModelName=f"{prefix}-0")
    make_model(sm, f"{prefix}-5")
    rest = sm.list_models(
        NameContains=prefix, SortBy="Name", SortOrder="Ascending", MaxResults=10, NextToken=first["NextToken"]
    )
    assert [m["ModelName"] for m in first["Models"]] == [f"{prefix}-0", f"{prefix}-1"]
    assert [m["ModelName"] for m in rest["Models"]] == [f"{prefix}-2", f"{prefix}-3", f"{prefix}-5"]


def test_forged_or_foreign_next_token_is_refused(sm, unique):
    prefix = unique("tok")
    for i in range(3):
        make_model(sm, f"{prefix}-{i}")
    token = sm.list_models(NameContains=prefix, MaxResults=1)["NextToken"]
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    for bad in (forged, "not-a-token"):
        with pytest.raises(ClientError) as err:
            sm.list_models(NameContains=prefix, MaxResults=1, NextToken=bad)
        assert err.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError):  # a token from another list's filters
        sm.list_models(NameContains=prefix + "-x", MaxResults=1, NextToken=token)


def test_time_filters(sm, unique):
    prefix = unique("time")
    make_model(sm, f"{prefix}-old")
    created = sm.describe_model(ModelName=f"{prefix}-old")["CreationTime"]
    make_model(sm, f"{prefix}-new")
    after = [m["ModelName"] for m in sm.list_models(NameContains=prefix, CreationTimeAfter=created)["Models"]]
    before = [
        m["ModelName"]
        for m in sm.list_models(NameContains=prefix, CreationTimeBefore=created + dt.timedelta(milliseconds=1))[
            "Models"
        ]
    ]
    assert after == [f"{prefix}-new"]
    assert before == [f"{prefix}-old"]


def test_code_repositories_refuse_secrets(sm, unique):
    # There is no Secrets Manager here: a repository's SecretArn is refused, at Create and at Update.
    name = unique("repo")
    sm.create_code_repository(CodeRepositoryName=name, GitConfig={"RepositoryUrl": "https://example.com/r.git"})
    before = sm.describe_code_repository(CodeRepositoryName=name)
    before.pop("ResponseMetadata")
    secret = {"SecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:s"}
    with pytest.raises(ClientError, match="SecretArn is not supported"):
        sm.update_code_repository(CodeRepositoryName=name, GitConfig=secret)
    with pytest.raises(ClientError, match="SecretArn is not supported"):
        sm.create_code_repository(
            CodeRepositoryName=f"{name}-s", GitConfig={"RepositoryUrl": "https://example.com/s.git", **secret}
        )
    after = sm.describe_code_repository(CodeRepositoryName=name)
    after.pop("ResponseMetadata")
    assert after == before
    names = [
        r["CodeRepositoryName"]
        for r in sm.list_code_repositories(NameContains=name, SortBy="LastModifiedTime")["CodeRepositorySummaryList"]
    ]
    assert names == [name]


def test_resources_are_regional(client, unique):
    east, west = client("sagemaker", region="us-east-1"), client("sagemaker", region="us-west-2")
    name = unique("regional")
    arn = make_model(east, name)["ModelArn"]
    assert ":us-east-1:" in arn
    for call in (lambda: west.describe_model(ModelName=name), lambda: west.list_tags(ResourceArn=arn)):
        with pytest.raises(ClientError):
            call()
    assert name not in [m["ModelName"] for m in west.list_models(NameContains=name)["Models"]]
    make_model(west, name)  # the same name is free in another region
    assert west.describe_model(ModelName=name)["ModelArn"] == arn.replace("us-east-1", "us-west-2")
