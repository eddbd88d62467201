"""IAM: the subset the SageMaker SDKs call (GetRole, SimulatePrincipalPolicy), through boto3."""

from __future__ import annotations

import pytest

from support.clients import error_of

pytestmark = pytest.mark.both_databases

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"


def test_get_role_is_a_stable_role_that_sagemaker_may_assume(client):
    iam = client("iam")
    role = iam.get_role(RoleName="SageMakerRole")["Role"]
    assert role["Arn"] == ROLE_ARN
    assert role["RoleName"] == "SageMakerRole" and role["Path"] == "/"
    assert role["RoleId"].startswith("AROA") and len(role["RoleId"]) == 21
    # botocore URL-decodes and parses the document, as it does for real IAM.
    statement = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert statement == {
        "Effect": "Allow",
        "Principal": {"Service": "sagemaker.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    again = iam.get_role(RoleName="SageMakerRole")["Role"]
    assert (again["RoleId"], again["CreateDate"]) == (role["RoleId"], role["CreateDate"])
    assert iam.get_role(RoleName="OtherRole")["Role"]["RoleId"] != role["RoleId"]


def test_get_role_rejects_a_malformed_name(client):
    code, message, status = error_of(lambda: client("iam").get_role(RoleName="no spaces allowed"))
    assert (code, status) == ("ValidationError", 400)
    assert "roleName" in message


def test_simulate_principal_policy_allows_every_action_and_pages(client):
    iam = client("iam")
    actions = ["s3:PutObject", "s3:GetObject", "sagemaker:CreateTrainingJob", "iam:PassRole", "logs:GetLogEvents"]
    first = iam.simulate_principal_policy(PolicySourceArn=ROLE_ARN, ActionNames=actions, MaxItems=2)
    assert first["IsTruncated"] is True
    assert [r["EvalActionName"] for r in first["EvaluationResults"]] == actions[:2]
    assert all(r["EvalDecision"] == "allowed" and r["EvalResourceName"] == "*" for r in first["EvaluationResults"])

    pages = iam.get_paginator("simulate_principal_policy").paginate(
        PolicySourceArn=ROLE_ARN, ActionNames=actions, PaginationConfig={"PageSize": 2}
    )
    results = [r for page in pages for r in page["EvaluationResults"]]
    assert [r["EvalActionName"] for r in results] == actions

    last = iam.simulate_principal_policy(
        PolicySourceArn=ROLE_ARN,
        ActionNames=actions,
        MaxItems=3,
        Marker=iam.simulate_principal_policy(PolicySourceArn=ROLE_ARN, ActionNames=actions, MaxItems=3)["Marker"],
    )
    assert last["IsTruncated"] is False and "Marker" not in last
    assert [r["EvalActionName"] for r in last["EvaluationResults"]] == actions[3:]


def test_simulate_principal_policy_reports_each_resource(client):
    resources = ["arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket"]
    result = client("iam").simulate_principal_policy(
        PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:user/alice", ActionNames=["s3:PutObject"], ResourceArns=resources
    )["EvaluationResults"]
    assert len(result) == 1 and result[0]["EvalDecision"] == "allowed"
    assert [(r["EvalResourceName"], r["EvalResourceDecision"]) for r in result[0]["ResourceSpecificResults"]] == [
        (resources[0], "allowed"),
        (resources[1], "allowed"),
    ]


def test_simulate_principal_policy_errors(client):
    iam = client("iam")

    def simulate(**kw):
        return lambda: iam.simulate_principal_policy(
            **{"PolicySourceArn": ROLE_ARN, "ActionNames": ["s3:GetObject"], **kw}
        )

    assert error_of(simulate(PolicySourceArn="arn:aws:iam::999999999999:role/SageMakerRole")) == (
        "NoSuchEntity",
        "The role with name SageMakerRole cannot be found.",
        404,
    )
    code, message, _ = error_of(simulate(PolicySourceArn=f"arn:aws:sts::{ACCOUNT}:assumed-role/R/session"))
    assert code == "InvalidInput" and "does not clear format check" in message
    assert error_of(simulate(PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:root"))[0] == "InvalidInput"
    assert error_of(simulate(ResourceArns=["bucket/key"]))[0] == "InvalidInput"
    assert error_of(simulate(Marker="forged-marker"))[0] == "InvalidInput"
    marker = iam.simulate_principal_policy(PolicySourceArn=ROLE_ARN, ActionNames=["a:b", "c:d"], MaxItems=1)["Marker"]
    assert error_of(simulate(Marker=marker))[0] == "InvalidInput"  # a marker of another simulation
