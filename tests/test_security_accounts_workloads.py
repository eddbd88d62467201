"""Security: one account never reaches another's endpoints, models, jobs or their logs (the workloads half of
tests/test_security_accounts.py, on a server of its own): B deploys and runs; A names B's resources everywhere
an operation takes them, and each attack is refused as AWS refuses it while the same call works on A's own."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from support.accounts import NOT_FOUND, REGION, ROLE, A, B, accounts_server, arn_of, refused, until
from support.jobs import tar_gz
from support.pipelines import IMAGE, entrypoint

# The wall is in the store's SQL: hold it on both databases.
pytestmark = pytest.mark.both_databases

MODEL_CODE = b"""
def model_fn(model_dir):
    return open(model_dir + "/owner").read()

def transform_fn(owner, data, content_type, accept):
    return f"{owner}:{data.decode() if isinstance(data, bytes) else data}", "text/plain"
"""


srv, as_ = accounts_server("accounts-workloads", A, B)


# -- hosting, runtime, jobs and their logs -----------------------------------------------------------------------


def _model(sm, s3, who, name: str, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket,
        Key=f"{name}.tar.gz",
        Body=tar_gz({"owner": who.account.encode(), "code/inference.py": MODEL_CODE}),
    )
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE.format(account=who.account),
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/{name}.tar.gz"},
    )


def _variant(model: str) -> list[dict]:
    return [{"VariantName": "AllTraffic", "ModelName": model, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]


def _in_service(sm, name: str) -> dict:
    return until(
        lambda: (d := sm.describe_endpoint(EndpointName=name))["EndpointStatus"] in ("InService", "Failed") and d,
        120,
        f"endpoint {name}",
    )


def test_hosting_and_runtime_reach_only_their_own_models_and_endpoints(as_, unique):
    a, b, b_s3 = as_(A), as_(B), as_(B, "s3")
    bucket = unique("b-models")
    b_s3.create_bucket(Bucket=bucket)
    model, config, endpoint = unique("b-model"), unique("b-config"), unique("b-endpoint")
    _model(b, b_s3, B, model, bucket)
    b.create_endpoint_config(EndpointConfigName=config, ProductionVariants=_variant(model))
    b.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    assert _in_service(b, endpoint)["EndpointStatus"] == "InService"

    for reference in (model, arn_of(B, f"model/{model}")):
        refused(
            a.create_endpoint_config,
            "ValidationException",
            EndpointConfigName=unique("a-config"),
            ProductionVariants=_variant(reference),
        )
        refused(
            a.create_transform_job,
            *NOT_FOUND,
            TransformJobName=unique("a-transform"),
            ModelName=reference,
            TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/in"}}},
            TransformOutput={"S3OutputPath": f"s3://{bucket}/out"},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        )
        refused(a.describe_model, "ValidationException", ModelName=reference)
        refused(a.delete_model, "ValidationException", ModelName=reference)
    for reference in (config, arn_of(B, f"endpoint-config/{config}")):
        refused(
            a.create_endpoint, "ValidationException", EndpointName=unique("a-endpoint"), EndpointConfigName=reference
        )
        refused(a.delete_endpoint_config, "ValidationException", EndpointConfigName=reference)
    endpoint_arn = arn_of(B, f"endpoint/{endpoint}")
    for reference in (endpoint, endpoint_arn):
        refused(a.describe_endpoint, "ValidationException", EndpointName=reference)
        refused(a.update_endpoint, "ValidationException", EndpointName=reference, EndpointConfigName=config)
        refused(
            a.update_endpoint_weights_and_capacities,
            "ValidationException",
            EndpointName=reference,
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredWeight": 0.0}],
        )
        refused(a.delete_endpoint, "ValidationException", EndpointName=reference)
    runtime = as_(A, "sagemaker-runtime")
    refused(
        runtime.invoke_endpoint,
        "ValidationError",
        "ValidationException",
        EndpointName=endpoint,
        Body=b"x",
        ContentType="text/plain",
    )
    # A's endpoint log group of B's endpoint name is A's own (absent), never B's.
    logs = as_(A, "logs")
    group_arn = f"arn:aws:logs:{REGION}:{B.account}:log-group:/aws/sagemaker/Endpoints/{endpoint}"
    refused(logs.describe_log_streams, "ResourceNotFoundException", logGroupIdentifier=group_arn)

    # B's endpoint serves B, as configured.
    found = b.describe_endpoint(EndpointName=endpoint)
    assert found["EndpointStatus"] == "InService" and found["EndpointConfigName"] == config
    answer = as_(B, "sagemaker-runtime").invoke_endpoint(EndpointName=endpoint, Body=b"hi", ContentType="text/plain")
    assert answer["Body"].read() == f"{B.account}:hi".encode()
    b.delete_endpoint(EndpointName=endpoint)

    # Positive control: A's config of A's own model is accepted.
    a_s3, a_bucket, a_model = as_(A, "s3"), unique("a-models"), unique("a-model")
    a_s3.create_bucket(Bucket=a_bucket)
    _model(a, a_s3, A, a_model, a_bucket)
    a.create_endpoint_config(EndpointConfigName=unique("a-config"), ProductionVariants=_variant(a_model))


SLEEPER = "import time; print('working', flush=True); time.sleep(120)"


def test_jobs_and_their_logs_stay_in_their_account(as_, unique):
    a, b, b_logs, a_logs = as_(A), as_(B), as_(B, "logs"), as_(A, "logs")
    bucket = unique("b-jobs")
    as_(B, "s3").create_bucket(Bucket=bucket)
    job = unique("b-processing")
    b.create_processing_job(
        ProcessingJobName=job,
        RoleArn=ROLE.format(account=B.account),
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}},
        AppSpecification={"ImageUri": IMAGE, "ContainerEntrypoint": entrypoint(SLEEPER)},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )
    group = "/aws/sagemaker/ProcessingJobs"

    def b_streams():
        try:
            return b_logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=job)["logStreams"]
        except ClientError:
            return None

    stream = until(b_streams, 60, "B's job log stream")[0]["logStreamName"]
    until(
        lambda: any(
            "working" in e["message"] for e in b_logs.get_log_events(logGroupName=group, logStreamName=stream)["events"]
        ),
        60,
        "B's job output",
    )

    job_arn = arn_of(B, f"processing-job/{job}")
    for reference in (job, job_arn):
        refused(a.describe_processing_job, *NOT_FOUND, ProcessingJobName=reference)
        refused(a.stop_processing_job, *NOT_FOUND, ProcessingJobName=reference)
    refused(a.stop_training_job, *NOT_FOUND, TrainingJobName=job)
    group_arn = f"arn:aws:logs:{REGION}:{B.account}:log-group:{group}"
    refused(a_logs.get_log_events, "ResourceNotFoundException", logGroupIdentifier=group_arn, logStreamName=stream)
    refused(a_logs.filter_log_events, "ResourceNotFoundException", logGroupIdentifier=group_arn)
    refused(
        a_logs.put_log_events,
        "ResourceNotFoundException",
        logGroupName=group,
        logStreamName=stream,
        logEvents=[{"timestamp": int(time.time() * 1000), "message": "planted"}],
    )
    try:  # by name, A's group of that name is A's own: it never holds B's streams
        a_streams = a_logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=job)["logStreams"]
    except ClientError as err:
        assert err.response["Error"]["Code"] == "ResourceNotFoundException"
        a_streams = []
    assert a_streams == []
    a_jobs = a.list_processing_jobs(NameContains=job)["ProcessingJobSummaries"]
    assert a_jobs == []
    # B's job is running still; B (positive control) reads its logs and stops it.
    assert b.describe_processing_job(ProcessingJobName=job)["ProcessingJobStatus"] == "InProgress"
    assert not any(
        "planted" in e["message"] for e in b_logs.get_log_events(logGroupName=group, logStreamName=stream)["events"]
    )
    b.stop_processing_job(ProcessingJobName=job)
    assert until(
        lambda: (
            b.describe_processing_job(ProcessingJobName=job)["ProcessingJobStatus"]
            in ("Stopped", "Completed", "Failed")
            and True
        ),
        60,
    )
