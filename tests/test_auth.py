"""Accounts and strict SigV4 authentication.

Through a real strict server: signed requests get in as their key's account, forged,
unknown, unsigned, skewed, expired and tampered ones are refused with AWS's errors, and
one account never sees another's resources. Unit tests feed the verifier AWS's own
published test vectors and requests signed by botocore for every protocol we serve.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import hmac
import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlsplit

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from selfmaker.server.auth import OpenAuthenticator, signing_scope
from selfmaker.server.credentials import load_credentials
from selfmaker.server.errors import AWSError
from selfmaker.server.http import Request
from selfmaker.server.sigv4 import ChunkVerifier, StrictAuthenticator, signing_key
from support.clients import make_client

REGION = "us-east-1"
A = SimpleNamespace(key="AKIAACCOUNTA00000001", secret="secret-of-a/+x", account="111111111111")
A2 = SimpleNamespace(key="AKIAACCOUNTA00000002", secret="another-secret-of-a", account="111111111111")
B = SimpleNamespace(key="AKIAACCOUNTB00000001", secret="secret-of-b", account="222222222222")
ROLE = "arn:aws:iam::{account}:role/SageMakerRole"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
FORGED = "The request signature we calculated does not match the signature you provided"

CREDENTIALS = f"""\
# Account A: two keys, one named user
[{A.key}]
secret_access_key = {A.secret}
account_id = {A.account}
user_name = alice

[{A2.key}]
secret_access_key = {A2.secret}
account_id = {A2.account}

