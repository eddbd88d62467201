"""Security at the wire-protocol door, on a strict server: each attack is tried and refused.

/metrics needs its bearer token; header-level refusals come before the body is read and bodies
stop at their protocol's cap; deep, NaN and badly encoded documents are 400s in the protocol's own
words; a signature must cover the headers that choose the operation and be scoped to the service
that answers; unsigned requests are refused as each protocol refuses them on AWS.
"""

from __future__ import annotations

import http.client
import json
import math
import sys
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import botocore.parsers
import botocore.serialize
import cbor2
import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from selfmaker.server.limits import MAX_DEPTH, MAX_DOCUMENT_BODY, MAX_INVOKE_BODY
from selfmaker.server.models import operation_model
from selfmaker.server.serialize import json_body
from support.waiting import wait_for

REGION = "us-east-1"
ALICE = SimpleNamespace(key="AKIASECPROTO00000001", secret="secret-of-alice", account="111111111111")
TOKEN = "scrape-me-7f3c"
JSON_11 = "application/x-amz-json-1.1"
CBOR_PATH = "/service/GraniteServiceVersion20100801/operation/"


@pytest.fixture(scope="module")
def credentials_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("secproto") / "credentials.ini"
    path.write_text(f"[{ALICE.key}]\nsecret_access_key = {ALICE.secret}\naccount_id = {ALICE.account}\n")
    return path


@pytest.fixture(scope="module")
def strict(make_server, credentials_file):
    return make_server(
        "secproto", ["--auth", "strict", "--credentials-file", str(credentials_file), "--metrics-token", TOKEN]
    ).start()


@pytest.fixture
def as_alice(client, strict):
    def make(service, **config):
        return client(service, srv=strict, access_key=ALICE.key, secret_key=ALICE.secret, **config)

    return make


def send(method, url, headers, body=b""):
    """A raw HTTP request: (status, headers, body), errors included."""
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def signed(srv, method, path, body=b"", headers=None, service="sagemaker", who=ALICE, add_after=None):
    """Headers of a request SigV4-signed for ``service``; ``add_after`` headers join once it is signed."""
    request = AWSRequest(method, srv.url + path, data=body, headers=dict(headers or {}))
    signer = S3SigV4Auth if service == "s3" else SigV4Auth
    signer(Credentials(who.key, who.secret), service, REGION).add_auth(request)
    return {**dict(request.headers.items()), **(add_after or {})}


def error_code(status_headers_body) -> tuple[int, str]:
    status, headers, body = status_headers_body
    return status, headers.get("X-Amzn-ErrorType") or json.loads(body or b"{}").get("__type", "")


def headers_only(srv, method, path, headers, sent_body=b"", timeout=10):
    """Send the headers (and ``sent_body``, maybe much less than Content-Length says), then read the answer.

    The answer must come while the rest of the declared body is still unsent: proof it was not waited for.
    """
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        if sent_body:
            conn.send(sent_body)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# 1. /metrics


