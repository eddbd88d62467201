"""Service Catalog through boto3: portfolios, products from a template in the caller's bucket, provisioned
products as CloudFormation stacks (launch, a failed update that taints, terminate), records and searches."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from support.clients import make_client
from support.waiting import wait_for

TEMPLATE = {
    "Parameters": {"Delay": {"Type": "Number", "Default": "0"}},
    "Resources": {"Work": {"Type": "AWS::SQS::Queue", "Properties": {"DelaySeconds": {"Ref": "Delay"}}}},
    "Outputs": {"QueueUrl": {"Value": {"Ref": "Work"}, "Description": "the queue"}},
}


@pytest.fixture(scope="module")
def sc(server):
    return make_client("servicecatalog", server.url)


@pytest.fixture(scope="module")
def s3(server):
    return make_client("s3", server.url)


@pytest.fixture(scope="module")
def sqs(server):
    return make_client("sqs", server.url)


def error(call, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def template_url(s3, unique, template: dict) -> str:
    bucket = unique("sc-templates")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="queue.json", Body=json.dumps(template).encode())
    return f"https://{bucket}.s3.amazonaws.com/queue.json"


def wait_record(sc, record_id: str) -> dict:
    return wait_for(
        lambda: sc.describe_record(Id=record_id),
        lambda r: r["RecordDetail"]["Status"] not in ("CREATED", "IN_PROGRESS"),
        timeout=60,
        what=f"record {record_id} to end",
    )


def test_a_product_is_provisioned_updated_and_terminated_as_a_stack(sc, s3, sqs, unique):
    portfolio = sc.create_portfolio(DisplayName=unique("team"), ProviderName="platform", IdempotencyToken="t1")[
        "PortfolioDetail"
    ]["Id"]
    made = sc.create_product(
        Name=unique("queue-product"),
        Owner="platform",
        ProductType="CLOUD_FORMATION_TEMPLATE",
        ProvisioningArtifactParameters={
            "Name": "v1",
            "Info": {"LoadTemplateFromURL": template_url(s3, unique, TEMPLATE)},
            "Type": "CLOUD_FORMATION_TEMPLATE",
        },
        IdempotencyToken=unique("token"),
    )
    product = made["ProductViewDetail"]["ProductViewSummary"]["ProductId"]
    artifact = made["ProvisioningArtifactDetail"]["Id"]
    assert product.startswith("prod-") and artifact.startswith("pa-")
    # Not in a portfolio yet: no launch path, nothing to provision.
    assert sc.list_launch_paths(ProductId=product)["LaunchPathSummaries"] == []
    assert (
        error(
            sc.provision_product,
            ProductId=product,
            ProvisioningArtifactId=artifact,
            ProvisionedProductName=unique("pp"),
            ProvisionToken="x1",
        )[0]
        == "ResourceNotFoundException"
    )
    sc.associate_product_with_portfolio(ProductId=product, PortfolioId=portfolio)
    assert error(sc.delete_portfolio, Id=portfolio)[0] == "ResourceInUseException"
    paths = sc.list_launch_paths(ProductId=product)["LaunchPathSummaries"]
    assert len(paths) == 1
    described = sc.describe_provisioning_artifact(
        ProductId=product, ProvisioningArtifactId=artifact, Verbose=True, IncludeProvisioningArtifactParameters=True
    )
    assert json.loads(described["Info"]["TemplateBody"]) == TEMPLATE
    assert described["ProvisioningArtifactParameters"][0]["ParameterKey"] == "Delay"

    name = unique("pp")
    first = sc.provision_product(
        ProductId=product,
        ProvisioningArtifactId=artifact,
        PathId=paths[0]["Id"],
        ProvisionedProductName=name,
        ProvisioningParameters=[{"Key": "Delay", "Value": "2"}],
        Tags=[{"Key": "cost-center", "Value": "42"}],
        ProvisionToken="launch-1",
    )["RecordDetail"]
    again = sc.provision_product(
        ProductId=product, ProvisioningArtifactId=artifact, ProvisionedProductName=name, ProvisionToken="launch-1"
    )["RecordDetail"]
    assert again["RecordId"] == first["RecordId"]  # the same request, retried
    assert (
        error(
            sc.provision_product,
            ProductId=product,
            ProvisioningArtifactId=artifact,
            ProvisionedProductName=name,
            ProvisionToken="launch-2",
        )[0]
        == "DuplicateResourceException"
    )
    record = wait_record(sc, first["RecordId"])
    assert record["RecordDetail"]["Status"] == "SUCCEEDED", record
    url = {o["OutputKey"]: o["OutputValue"] for o in record["RecordOutputs"]}["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds"])["Attributes"]["DelaySeconds"] == "2"
    pp = sc.describe_provisioned_product(Name=name)["ProvisionedProductDetail"]
    assert (pp["Status"], pp["ProductId"], pp["Type"]) == ("AVAILABLE", product, "CFN_STACK")
    found = sc.search_provisioned_products(Filters={"SearchQuery": [f"name:{name}"]})
    assert [p["Id"] for p in found["ProvisionedProducts"]] == [pp["Id"]]
    assert {"Key": "cost-center", "Value": "42"} in found["ProvisionedProducts"][0]["Tags"]
    assert pp["Id"] in [p["Id"] for p in sc.scan_provisioned_products(PageSize=20)["ProvisionedProducts"]]

    # An update SQS refuses rolls the stack back: the product is TAINTED, the record FAILED with the reason.
    bad = sc.update_provisioned_product(
        ProvisionedProductId=pp["Id"], ProvisioningParameters=[{"Key": "Delay", "Value": "5000"}], UpdateToken="u1"
    )["RecordDetail"]
    failed = wait_record(sc, bad["RecordId"])
    assert failed["RecordDetail"]["Status"] == "FAILED"
    assert "Work" in failed["RecordDetail"]["RecordErrors"][0]["Description"]
    tainted = sc.describe_provisioned_product(Id=pp["Id"])["ProvisionedProductDetail"]
    assert tainted["Status"] == "TAINTED"
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds"])["Attributes"]["DelaySeconds"] == "2"

    ended = sc.terminate_provisioned_product(ProvisionedProductName=name, TerminateToken="end-1")["RecordDetail"]
    assert wait_record(sc, ended["RecordId"])["RecordDetail"]["Status"] == "SUCCEEDED"
    assert error(sc.describe_provisioned_product, Id=pp["Id"])[0] == "ResourceNotFoundException"
    assert error(sqs.get_queue_attributes, QueueUrl=url, AttributeNames=["All"])[0] == (
        "AWS.SimpleQueueService.NonExistentQueue"
    )


def test_bad_products_and_unknown_ids_are_refused(sc, s3, unique):
    for url in ("https://example.com/t.json", "file:///etc/passwd", "https://s3.amazonaws.com/no-such-bucket/t.json"):
        code, _ = error(
            sc.create_product,
            Name=unique("p"),
            Owner="o",
            ProductType="CLOUD_FORMATION_TEMPLATE",
            ProvisioningArtifactParameters={"Info": {"LoadTemplateFromURL": url}, "Type": "CLOUD_FORMATION_TEMPLATE"},
            IdempotencyToken=unique("t"),
        )
        assert code == "InvalidParametersException", url
    broken = template_url(s3, unique, {"Resources": {"Q": {"Type": "AWS::SQS::Queue", "DependsOn": ["Nope"]}}})
    code, message = error(
        sc.create_product,
        Name=unique("p"),
        Owner="o",
        ProductType="CLOUD_FORMATION_TEMPLATE",
        ProvisioningArtifactParameters={"Info": {"LoadTemplateFromURL": broken}, "Type": "CLOUD_FORMATION_TEMPLATE"},
        IdempotencyToken=unique("t"),
    )
    assert code == "InvalidParametersException" and "Invalid templateBody" in message
    assert error(sc.describe_product, Id="prod-aaaaaaaaaaaaa")[0] == "ResourceNotFoundException"
    assert error(sc.describe_portfolio, Id="port-aaaaaaaaaaaaa")[0] == "ResourceNotFoundException"
    assert error(sc.describe_record, Id="rec-aaaaaaaaaaaaa")[0] == "ResourceNotFoundException"
    assert error(sc.describe_provisioned_product, Id="pp-aaaaaaaaaaaaa")[0] == "ResourceNotFoundException"
    assert error(sc.list_portfolios, PageToken="forged")[0] == "InvalidParametersException"