# Account B
[{B.key}]
secret_access_key = {B.secret}
account_id = {B.account}
"""


@pytest.fixture(scope="module")
def credentials_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "credentials.ini"
    path.write_text(CREDENTIALS)
    return path


@pytest.fixture(scope="module")
def strict(make_server, credentials_file):
    return make_server("strict", ["--auth", "strict", "--credentials-file", str(credentials_file)]).start()


@pytest.fixture
def as_(client, strict):
    """as_(A, "sagemaker") -> a boto3 client of that identity on the strict server."""

    def make(who, service="sagemaker", secret=None, **config):
        return client(service, srv=strict, access_key=who.key, secret_key=secret or who.secret, **config)

    return make


def error_of(call) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as err:
        call()
    response = err.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def make_model(sm, name, account):
    return sm.create_model(
        ModelName=name, ExecutionRoleArn=ROLE.format(account=account), PrimaryContainer={"Image": IMAGE}
    )["ModelArn"]


def send(method, url, headers, body=b""):
    """A raw HTTP request: (status, headers, body), errors included."""
    request = urllib.request.Request(url, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def signed_json(srv, who, target, body, secret=None):
    """A SigV4-signed JSON 1.1 request, as botocore would send it; the caller may tamper with it."""
    request = AWSRequest(
        "POST", srv.url + "/", data=body, headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
    )
    SigV4Auth(Credentials(who.key, secret or who.secret), "sagemaker", REGION).add_auth(request)
    return dict(request.headers.items()), body


# ---------------------------------------------------------------------------
# Who gets in


def test_a_signed_request_acts_as_its_keys_account(as_, unique):
    sm = as_(A)
    name = unique("mine")
    arn = make_model(sm, name, A.account)
    assert arn == f"arn:aws:sagemaker:{REGION}:{A.account}:model/{name.lower()}"
    assert sm.describe_model(ModelName=name)["ModelArn"] == arn
    # Another key of the same account sees the same resources.
    assert as_(A2).describe_model(ModelName=name)["ModelArn"] == arn


def test_sts_reports_each_keys_account(as_):
    assert as_(A, "sts").get_caller_identity()["Account"] == A.account
    assert as_(A2, "sts").get_caller_identity()["Account"] == A.account
    assert as_(B, "sts").get_caller_identity()["Account"] == B.account


def test_a_wrong_secret_is_a_forged_signature(as_):
    code, status, message = error_of(lambda: as_(A, secret="not-the-secret").list_models())
    assert (code, status) == ("InvalidSignatureException", 403)
    assert message.startswith(FORGED) and "The String-to-Sign should have been" in message
    assert error_of(lambda: as_(A, "sts", secret="nope").get_caller_identity())[:2] == ("SignatureDoesNotMatch", 403)


def test_an_unknown_access_key_is_refused(client, strict):
    nobody = SimpleNamespace(key="AKIANOBODY0000000000", secret="whatever")
    code, status, message = error_of(
        lambda: client("sagemaker", srv=strict, access_key=nobody.key, secret_key=nobody.secret).list_models()
    )
    assert (code, status, message) == (
        "UnrecognizedClientException",
        400,
        "The security token included in the request is invalid.",
    )
    sts = client("sts", srv=strict, access_key=nobody.key, secret_key=nobody.secret)
    assert error_of(sts.get_caller_identity)[:2] == ("InvalidClientTokenId", 403)


def test_session_tokens_are_refused(strict):
    sm = make_client(
        "sagemaker", strict.url, access_key=A.key, secret_key=A.secret, session_token="FwoGZXIvYXdzEXAMPLE"
    )
    code, status, message = error_of(sm.list_models)
    assert (code, status) == ("UnrecognizedClientException", 400)
    assert "no session tokens" in message


def test_an_unsigned_request_is_refused(strict):
    status, headers, body = send(
        "POST",
        strict.url + "/",
        {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.ListModels"},
        b"{}",
    )
    assert status == 403
    assert headers["X-Amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert json.loads(body)["Message"] == "Missing Authentication Token"
    # rest-json services too (the runtime's InvokeEndpoint).
    status, headers, _ = send("POST", strict.url + "/endpoints/ep/invocations", {"Content-Type": "text/csv"}, b"1,2")
    assert (status, headers["X-Amzn-ErrorType"]) == (403, "MissingAuthenticationTokenException")


def test_the_health_check_needs_no_signature(strict):
    status, _, body = send("GET", strict.url + "/_selfmaker/health", {})
    assert status == 200 and json.loads(body)["auth"] == "strict"


@pytest.mark.parametrize("minutes,wording", [(-20, "Signature expired"), (20, "Signature not yet current")])
def test_a_request_signed_20_minutes_off_is_refused(as_, minutes, wording):
    sm = as_(A)
    with signed_in_the_past(minutes=-minutes):
        code, status, message = error_of(sm.list_models)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert message.startswith(wording)


def test_a_request_changed_after_signing_is_refused(strict):
    headers, body = signed_json(strict, A, "SageMaker.ListModels", b"{}")
    assert send("POST", strict.url + "/", headers, body)[0] == 200  # as signed: accepted
    # Another operation under the same signature.
    status, out, _ = send("POST", strict.url + "/", {**headers, "X-Amz-Target": "SageMaker.ListExperiments"}, body)
    assert (status, out["X-Amzn-ErrorType"]) == (403, "InvalidSignatureException")
    # Another body under the same signature.
    status, out, _ = send("POST", strict.url + "/", headers, b'{"MaxResults": 1}')
    assert (status, out["X-Amzn-ErrorType"]) == (403, "InvalidSignatureException")
    # The same signature replayed under another access key of the file.
    forged = {**headers, "Authorization": headers["Authorization"].replace(A.key, B.key)}
    status, out, _ = send("POST", strict.url + "/", forged, body)
    assert (status, out["X-Amzn-ErrorType"]) == (403, "InvalidSignatureException")


def test_a_malformed_authorization_header_is_an_incomplete_signature(strict):
    headers, body = signed_json(strict, A, "SageMaker.ListModels", b"{}")
    broken = {**headers, "Authorization": headers["Authorization"].split(", Signature=")[0]}
    status, out, payload = send("POST", strict.url + "/", broken, body)
    assert (status, out["X-Amzn-ErrorType"]) == (400, "IncompleteSignatureException")
    assert "requires 'Signature' parameter" in json.loads(payload)["Message"]


@contextlib.contextmanager
def signed_in_the_past(minutes: int):
    """botocore signs as if its clock were ``minutes`` behind: an expired URL without waiting."""
    real = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda *a, **k: real(*a, **k) - dt.timedelta(minutes=minutes)
    try:
        yield
    finally:
        botocore.auth.get_current_datetime = real


def test_presigned_sts_url_works_until_it_expires(as_, strict):
    sts = as_(B, "sts")
    url = sts.generate_presigned_url("get_caller_identity", ExpiresIn=60)
    # botocore presigns the operation's own method, POST; the method is part of what is signed.
    status, _, body = send("POST", url, {})
    assert status == 200 and f"<Account>{B.account}</Account>" in body.decode()
    status, _, body = send("GET", url, {})
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body

    with signed_in_the_past(minutes=2):
        expired = sts.generate_presigned_url("get_caller_identity", ExpiresIn=60)
    status, _, body = send("POST", expired, {})
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body and b"Signature expired" in body


# ---------------------------------------------------------------------------
# Accounts do not see each other


def test_accounts_are_isolated(as_, unique):
    a, b = as_(A), as_(B)
    name = unique("shared-name")
    a_arn = make_model(a, name, A.account)
    a_experiment = a.create_experiment(ExperimentName=name, Tags=[{"Key": "owner", "Value": "a"}])["ExperimentArn"]
    a_group = a.create_model_package_group(ModelPackageGroupName=name)["ModelPackageGroupArn"]

    # B can neither describe (by name or by A's ARN), list, tag, read tags of, nor delete A's resources.
    code, _, message = error_of(lambda: b.describe_model(ModelName=name))
    assert code == "ValidationException" and message.startswith("Could not find model")
    assert error_of(lambda: b.describe_experiment(ExperimentName=name))[0] == "ResourceNotFound"
    code, _, message = error_of(lambda: b.describe_model_package_group(ModelPackageGroupName=name))
    assert code == "ValidationException" and "does not exist" in message
    # By ARN, another account's group is reachable only where its resource policy allows; A's has none.
    code, _, message = error_of(lambda: b.describe_model_package_group(ModelPackageGroupName=a_group))
    assert code == "AccessDeniedException" and B.account in message
    assert b.list_models(NameContains=name)["Models"] == []
    assert name not in [e["ExperimentName"] for e in b.list_experiments()["ExperimentSummaries"]]
    for arn in (a_arn, a_experiment, a_group):
        assert error_of(lambda: b.add_tags(ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}]))[0] == "ResourceNotFound"
        assert error_of(lambda: b.list_tags(ResourceArn=arn))[0] == "ResourceNotFound"
        assert error_of(lambda: b.delete_tags(ResourceArn=arn, TagKeys=["owner"]))[0] == "ResourceNotFound"
    assert error_of(lambda: b.delete_model(ModelName=name))[0] == "ValidationException"
    found = b.search(
        Resource="Experiment",
        SearchExpression={"Filters": [{"Name": "ExperimentName", "Operator": "Equals", "Value": name}]},
    )["Results"]
    assert found == []

    # B may use the same name for its own resources, which live under B's account.
    b_arn = make_model(b, name, B.account)
    assert b_arn == a_arn.replace(A.account, B.account)
    assert b.create_experiment(ExperimentName=name)["ExperimentArn"] == a_experiment.replace(A.account, B.account)
    assert b.create_model_package_group(ModelPackageGroupName=name)["ModelPackageGroupArn"] == a_group.replace(
        A.account, B.account
    )

    # And A's are untouched.
    assert a.describe_model(ModelName=name)["ExecutionRoleArn"] == ROLE.format(account=A.account)
    assert a.list_tags(ResourceArn=a_experiment)["Tags"] == [{"Key": "owner", "Value": "a"}]
    assert [m["ModelArn"] for m in a.list_models(NameContains=name)["Models"]] == [a_arn]


# ---------------------------------------------------------------------------
# S3 presigned URLs through the server (needs the S3 endpoint)


@pytest.fixture
def s3_object(as_, unique):
    s3 = as_(A, "s3", signature_version="s3v4")
    bucket = unique("presign").lower()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="dir/a file+1.txt", Body=b"hello")
    return s3, bucket, "dir/a file+1.txt"


def test_s3_presigned_get_works_within_expiry(s3_object):
    s3, bucket, key = s3_object
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
    assert send("GET", url, {})[::2] == (200, b"hello")


def test_s3_presigned_get_is_refused_after_expiry(s3_object):
    s3, bucket, key = s3_object
    with signed_in_the_past(minutes=2):
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
    status, _, body = send("GET", url, {})
    assert status == 403 and b"<Code>AccessDenied</Code>" in body and b"Request has expired" in body


def test_s3_tampered_presigned_url_is_refused(s3_object):
    s3, bucket, key = s3_object
    s3.put_object(Bucket=bucket, Key="other", Body=b"secret")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
    status, _, body = send("GET", url.replace("/dir/a%20file%2B1.txt?", "/other?"), {})
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in body


def chunk_signed_upload(srv, who, path: str, chunks: list[bytes]) -> tuple[dict, bytes]:
    """A PUT with an aws-chunked body signed chunk by chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD).

    botocore never sends these (other SDKs do), so the chunks are signed here, from the spec.
    """
    request = AWSRequest(
        "PUT",
        srv.url + path,
        headers={
            "Content-Encoding": "aws-chunked",
            "X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "X-Amz-Decoded-Content-Length": str(sum(map(len, chunks))),
        },
    )
    SigV4Auth(Credentials(who.key, who.secret), "s3", REGION).add_auth(request)
    amz_date, previous = request.headers["X-Amz-Date"], request.headers["Authorization"].rsplit("=", 1)[1]
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    key = f"AWS4{who.secret}".encode()
    for part in (amz_date[:8], REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    body = b""
    for chunk in [*chunks, b""]:
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                amz_date,
                scope,
                previous,
                hashlib.sha256(b"").hexdigest(),
                hashlib.sha256(chunk).hexdigest(),
            ]
        )
        previous = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        body += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
    return dict(request.headers.items()), body


def test_s3_chunk_signed_upload_is_verified_chunk_by_chunk(s3_object, strict):
    s3, bucket, _ = s3_object
    chunks = [b"a" * 70000, b"b" * 1000]
    headers, body = chunk_signed_upload(strict, A, f"/{bucket}/chunked", chunks)
    assert send("PUT", strict.url + f"/{bucket}/chunked", headers, body)[0] == 200
    assert s3.get_object(Bucket=bucket, Key="chunked")["Body"].read() == b"".join(chunks)

    headers, body = chunk_signed_upload(strict, A, f"/{bucket}/tampered", chunks)
    status, _, answer = send("PUT", strict.url + f"/{bucket}/tampered", headers, body.replace(b"bbbb", b"bbbc", 1))
    assert status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in answer
    assert error_of(lambda: s3.head_object(Bucket=bucket, Key="tampered"))[1] == 404


# ---------------------------------------------------------------------------
# The verifier itself: AWS's published vectors and botocore-signed requests


def asgi_request(method: str, url: str, headers: dict, body: bytes = b"") -> Request:
    parts = urlsplit(url)
    raw = [
        (k.lower().encode("latin-1"), (v.decode() if isinstance(v, bytes) else v).encode("latin-1"))
        for k, v in headers.items()
    ]
    if not any(k == b"host" for k, _ in raw):
        raw.append((b"host", parts.netloc.encode()))
    scope = {
        "type": "http",
        "method": method,
        "path": unquote(parts.path),
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        "headers": raw,
    }
    request = Request(scope, None)
    request._body = body
    return request


@functools.lru_cache(maxsize=1)
def _unit_credentials() -> Path:
    path = Path(tempfile.mkdtemp(prefix="selfmaker-auth-")) / "credentials"
    path.write_text(CREDENTIALS + AWS_EXAMPLE_KEYS)
    return path


def url_of(request: Request, path: str | None = None) -> str:
    return f"http://{request.headers['host']}{path or request.raw_path}?{request.raw_query}"


def verifier(clock: dt.datetime | None = None) -> StrictAuthenticator:
    """A strict authenticator over A, A2, B and AWS's example keys; ``clock`` (UTC) fixes its time."""
    settings = SimpleNamespace(credentials_file=_unit_credentials())
    if clock is None:
        return StrictAuthenticator(settings)
    moment = clock.replace(tzinfo=dt.UTC).timestamp()
    return StrictAuthenticator(settings, clock=lambda: moment)


