"""Security: an S3 URI in a model, an endpoint, a pipeline or a feature group is only ever the caller's own.

Two accounts (A and B) share one open-mode server through a credentials file.
A names B's bucket everywhere a SageMaker resource takes an S3 URI: the Create is
refused with a ValidationException naming the member. And because a bucket can
be deleted and re-created by another account after the Create, the work itself
(an endpoint loading its model, data capture, a pipeline step reading S3 JSON,
the offline store writer) is refused at use time too, and never touches B's data.
"""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from support.accounts import accounts_server
from support.endpoints import wait_status
from support.featurestore import create_group, record
from support.jobs import tar_gz
from support.pipelines import IMAGE
from support.waiting import status_in, wait_for

A = SimpleNamespace(key="AKIAS3URISACCOUNTA01", account="111111111111")
B = SimpleNamespace(key="AKIAS3URISACCOUNTB01", account="222222222222")
ROLE = "arn:aws:iam::{account}:role/SageMakerRole"

MODEL_CODE = b"""
def model_fn(model_dir):
    return open(model_dir + "/owner").read()

def transform_fn(owner, data, content_type, accept):
    return f"{owner}:{data.decode() if isinstance(data, bytes) else data}", "text/plain"
"""


def model_archive(owner: str) -> bytes:
    return tar_gz({"owner": owner.encode(), "code/inference.py": MODEL_CODE})


srv, as_ = accounts_server("s3-uris", A, B)


@pytest.fixture
def bucket(as_, unique):
    """bucket(who) -> a new bucket of that account."""

    def make(who) -> str:
        name = unique("s3-uris").lower()
        as_(who, "s3").create_bucket(Bucket=name)
        return name

    return make


def error_of(call, **kwargs) -> tuple[str, str]:
    with pytest.raises(ClientError) as err:
        call(**kwargs)
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def empty_and_delete(s3, name: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=name, Key=item["Key"])
    s3.delete_bucket(Bucket=name)


def keys(s3, name: str) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=name).get("Contents", [])]


def create_model(sm, who, name: str, **container) -> None:
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE.format(account=who.account),
        PrimaryContainer={"Image": IMAGE, **container},
    )


# -- Create-time refusals ---------------------------------------------------------------------------------


def test_create_model_refuses_model_data_in_another_accounts_bucket(as_, bucket, unique):
    a, theirs, mine = as_(A), bucket(B), bucket(A)
    as_(B, "s3").put_object(Bucket=theirs, Key="model.tar.gz", Body=model_archive("B"))
    as_(A, "s3").put_object(Bucket=mine, Key="model.tar.gz", Body=model_archive("A"))
    gzip = {"S3DataType": "S3Object", "CompressionType": "Gzip"}
    for member, container in [
        ("PrimaryContainer.ModelDataUrl", {"ModelDataUrl": f"s3://{theirs}/model.tar.gz"}),
        (
            "PrimaryContainer.ModelDataSource.S3DataSource.S3Uri",
            {"ModelDataSource": {"S3DataSource": {"S3Uri": f"s3://{theirs}/model.tar.gz", **gzip}}},
        ),
        (
            "PrimaryContainer.Environment.SAGEMAKER_SUBMIT_DIRECTORY",
            {
                "ModelDataUrl": f"s3://{mine}/model.tar.gz",
                "Environment": {"SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{theirs}/code.tar.gz"},
            },
        ),
    ]:
        name = unique("stolen-model")
        code, message = error_of(create_model, sm=a, who=A, name=name, **container)
        assert code == "ValidationException", member
        assert message.startswith(f"Could not access model data at s3://{theirs}/") and member in message
        assert error_of(a.describe_model, ModelName=name)[0] == "ValidationException"  # nothing was stored
    name = unique("stolen-model")
    code, message = error_of(
        a.create_model,
        ModelName=name,
        ExecutionRoleArn=ROLE.format(account=A.account),
        Containers=[{"Image": IMAGE, "ModelDataUrl": f"s3://{theirs}/model.tar.gz"}],
    )
    assert code == "ValidationException" and "Containers[0].ModelDataUrl" in message
    # The same Create with A's own bucket is accepted, and B can use its own data.
    create_model(a, A, unique("own-model"), ModelDataUrl=f"s3://{mine}/model.tar.gz")
    create_model(as_(B), B, unique("own-model"), ModelDataUrl=f"s3://{theirs}/model.tar.gz")


def test_create_model_refuses_host_paths(as_, unique):
    for url in ("file:///etc/passwd", "/etc/passwd"):
        code, _ = error_of(create_model, sm=as_(A), who=A, name=unique("host-model"), ModelDataUrl=url)
        assert code == "ValidationException", url


