"""One port, every protocol: requests reach the right service by signing name, target and path."""

import json
import urllib.request

import pytest
from botocore.exceptions import ClientError

NOT_YET = "SelfMaker does not implement"


@pytest.mark.parametrize("service,call", [
    ("sagemaker-runtime", lambda c: c.invoke_endpoint(EndpointName="ep", Body=b"1,2", ContentType="text/csv")),
    ("sagemaker-featurestore-runtime",
     lambda c: c.get_record(FeatureGroupName="fg", RecordIdentifierValueAsString="1")),
    ("sagemaker-featurestore-runtime", lambda c: c.batch_get_record(Identifiers=[
        {"FeatureGroupName": "fg", "RecordIdentifiersValueAsString": ["1"]}])),
    ("sagemaker-edge", lambda c: c.get_deployments(DeviceName="d", DeviceFleetName="f")),
    ("sagemaker-metrics", lambda c: c.batch_get_metrics(MetricQueries=[{
        "MetricName": "m", "ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:experiment-trial-component/t",
        "MetricStat": "Avg", "Period": "IterationNumber", "XAxisType": "IterationNumber"}])),
])
def test_rest_json_services_are_routed_by_path(client, service, call):
    """Until a family lands, its operations answer a clear 400 naming the operation (never a 500)."""
    c = client(service)
    operation = call.__code__.co_names[-1]
    with pytest.raises(ClientError) as err:
        call(c)
    response = err.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "UnknownOperationException"
    assert NOT_YET in response["Error"]["Message"]
    assert "".join(w.capitalize() for w in operation.split("_")) in response["Error"]["Message"]


def test_json_errors_look_like_aws(server):
    req = urllib.request.Request(server.url + "/", data=b"{}", method="POST", headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.DescribeModel",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/sagemaker/aws4_request, "
                         "SignedHeaders=host, Signature=00"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    assert err.value.headers["X-Amzn-ErrorType"] == "ValidationException"
    assert err.value.headers["Content-Type"] == "application/x-amz-json-1.1"
    body = json.loads(err.value.read())
    assert body["__type"] == "ValidationException"
    assert body["Message"] == ("1 validation error detected: Value null at 'modelName' failed to satisfy "
                               "constraint: Member must not be null")


def test_health_answers_unsigned(server):
    with urllib.request.urlopen(server.url + "/_selfmaker/health", timeout=5) as resp:
        assert json.loads(resp.read())["status"] == "ok"
