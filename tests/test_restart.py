"""State survives restarts, including a SIGKILL, on whichever database the suite runs against."""

import pytest

from support.server import ACCOUNT

pytestmark = pytest.mark.both_databases


def test_everything_survives_sigkill(make_server, client):
    srv = make_server("restart").start()
    sm = client("sagemaker", srv)
    role = f"arn:aws:iam::{ACCOUNT}:role/R"
    for i in range(5):
        sm.create_model(
            ModelName=f"m{i}",
            ExecutionRoleArn=role,
            PrimaryContainer={"Image": "img"},
            Tags=[{"Key": "i", "Value": str(i)}],
        )
    sm.create_experiment(ExperimentName="exp", Description="kept")
    token = sm.list_models(MaxResults=2, SortBy="Name", SortOrder="Ascending")["NextToken"]
    arn = sm.describe_model(ModelName="m3")["ModelArn"]

    srv.kill()
    srv.start()
    sm = client("sagemaker", srv)
    assert [m["ModelName"] for m in sm.list_models(SortBy="Name", SortOrder="Ascending")["Models"]] == [
        f"m{i}" for i in range(5)
    ]
    assert sm.describe_experiment(ExperimentName="exp")["Description"] == "kept"
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "i", "Value": "3"}]
    # A NextToken handed out before the crash still pages correctly after it.
    rest = sm.list_models(MaxResults=10, SortBy="Name", SortOrder="Ascending", NextToken=token)
    assert [m["ModelName"] for m in rest["Models"]] == ["m2", "m3", "m4"]
    assert srv.stopped_cleanly()
