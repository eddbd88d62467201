"""Bad input, generated from the botocore model for every implemented operation.

For each operation SelfMaker implements over a JSON protocol we derive a valid
minimal request from the input shape, then break it one way at a time: a
required member missing, a value of the wrong type, a string too long or too
short, an enum value that does not exist, a pattern violation, a number out of
range. Every answer must be a 400 with the right error code, the server must
stay up, and nothing may change in the store.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import urllib.request

import cbor2
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from selfmaker.server.limits import body_limit
from selfmaker.server.models import service_model
from selfmaker.server.operations import implemented, load_all
from selfmaker.server.validate import _compiled
from selfmaker.server.wire import rest_json_services

load_all()
CREDS = Credentials("AKIDEXAMPLE", "secret")
JSON_SERVICES = {
    "sagemaker": "SageMaker",
    "logs": "Logs_20140328",
    "sqs": "AmazonSQS",
    "athena": "AmazonAthena",
    "cloudwatch": "GraniteServiceVersion20100801",
    "servicecatalog": "AWS242ServiceCatalogService",
}


def _minimal(shape, depth=0):
    """The smallest value that satisfies a shape's constraints (None if the shape is too deep)."""
    kind = shape.type_name
    if depth > 6:
        return None
    if kind == "structure":
        out = {}
        for name in shape.required_members:
            value = _minimal(shape.members[name], depth + 1)
            if value is None:
                return None
            out[name] = value
        return out
    if kind == "list":
        item = _minimal(shape.member, depth + 1)
        return [item] * max(shape.metadata.get("min", 0), 1) if item is not None else None
    if kind == "map":
        return {}
    if kind == "string":
        if getattr(shape, "enum", None):
            return shape.enum[0]
        return _satisfying_string(shape)
    if kind in ("integer", "long"):
        return int(shape.metadata.get("min", 1))
    if kind in ("float", "double"):
        return float(shape.metadata.get("min", 1))
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return 1_700_000_000
    return None


_CANDIDATES = [
    "a",
    "abc",
    "x1",
    "arn:aws:sagemaker:us-east-1:123456789012:model/x",
    "arn:aws:iam::123456789012:role/SageMakerRole",
    "s3://bucket/key",
    "https://example.com/r.git",
    "1",
    "ml.m5.large",
    "Key1",
    "a-b",
    "aaaaaaaaaaaaaaaaaaaa",
]


def _satisfying_string(shape):
    low, high = shape.metadata.get("min", 1), shape.metadata.get("max", 10_000)
    pattern = shape.metadata.get("pattern")
    compiled = _compiled(pattern) if pattern else None
    for candidate in _CANDIDATES + ["a" * max(low, 1)]:
        if low <= len(candidate) <= high and (compiled is None or compiled.fullmatch(candidate)):
            return candidate
    return None


def _cases():
    """(service, operation, description, body, expected code) for every generated violation."""
    load_all()
    for service in JSON_SERVICES:
        model = service_model(service)
        for op_name in sorted(implemented(service)):
            shape = model.operation_model(op_name).input_shape
            if shape is None:
                continue
            required = shape.required_members
            base = {n: _minimal(shape.members[n]) for n in required}
            if any(v is None for v in base.values()):
                continue  # no generic valid value for a required member: covered by family tests
            if required:
                first = required[0]
                yield service, op_name, f"missing {first}", {k: v for k, v in base.items() if k != first}
            for name, member in shape.members.items():
                if member.serialization.get("location"):
                    continue
                for label, value in _violations(member):
                    body = {k: v for k, v in base.items() if v is not None}
                    body[name] = value
                    yield service, op_name, f"{name} {label}", body
                    break  # one violation per member keeps the suite fast


def _violations(shape):
    kind = shape.type_name
    meta = shape.metadata
    if kind == "string":
        if getattr(shape, "enum", None):
            yield "not in enum", "NotAnEnumValue-" + "x" * 3
        if meta.get("max") is not None and meta["max"] < 5000:
            yield "too long", "a" * (meta["max"] + 1)
        if meta.get("min", 0) > 1:
            yield "too short", "a"
        yield "wrong type", {"not": "a string"}
    elif kind in ("integer", "long"):
        if meta.get("max") is not None:
            yield "above max", int(meta["max"]) + 1
        if meta.get("min") is not None:
            yield "below min", int(meta["min"]) - 1
        yield "wrong type", "seven"
    elif kind == "list":
        yield "wrong type", "not-a-list"
    elif kind == "structure":
        yield "wrong type", ["not", "a", "structure"]
    elif kind == "boolean":
        yield "wrong type", "maybe"
    elif kind == "timestamp":
        yield "wrong type", "yesterday-ish"