AWS_EXAMPLE_KEYS = """
[AKIDEXAMPLE]
secret_access_key = wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
account_id = 333333333333

[AKIAIOSFODNN7EXAMPLE]
secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
account_id = 444444444444
"""


def refusal(call) -> AWSError:
    with pytest.raises(AWSError) as err:
        call()
    return err.value


def test_aws_signature_test_suite_vectors():
    """get-vanilla and post-vanilla from AWS's SigV4 test suite."""
    auth = verifier(dt.datetime(2015, 8, 30, 12, 36))
    scope = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date"
    for method, signature in [
        ("GET", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ("POST", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ]:
        request = asgi_request(
            method,
            "https://example.amazonaws.com/",
            {"X-Amz-Date": "20150830T123600Z", "Authorization": f"AWS4-HMAC-SHA256 {scope}, Signature={signature}"},
        )
        principal = auth.authenticate(request, signing_scope(request), hashlib.sha256(b"").hexdigest())
        assert (principal.account_id, principal.region) == ("333333333333", "us-east-1")
        request.scope["method"] = request.method = "PUT"
        assert (
            refusal(lambda: auth.authenticate(request, None, hashlib.sha256(b"").hexdigest(), service="sagemaker")).code
            == "InvalidSignatureException"
        )


def test_aws_s3_documentation_vectors():
    """The GET-object and presigned-URL examples of the S3 SigV4 documentation."""
    auth = verifier(dt.datetime(2013, 5, 24, 0, 5))
    get = asgi_request(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        {
            "Range": "bytes=0-9",
            "x-amz-content-sha256": hashlib.sha256(b"").hexdigest(),
            "x-amz-date": "20130524T000000Z",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        },
    )
    assert auth.authenticate(get, signing_scope(get), get.headers["x-amz-content-sha256"]).account_id == "444444444444"
    presigned = asgi_request(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
        {},
    )
    assert auth.authenticate(presigned, signing_scope(presigned), None).account_id == "444444444444"
    # A day and a second later, the URL has expired.
    late = verifier(dt.datetime(2013, 5, 25, 0, 0, 1))
    err = refusal(lambda: late.authenticate(presigned, signing_scope(presigned), None))
    assert (err.code, err.status, err.message) == ("AccessDenied", 403, "Request has expired")
    assert err.fields["X-Amz-Expires"] == "86400"


def test_aws_streaming_upload_vectors():
    """The aws-chunked example of the S3 documentation: the seed signature, then each chunk's."""
    auth = verifier(dt.datetime(2013, 5, 24, 0, 0))
    put = asgi_request(
        "PUT",
        "https://s3.amazonaws.com/examplebucket/chunkObject.txt",
        {
            "x-amz-date": "20130524T000000Z",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": "66560",
            "content-length": "66824",
            "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class,"
            "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        },
    )
    chunks = [
        (b"a" * 65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
        (b"a" * 1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
        (b"", "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
    ]
    streaming = auth.authenticate(put, signing_scope(put), "STREAMING-AWS4-HMAC-SHA256-PAYLOAD").streaming
    for data, signature in chunks:
        streaming.chunk(data, signature)

    # A changed chunk, or chunks out of order, break the chain.
    tampered = auth.authenticate(put, signing_scope(put), "STREAMING-AWS4-HMAC-SHA256-PAYLOAD").streaming
    assert refusal(lambda: tampered.chunk(b"b" * 65536, chunks[0][1])).code == "SignatureDoesNotMatch"
    reordered = auth.authenticate(put, signing_scope(put), "STREAMING-AWS4-HMAC-SHA256-PAYLOAD").streaming
    assert refusal(lambda: reordered.chunk(*chunks[1])).status == 403

    # The trailer variant: chunks, then the signed trailing checksum.
    key = signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1", "s3")
    trailer = ChunkVerifier(
        key,
        "20130524T000000Z",
        "20130524/us-east-1/s3/aws4_request",
        "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
        "AKIAIOSFODNN7EXAMPLE",
    )
    for data, signature in [
        (b"a" * 65536, "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"),
        (b"a" * 1024, "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"),
        (b"", "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"),
    ]:
        trailer.chunk(data, signature)
    trailer.trailer(
        b"x-amz-checksum-crc32c:sOO8/Q==\n", "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
    )


class Captured(Exception):
    """Raised instead of sending: the request stays in the test."""


def botocore_request(service: str, call, who=A, **config) -> tuple[Request, str | None]:
    """What a boto3 client sends for ``call``, captured before it leaves, as the server would see it."""
    c = make_client(service, "http://localhost:7600", access_key=who.key, secret_key=who.secret, **config)
    sent = {}

    def capture(request, **kwargs):
        body = request.body.read() if hasattr(request.body, "read") else request.body or b""
        sent.update(
            method=request.method,
            url=request.url,
            headers=dict(request.headers.items()),
            body=body.encode() if isinstance(body, str) else body,
        )
        raise Captured

    c.meta.events.register("before-send", capture)
    with pytest.raises(Captured):
        call(c)
    request = asgi_request(sent["method"], sent["url"], sent["headers"], sent["body"])
    scope = signing_scope(request)
    payload = (
        request.headers.get("x-amz-content-sha256")
        if scope.service == "s3"
        else hashlib.sha256(sent["body"]).hexdigest()
    )
    return request, payload


BOTOCORE_CALLS = {
    "sagemaker ListModels": ("sagemaker", lambda c: c.list_models(NameContains="a b")),
    "runtime InvokeEndpoint, folded header": (
        "sagemaker-runtime",
        lambda c: c.invoke_endpoint(
            EndpointName="ep-1", Body=b"1,2", ContentType="text/csv", CustomAttributes="a   b\tc"
        ),
    ),
    "featurestore GetRecord, encoded path and repeated query": (
        "sagemaker-featurestore-runtime",
        lambda c: c.get_record(
            FeatureGroupName="fg a", RecordIdentifierValueAsString="a b+c/é", FeatureNames=["z", "x y"]
        ),
    ),
    "sts GetCallerIdentity": ("sts", lambda c: c.get_caller_identity()),
    "logs FilterLogEvents": ("logs", lambda c: c.filter_log_events(logGroupName="/aws/sagemaker/TrainingJobs")),
    "s3 PutObject with checksum headers": (
        "s3",
        lambda c: c.put_object(Bucket="b", Key="a b/c+d=é!(x)", Body=b"hello"),
    ),
    "s3 ListObjectsV2": ("s3", lambda c: c.list_objects_v2(Bucket="b", Prefix="a b+/é")),
    "s3 CreateMultipartUpload, dot segments": ("s3", lambda c: c.create_multipart_upload(Bucket="b", Key="k//x/../y")),
    "s3 DeleteObjects": ("s3", lambda c: c.delete_objects(Bucket="b", Delete={"Objects": [{"Key": "x"}]})),
}


@pytest.mark.parametrize("case", BOTOCORE_CALLS)
def test_requests_botocore_signs_are_verified(case):
    service, call = BOTOCORE_CALLS[case]
    request, payload = botocore_request(service, call)
    principal = verifier().authenticate(request, signing_scope(request), payload)
    assert (principal.account_id, principal.access_key, principal.user_name) == (A.account, A.key, "alice")

    signed = request.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "host" in signed
    # Any signed header changed, or the path, breaks the signature.
    auth = verifier()
    for name in signed:
        changed = asgi_request(request.method, url_of(request), {**request.headers, name: request.headers[name] + "x"})
        assert refusal(lambda: auth.authenticate(changed, signing_scope(changed), payload)).status in (400, 403)
    moved = asgi_request(request.method, url_of(request, "/elsewhere"), dict(request.headers))
    assert refusal(lambda: verifier().authenticate(moved, signing_scope(moved), payload)).status == 403


def test_s3_presigned_urls_made_by_botocore():
    s3 = make_client("s3", "http://localhost:7600", access_key=B.key, secret_key=B.secret, signature_version="s3v4")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "a b/c+d=é"}, ExpiresIn=60)
    request = asgi_request("GET", url, {})
    assert verifier().authenticate(request, signing_scope(request), None).account_id == B.account

    # Expired: the same URL a minute and a second later.
    later = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=62)
    err = refusal(lambda: verifier(later).authenticate(request, signing_scope(request), None))
    assert (err.code, err.message) == ("AccessDenied", "Request has expired")

    # Tampered: another key, another expiry, or another account's access key under the same signature.
    for old, new in [("/c%2Bd", "/c%2Be"), ("X-Amz-Expires=60", "X-Amz-Expires=600"), (B.key, A.key)]:
        forged = asgi_request("GET", url.replace(old, new), {})
        err = refusal(lambda: verifier().authenticate(forged, signing_scope(forged), None))
        assert (err.code, err.status) == ("SignatureDoesNotMatch", 403), old

    too_long = s3.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}, ExpiresIn=604801)
    request = asgi_request("GET", too_long, {})
    err = refusal(lambda: verifier().authenticate(request, signing_scope(request), None))
    assert (err.code, err.status) == ("AuthorizationQueryParametersError", 400)


def test_signature_version_2_is_refused_with_a_hint():
    """boto3's default S3 presigner still uses Signature Version 2: say so, and how to switch."""
    s3 = make_client("s3", "http://localhost:7600", access_key=A.key, secret_key=A.secret)
    request = asgi_request("GET", s3.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"}), {})
    assert "AWSAccessKeyId=" in request.raw_query
    err = refusal(lambda: verifier().authenticate(request, signing_scope(request), None))
    assert (err.code, err.status) == ("InvalidRequest", 400)
    assert "signature_version='s3v4'" in err.message


@pytest.mark.parametrize(
    "service,codes",
    [
        (
            "sagemaker",
            ["MissingAuthenticationTokenException", "UnrecognizedClientException", "IncompleteSignatureException"],
        ),
        ("sts", ["MissingAuthenticationToken", "InvalidClientTokenId", "IncompleteSignature"]),
        ("s3", ["AccessDenied", "InvalidAccessKeyId", "AuthorizationHeaderMalformed"]),
    ],
)
def test_each_protocol_refuses_in_its_own_words(service, codes):
    auth = verifier()
    request, payload = botocore_request(
        service,
        {
            "sagemaker": lambda c: c.list_models(),
            "sts": lambda c: c.get_caller_identity(),
            "s3": lambda c: c.list_buckets(),
        }[service],
    )
    headers = dict(request.headers)
    url = url_of(request)
    unsigned = asgi_request(request.method, url, {k: v for k, v in headers.items() if k != "authorization"})
    unknown = asgi_request(
        request.method,
        url,
        {**headers, "authorization": headers["authorization"].replace(A.key, "AKIAUNKNOWN000000000")},
    )
    malformed = asgi_request(
        request.method, url, {**headers, "authorization": headers["authorization"].replace("/aws4_request", "")}
    )
    got = [
        refusal(lambda: auth.authenticate(r, signing_scope(r), payload, service=service)).code
        for r in (unsigned, unknown, malformed)
    ]
    assert got == codes


def test_s3_specific_refusals():
    auth = verifier()
    request, payload = botocore_request("s3", lambda c: c.put_object(Bucket="b", Key="k", Body=b"x"))
    scope = signing_scope(request)
    # The payload hash header is required, and must be a digest or one of S3's markers.
    assert refusal(lambda: auth.authenticate(request, scope, None)).code == "InvalidRequest"
    assert refusal(lambda: auth.authenticate(request, scope, "not-a-hash")).code == "InvalidArgument"
    # An x-amz-* header the client did not sign could change what the request does.
    extra = asgi_request("PUT", url_of(request), {**request.headers, "x-amz-acl": "public-read"})
    err = refusal(lambda: auth.authenticate(extra, scope, payload))
    assert (err.code, err.fields["HeadersNotSigned"]) == ("AccessDenied", "x-amz-acl")
    # Skewed clocks get S3's own error.
    skewed = verifier(dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=16))
    assert refusal(lambda: skewed.authenticate(request, scope, payload)).code == "RequestTimeTooSkewed"


# ---------------------------------------------------------------------------
# The credentials file


@pytest.mark.parametrize(
    "text,problem",
    [
        ("[K1]\nsecret_access_key = s\naccount_id = 1\n", "account_id must be 12 digits"),
        (
            "[K1]\nsecret_access_key = s\naccount_id = 111111111111\n[K1]\nsecret_access_key = t\n"
            "account_id = 111111111111\n",
            "access key K1 is listed twice",
        ),
        ("[K1]\naccount_id = 111111111111\n", "lacks secret_access_key"),
        ("[K1]\nsecret_access_key = s\naccount_id = 111111111111\nregion = us-east-1\n", "unknown setting region"),
        ("[K/1]\nsecret_access_key = s\naccount_id = 111111111111\n", "access key may hold only"),
        ("# nothing yet\n", "lists no access keys"),
        ("secret_access_key = s\n", "not a valid credentials file"),
    ],
)
def test_a_bad_credentials_file_is_refused_with_a_clear_message(tmp_path, text, problem):
    path = tmp_path / "credentials"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem):
        load_credentials(path)