def test_metrics_need_the_bearer_token_on_a_strict_server(strict):
    for path in ("/metrics", "/_selfmaker/metrics"):
        status, headers, _ = send("GET", strict.url + path, {})
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), path
        assert send("GET", strict.url + path, {"Authorization": "Bearer wrong-token"})[0] == 401
        if path.startswith("/_selfmaker"):  # elsewhere, other schemes are S3's: the bucket "metrics"
            assert send("GET", strict.url + path, {"Authorization": f"Basic {TOKEN}"})[0] == 401
        status, headers, body = send("GET", strict.url + path, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and headers["Content-Type"].startswith("text/plain"), path
        names = {s.name for family in text_string_to_metric_families(body.decode()) for s in family.samples}
        assert {"selfmaker_info", "process_cpu_seconds_total"} <= names, path


def test_metrics_stay_closed_without_a_configured_token(make_server, credentials_file):
    srv = make_server("secproto-notoken", ["--auth", "strict", "--credentials-file", str(credentials_file)]).start()
    try:
        for auth in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
            status, _, body = send("GET", srv.url + "/metrics", auth)
            assert status == 401 and b"--metrics-token" in body
        assert "/metrics is closed" in srv.log_text
    finally:
        srv.stop()


def test_metrics_stay_open_in_open_mode(server):
    status, _, _body = send("GET", server.url + "/metrics", {})
    assert status == 200


# ---------------------------------------------------------------------------
# 2. Limits before work


@pytest.mark.parametrize(
    "who,expected",
    [
        (None, (403, "MissingAuthenticationTokenException")),
        (SimpleNamespace(key="AKIANOBODY0000000000", secret="x"), (400, "UnrecognizedClientException")),
    ],
)
def test_header_refusals_come_before_the_body_is_read(strict, who, expected):
    """A 512 MiB POST: only 1 KiB is sent, and the refusal arrives anyway."""
    headers = {"Content-Type": JSON_11, "X-Amz-Target": "SageMaker.ListModels"}
    if who is not None:
        headers = signed(strict, "POST", "/", b"{}", headers, who=who)
    headers = {**headers, "Content-Length": str(512 << 20), "Host": f"127.0.0.1:{strict.port}"}
    started = time.monotonic()
    status, out, _body = headers_only(strict, "POST", "/", headers, b"{" + b" " * 1023)
    assert (status, out["X-Amzn-ErrorType"]) == expected
    assert out["Connection"] == "close" and time.monotonic() - started < 5


def test_an_expired_signature_is_refused_before_the_body(strict):
    headers = signed(strict, "POST", "/", b"{}", {"Content-Type": JSON_11, "X-Amz-Target": "SageMaker.ListModels"})
    stale = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 3600))
    headers = {
        **headers,
        "X-Amz-Date": stale,
        "Content-Length": str(512 << 20),
        "Authorization": headers["Authorization"].replace(headers["X-Amz-Date"][:8], stale[:8]),
    }
    status, out, _body = headers_only(strict, "POST", "/", headers, b"x" * 1024)
    assert (status, out["X-Amzn-ErrorType"]) == (403, "InvalidSignatureException")


def test_a_declared_oversize_body_is_refused_unread(strict):
    headers = signed(strict, "POST", "/", b"{}", {"Content-Type": JSON_11, "X-Amz-Target": "SageMaker.ListModels"})
    headers["Content-Length"] = str(MAX_DOCUMENT_BODY + 1)
    status, out, body = headers_only(strict, "POST", "/", {**headers, "Expect": "100-continue"})
    assert (status, out["X-Amzn-ErrorType"]) == (413, "RequestEntityTooLarge")
    # The query protocol too, in its XML.
    headers = signed(
        strict,
        "POST",
        "/",
        b"Action=GetCallerIdentity&Version=2011-06-15",
        {"Content-Type": "application/x-www-form-urlencoded"},
        service="sts",
    )
    headers["Content-Length"] = str(MAX_DOCUMENT_BODY + 1)
    status, _, body = headers_only(strict, "POST", "/", {**headers, "Expect": "100-continue"})
    assert status == 413 and b"<Code>RequestEntityTooLarge</Code>" in body


