"""Door: the S3 URIs of a job are its account's. A job of account A may not read from or write to B's buckets.

Create refuses every URI in another account's bucket (inputs, outputs, code, checkpoints) with a
ValidationException naming the member; at run time every object the job reads or writes is checked again, so a
bucket deleted and re-created by another account after the Create fails the job (AccessDenied), and a manifest
listing another account's prefix does too.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError

from support.jobs import SKLEARN_IMAGE, processing_request, s3_input, s3_output, wait, wait_for_log

A = SimpleNamespace(account="111111111111", key="AKIAJOBURISACCOUNTA1")
B = SimpleNamespace(account="222222222222", key="AKIAJOBURISACCOUNTB1")


@pytest.fixture(scope="module")
def accounts(make_server, tmp_path_factory):
    """An open-mode server whose credentials file maps one key to account A and one to account B."""
    path = tmp_path_factory.mktemp("job-uris") / "credentials"
    path.write_text(
        "".join(
            f"[{who.key}]\nsecret_access_key = secret-{who.account}\naccount_id = {who.account}\n" for who in (A, B)
        )
    )
    return make_server("job-uris", ["--credentials-file", str(path)]).start()


@pytest.fixture
def as_(client, accounts):
    def make(who, service: str):
        return client(service, accounts, access_key=who.key, secret_key=f"secret-{who.account}")

    return make


@pytest.fixture
def buckets(as_, unique):
    """A's bucket (with a code archive and data) and B's bucket (with data)."""
    mine, theirs = unique("job-uris-a"), unique("job-uris-b")
    as_(A, "s3").create_bucket(Bucket=mine)
    as_(A, "s3").put_object(Bucket=mine, Key="data/a.csv", Body=b"1\n")
    as_(A, "s3").put_object(Bucket=mine, Key="code/sourcedir.tar.gz", Body=b"not read at Create")
    as_(B, "s3").create_bucket(Bucket=theirs)
    as_(B, "s3").put_object(Bucket=theirs, Key="data/b.csv", Body=b"secret of B\n")
    return SimpleNamespace(mine=mine, theirs=theirs)


def refused(call, member: str) -> None:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException", error
    assert member in error["Message"] and "another account" in error["Message"], error["Message"]


def training(name: str, bucket: str, **changes) -> dict:
    request = {
        "TrainingJobName": name,
        "RoleArn": f"arn:aws:iam::{A.account}:role/SageMakerRole",
        "AlgorithmSpecification": {"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": f'"s3://{bucket}/code/sourcedir.tar.gz"',
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/data"}},
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }
    request.update(changes)
    return request


def test_create_refuses_another_accounts_bucket_in_every_member(as_, buckets, unique):
    sm = as_(A, "sagemaker")
    mine, theirs = buckets.mine, buckets.theirs
    channel = [
        {
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{theirs}/data"}},
        }
    ]
    refused(
        lambda: sm.create_training_job(**training(unique("refused-t-in"), mine, InputDataConfig=channel)),
        "Channel train: S3Uri",
    )
    refused(
        lambda: sm.create_training_job(
            **training(unique("refused-t-out"), mine, OutputDataConfig={"S3OutputPath": f"s3://{theirs}/output"})
        ),
        "OutputDataConfig.S3OutputPath",
    )
    refused(
        lambda: sm.create_training_job(
            **training(
                unique("refused-t-code"),
                mine,
                HyperParameters={
                    "sagemaker_program": '"train.py"',
                    "sagemaker_submit_directory": f'"s3://{theirs}/code/sourcedir.tar.gz"',
                },
            )
        ),
        "HyperParameters.sagemaker_submit_directory",
    )
    refused(
        lambda: sm.create_training_job(
            **training(unique("refused-t-ckpt"), mine, CheckpointConfig={"S3Uri": f"s3://{theirs}/checkpoints"})
        ),
        "CheckpointConfig.S3Uri",
    )
    refused(
        lambda: sm.create_processing_job(
            **processing_request(
                unique("refused-p-in"),
                ["true"],
                inputs=[s3_input("data", f"s3://{theirs}/data", "/opt/ml/processing/input/data")],
            )
        ),
        "ProcessingInput data: S3Uri",
    )
    refused(
        lambda: sm.create_processing_job(
            **processing_request(
                unique("refused-p-out"),
                ["true"],
                outputs=[s3_output("out", f"s3://{theirs}/out", "/opt/ml/processing/output")],
            )
        ),
        "ProcessingOutput out: S3Uri",
    )

    model = unique("model")
    sm.create_model(
        ModelName=model,
        ExecutionRoleArn=f"arn:aws:iam::{A.account}:role/SageMakerRole",
        PrimaryContainer={"Image": SKLEARN_IMAGE},
    )
    transform = {
        "ModelName": model,
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{mine}/data"}}},
        "TransformOutput": {"S3OutputPath": f"s3://{mine}/transformed"},
    }
    refused(
        lambda: sm.create_transform_job(
            TransformJobName=unique("refused-x-in"),
            **{
                **transform,
                "TransformInput": {
                    "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{theirs}/data"}}
                },
            },
        ),
        "TransformInput.DataSource.S3DataSource.S3Uri",
    )
    refused(
        lambda: sm.create_transform_job(
            TransformJobName=unique("refused-x-out"),
            **{**transform, "TransformOutput": {"S3OutputPath": f"s3://{theirs}/transformed"}},
        ),
        "TransformOutput.S3OutputPath",
    )

    # None of them exists (A has no job of these names), and B's bucket holds only what B put there.
    assert sm.list_training_jobs(NameContains="refused-")["TrainingJobSummaries"] == []
    assert sm.list_processing_jobs(NameContains="refused-")["ProcessingJobSummaries"] == []
    assert sm.list_transform_jobs(NameContains="refused-")["TransformJobSummaries"] == []
    listed = as_(B, "s3").list_objects_v2(Bucket=theirs)["Contents"]
    assert [o["Key"] for o in listed] == ["data/b.csv"]


WAIT_FOR_GO = """\
import os, time
print("waiting", flush=True)
while not os.path.exists("/opt/ml/go"):  # the test hands the output bucket to account B meanwhile
    time.sleep(0.1)
