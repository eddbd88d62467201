"""Model package group policies: IAM document validation, and cross-account access enforced on a strict server.

Accounts A (owner), B (shared with) and C (a stranger) each sign with their own
keys; the server maps each key to its account and verifies every signature.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

REGION = "us-east-1"
A = SimpleNamespace(key="AKIAREGISTRYA0000001", secret="secret-a", account="111111111111")
B = SimpleNamespace(key="AKIAREGISTRYB0000001", secret="secret-b", account="222222222222", user="bob")
B2 = SimpleNamespace(key="AKIAREGISTRYB0000002", secret="secret-b2", account="222222222222")
C = SimpleNamespace(key="AKIAREGISTRYC0000001", secret="secret-c", account="333333333333")
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
INFERENCE = {"Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://bucket/model.tar.gz"}]}


@pytest.fixture(scope="module")
def strict(make_server, tmp_path_factory):
    path = tmp_path_factory.mktemp("registry-auth") / "credentials.ini"
    path.write_text(
        "\n".join(
            f"[{who.key}]\nsecret_access_key = {who.secret}\naccount_id = {who.account}\n"
            + (f"user_name = {who.user}\n" if getattr(who, "user", "") else "")
            for who in (A, B, B2, C)
        )
    )
    return make_server("registry-strict", ["--auth", "strict", "--credentials-file", str(path)]).start()


@pytest.fixture
def as_(client, strict):
    """as_(A) -> a SageMaker client signing as that identity on the strict server."""
    return lambda who: client("sagemaker", srv=strict, access_key=who.key, secret_key=who.secret)


@pytest.fixture
def shared(as_, unique):
    """A group in account A with one version, and its ARNs."""
    owner = as_(A)
    name = unique("shared")
    group_arn = owner.create_model_package_group(ModelPackageGroupName=name)["ModelPackageGroupArn"]
    version_arn = owner.create_model_package(ModelPackageGroupName=name, InferenceSpecification=INFERENCE)[
        "ModelPackageArn"
    ]
    return SimpleNamespace(
        name=name,
        arn=group_arn,
        versions=f"arn:aws:sagemaker:{REGION}:{A.account}:model-package/{name.lower()}/*",
        version_arn=version_arn,
    )


def policy(*statements) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow_registry(group, principal) -> list[dict]:
    """The policy AWS's cross-account registry guide shows: describe the group, use its versions."""
    return [
        {
            "Sid": "AddPermModelPackageGroup",
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": ["sagemaker:DescribeModelPackageGroup"],
            "Resource": group.arn,
        },
        {
            "Sid": "AddPermModelPackageVersion",
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": [
                "sagemaker:DescribeModelPackage",
                "sagemaker:ListModelPackages",
                "sagemaker:UpdateModelPackage",
                "sagemaker:CreateModelPackage",
            ],
            "Resource": group.versions,
        },
    ]


def refused(call, **kwargs) -> str:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return err.value.response["Error"]["Message"]


def validation_message(call, **kwargs) -> str:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    assert err.value.response["Error"]["Code"] == "ValidationException"
    return err.value.response["Error"]["Message"]


# -- the policy operations -------------------------------------------------------------------------


def test_put_get_delete_policy(sm, unique):
    name = unique("pol")
    arn = sm.create_model_package_group(ModelPackageGroupName=name)["ModelPackageGroupArn"]
    assert "Cannot find resource policy" in validation_message(
        sm.get_model_package_group_policy, ModelPackageGroupName=name
    )
    text = policy(
        {"Effect": "Allow", "Principal": {"AWS": "222222222222"}, "Action": "sagemaker:Describe*", "Resource": arn}
    )
    assert (
        sm.put_model_package_group_policy(ModelPackageGroupName=name, ResourcePolicy=text)["ModelPackageGroupArn"]
        == arn
    )
    assert sm.get_model_package_group_policy(ModelPackageGroupName=name)["ResourcePolicy"] == text
    sm.delete_model_package_group_policy(ModelPackageGroupName=name)
    assert "Cannot find resource policy" in validation_message(
        sm.get_model_package_group_policy, ModelPackageGroupName=name
    )
    assert "Cannot find resource policy" in validation_message(
        sm.delete_model_package_group_policy, ModelPackageGroupName=name
    )
    assert "Cannot find Model Package Group" in validation_message(
        sm.put_model_package_group_policy, ModelPackageGroupName=unique("nogroup"), ResourcePolicy=text
    )


GOOD = {
    "Effect": "Allow",
    "Principal": {"AWS": "222222222222"},
    "Action": "sagemaker:DescribeModelPackage",
    "Resource": "*",
}