def test_an_undeclared_oversize_body_stops_at_the_cap(strict):
    """Chunked, with no length up front: read until the cap is crossed, then refused."""
    headers = signed(strict, "POST", "/", b"{}", {"Content-Type": JSON_11, "X-Amz-Target": "SageMaker.ListModels"})
    headers.pop("Content-Length", None)
    conn = http.client.HTTPConnection("127.0.0.1", strict.port, timeout=30)
    piece = b" " * (1 << 20)
    conn.request(
        "POST",
        "/",
        body=(piece for _ in range(MAX_DOCUMENT_BODY // len(piece) + 2)),
        headers=headers,
        encode_chunked=True,
    )
    response = conn.getresponse()
    assert (response.status, response.headers["X-Amzn-ErrorType"]) == (413, "RequestEntityTooLarge")
    conn.close()


def test_invoke_endpoint_payload_over_6_mb_is_a_413(as_alice):
    runtime = as_alice("sagemaker-runtime")
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(
            EndpointName="no-such-endpoint", Body=b"1" * (MAX_INVOKE_BODY + 1), ContentType="text/csv"
        )
    response = err.value.response
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == ("ValidationError", 413)
    assert str(MAX_INVOKE_BODY) in response["Error"]["Message"]
    # Just under the cap, the payload is read and the request gets as far as the endpoint lookup.
    with pytest.raises(ClientError) as err:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", Body=b"1" * 1024, ContentType="text/csv")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] != 413


def test_s3_put_over_5_gib_is_refused_unread(as_alice, strict, unique):
    s3 = as_alice("s3")
    bucket = unique("sec-put").lower()
    s3.create_bucket(Bucket=bucket)
    headers = signed(
        strict, "PUT", f"/{bucket}/big", b"", service="s3", headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    )
    headers.update({"Content-Length": str((5 << 30) + 1), "Expect": "100-continue"})
    status, _, body = headers_only(strict, "PUT", f"/{bucket}/big", headers)
    assert status == 400 and b"<Code>EntityTooLarge</Code>" in body


# ---------------------------------------------------------------------------
# 3. Documents: depth, NaN, encodings


def cbor_client(made):
    """A CloudWatch client speaking Smithy RPC v2 CBOR both ways (as in tests/test_cloudwatch.py)."""
    made._serializer = botocore.serialize.create_serializer("smithy-rpc-v2-cbor", True)

    class Parsers:
        @staticmethod
        def create_parser(_protocol):
            return botocore.parsers.create_parser("smithy-rpc-v2-cbor")

    made._endpoint._response_parser_factory = Parsers()
    return made


def post_json(srv, target, body: bytes, service="sagemaker"):
    headers = signed(srv, "POST", "/", body, {"Content-Type": JSON_11, "X-Amz-Target": target}, service=service)
    return send("POST", srv.url + "/", headers, body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"Resource": "TrainingJob", "SearchExpression": ' + b'{"SubExpressions": [' * 5000 + b"]}" * 5000 + b"}",
        b"[" * 10_000 + b"]" * 10_000,
        b'{"MaxResults": NaN}',
        b'{"MaxResults": Infinity}',
        b'{"MaxResults": -Infinity}',
        b'{"MaxResults": 1e400}',
    ],
    ids=["deep search", "deep arrays", "NaN", "Infinity", "-Infinity", "1e400"],
)
def test_deep_and_non_finite_json_is_a_serialization_error(strict, body):
    assert error_code(post_json(strict, "SageMaker.Search", body)) == (400, "SerializationException")


def test_nesting_up_to_the_limit_is_parsed(strict):
    body = b'{"NameContains": "a", "x": ' + b"[" * (MAX_DEPTH - 2) + b"]" * (MAX_DEPTH - 2) + b"}"
    status, _, _ = post_json(strict, "SageMaker.ListModels", body)
    assert status == 200


def test_non_finite_metric_values_are_refused_by_every_protocol(as_alice):
    cw = as_alice("cloudwatch")
    for value in (math.nan, math.inf):
        with pytest.raises(ClientError) as err:
            cw.put_metric_data(Namespace="Sec", MetricData=[{"MetricName": "m", "Value": value}])
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    cbor = cbor_client(as_alice("cloudwatch"))
    with pytest.raises(ClientError) as err:
        cbor.put_metric_data(Namespace="Sec", MetricData=[{"MetricName": "m", "Value": math.nan}])
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert cw.list_metrics(Namespace="Sec")["Metrics"] == []


def test_metric_values_beyond_cloudwatchs_range_are_refused(as_alice):
    """CloudWatch takes values in [-2^360, 2^360]: a larger one (or a count, or a statistic set's member) is an
    InvalidParameterValue, never a server error, and nothing is kept."""
    cw = as_alice("cloudwatch")
    huge = 1e308
    for datum in (
        {"Value": huge},
        {"Value": -(2.0**361)},
        {"Values": [1.0, huge]},
        {"Values": [2.0**300], "Counts": [huge]},
        {"StatisticValues": {"SampleCount": 2, "Sum": huge, "Minimum": 1.0, "Maximum": huge}},
    ):
        with pytest.raises(ClientError) as err:
            cw.put_metric_data(Namespace="SecRange", MetricData=[{"MetricName": "m", **datum}])
        assert err.value.response["Error"]["Code"] == "InvalidParameterValue", datum
    assert cw.list_metrics(Namespace="SecRange")["Metrics"] == []
    # The bound itself is a value like any other, and its percentiles are answered.
    cw.put_metric_data(Namespace="SecRange", MetricData=[{"MetricName": "m", "Values": [2.0**360, 1.0]}])
    stats = cw.get_metric_statistics(
        Namespace="SecRange",
        MetricName="m",
        StartTime=time.time() - 600,
        EndTime=time.time() + 600,
        Period=60,
        ExtendedStatistics=["p99"],
    )["Datapoints"]
    assert 0.9 * 2.0**360 <= stats[0]["ExtendedStatistics"]["p99"] <= 2.0**360


def test_an_edge_heartbeat_with_the_largest_metric_values_is_kept(as_alice, unique):
    """A device's metrics go to CloudWatch's percentile buckets however large (CloudWatch's own range does not
    bind the edge data plane): the heartbeat is answered, and the percentile is a number."""
    sm, edge, cw = as_alice("sagemaker"), as_alice("sagemaker-edge"), as_alice("cloudwatch")
    fleet = unique("huge-fleet")
    bucket = unique("huge-fleet")
    as_alice("s3").create_bucket(Bucket=bucket)
    sm.create_device_fleet(DeviceFleetName=fleet, OutputConfig={"S3OutputLocation": f"s3://{bucket}/f"})
    sm.register_devices(DeviceFleetName=fleet, Devices=[{"DeviceName": "d1"}])
    metrics = [{"MetricName": "large", "Value": value} for value in (sys.float_info.max, -sys.float_info.max, 5e-324)]
    edge.send_heartbeat(AgentVersion="1.0", DeviceName="d1", DeviceFleetName=fleet, AgentMetrics=metrics)
    assert sm.describe_device(DeviceFleetName=fleet, DeviceName="d1")["AgentVersion"] == "1.0"

    def p50():
        points = cw.get_metric_statistics(
            Namespace="/aws/sagemaker/EdgeDevices",
            MetricName="large",
            Dimensions=[{"Name": "DeviceFleetName", "Value": fleet}, {"Name": "DeviceName", "Value": "d1"}],
            StartTime=time.time() - 600,
            EndTime=time.time() + 600,
            Period=60,
            ExtendedStatistics=["p50"],
        )["Datapoints"]
        return points and points[0]["ExtendedStatistics"]

    assert math.isfinite(wait_for(p50, timeout=60, what="the heartbeat's metric")["p50"])


def test_deep_cbor_is_refused(strict):
    body = cbor2.dumps({"Namespace": "Sec", "MetricData": [{"MetricName": "m", "Dimensions": [[[[["x"]]]]]}]})
    deep = body[:-1] + b"\x81" * (MAX_DEPTH + 5) + b"\x01"  # the last member's value, nested past the limit
    headers = signed(
        strict,
        "POST",
        CBOR_PATH + "PutMetricData",
        deep,
        service="monitoring",
        headers={"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor", "Accept": "application/cbor"},
    )
    status, _, answer = send("POST", strict.url + CBOR_PATH + "PutMetricData", headers, deep)
    assert status == 400 and cbor2.loads(answer)["__type"] == "SerializationException"


def test_a_bad_form_encoding_is_a_query_error(strict):
    body = b"Action=GetCallerIdentity&Version=2011-06-15&X=\xff\xfe"
    headers = signed(strict, "POST", "/", body, {"Content-Type": "application/x-www-form-urlencoded"}, service="sts")
    status, out, answer = send("POST", strict.url + "/", headers, body)
    assert status == 400 and out["Content-Type"] == "text/xml"
    assert b"<Code>MalformedQueryString</Code>" in answer


def test_cloudwatch_query_refusals_are_query_errors(strict):
    """boto3 1.35 speaks query to CloudWatch: a refused signature must be an error it can parse."""
    body = b"Action=ListMetrics&Version=2010-08-01"
    headers = signed(
        strict,
        "POST",
        "/",
        body,
        {"Content-Type": "application/x-www-form-urlencoded"},
        service="monitoring",
        who=SimpleNamespace(key=ALICE.key, secret="not-the-secret"),
    )
    status, out, answer = send("POST", strict.url + "/", headers, body)
    assert status == 403 and out["Content-Type"] == "text/xml"
    assert b"<Code>SignatureDoesNotMatch</Code>" in answer


def test_invalid_xml_is_malformed_xml_on_s3(strict, unique):
    bucket = unique("sec-xml").lower()
    body = b"<CreateBucketConfiguration><LocationConstraint>"
    headers = signed(strict, "PUT", f"/{bucket}", body, service="s3")
    status, _, answer = send("PUT", strict.url + f"/{bucket}", headers, body)
    assert status == 400 and b"<Code>MalformedXML</Code>" in answer


def test_non_finite_numbers_are_never_written():
    shape = operation_model("cloudwatch", "GetMetricStatistics").output_shape
    body = json.loads(
        json_body({"Label": "m", "Datapoints": [{"Average": math.nan, "Sum": 2.0}, {"Maximum": math.inf}]}, shape)
    )
    assert body == {"Label": "m", "Datapoints": [{"Sum": 2.0}, {}]}


# ---------------------------------------------------------------------------
# 4. What a signature must cover


def test_an_unsigned_x_amz_target_is_refused(strict):
    """Signed as ListModels' body with no target, then any operation named: the signature still matches."""
    headers = signed(
        strict, "POST", "/", b"{}", {"Content-Type": JSON_11}, add_after={"X-Amz-Target": "SageMaker.DeleteModel"}
    )
    status, out, body = send("POST", strict.url + "/", headers, b"{}")
    assert (status, out["X-Amzn-ErrorType"]) == (403, "InvalidSignatureException")
    assert "x-amz-target" in json.loads(body)["Message"]


def test_unsigned_cbor_protocol_headers_are_refused(strict):
    body = cbor2.dumps({"Namespace": "Sec"})
    path = CBOR_PATH + "ListMetrics"
    headers = signed(
        strict,
        "POST",
        path,
        body,
        service="monitoring",
        add_after={"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor"},
    )
    status, _, answer = send("POST", strict.url + path, headers, body)
    assert status == 403 and "smithy-protocol" in cbor2.loads(answer)["message"]
    # Signed properly, the same request is served.
    headers = signed(
        strict,
        "POST",
        path,
        body,
        service="monitoring",
        headers={"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor"},
    )
    assert send("POST", strict.url + path, headers, body)[0] == 200


@pytest.mark.parametrize(
    "signed_for,target",
    [
        ("iam", "SageMaker.ListModels"),
        ("logs", "SageMaker.ListModels"),
        ("cloudwatch", "GraniteServiceVersion20100801.ListMetrics"),
        ("sagemaker", "Logs_20140328.DescribeLogGroups"),
    ],
)
def test_a_signature_for_another_service_is_refused(strict, signed_for, target):
    status, out, body = post_json(strict, target, b"{}", service=signed_for)
    assert (status, out["X-Amzn-ErrorType"]) == (403, "InvalidSignatureException")
    assert "Credential should be scoped to correct service" in json.loads(body)["Message"]


def test_s3_checks_the_signing_service_too(strict):
    """A bucket host reached with a SageMaker signature."""
    headers = signed(
        strict, "GET", "/", b"", service="sagemaker", headers={"Host": f"somebucket.localhost:{strict.port}"}
    )
    status, _, body = send("GET", strict.url + "/", headers)
    assert status == 400 and b"<Code>AuthorizationHeaderMalformed</Code>" in body


def test_real_clients_sign_what_is_required(as_alice):
    """Each SDK client signs its target, protocol headers and its own service: all are served."""
    assert as_alice("sts").get_caller_identity()["Account"] == ALICE.account
    assert "Models" in as_alice("sagemaker").list_models()
    assert "Metrics" in as_alice("cloudwatch").list_metrics(Namespace="Sec")
    cbor = cbor_client(as_alice("cloudwatch"))
    cbor.put_metric_data(Namespace="SecOk", MetricData=[{"MetricName": "m", "Value": 1.0}])
    assert as_alice("logs").describe_log_groups(limit=1)["logGroups"] is not None


@pytest.mark.parametrize(
    "request_args,expected",
    [
        (
            (
                "POST",
                "/",
                {"Content-Type": "application/x-www-form-urlencoded"},
                b"Action=GetCallerIdentity&Version=2011-06-15",
            ),
            (403, b"<Code>MissingAuthenticationToken</Code>"),
        ),
        (("GET", "/?Action=ListRoles&Version=2010-05-08", {}, b""), (403, b"<Code>MissingAuthenticationToken</Code>")),
        (("GET", "/some-bucket", {}, b""), (403, b"<Code>AccessDenied</Code>")),
    ],
)
def test_unsigned_requests_are_refused_in_their_protocols_words(strict, request_args, expected):
    method, path, headers, body = request_args
    status, _, answer = send(method, strict.url + path, headers, body)
    assert status == expected[0] and expected[1] in answer, answer


def test_a_deep_json_string_member_is_a_400(as_alice, unique):
    """Documents carried inside a string member (resource policies) are parsed by the service: still no 500."""
    sm = as_alice("sagemaker")
    group = unique("secpolicy")
    sm.create_model_package_group(ModelPackageGroupName=group)
    with pytest.raises(ClientError) as err:
        sm.put_model_package_group_policy(ModelPackageGroupName=group, ResourcePolicy="[" * 5000 + "]" * 5000)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