CASES = list(_cases())


def _post(url: str, service: str, op: str, body) -> tuple[int, dict]:
    data = json.dumps(body).encode()
    request = AWSRequest(
        "POST",
        url + "/",
        data=data,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"{JSON_SERVICES[service]}.{op}"},
    )
    SigV4Auth(CREDS, "sagemaker" if service == "sagemaker" else service, "us-east-1").add_auth(request)
    req = urllib.request.Request(url + "/", data=data, headers=dict(request.headers), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _store_fingerprint(server) -> tuple:
    """Row counts of every table, read straight from the server's database."""
    from sqlalchemy import create_engine, func, select

    from selfmaker.store import schema
    from selfmaker.store.db import normalise_url

    url = server.database_url or f"sqlite:///{server.data_dir / 'metadata.db'}"
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            return tuple(
                conn.execute(select(func.count()).select_from(t)).scalar_one() for t in schema.metadata.sorted_tables
            )
    finally:
        engine.dispose()


def test_cases_cover_every_implemented_json_operation():
    covered = {(s, o) for s, o, _, _ in CASES}
    for service in JSON_SERVICES:
        for op in implemented(service):
            shape = service_model(service).operation_model(op).input_shape
            if (
                shape is not None
                and shape.members
                and all(_minimal(shape.members[n]) is not None for n in shape.required_members)
            ):
                assert (service, op) in covered, f"no bad-input case for {service}.{op}"


@pytest.mark.parametrize("service,op,what,body", CASES, ids=[f"{s}.{o}: {w}" for s, o, w, _ in CASES])
def test_bad_input_is_a_clean_400(server, service, op, what, body):
    before = _store_fingerprint(server)
    status, payload = _post(server.url, service, op, body)
    assert status == 400, (status, payload)
    code = payload.get("__type")
    assert code in (
        "ValidationException",
        "SerializationException",
        "InvalidParameterException",
        "InvalidRequestException",
    ), payload  # Athena reports validation as InvalidRequestException
    message = payload.get("Message") or payload.get("message") or ""
    member = what.split()[1] if what.startswith("missing") else what.split()[0]
    assert member[:1].lower() + member[1:] in message, message  # the message names the member
    assert _store_fingerprint(server) == before, "a rejected request changed the store"


def test_unknown_and_unimplemented_operations_are_400s(server):
    status, payload = _post(server.url, "sagemaker", "NoSuchOperation", {})
    assert status == 400 and payload["__type"] == "UnknownOperationException"
    unimplemented = sorted(set(service_model("sagemaker").operation_names) - implemented("sagemaker"))
    assert unimplemented, "every operation is implemented: pick another probe"
    status, payload = _post(server.url, "sagemaker", unimplemented[0], {})
    assert status == 400
    assert unimplemented[0] in payload["Message"]


def test_malformed_json_is_a_serialization_error(server):
    request = AWSRequest(
        "POST",
        server.url + "/",
        data=b"{not json",
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.ListModels"},
    )
    SigV4Auth(CREDS, "sagemaker", "us-east-1").add_auth(request)
    req = urllib.request.Request(server.url + "/", data=b"{not json", headers=dict(request.headers), method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    assert json.loads(err.value.read())["__type"] == "SerializationException"


# ---------------------------------------------------------------------------
# Hostile documents, sent to every implemented operation of every protocol (one request each): a
# document nested far too deep, NaN and infinities, a body larger than the protocol's cap (declared
# in Content-Length, never sent) and a body that is not in the protocol's encoding. Each must be
# refused as the client's fault: never a 500.

DEEP = 5_000
# The rest-json services the app routes by path.
REST_JSON_SERVICES = rest_json_services("sagemaker") + rest_json_services("athena")
CBOR_TARGET = "GraniteServiceVersion20100801"


def _signing_name(service: str) -> str:
    metadata = service_model(service).metadata
    return metadata.get("signingName") or metadata["endpointPrefix"]


def _rest_target(op) -> tuple[str, str]:
    uri = op.http["requestUri"].split("?", 1)[0]
    return op.http["method"], re.sub(r"\{[^}]+\}", "x", uri)


def _hostile_targets():
    """(protocol, service, operation) for every implemented operation, in each protocol it is served by."""
    for service in JSON_SERVICES:
        for op in sorted(implemented(service)):
            yield "json", service, op
    for op in sorted(implemented("cloudwatch")):
        yield "cbor", "cloudwatch", op
    for service in REST_JSON_SERVICES:
        if service_model(service).protocol != "rest-json":
            continue  # served over JSON 1.1 by this botocore: covered above
        for op in sorted(implemented(service)):
            yield "rest-json", service, op
    for service in ("sts", "iam"):
        for op in sorted(implemented(service)):
            yield "query", service, op


def _hostile_requests(protocol: str, service: str, op_name: str):
    """(label, method, path, headers, body) of each hostile request for one operation."""
    op = service_model(service).operation_model(op_name)
    members = list(op.input_shape.members) if op.input_shape is not None else []
    first = members[0] if members else "Anything"
    if protocol == "query":
        version = service_model(service).api_version
        base = f"Action={op_name}&Version={version}"
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        deep = f"{base}&{first}" + ".member.1" * DEEP + "=x"
        bodies = {
            "deep": deep.encode(),
            "nan": f"{base}&{first}=NaN&{members[-1] if members else 'X'}=Infinity".encode(),
            "encoding": base.encode() + b"&X=\xff\xfe",
        }
        return "POST", "/", headers, bodies
    if protocol == "cbor":
        headers = {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"}
        deep = b"\xa1" + cbor2.dumps(first) + b"\x81" * DEEP + b"\x01"
        bodies = {
            "deep": deep,
            "nan": cbor2.dumps({first: math.nan, "Value": math.inf}),
            "encoding": b"\xa1\x61a\x62\xff\xfe",
        }  # a text string that is not UTF-8
        return "POST", f"/service/{CBOR_TARGET}/operation/{op_name}", headers, bodies
    bodies = {
        "deep": b'{"%s": ' % first.encode() + b"[" * DEEP + b"]" * DEEP + b"}",
        "nan": b'{"%s": NaN, "x": Infinity, "y": -Infinity}' % first.encode(),
        "encoding": b'{"%s": "\xff\xfe"}' % first.encode(),
    }
    if protocol == "rest-json":
        method, path = _rest_target(op)
        return method, path, {"Content-Type": "application/json"}, bodies
    target = {**JSON_SERVICES}[service]
    return "POST", "/", {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"{target}.{op_name}"}, bodies


def _signed_headers(url, method, path, headers, body, service):
    request = AWSRequest(method, url + path, data=body, headers=headers)
    SigV4Auth(CREDS, _signing_name(service), "us-east-1").add_auth(request)
    return dict(request.headers.items())


def _send_raw(server, method, path, headers, body=b"", declared: int | None = None) -> tuple[int, bytes]:
    """One request on its own connection; ``declared``: a Content-Length whose body is never sent."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        sent = {k.lower(): v for k, v in headers.items()}
        sent["host"] = f"127.0.0.1:{server.port}"
        if declared is not None:
            sent.update({"content-length": str(declared), "expect": "100-continue"})
        else:
            sent["content-length"] = str(len(body))
        for name, value in sent.items():
            conn.putheader(name, value)
        conn.endheaders()
        if declared is None and body:
            conn.send(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


HOSTILE = list(_hostile_targets())


@pytest.mark.parametrize("protocol,service,op", HOSTILE, ids=[f"{p}:{s}.{o}" for p, s, o in HOSTILE])
def test_hostile_documents_are_never_a_500(server, protocol, service, op):
    method, path, headers, bodies = _hostile_requests(protocol, service, op)
    for label, body in bodies.items():
        signed = _signed_headers(server.url, method, path, headers, body, service)
        status, answer = _send_raw(server, method, path, signed, body)
        assert status < 500, (label, status, answer[:300])
        if protocol in ("json", "cbor"):  # the document itself is refused (a form's "NaN" may be a name)
            assert status == 400 and b"SerializationException" in answer, (label, status, answer[:300])
    limit = body_limit(service)
    signed = _signed_headers(server.url, method, path, headers, b"", service)
    status, answer = _send_raw(server, method, path, signed, declared=limit + 1)
    assert status == 413, ("oversize", status, answer[:300])
    assert server.proc.poll() is None
