"""One port, every protocol: requests reach the right service by signing name, target and path."""

import json
import urllib.request

import pytest
from botocore.exceptions import ClientError

NOT_YET = "SelfMaker does not implement"


def _unimplemented(service):
    from selfmaker.server.models import service_model
    from selfmaker.server.operations import implemented, load_all

    load_all()
    return sorted(set(service_model(service).operation_names) - implemented(service))


# The rest-json services that still have operations to come (the others' tests prove their routing).
PARTLY_SERVED = [
    s
    for s in ("sagemaker-runtime", "sagemaker-featurestore-runtime", "sagemaker-edge", "sagemaker-metrics")
    if _unimplemented(s)
]


@pytest.mark.parametrize("service", PARTLY_SERVED)
def test_rest_json_services_are_routed_by_path(client, server, service):
    """Each rest-json service is reached by method and path: an operation it does not implement yet
    answers a 400 naming that very operation (never a 500, never another service's answer)."""
    op_name = _unimplemented(service)[0]
    c = client(service)
    op = c.meta.service_model.operation_model(op_name)
    params = _minimal_params(op.input_shape)
    method = getattr(c, "".join("_" + ch.lower() if ch.isupper() else ch for ch in op_name).lstrip("_"))
    with pytest.raises(ClientError) as err:
        method(**params)
    response = err.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Error"]["Code"] == "UnknownOperationException"
    assert NOT_YET in response["Error"]["Message"] and op_name in response["Error"]["Message"]


def _minimal_params(shape):
    """Just enough of each required member for botocore to send the request."""
    out = {}
    for name in shape.required_members if shape else []:
        member = shape.members[name]
        kind = member.type_name
        if kind == "structure":
            out[name] = _minimal_params(member)
        elif kind == "list":
            inner = member.member
            out[name] = [_minimal_params(inner) if inner.type_name == "structure" else "x"]
        elif kind == "blob":
            out[name] = b"x"
        elif kind in ("integer", "long"):
            out[name] = 1
        elif kind == "map":
            out[name] = {}
        else:
            out[name] = (getattr(member, "enum", None) and member.enum[0]) or "x"
    return out


def test_json_errors_look_like_aws(server):
    req = urllib.request.Request(
        server.url + "/",
        data=b"{}",
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "SageMaker.DescribeModel",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/sagemaker/aws4_request, "
            "SignedHeaders=host, Signature=00",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    assert err.value.headers["X-Amzn-ErrorType"] == "ValidationException"
    assert err.value.headers["Content-Type"] == "application/x-amz-json-1.1"
    body = json.loads(err.value.read())
    assert body["__type"] == "ValidationException"
    assert body["Message"] == (
        "1 validation error detected: Value null at 'modelName' failed to satisfy constraint: Member must not be null"
    )


def test_health_answers_unsigned(server):
    with urllib.request.urlopen(server.url + "/_selfmaker/health", timeout=5) as resp:
        assert json.loads(resp.read())["status"] == "ok"


def test_an_unserved_query_service_answers_xml(server):
    """SNS (query protocol, XML) is not served: its client gets an XML ErrorResponse it parses into a clean
    error on the first attempt, not a parser error it retries."""
    from support.clients import make_client

    sns = make_client("sns", server.url, retries={"max_attempts": 3, "mode": "standard"})
    with pytest.raises(ClientError) as err:
        sns.list_topics()
    response = err.value.response
    assert response["Error"]["Code"] == "UnknownOperationException"
    assert "signing service 'sns'" in response["Error"]["Message"]
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400 and response["ResponseMetadata"]["RetryAttempts"] == 0
