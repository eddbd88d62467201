"""Every protocol a service's clients speak, through real old and new boto3 releases.

AWS moved Athena from JSON 1.1 to rest-json (botocore 1.44), CloudWatch from query to JSON 1.0
and RPC v2 CBOR, SQS from query to JSON 1.0; installed clients keep speaking what they were
built with. Old boto3 releases run in their own virtual environments (built once per session
under pytest's temporary directory); the newest is this interpreter's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from support.featurestore import wait_for_query

# release -> what its botocore speaks to (athena, cloudwatch, sqs); the script checks it spoke that.
OLD_CLIENTS = {
    "1.35.99": {"athena": "json", "cloudwatch": "query", "sqs": "json"},
    "1.34.80": {"athena": "json", "cloudwatch": "query", "sqs": "query"},
}

SCRIPT = r"""
import datetime as dt, json, sys, time, uuid
import boto3, botocore


expected = json.loads(sys.argv[1])
out = {"botocore": botocore.__version__}
clients = {name: boto3.client(name) for name in ("athena", "cloudwatch", "sqs", "s3")}
for name, protocol in expected.items():
    assert clients[name].meta.service_model.protocol == protocol, (name, clients[name].meta.service_model.protocol)

cw = clients["cloudwatch"]
namespace = f"Old/{uuid.uuid4().hex[:8]}"
now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
cw.put_metric_data(Namespace=namespace, MetricData=[
    {"MetricName": "Latency", "Dimensions": [{"Name": "Host", "Value": "a"}], "Value": 2.0, "Unit": "Seconds",
     "Timestamp": now},
    {"MetricName": "Latency", "Dimensions": [{"Name": "Host", "Value": "a"}], "Value": 4.0, "Unit": "Seconds",
     "Timestamp": now}])
stats = cw.get_metric_statistics(Namespace=namespace, MetricName="Latency", Dimensions=[{"Name": "Host", "Value": "a"}],
                                 StartTime=now - dt.timedelta(minutes=5), EndTime=now + dt.timedelta(minutes=1),
                                 Period=60, Statistics=["Average", "Sum", "SampleCount"])
out["datapoints"] = [{k: p[k] for k in ("Average", "Sum", "SampleCount", "Unit")} for p in stats["Datapoints"]]
out["timestamp_type"] = type(stats["Datapoints"][0]["Timestamp"]).__name__ if stats["Datapoints"] else None
metrics = cw.list_metrics(Namespace=namespace)["Metrics"]
out["metrics"] = [(m["MetricName"], m["Dimensions"]) for m in metrics]
# Over 10 KB of form: botocore gzips it (Content-Encoding: gzip).
cw.put_metric_data(Namespace=namespace + "/big", MetricData=[
    {"MetricName": f"Metric{i:03d}", "Dimensions": [{"Name": "Host", "Value": "host-with-a-long-name"}],
     "Value": float(i), "Unit": "Count"} for i in range(150)])
out["big"] = len(cw.list_metrics(Namespace=namespace + "/big")["Metrics"])
try:
    cw.put_metric_data(Namespace="AWS/Reserved", MetricData=[{"MetricName": "X", "Value": 1.0}])
    out["cw_error"] = None
except cw.exceptions.ClientError as err:
    out["cw_error"] = [err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"]]

sqs = clients["sqs"]
queue = sqs.create_queue(QueueName=f"old-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "40"},
                         tags={"team": "ml"})["QueueUrl"]
out["visibility"] = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["VisibilityTimeout"])["Attributes"]
sqs.send_message(QueueUrl=queue, MessageBody="hello",
                 MessageAttributes={"kind": {"DataType": "String", "StringValue": "greeting"}})
received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"],
                               MessageAttributeNames=["All"], WaitTimeSeconds=1)["Messages"]
out["received"] = [(m["Body"], m["Attributes"], m["MessageAttributes"]) for m in received]
batch = sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": "a", "MessageBody": "1"}, {"Id": "b", "MessageBody": "2"}])
out["batch"] = sorted(e["Id"] for e in batch["Successful"])
sqs.delete_message(QueueUrl=queue, ReceiptHandle=received[0]["ReceiptHandle"])
out["tags"] = sqs.list_queue_tags(QueueUrl=queue).get("Tags")
try:
    sqs.get_queue_url(QueueName="no-such-queue-here")
    out["sqs_error"] = None
except sqs.exceptions.QueueDoesNotExist as err:
    out["sqs_error"] = err.response["Error"]["Code"]

s3 = clients["s3"]
bucket = f"old-client-{uuid.uuid4().hex[:8]}"
s3.create_bucket(Bucket=bucket)
athena = clients["athena"]
qid = athena.start_query_execution(QueryString="SELECT 41 + 1 AS answer",
                                   ResultConfiguration={"OutputLocation": f"s3://{bucket}/out"})["QueryExecutionId"]
deadline = time.time() + 30
while True:
    state = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]["State"]
    if state not in ("QUEUED", "RUNNING") or time.time() > deadline:
        break
    time.sleep(0.1)
out["athena_state"] = state
out["athena_rows"] = [[d.get("VarCharValue") for d in r["Data"]]
                      for r in athena.get_query_results(QueryExecutionId=qid)["ResultSet"]["Rows"]]
try:
    athena.get_query_execution(QueryExecutionId="not-a-query")
    out["athena_error"] = None
