"""Old and new boto3 against one server: the clients users really have, not only the one SelfMaker pins.

Each boto3 lives in its own clean virtual environment (no site packages: an old botocore cannot be
shadowed by this interpreter's new one), built once per test run under pytest's temporary directory,
never reused across runs. One smoke flow touches every protocol the server speaks; each step reports on
its own, so a failure names the service and the client version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CLIENTS = {
    "newest": "boto3",  # whatever PyPI has today: catches a protocol change the day it ships
    # The oldest boto3 the SageMaker SDK v2 of tests/sdk.py accepts (sagemaker==2.257.7: boto3>=1.42.2).
    "sdk-v2-floor": "boto3==1.42.2",
    # The last release before flexible S3 checksums (1.36) and CloudWatch's move from the query protocol.
    "1.35": "boto3==1.35.99",
}

SMOKE = r"""
import json, sys, time
import boto3, botocore

tag = sys.argv[1]
results = {"botocore": botocore.__version__}

def step(name):
    def run(fn):
        try:
            fn()
            results[name] = "ok"
        except Exception as err:  # every step reports, whatever the others did
            results[name] = f"{type(err).__name__}: {err}"
    return run

sm = boto3.client("sagemaker")

@step("sagemaker experiment")
def _():
    sm.create_experiment(ExperimentName=f"matrix-{tag}", Description="clients matrix")
    assert sm.describe_experiment(ExperimentName=f"matrix-{tag}")["Description"] == "clients matrix"
    names = [e["ExperimentName"] for e in sm.list_experiments(MaxResults=100)["ExperimentSummaries"]]
    assert f"matrix-{tag}" in names, names

@step("featurestore record")
def _():
    group = f"matrix-{tag}"
    sm.create_feature_group(
        FeatureGroupName=group, RecordIdentifierFeatureName="id", EventTimeFeatureName="et",
        FeatureDefinitions=[{"FeatureName": "id", "FeatureType": "String"},
                            {"FeatureName": "et", "FeatureType": "Fractional"},
                            {"FeatureName": "x", "FeatureType": "Integral"}],
        OnlineStoreConfig={"EnableOnlineStore": True})
    deadline = time.time() + 20
    while sm.describe_feature_group(FeatureGroupName=group)["FeatureGroupStatus"] != "Created":
        assert time.time() < deadline, "the feature group was not created in 20 s"
        time.sleep(0.1)
    runtime = boto3.client("sagemaker-featurestore-runtime")
    record = [{"FeatureName": "id", "ValueAsString": "r1"}, {"FeatureName": "et", "ValueAsString": "1.5"},
              {"FeatureName": "x", "ValueAsString": "7"}]
    runtime.put_record(FeatureGroupName=group, Record=record)
    got = runtime.get_record(FeatureGroupName=group, RecordIdentifierValueAsString="r1")["Record"]
    assert sorted(got, key=lambda f: f["FeatureName"]) == sorted(record, key=lambda f: f["FeatureName"]), got

s3 = boto3.client("s3")
bucket = f"matrix-{tag}"

@step("s3 object")
def _():
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"hello from " + tag.encode())
    assert s3.get_object(Bucket=bucket, Key="a/b.txt")["Body"].read() == b"hello from " + tag.encode()

@step("sts identity")
def _():
    assert boto3.client("sts").get_caller_identity()["Account"] == "123456789012"

@step("iam role")
def _():
    role = boto3.client("iam").get_role(RoleName="SageMakerRole")["Role"]
    assert role["Arn"] == "arn:aws:iam::123456789012:role/SageMakerRole", role

@step("logs events")
def _():
    logs = boto3.client("logs")
    group = f"/matrix/{tag}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    logs.put_log_events(logGroupName=group, logStreamName="s",
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": "one"}])
    events = logs.get_log_events(logGroupName=group, logStreamName="s", startFromHead=True)["events"]
    assert [e["message"] for e in events] == ["one"], events

@step("cloudwatch metrics")
def _():
    cw = boto3.client("cloudwatch")
    cw.put_metric_data(Namespace=f"Matrix/{tag}", MetricData=[
        {"MetricName": "Latency", "Value": 1.5, "Unit": "Milliseconds",
         "Dimensions": [{"Name": "Client", "Value": tag}]}])
    metrics = cw.list_metrics(Namespace=f"Matrix/{tag}")["Metrics"]
    assert [(m["MetricName"], m["Dimensions"]) for m in metrics] == [
        ("Latency", [{"Name": "Client", "Value": tag}])], metrics

@step("sqs message")
def _():
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"matrix-{tag}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="ping")
    messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    assert [m["Body"] for m in messages] == ["ping"], messages

@step("athena query")
def _():
    athena = boto3.client("athena")
    qid = athena.start_query_execution(
        QueryString="SELECT 1 AS one",
        ResultConfiguration={"OutputLocation": f"s3://{bucket}/athena/"})["QueryExecutionId"]
    deadline = time.time() + 30
    while (state := athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]["State"]) in (
            "QUEUED", "RUNNING"):
        assert time.time() < deadline, "the query did not finish in 30 s"
        time.sleep(0.1)
    assert state == "SUCCEEDED", state
    rows = athena.get_query_results(QueryExecutionId=qid)["ResultSet"]["Rows"]
    assert [[c.get("VarCharValue") for c in r["Data"]] for r in rows] == [["one"], ["1"]], rows

print(json.dumps(results))
"""


class Client:
    """One boto3 release in its own clean virtual environment."""

    def __init__(self, root: Path, requirement: str):
        self.root = root
        self.python = root / "venv" / "bin" / "python"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
        # This interpreter's pip installs into the new environment: no second pip to bootstrap.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(self.python),
                "install",
                "-q",
                "--disable-pip-version-check",
                requirement,
            ],
            check=True,
            timeout=600,
        )

    def smoke(self, server, tag: str) -> dict:
        script = self.root / "smoke.py"
        script.write_text(textwrap.dedent(SMOKE))
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": server.url,
            "AWS_ACCESS_KEY_ID": "AKIDMATRIX",
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        env.pop("AWS_PROFILE", None)
        result = subprocess.run(
            [str(self.python), str(script), tag], capture_output=True, text=True, timeout=300, env=env, cwd=self.root
        )
        assert result.returncode == 0, result.stderr[-4000:]
        return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session", params=sorted(CLIENTS))
def boto3_client(request, tmp_path_factory):
    return request.param, Client(tmp_path_factory.mktemp(f"boto3-{request.param}"), CLIENTS[request.param])


def test_every_protocol_works_with_old_and_new_boto3(boto3_client, server, unique):
    label, client = boto3_client
    results = client.smoke(server, unique(label.replace(".", "")))
    botocore_version = results.pop("botocore")
    failed = {step: outcome for step, outcome in results.items() if outcome != "ok"}
    assert len(results) == 9 and not failed, f"boto3 {label} (botocore {botocore_version}): {failed}"
