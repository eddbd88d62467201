"""The model registry through boto3: groups, versioned and unversioned packages, approval, lists, idempotency."""

import datetime as dt
import threading

import pytest
from botocore.exceptions import ClientError

from support.server import ACCOUNT, REGION

pytestmark = pytest.mark.both_databases

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
INFERENCE = {
    "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://bucket/model.tar.gz"}],
    "SupportedContentTypes": ["text/csv"],
    "SupportedResponseMIMETypes": ["text/csv"],
}
ARN_PREFIX = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"


def error(excinfo) -> tuple[str, str]:
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


@pytest.fixture
def group(sm, unique):
    name = unique("grp")
    sm.create_model_package_group(ModelPackageGroupName=name, ModelPackageGroupDescription="churn models")
    return name


def register(sm, group, **extra):
    return sm.create_model_package(ModelPackageGroupName=group, InferenceSpecification=INFERENCE, **extra)[
        "ModelPackageArn"
    ]


# -- groups ----------------------------------------------------------------------------------------


def test_group_create_describe_and_list(sm, unique):
    names = [unique("lg") for _ in range(3)]
    for name in names:
        arn = sm.create_model_package_group(ModelPackageGroupName=name)["ModelPackageGroupArn"]
        assert arn == f"{ARN_PREFIX}:model-package-group/{name.lower()}"
    described = sm.describe_model_package_group(ModelPackageGroupName=names[0])
    assert described["ModelPackageGroupStatus"] == "Completed"
    assert described["CreatedBy"]["IamIdentity"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    by_arn = sm.describe_model_package_group(ModelPackageGroupName=described["ModelPackageGroupArn"])
    assert by_arn["ModelPackageGroupName"] == names[0]

    prefix = names[0].rsplit("-", 1)[0]
    # AWS documents Ascending as the default order of this list.
    listed = sm.list_model_package_groups(NameContains=prefix)["ModelPackageGroupSummaryList"]
    assert [g["ModelPackageGroupName"] for g in listed] == names
    paged, token = [], None
    while True:
        page = sm.list_model_package_groups(
            NameContains=prefix,
            SortBy="Name",
            SortOrder="Descending",
            MaxResults=2,
            **({"NextToken": token} if token else {}),
        )
        paged += [g["ModelPackageGroupName"] for g in page["ModelPackageGroupSummaryList"]]
        token = page.get("NextToken")
        if not token:
            break
    assert paged == sorted(names, reverse=True)


def test_group_delete_is_refused_while_it_holds_versions(sm, group):
    first, second = register(sm, group), register(sm, group)
    with pytest.raises(ClientError) as err:
        sm.delete_model_package_group(ModelPackageGroupName=group)
    code, message = error(err)
    assert code == "ConflictException"
    assert "still contains Model Packages" in message
    sm.describe_model_package_group(ModelPackageGroupName=group)  # still there

    sm.delete_model_package(ModelPackageName=first)
    sm.delete_model_package(ModelPackageName=second)
    sm.delete_model_package_group(ModelPackageGroupName=group)
    with pytest.raises(ClientError) as err:
        sm.describe_model_package_group(ModelPackageGroupName=group)
    assert error(err) == ("ValidationException", f"ModelPackageGroup {group} does not exist.")


# -- versioned packages ----------------------------------------------------------------------------


def test_versioned_package_records_every_field(sm, group):
    validation = {
        "ValidationRole": f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole",
        "ValidationProfiles": [
            {
                "ProfileName": "smoke",
                "TransformJobDefinition": {
                    "TransformInput": {
                        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in"}}
                    },
                    "TransformOutput": {"S3OutputPath": "s3://b/out"},
                    "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
                },
            }
        ],
    }
    metrics = {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": "s3://b/stats.json"}}}
    metadata = {"CommitId": "abc123", "Repository": "git@example.com:ml.git", "GeneratedBy": "pipeline"}
    arn = register(
        sm,
        group,
        ModelPackageDescription="first try",
        ValidationSpecification=validation,
        ModelMetrics=metrics,
        MetadataProperties=metadata,
        CustomerMetadataProperties={"team": "ml"},
        Domain="MACHINE_LEARNING",
        Task="CLASSIFICATION",
        SamplePayloadUrl="s3://b/payload.tar.gz",
    )
    assert arn == f"{ARN_PREFIX}:model-package/{group.lower()}/1"

    described = sm.describe_model_package(ModelPackageName=arn)
    assert described["ModelPackageName"] == group  # a version is named by its group
    assert described["ModelPackageGroupName"] == group
    assert described["ModelPackageVersion"] == 1
    assert described["ModelPackageStatus"] == "Completed"
    assert described["ModelApprovalStatus"] == "PendingManualApproval"
    assert described["InferenceSpecification"] == INFERENCE
    assert described["ValidationSpecification"] == validation
    assert described["ModelPackageStatusDetails"]["ValidationStatuses"] == [{"Name": "smoke", "Status": "NotStarted"}]
    assert described["ModelMetrics"] == metrics
    assert described["MetadataProperties"] == metadata
    assert described["CustomerMetadataProperties"] == {"team": "ml"}
    assert (described["Domain"], described["Task"]) == ("MACHINE_LEARNING", "CLASSIFICATION")
    assert described["CreatedBy"]["IamIdentity"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    assert isinstance(described["CreationTime"], dt.datetime)
    # "<group>/<version>" names a version too, as the API's name pattern allows.
    assert sm.describe_model_package(ModelPackageName=f"{group}/1")["ModelPackageArn"] == arn


def test_versions_count_up_and_are_never_reused(sm, group):
    arns = [register(sm, group) for _ in range(3)]
    assert [a.rsplit("/", 1)[1] for a in arns] == ["1", "2", "3"]
    sm.delete_model_package(ModelPackageName=arns[2])
    with pytest.raises(ClientError) as err:
        sm.describe_model_package(ModelPackageName=arns[2])
    assert error(err) == ("ValidationException", f"ModelPackage {arns[2]} does not exist.")
    assert register(sm, group).endswith("/4")


def test_approval_status_given_at_registration(sm, group):
    arn = register(sm, group, ModelApprovalStatus="Approved")
    assert sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == "Approved"


def test_registering_in_a_missing_group_fails(sm, unique):
    with pytest.raises(ClientError) as err:
        register(sm, unique("nogroup"))
    assert error(err)[0] == "ValidationException"
    assert "does not exist" in error(err)[1]


def test_name_and_group_are_exclusive_and_one_is_needed(sm, group, unique):
    with pytest.raises(ClientError) as err:
        sm.create_model_package(
            ModelPackageName=unique("p"), ModelPackageGroupName=group, InferenceSpecification=INFERENCE
        )
    assert "Both ModelPackageName and ModelPackageGroupName" in error(err)[1]
    with pytest.raises(ClientError) as err:
        sm.create_model_package(InferenceSpecification=INFERENCE)
    assert error(err) == ("ValidationException", "Missing ARN.")  # AWS's words
    with pytest.raises(ClientError) as err:
        register(sm, group, CertifyForMarketplace=True)
    assert "unversioned" in error(err)[1]


# -- unversioned packages --------------------------------------------------------------------------


def test_unversioned_package(sm, unique):
    name = unique("Pkg")
    arn = sm.create_model_package(ModelPackageName=name, InferenceSpecification=INFERENCE, CertifyForMarketplace=False)[
        "ModelPackageArn"
    ]
    assert arn == f"{ARN_PREFIX}:model-package/{name.lower()}"
    described = sm.describe_model_package(ModelPackageName=name)
    assert described["ModelPackageName"] == name
    assert "ModelPackageGroupName" not in described and "ModelPackageVersion" not in described
    assert sm.describe_model_package(ModelPackageName=arn)["ModelPackageArn"] == arn

    with pytest.raises(ClientError) as err:
        sm.create_model_package(ModelPackageName=name.upper(), InferenceSpecification=INFERENCE)
    assert error(err) == ("ValidationException", f"ModelPackage {arn} already exists.")
    with pytest.raises(ClientError) as err:
        sm.create_model_package(ModelPackageName=unique("bare"))
    assert "needs an InferenceSpecification" in error(err)[1]
    with pytest.raises(ClientError) as err:
        sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    assert "applies to versioned model packages" in error(err)[1]

    sm.delete_model_package(ModelPackageName=name)
    with pytest.raises(ClientError) as err:
        sm.describe_model_package(ModelPackageName=name)
    assert error(err) == ("ValidationException", f"ModelPackage {arn} does not exist.")


def test_unversioned_package_from_an_algorithm(sm, unique):
    algorithm = unique("algo")
    sm.create_algorithm(
        AlgorithmName=algorithm,
        TrainingSpecification={
            "TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
            "SupportedTrainingInstanceTypes": ["ml.m5.large"],
            "TrainingChannels": [
                {"Name": "train", "SupportedContentTypes": ["text/csv"], "SupportedInputModes": ["File"]}
            ],
        },
    )
    source = {"SourceAlgorithms": [{"AlgorithmName": algorithm}]}
    name = unique("algo")
    sm.create_model_package(ModelPackageName=name, SourceAlgorithmSpecification=source)
    assert sm.describe_model_package(ModelPackageName=name)["SourceAlgorithmSpecification"] == source


# -- approval and updates --------------------------------------------------------------------------


def test_update_approval_transitions(sm, group):
    arn = register(sm, group)
    before = sm.describe_model_package(ModelPackageName=arn)
    for status, why in [
        ("Approved", "passes the bar"),
        ("Rejected", "drift found"),
        ("PendingManualApproval", "re-review"),
        ("Approved", "fixed"),
    ]:
        assert (
            sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status, ApprovalDescription=why)[
                "ModelPackageArn"
            ]
            == arn
        )
        described = sm.describe_model_package(ModelPackageName=arn)
        assert (described["ModelApprovalStatus"], described["ApprovalDescription"]) == (status, why)
    assert described["LastModifiedBy"]["IamIdentity"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    assert described["LastModifiedTime"] > before["LastModifiedTime"]
    assert described["CreationTime"] == before["CreationTime"]


def test_update_metadata_and_additional_specifications(sm, group):
    arn = register(sm, group, CustomerMetadataProperties={"team": "ml", "stage": "dev", "owner": "ana"})
    sm.update_model_package(
        ModelPackageArn=arn,
        CustomerMetadataProperties={"stage": "prod", "ticket": "42"},
        CustomerMetadataPropertiesToRemove=["owner"],
    )
    assert sm.describe_model_package(ModelPackageName=arn)["CustomerMetadataProperties"] == {
        "team": "ml",
        "stage": "prod",
        "ticket": "42",
    }
    with pytest.raises(ClientError) as err:
        sm.update_model_package(
            ModelPackageArn=arn, CustomerMetadataProperties={"team": "x"}, CustomerMetadataPropertiesToRemove=["team"]
        )
    assert error(err)[0] == "ValidationException"

    neo = {"Name": "neo-compiled", "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://b/compiled.tar.gz"}]}
    sm.update_model_package(ModelPackageArn=arn, AdditionalInferenceSpecificationsToAdd=[neo])
    described = sm.describe_model_package(ModelPackageName=arn)
    assert described["AdditionalInferenceSpecifications"] == [neo]
    with pytest.raises(ClientError) as err:
        sm.update_model_package(ModelPackageArn=arn, AdditionalInferenceSpecificationsToAdd=[neo])
    assert "neo-compiled is repeated" in error(err)[1]


def test_update_client_token_is_idempotent(sm, group):
    arn = register(sm, group)
    neo = {"Name": "neo", "Containers": [{"Image": IMAGE}]}
    for _ in range(2):  # a retried update changes nothing more
        sm.update_model_package(ModelPackageArn=arn, AdditionalInferenceSpecificationsToAdd=[neo], ClientToken="u-1")
    assert len(sm.describe_model_package(ModelPackageName=arn)["AdditionalInferenceSpecifications"]) == 1
    with pytest.raises(ClientError) as err:
        sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved", ClientToken="u-1")
    assert error(err)[0] == "ConflictException"


def test_update_missing_package(sm, group):
    with pytest.raises(ClientError) as err:
        sm.update_model_package(
            ModelPackageArn=f"{ARN_PREFIX}:model-package/{group.lower()}/9", ModelApprovalStatus="Approved"
        )
    assert error(err) == (
        "ValidationException",
        f"ModelPackage {ARN_PREFIX}:model-package/{group.lower()}/9 does not exist.",
    )


# -- ClientToken -----------------------------------------------------------------------------------


def test_create_client_token_is_idempotent(sm, group, unique):
    token = unique("tok")
    first = register(sm, group, ClientToken=token, ModelPackageDescription="v")
    assert register(sm, group, ClientToken=token, ModelPackageDescription="v") == first
    summaries = sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    assert [s["ModelPackageVersion"] for s in summaries] == [1]  # no second version
    with pytest.raises(ClientError) as err:
        register(sm, group, ClientToken=token, ModelPackageDescription="other")
    assert error(err)[0] == "ConflictException"
    assert register(sm, group, ClientToken=unique("tok")).endswith("/2")

    name = unique("upkg")
    with pytest.raises(ClientError) as err:  # a token names one request in the account
        sm.create_model_package(ModelPackageName=name, InferenceSpecification=INFERENCE, ClientToken=token)
    assert error(err)[0] == "ConflictException"
    other = unique("tok")
    arn = sm.create_model_package(ModelPackageName=name, InferenceSpecification=INFERENCE, ClientToken=other)[
        "ModelPackageArn"
    ]
    assert (
        sm.create_model_package(ModelPackageName=name, InferenceSpecification=INFERENCE, ClientToken=other)[
            "ModelPackageArn"
        ]
        == arn
    )


# -- lists -----------------------------------------------------------------------------------------


def test_list_model_packages_filters(sm, group, unique):
    first = register(sm, group, ModelApprovalStatus="Approved")
    second = register(sm, group)
    third = register(sm, group, ModelApprovalStatus="Rejected")
    loose = unique(group)  # an unversioned package whose name contains the group's
    loose_arn = sm.create_model_package(ModelPackageName=loose, InferenceSpecification=INFERENCE)["ModelPackageArn"]

    def arns(**kwargs):
        return [s["ModelPackageArn"] for s in sm.list_model_packages(**kwargs)["ModelPackageSummaryList"]]

    # Naming a group lists its versions, oldest first (AWS's default order is Ascending).
    assert arns(ModelPackageGroupName=group) == [first, second, third]
    full = f"{ARN_PREFIX}:model-package-group/{group.lower()}"
    assert arns(ModelPackageGroupName=full, SortOrder="Descending") == [third, second, first]
    assert arns(ModelPackageGroupName=group, ModelApprovalStatus="Approved") == [first]
    assert arns(ModelPackageGroupName=group, ModelApprovalStatus="PendingManualApproval") == [second]
    assert arns(ModelPackageGroupName=group, ModelPackageType="Unversioned") == []
    assert arns(ModelPackageGroupName=unique("nosuchgroup")) == []

    # Without a group the default type is Unversioned; NameContains matches ModelPackageName.
    assert arns(NameContains=group) == [loose_arn]
    assert arns(NameContains=group, ModelPackageType="Versioned") == [first, second, third]
    assert arns(NameContains=group, ModelPackageType="Both") == [first, second, third, loose_arn]
    # A version number is not part of the name.
    assert arns(ModelPackageGroupName=group, NameContains="3") == ([first, second, third] if "3" in group else [])
    assert arns(ModelPackageGroupName=group, NameContains=group.split("-")[0]) == [first, second, third]

    summary = sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"][0]
    assert summary["ModelPackageGroupName"] == group and summary["ModelPackageVersion"] == 1
    assert summary["ModelApprovalStatus"] == "Approved" and summary["ModelPackageStatus"] == "Completed"
    assert "ModelPackageName" not in summary  # AWS lists versions without one

    created = {
        s["ModelPackageArn"]: s["CreationTime"]
        for s in sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    }
    assert arns(ModelPackageGroupName=group, CreationTimeAfter=created[first]) == [second, third]
    assert arns(ModelPackageGroupName=group, CreationTimeBefore=created[third]) == [first, second]


def test_list_model_packages_sorts_by_name(sm, unique):
    stem = unique("srt")
    names = [f"{stem}-b", f"{stem}-c", f"{stem}-a"]
    for name in names:
        sm.create_model_package(ModelPackageName=name, InferenceSpecification=INFERENCE)

    def listed(**kwargs):
        return [
            s["ModelPackageName"]
            for s in sm.list_model_packages(NameContains=stem, **kwargs)["ModelPackageSummaryList"]
        ]

    assert listed() == names  # CreationTime, Ascending
    assert listed(SortBy="Name") == sorted(names)
    assert listed(SortBy="Name", SortOrder="Descending") == sorted(names, reverse=True)
    assert listed(SortBy="CreationTime", SortOrder="Descending") == names[::-1]


def test_list_model_packages_pages(sm, group):
    arns = [register(sm, group) for _ in range(5)]
    seen, token, pages = [], None, 0
    while True:
        page = sm.list_model_packages(
            ModelPackageGroupName=group, MaxResults=2, **({"NextToken": token} if token else {})
        )
        seen += [s["ModelPackageArn"] for s in page["ModelPackageSummaryList"]]
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    assert (seen, pages) == (arns, 3)
    first = sm.list_model_packages(ModelPackageGroupName=group, MaxResults=2)
    with pytest.raises(ClientError) as err:  # a token belongs to its own filters
        sm.list_model_packages(
            ModelPackageGroupName=group, MaxResults=2, SortOrder="Descending", NextToken=first["NextToken"]
        )
    assert error(err)[0] == "ValidationException"


def test_batch_describe(sm, group, unique):
    first, second = register(sm, group), register(sm, group, ModelApprovalStatus="Approved")
    missing = f"{ARN_PREFIX}:model-package/{group.lower()}/99"
    loose = sm.create_model_package(ModelPackageName=unique("loose"), InferenceSpecification=INFERENCE)[
        "ModelPackageArn"
    ]
    result = sm.batch_describe_model_package(ModelPackageArnList=[first, second, missing, loose])
    summaries = result["ModelPackageSummaries"]
    assert set(summaries) == {first, second}
    assert summaries[second]["ModelApprovalStatus"] == "Approved"
    assert summaries[first]["ModelPackageVersion"] == 1
    assert summaries[first]["InferenceSpecification"] == INFERENCE
    errors = result["BatchDescribeModelPackageErrorMap"]
    assert set(errors) == {missing, loose}
    assert errors[missing]["ErrorCode"] == "ValidationException"
    assert "does not exist" in errors[missing]["ErrorResponse"]


def test_search_finds_versions(sm, group):
    arn = register(sm, group, ModelApprovalStatus="Approved")
    register(sm, group)
    found = sm.search(
        Resource="ModelPackage",
        SearchExpression={
            "Filters": [
                {"Name": "ModelPackageGroupName", "Operator": "Equals", "Value": group},
                {"Name": "ModelApprovalStatus", "Operator": "Equals", "Value": "Approved"},
            ]
        },
    )["Results"]
    assert [r["ModelPackage"]["ModelPackageArn"] for r in found] == [arn]


# -- concurrency -----------------------------------------------------------------------------------


def test_concurrent_registrations_get_consecutive_versions(client, group):
    clients = [client("sagemaker") for _ in range(20)]
    arns, failures = [], []
    start = threading.Barrier(len(clients))

    def run(c):
        start.wait()
        try:
            arns.append(register(c, group))
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert sorted(int(a.rsplit("/", 1)[1]) for a in arns) == list(range(1, 21))
    listed = clients[0].list_model_packages(ModelPackageGroupName=group, MaxResults=100)["ModelPackageSummaryList"]
    assert [s["ModelPackageVersion"] for s in listed] == list(range(1, 21))


# -- the SageMaker Python SDK ----------------------------------------------------------------------

SDK_REGISTER = """
import json
import sagemaker
from sagemaker.model import Model
from sagemaker.model import ModelPackage

session = sagemaker.Session()
session.sagemaker_client.create_model_package_group(ModelPackageGroupName="{group}")
model = Model(image_uri="{image}", model_data="s3://selfmaker-sdk-tests/model.tar.gz",
              role="arn:aws:iam::{account}:role/SageMakerRole", sagemaker_session=session)
packages = [model.register(content_types=["text/csv"], response_types=["text/csv"],
                           inference_instances=["ml.m5.large"], transform_instances=["ml.m5.large"],
                           model_package_group_name="{group}", approval_status=status,
                           customer_metadata_properties={{"run": str(i)}})
            for i, status in enumerate(["PendingManualApproval", "Approved"])]
pending = ModelPackage(role=model.role, model_package_arn=packages[0].model_package_arn, sagemaker_session=session)
pending.update_approval_status("Rejected", approval_description="worse than v2")
described = [session.sagemaker_client.describe_model_package(ModelPackageName=p.model_package_arn)
             for p in packages]
print(json.dumps([{{k: d.get(k) for k in ("ModelPackageArn", "ModelPackageVersion", "ModelApprovalStatus",
                                          "ApprovalDescription", "CustomerMetadataProperties")}}
                  for d in described]))
"""


def test_sdk_v2_registers_versions_and_changes_approval(request, server, sdk_v2, unique):
    if request.node.callspec.params.get("database") == "postgresql":
        pytest.skip("the SDK's requests are the same on both databases; the boto3 tests cover PostgreSQL")
    group = unique("sdkgrp")
    described = sdk_v2.run(server, SDK_REGISTER.format(group=group, image=IMAGE, account=ACCOUNT))
    prefix = f"{ARN_PREFIX}:model-package/{group.lower()}"
    assert described == [
        {
            "ModelPackageArn": f"{prefix}/1",
            "ModelPackageVersion": 1,
            "ModelApprovalStatus": "Rejected",
            "ApprovalDescription": "worse than v2",
            "CustomerMetadataProperties": {"run": "0"},
        },
        {
            "ModelPackageArn": f"{prefix}/2",
            "ModelPackageVersion": 2,
            "ModelApprovalStatus": "Approved",
            "ApprovalDescription": None,
            "CustomerMetadataProperties": {"run": "1"},
        },
    ]