except athena.exceptions.ClientError as err:
    out["athena_error"] = err.response["Error"]["Code"]
print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def old_boto3(tmp_path_factory):
    """release -> the python of a virtual environment holding just that boto3 and botocore release."""
    built = {}

    def python_for(release: str):
        if release not in built:
            root = tmp_path_factory.mktemp(f"boto3-{release}")
            subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
            python = root / "venv" / "bin" / "python"
            subprocess.run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    f"boto3=={release}",
                    f"botocore=={release}",
                ],
                check=True,
            )
            built[release] = python
        return built[release]

    return python_for


def run_old_client(python, server, release: str, tmp_path) -> dict:
    script = tmp_path / "old_client.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ENDPOINT_URL": server.url,
        "AWS_ACCESS_KEY_ID": "AKIDOLDCLIENT",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONWARNINGS": "ignore",
    }
    result = subprocess.run(
        [str(python), str(script), json.dumps(OLD_CLIENTS[release])],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, f"boto3 {release} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("release", sorted(OLD_CLIENTS))
def test_old_boto3_speaks_its_own_protocols(old_boto3, server, release, tmp_path):
    out = run_old_client(old_boto3(release), server, release, tmp_path)
    assert out["botocore"] == release

    # CloudWatch: the query protocol's form in, XML out (timestamps parsed back into datetimes).
    assert out["datapoints"] == [{"Average": 3.0, "Sum": 6.0, "SampleCount": 2.0, "Unit": "Seconds"}]
    assert out["timestamp_type"] == "datetime"
    assert out["metrics"] == [["Latency", [{"Name": "Host", "Value": "a"}]]]
    assert out["big"] == 150
    assert out["cw_error"] == ["InvalidParameterValue", 400]

    # SQS: maps and lists as the protocol flattens them (Attribute.1.Name, MessageAttribute.1.Value...).
    assert out["visibility"] == {"VisibilityTimeout": "40"}
    assert out["received"] == [
        ["hello", {"ApproximateReceiveCount": "1"}, {"kind": {"DataType": "String", "StringValue": "greeting"}}]
    ]
    assert out["batch"] == ["a", "b"]
    assert out["tags"] == {"team": "ml"}
    assert out["sqs_error"] == "AWS.SimpleQueueService.NonExistentQueue"

    # Athena: JSON 1.1 with X-Amz-Target AmazonAthena.*.
    assert out["athena_state"] == "SUCCEEDED"
    assert out["athena_rows"] == [["answer"], ["42"]]
    assert out["athena_error"] == "InvalidRequestException"


def test_newest_boto3_athena_speaks_rest_json(client):
    athena, s3 = client("athena"), client("s3")
    assert athena.meta.service_model.protocol == "rest-json"
    s3.create_bucket(Bucket="new-client-athena")
    qid = athena.start_query_execution(
        QueryString="SELECT 6 * 7 AS answer", ResultConfiguration={"OutputLocation": "s3://new-client-athena/out"}
    )["QueryExecutionId"]
    assert wait_for_query(athena, qid)["Status"]["State"] == "SUCCEEDED"
    page = athena.get_query_results(QueryExecutionId=qid, MaxResults=10)  # MaxResults in the query string
    assert [[d.get("VarCharValue") for d in r["Data"]] for r in page["ResultSet"]["Rows"]] == [["answer"], ["42"]]
    with pytest.raises(athena.exceptions.InvalidRequestException):
        athena.get_query_execution(QueryExecutionId="not-a-query")
    with pytest.raises(athena.exceptions.InvalidRequestException) as caught:
        athena.get_query_results(QueryExecutionId=qid, MaxResults=5000)  # over the model's maximum
    assert "maxResults" in str(caught.value)


def _signed_form(url: str, form: dict, service: str):
    """A query-protocol POST signed with botocore's SigV4, as an SDK sends it."""
    from urllib.parse import urlencode

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        "POST",
        url,
        data=urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials("AKIDRAW", "secret"), service, "us-east-1").add_auth(request)
    return request.prepare()


def test_sqs_query_posted_to_the_queue_url_names_that_queue(client, server, unique):
    """SDKs of the query era post to the queue URL itself rather than sending QueueUrl."""
    import urllib.error
    import urllib.request

    sqs = client("sqs")
    url = sqs.create_queue(QueueName=unique("raw"))["QueueUrl"]
    prepared = _signed_form(url, {"Action": "SendMessage", "Version": "2012-11-05", "MessageBody": "by path"}, "sqs")
    with urllib.request.urlopen(
        urllib.request.Request(prepared.url, data=prepared.body, method="POST", headers=dict(prepared.headers))
    ) as response:
        body = response.read().decode()
    assert "<SendMessageResponse" in body and "<MessageId>" in body
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url).get("Messages", [])] == ["by path"]

    # The same request to a queue that does not exist: the query error document with the query-era code.
    missing = _signed_form(url + "-gone", {"Action": "SendMessage", "Version": "2012-11-05", "MessageBody": "x"}, "sqs")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(
            urllib.request.Request(missing.url, data=missing.body, method="POST", headers=dict(missing.headers))
        )
    error = caught.value.read().decode()
    assert caught.value.code == 400
    assert "<ErrorResponse" in error and "<Code>AWS.SimpleQueueService.NonExistentQueue</Code>" in error