def test_endpoint_config_refuses_capture_to_another_accounts_bucket(as_, bucket, unique):
    a, theirs, mine = as_(A), bucket(B), bucket(A)
    as_(A, "s3").put_object(Bucket=mine, Key="model.tar.gz", Body=model_archive("A"))
    model = unique("capture-model")
    create_model(a, A, model, ModelDataUrl=f"s3://{mine}/model.tar.gz")
    variants = [
        {"VariantName": "AllTraffic", "ModelName": model, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
    ]

    def capture(destination: str) -> dict:
        return {
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": destination,
            "CaptureOptions": [{"CaptureMode": "Input"}],
        }

    name = unique("capture-config")
    code, message = error_of(
        a.create_endpoint_config,
        EndpointConfigName=name,
        ProductionVariants=variants,
        DataCaptureConfig=capture(f"s3://{theirs}/capture"),
    )
    assert code == "ValidationException" and "DataCaptureConfig.DestinationS3Uri" in message and theirs in message
    assert error_of(a.describe_endpoint_config, EndpointConfigName=name)[0] == "ValidationException"
    a.create_endpoint_config(
        EndpointConfigName=name, ProductionVariants=variants, DataCaptureConfig=capture(f"s3://{mine}/capture")
    )


def test_create_pipeline_refuses_a_definition_in_another_accounts_bucket(as_, bucket, unique):
    a, b, theirs = as_(A), as_(B), bucket(B)
    definition = json.dumps(
        {
            "Version": "2020-12-01",
            "Steps": [{"Name": "Stop", "Type": "Fail", "Arguments": {"ErrorMessage": "nothing to do"}}],
        }
    )
    as_(B, "s3").put_object(Bucket=theirs, Key="pipeline.json", Body=definition.encode())
    location = {"Bucket": theirs, "ObjectKey": "pipeline.json"}
    name = unique("stolen-pipeline")
    code, message = error_of(
        a.create_pipeline,
        PipelineName=name,
        RoleArn=ROLE.format(account=A.account),
        ClientRequestToken=str(uuid.uuid4()),
        PipelineDefinitionS3Location=location,
    )
    assert code == "ValidationException" and "PipelineDefinitionS3Location" in message and theirs in message
    assert error_of(a.describe_pipeline, PipelineName=name)[0] == "ResourceNotFound"
    # B may, and A cannot swap B's definition in through UpdatePipeline either.
    b.create_pipeline(
        PipelineName=name,
        RoleArn=ROLE.format(account=B.account),
        ClientRequestToken=str(uuid.uuid4()),
        PipelineDefinitionS3Location=location,
    )
    a.create_pipeline(
        PipelineName=name,
        RoleArn=ROLE.format(account=A.account),
        ClientRequestToken=str(uuid.uuid4()),
        PipelineDefinition=definition,
    )
    code, message = error_of(a.update_pipeline, PipelineName=name, PipelineDefinitionS3Location=location)
    assert code == "ValidationException" and "PipelineDefinitionS3Location" in message


def test_create_feature_group_refuses_an_offline_store_in_another_accounts_bucket(as_, bucket, unique):
    a, theirs, mine = as_(A), bucket(B), bucket(A)
    name = unique("stolen-store")
    with pytest.raises(ClientError) as err:
        create_group(a, name, {"id": "String", "et": "Fractional"}, offline=f"s3://{theirs}/offline")
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert "OfflineStoreConfig.S3StorageConfig.S3Uri" in err.value.response["Error"]["Message"]
    assert error_of(a.describe_feature_group, FeatureGroupName=name)[0] == "ResourceNotFound"
    assert (
        create_group(a, name, {"id": "String", "et": "Fractional"}, offline=f"s3://{mine}/offline")[
            "FeatureGroupStatus"
        ]
        == "Created"
    )


# -- Use-time refusals: the bucket changed hands after the Create ------------------------------------------


def hand_over(as_, name: str) -> None:
    """A deletes its bucket ``name``; B creates a bucket of the same name."""
    empty_and_delete(as_(A, "s3"), name)
    as_(B, "s3").create_bucket(Bucket=name)


def test_offline_store_never_writes_to_a_bucket_that_changed_hands(as_, bucket, unique):
    a, runtime = as_(A), as_(A, "sagemaker-featurestore-runtime")
    swapped, kept = bucket(A), bucket(A)
    features = {"id": "String", "et": "Fractional"}
    lost, fine = unique("swapped-store"), unique("kept-store")
    create_group(a, lost, features, online=False, offline=f"s3://{swapped}/offline")
    create_group(a, fine, features, online=False, offline=f"s3://{kept}/offline")
    hand_over(as_, swapped)
    runtime.put_record(FeatureGroupName=lost, Record=record(id="r1", et="1.0"))
    runtime.put_record(FeatureGroupName=fine, Record=record(id="r1", et="1.0"))
    status = wait_for(
        lambda: a.describe_feature_group(FeatureGroupName=lost)["OfflineStoreStatus"],
        status_in("Status", ["Blocked"]),
        timeout=20,
        what=f"the offline store of {lost} to be blocked",
    )
    assert swapped in status["BlockedReason"] and "another account" in status["BlockedReason"]
    assert keys(as_(B, "s3"), swapped) == []
    # The other group of the account is not held up by the blocked one.
    wait_for(lambda: keys(as_(A, "s3"), kept), timeout=20, what=f"a write to {kept}")
    assert a.describe_feature_group(FeatureGroupName=fine)["OfflineStoreStatus"] == {"Status": "Active"}


def test_a_pipeline_step_cannot_read_another_accounts_s3_json(as_, bucket, unique):
    a, theirs, mine = as_(A), bucket(B), bucket(A)
    as_(B, "s3").put_object(Bucket=theirs, Key="metrics.json", Body=b'{"accuracy": 1}')
    as_(A, "s3").put_object(Bucket=mine, Key="metrics.json", Body=b'{"accuracy": 1}')

    def run(uri: str) -> dict:
        name = unique("json-get")
        definition = {
            "Version": "2020-12-01",
            "Steps": [
                {
                    "Name": "Check",
                    "Type": "Condition",
                    "Arguments": {
                        "Conditions": [
                            {
                                "Type": "Equals",
                                "LeftValue": {"Std:JsonGet": {"S3Uri": uri, "Path": "accuracy"}},
                                "RightValue": 1,
                            }
                        ],
                        "IfSteps": [],
                        "ElseSteps": [],
                    },
                }
            ],
        }
        a.create_pipeline(
            PipelineName=name,
            RoleArn=ROLE.format(account=A.account),
            ClientRequestToken=str(uuid.uuid4()),
            PipelineDefinition=json.dumps(definition),
        )
        arn = a.start_pipeline_execution(PipelineName=name, ClientRequestToken=str(uuid.uuid4()))[
            "PipelineExecutionArn"
        ]
        found = wait_for(
            lambda: a.describe_pipeline_execution(PipelineExecutionArn=arn),
            lambda d: d["PipelineExecutionStatus"] not in ("Executing", "Stopping"),
            what=f"{arn} to end",
        )
        [step] = a.list_pipeline_execution_steps(PipelineExecutionArn=arn)["PipelineExecutionSteps"]
        return {**found, "Step": step}

    own = run(f"s3://{mine}/metrics.json")
    assert own["PipelineExecutionStatus"] == "Succeeded", own
    assert own["Step"]["Metadata"]["Condition"]["Outcome"] == "True"
    stolen = run(f"s3://{theirs}/metrics.json")
    assert stolen["PipelineExecutionStatus"] == "Failed"
    assert stolen["Step"]["StepStatus"] == "Failed" and "another account" in stolen["Step"]["FailureReason"]


def wait_endpoint(sm, name: str, timeout: float = 120) -> dict:
    return wait_status(sm, name, timeout=timeout)


def test_endpoints_never_read_or_capture_into_a_bucket_that_changed_hands(as_, bucket, srv, unique):
    a, a_s3, b_s3 = as_(A), as_(A, "s3"), as_(B, "s3")
    models, captures = bucket(A), bucket(A)
    a_s3.put_object(Bucket=models, Key="model.tar.gz", Body=model_archive("A"))
    model = unique("swap-model")
    create_model(a, A, model, ModelDataUrl=f"s3://{models}/model.tar.gz")
    name = unique("swap-endpoint")
    a.create_endpoint_config(
        EndpointConfigName=name,
        DataCaptureConfig={
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": f"s3://{captures}/capture",
            "CaptureOptions": [{"CaptureMode": "Input"}],
        },
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": model, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
        ],
    )
    a.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert wait_endpoint(a, name)["EndpointStatus"] == "InService"
    runtime = as_(A, "sagemaker-runtime")
    answer = runtime.invoke_endpoint(EndpointName=name, Body=b"first", ContentType="text/plain")["Body"].read()
    assert answer == b"A:first"
    # capture is flushed every second
    wait_for(lambda: keys(a_s3, captures), timeout=20, what="the first request to be captured")

    # Capture: B takes over the destination bucket; A's next requests are dropped, not written to B's bucket.
    hand_over(as_, captures)
    runtime.invoke_endpoint(EndpointName=name, Body=b"second", ContentType="text/plain")
    wait_for(
        lambda: f"data capture for endpoint {name} dropped" in srv.log_text,
        timeout=20,
        what="the dropped capture to be logged",
    )
    assert keys(b_s3, captures) == []

    # Model data: B takes over the model's bucket with its own model; a new endpoint of A's model fails.
    hand_over(as_, models)
    b_s3.put_object(Bucket=models, Key="model.tar.gz", Body=model_archive("B"))
    second = unique("swap-endpoint")
    a.create_endpoint_config(
        EndpointConfigName=second,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": model, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
        ],
    )
    a.create_endpoint(EndpointName=second, EndpointConfigName=second)
    failed = wait_endpoint(a, second)
    assert failed["EndpointStatus"] == "Failed"
    assert "could not load the model data" in failed["FailureReason"]
    assert models in failed["FailureReason"] and "another account" in failed["FailureReason"]
    for endpoint in (name, second):
        a.delete_endpoint(EndpointName=endpoint)