@pytest.mark.parametrize(
    "document, expected",
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "must be a JSON object"),
        (json.dumps({"Version": "2012-10-17"}), "no Statement"),
        (json.dumps({"Version": "2012-10-17", "Statement": []}), "non-empty list"),
        (json.dumps({"Version": "2020-01-01", "Statement": [GOOD]}), "Version must be 2012-10-17"),
        (json.dumps({"Version": "2012-10-17", "Statement": [GOOD], "Extra": 1}), "Unknown policy element Extra"),
        (policy({**GOOD, "Effect": "allow"}), "Effect must be Allow or Deny"),
        (policy({**GOOD, "NotAction": "sagemaker:ListModelPackages"}), "exactly one of Action and NotAction"),
        (policy({k: v for k, v in GOOD.items() if k != "Resource"}), "exactly one of Resource and NotResource"),
        (policy({k: v for k, v in GOOD.items() if k != "Principal"}), "exactly one of Principal and NotPrincipal"),
        (policy({**GOOD, "Principal": {"AWS": "bob"}}), "'bob' is not an AWS principal"),
        (policy({**GOOD, "Principal": {"Robot": "x"}}), "unknown principal type 'Robot'"),
        (policy({**GOOD, "Action": "s3:GetObject"}), "not a SageMaker action"),
        (policy({**GOOD, "Action": "sagemaker:DescribeModelPackages"}), "matches no SageMaker action"),
        (policy({**GOOD, "Action": []}), "non-empty string or a non-empty list"),
        (policy({**GOOD, "Resource": "model-package/x"}), 'is not "*" or an ARN'),
        (policy({**GOOD, "Sid": "a"}, {**GOOD, "Sid": "a"}), "Sid 'a' appears more than once"),
        (policy({**GOOD, "Sid": "no-dashes"}), "Sid must be a string of letters"),
        (
            policy({**GOOD, "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}),
            "condition operator 'IpAddress' cannot be evaluated",
        ),
        (
            policy({**GOOD, "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-123"}}}),
            "condition key 'aws:PrincipalOrgID' cannot be evaluated",
        ),
    ],
)
def test_invalid_policies_are_refused_and_change_nothing(sm, unique, document, expected):
    name = unique("bad")
    sm.create_model_package_group(ModelPackageGroupName=name)
    message = validation_message(sm.put_model_package_group_policy, ModelPackageGroupName=name, ResourcePolicy=document)
    assert expected in message
    assert "Cannot find resource policy" in validation_message(
        sm.get_model_package_group_policy, ModelPackageGroupName=name
    )


# -- enforcement across accounts -------------------------------------------------------------------


def test_sharing_a_group_with_another_account(as_, shared):
    owner, b, c = as_(A), as_(B), as_(C)
    # Before any policy, B can neither see nor register.
    refused(b.describe_model_package_group, ModelPackageGroupName=shared.arn)
    message = refused(b.create_model_package, ModelPackageGroupName=shared.arn, InferenceSpecification=INFERENCE)
    assert message == (
        f"User: arn:aws:iam::{B.account}:user/bob is not authorized to perform: "
        f"sagemaker:CreateModelPackage on resource: {shared.arn} because no resource-based policy "
        "allows the sagemaker:CreateModelPackage action"
    )

    owner.put_model_package_group_policy(
        ModelPackageGroupName=shared.name,
        ResourcePolicy=policy(*allow_registry(shared, f"arn:aws:iam::{B.account}:root")),
    )
    assert b.describe_model_package_group(ModelPackageGroupName=shared.arn)["ModelPackageGroupName"] == shared.name
    registered = b.create_model_package(
        ModelPackageGroupName=shared.arn, InferenceSpecification=INFERENCE, ModelPackageDescription="from B"
    )["ModelPackageArn"]
    # The version is A's, in A's group, with the group's next number; CreatedBy shows B.
    assert registered == f"arn:aws:sagemaker:{REGION}:{A.account}:model-package/{shared.name.lower()}/2"
    described = owner.describe_model_package(ModelPackageName=registered)
    assert described["ModelPackageDescription"] == "from B"
    assert described["CreatedBy"]["IamIdentity"]["Arn"] == f"arn:aws:iam::{B.account}:user/{B.user}"
    assert b.describe_model_package(ModelPackageName=registered)["ModelPackageVersion"] == 2
    listed = b.list_model_packages(ModelPackageGroupName=shared.arn)["ModelPackageSummaryList"]
    assert [s["ModelPackageArn"] for s in listed] == [shared.version_arn, registered]
    b.update_model_package(ModelPackageArn=registered, ModelApprovalStatus="Approved")
    assert owner.describe_model_package(ModelPackageName=registered)["ModelApprovalStatus"] == "Approved"
    # B's own registry is untouched: the group's name means nothing in B's account.
    assert b.list_model_packages(ModelPackageGroupName=shared.name)["ModelPackageSummaryList"] == []

    # C is a stranger to the policy.
    refused(c.describe_model_package_group, ModelPackageGroupName=shared.arn)
    refused(c.list_model_packages, ModelPackageGroupName=shared.arn)
    refused(c.create_model_package, ModelPackageGroupName=shared.arn, InferenceSpecification=INFERENCE)
    refused(c.describe_model_package, ModelPackageName=registered)
    refused(c.update_model_package, ModelPackageArn=registered, ModelApprovalStatus="Rejected")
    errors = c.batch_describe_model_package(ModelPackageArnList=[registered])["BatchDescribeModelPackageErrorMap"]
    assert errors[registered]["ErrorCode"] == "AccessDeniedException"
    # The policy grants no deletes.
    refused(b.delete_model_package, ModelPackageName=registered)
    refused(b.delete_model_package_group, ModelPackageGroupName=shared.arn)

    owner.delete_model_package_group_policy(ModelPackageGroupName=shared.name)
    refused(b.create_model_package, ModelPackageGroupName=shared.arn, InferenceSpecification=INFERENCE)
    refused(b.describe_model_package, ModelPackageName=registered)
    refused(b.list_model_packages, ModelPackageGroupName=shared.arn)
    versions = owner.list_model_packages(ModelPackageGroupName=shared.name)["ModelPackageSummaryList"]
    assert [s["ModelPackageVersion"] for s in versions] == [1, 2]