def test_a_strict_server_with_a_bad_credentials_file_does_not_start(tmp_path):
    path = tmp_path / "credentials"
    path.write_text("[K1]\nsecret_access_key = s\naccount_id = 12345\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "selfmaker.cli",
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--auth",
            "strict",
            "--credentials-file",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "account_id must be 12 digits" in result.stderr


def test_open_mode_maps_listed_keys_to_their_accounts(credentials_file):
    auth = OpenAuthenticator(
        SimpleNamespace(credentials_file=credentials_file, default_account="123456789012", region=REGION)
    )
    for who, account in [(B, B.account), (SimpleNamespace(key="anything", secret="x"), "123456789012")]:
        request, payload = botocore_request("sagemaker", lambda c: c.list_models(), who=who)
        # Signatures are not checked in open mode: a wrong one is fine.
        request.headers["authorization"] = request.headers["authorization"][:-4] + "0000"
        assert auth.authenticate(request, signing_scope(request), payload).account_id == account


def test_open_server_with_a_credentials_file(make_server, credentials_file):
    srv = make_server("open-accounts", ["--credentials-file", str(credentials_file)]).start()

    def account(key, secret):
        sts = make_client("sts", srv.url, access_key=key, secret_key=secret)
        return sts.get_caller_identity()["Account"]

    assert account(B.key, "not-checked") == B.account
    assert account("AKIAUNLISTED", "x") == "123456789012"
