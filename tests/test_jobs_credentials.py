"""On a strict-auth server a job (or an endpoint's instance) calls SelfMaker with its own key: valid for its
account, only while the job runs (while the endpoint exists)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from support.clients import make_client
from support.endpoints import IMAGE, deploy, variant, wait_gone
from support.jobs import code_archive, log_lines, tar_gz, training_request, wait, wait_for_log
from support.waiting import wait_for

ACCOUNT, KEY, SECRET = "333333333333", "AKIAJOBSOWNER0000001", "secret-of-the-job-owner"

# Uses the credentials the job got: who am I, write to S3, and print the key (to check its revocation).
SCRIPT = """\
    import os, boto3
    identity = boto3.client("sts").get_caller_identity()
    print("ACCOUNT", identity["Account"], flush=True)
    boto3.client("s3").put_object(Bucket=os.environ["BUCKET"], Key="from-the-job.txt", Body=b"written by the job")
    print("KEY", os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], flush=True)
    """


@pytest.fixture(scope="module")
def strict(make_server, tmp_path_factory):
    path = tmp_path_factory.mktemp("job-credentials") / "credentials"
    path.write_text(f"[{KEY}]\nsecret_access_key = {SECRET}\naccount_id = {ACCOUNT}\n")
    return make_server("strict-jobs", ["--auth", "strict", "--credentials-file", str(path)]).start()


def connect(server, service: str, key: str = KEY, secret: str = SECRET):
    return make_client(service, server.url, access_key=key, secret_key=secret)


def test_a_job_calls_the_server_as_its_account_until_it_ends(strict, unique):
    bucket = unique("job-creds")
    s3, sm = connect(strict, "s3"), connect(strict, "sagemaker")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="code/creds.tar.gz", Body=code_archive({"train.py": SCRIPT}))
    name = unique("creds")
    request = training_request(name, bucket, "code/creds.tar.gz", Environment={"BUCKET": bucket})
    request["RoleArn"] = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
    sm.create_training_job(**request)
    job = wait(sm, "training", name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    lines = log_lines(connect(strict, "logs"), "/aws/sagemaker/TrainingJobs", name)
    assert f"ACCOUNT {ACCOUNT}" in lines
    assert s3.get_object(Bucket=bucket, Key="from-the-job.txt")["Body"].read() == b"written by the job"
    _, job_key, job_secret = next(line for line in lines if line.startswith("KEY ")).split()
    assert job_key not in (KEY, "selfmaker")
    with pytest.raises(ClientError) as revoked:  # the job has ended: its key is no longer valid
        connect(strict, "sts", job_key, job_secret).get_caller_identity()
    assert revoked.value.response["Error"]["Code"] == "InvalidClientTokenId"


def test_a_restarted_server_still_knows_the_key_of_a_running_job(strict, unique):
    bucket = unique("job-creds-restart")
    s3, sm = connect(strict, "s3"), connect(strict, "sagemaker")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket,
        Key="code/later.tar.gz",
        Body=code_archive(
            {
                "train.py": """\
        import os, time, boto3
        print("waiting", flush=True)
        while not os.path.exists("/opt/ml/input/data/go"):  # the test restarts the server meanwhile
            time.sleep(0.1)
        print("ACCOUNT", boto3.client("sts").get_caller_identity()["Account"], flush=True)
        """
            }
        ),
    )
    name = unique("creds-restart")
    request = training_request(name, bucket, "code/later.tar.gz")
    request["RoleArn"] = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
    sm.create_training_job(**request)
    wait_for_log(connect(strict, "logs"), "/aws/sagemaker/TrainingJobs", name, "waiting")
    strict.kill()
    strict.start()
    data = next(strict.data_dir.glob(f"jobs/{ACCOUNT}/*/training-job/{name}/algo-1/ml/input/data"))
    (data / "go").touch()
    job = wait(connect(strict, "sagemaker"), "training", name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert f"ACCOUNT {ACCOUNT}" in log_lines(connect(strict, "logs"), "/aws/sagemaker/TrainingJobs", name)


# An endpoint's model calls the server with the endpoint's own key and answers who it is and with which key.
WHO_AM_I_MODEL = """\
import os, boto3
def model_fn(model_dir):
    return None
def transform_fn(model, data, content_type, accept):
    account = boto3.client("sts").get_caller_identity()["Account"]
    return f"{account} {os.environ['AWS_ACCESS_KEY_ID']} {os.environ['AWS_SECRET_ACCESS_KEY']}", "text/plain"
"""


def test_an_endpoint_calls_the_server_as_its_account_until_it_is_deleted(strict, unique):
    bucket, name = unique("endpoint-creds"), unique("creds-endpoint")
    s3, sm, runtime = connect(strict, "s3"), connect(strict, "sagemaker"), connect(strict, "sagemaker-runtime")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="model.tar.gz", Body=tar_gz({"code/inference.py": WHO_AM_I_MODEL.encode()}))
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole",
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/model.tar.gz"},
    )
    described = deploy(sm, name, [variant(name)])
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")

    def who() -> list[str]:
        return runtime.invoke_endpoint(EndpointName=name, Body=b"?")["Body"].read().decode().split()

    account, key, secret = who()
    assert account == ACCOUNT and key not in (KEY, "selfmaker")
    strict.kill()  # the instances outlive the crash; the restarted server knows their key again
    strict.start()
    answer = wait_for(who, timeout=120, ignore=(ClientError,), what="the endpoint to answer after the restart")
    assert answer == [account, key, secret]

    sm.delete_endpoint(EndpointName=name)
    wait_gone(sm, name)
    with pytest.raises(ClientError) as revoked:
        connect(strict, "sts", key, secret).get_caller_identity()
    assert revoked.value.response["Error"]["Code"] == "InvalidClientTokenId"