def test_explicit_deny_beats_allow(as_, shared):
    owner, b = as_(A), as_(B)
    owner.put_model_package_group_policy(
        ModelPackageGroupName=shared.name,
        ResourcePolicy=policy(
            {
                "Sid": "Everything",
                "Effect": "Allow",
                "Principal": {"AWS": B.account},
                "Action": "sagemaker:*",
                "Resource": [shared.arn, shared.versions],
            },
            {
                "Sid": "ButRegistering",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sagemaker:CreateModel*",
                "Resource": "*",
            },
        ),
    )
    assert b.describe_model_package(ModelPackageName=shared.version_arn)["ModelPackageVersion"] == 1
    message = refused(b.create_model_package, ModelPackageGroupName=shared.arn, InferenceSpecification=INFERENCE)
    assert message.endswith("with an explicit deny in a resource-based policy")


def test_principal_may_name_one_user(as_, shared):
    owner = as_(A)
    owner.put_model_package_group_policy(
        ModelPackageGroupName=shared.name,
        ResourcePolicy=policy(*allow_registry(shared, [f"arn:aws:iam::{B.account}:user/{B.user}"])),
    )
    assert as_(B).describe_model_package(ModelPackageName=shared.version_arn)["ModelPackageVersion"] == 1
    refused(as_(B2).describe_model_package, ModelPackageName=shared.version_arn)  # same account, other key


def test_conditions_are_evaluated(as_, shared):
    owner = as_(A)
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "sagemaker:DescribeModelPackageGroup",
        "Resource": shared.arn,
        "Condition": {"StringEquals": {"aws:PrincipalAccount": C.account}},
    }
    owner.put_model_package_group_policy(ModelPackageGroupName=shared.name, ResourcePolicy=policy(statement))
    assert as_(C).describe_model_package_group(ModelPackageGroupName=shared.arn)["ModelPackageGroupArn"] == shared.arn
    refused(as_(B).describe_model_package_group, ModelPackageGroupName=shared.arn)


def test_cross_account_list_shows_groups_shared_with_the_caller(as_, shared, unique):
    owner, b, c = as_(A), as_(B), as_(C)
    private = unique("private")
    owner.create_model_package_group(ModelPackageGroupName=private)
    owner.put_model_package_group_policy(
        ModelPackageGroupName=shared.name, ResourcePolicy=policy(*allow_registry(shared, B.account))
    )

    def shared_names(client):
        found = client.list_model_package_groups(CrossAccountFilterOption="CrossAccount", NameContains=shared.name)[
            "ModelPackageGroupSummaryList"
        ]
        return [g["ModelPackageGroupArn"] for g in found]

    assert shared_names(b) == [shared.arn]
    assert shared_names(c) == []
    assert b.list_model_package_groups(NameContains=shared.name)["ModelPackageGroupSummaryList"] == []
    assert [
        g["ModelPackageGroupName"]
        for g in owner.list_model_package_groups(NameContains=shared.name)["ModelPackageGroupSummaryList"]
    ] == [shared.name]