open("/opt/ml/processing/output/result.txt", "w").write("A's result")
"""


def test_a_bucket_that_changes_owner_after_create_fails_the_job(as_, accounts, buckets, unique):
    sm, logs = as_(A, "sagemaker"), as_(A, "logs")
    outputs = unique("job-uris-out")
    as_(A, "s3").create_bucket(Bucket=outputs)
    as_(A, "s3").put_object(Bucket=buckets.mine, Key="code/wait.py", Body=WAIT_FOR_GO.encode())
    name = unique("swap")
    sm.create_processing_job(
        **processing_request(
            name,
            ["python3", "/opt/ml/processing/code/wait.py"],
            inputs=[s3_input("code", f"s3://{buckets.mine}/code/wait.py", "/opt/ml/processing/code")],
            outputs=[s3_output("out", f"s3://{outputs}/result", "/opt/ml/processing/output")],
        )
    )
    wait_for_log(logs, "/aws/sagemaker/ProcessingJobs", name, "waiting")
    as_(A, "s3").delete_bucket(Bucket=outputs)
    as_(B, "s3").create_bucket(Bucket=outputs)
    ml = next(accounts.data_dir.glob(f"jobs/{A.account}/*/processing-job/{name}/algo-1/ml"))
    (ml / "go").touch()
    job = wait(sm, "processing", name)
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("ClientError: ") and "AccessDenied" in job["FailureReason"]
    assert as_(B, "s3").list_objects_v2(Bucket=outputs).get("Contents", []) == []


def test_a_manifest_listing_another_accounts_prefix_fails_the_job(as_, buckets, unique):
    s3, sm = as_(A, "s3"), as_(A, "sagemaker")
    s3.put_object(
        Bucket=buckets.mine,
        Key="manifest.json",
        Body=json.dumps([{"prefix": f"s3://{buckets.theirs}/data/"}, "b.csv"]).encode(),
    )
    name = unique("manifest")
    sm.create_processing_job(
        **processing_request(
            name,
            ["true"],
            inputs=[
                s3_input(
                    "m", f"s3://{buckets.mine}/manifest.json", "/opt/ml/processing/input/m", S3DataType="ManifestFile"
                )
            ],
        )
    )
    job = wait(sm, "processing", name)
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("ClientError: ") and "AccessDenied" in job["FailureReason"]
