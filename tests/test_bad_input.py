"""Bad input, generated from the botocore model for every implemented operation.

For each operation SelfMaker implements over a JSON protocol we derive a valid
minimal request from the input shape, then break it one way at a time: a
required member missing, a value of the wrong type, a string too long or too
short, an enum value that does not exist, a pattern violation, a number out of
range. Every answer must be a 400 with the right error code, the server must
stay up, and nothing may change in the store.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from selfmaker.server.models import service_model
from selfmaker.server.operations import implemented, load_all
from selfmaker.server.validate import _compiled

load_all()
CREDS = Credentials("AKIDEXAMPLE", "secret")
JSON_SERVICES = {"sagemaker": "SageMaker", "logs": "Logs_20140328", "sqs": "AmazonSQS",
                 "cloudwatch": "GraniteServiceVersion20100801"}


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


_CANDIDATES = ["a", "abc", "x1", "arn:aws:sagemaker:us-east-1:123456789012:model/x",
               "arn:aws:iam::123456789012:role/SageMakerRole", "s3://bucket/key", "https://example.com/r.git",
               "1", "ml.m5.large", "Key1", "a-b", "aaaaaaaaaaaaaaaaaaaa"]


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
    for service, prefix in JSON_SERVICES.items():
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
    request = AWSRequest("POST", url + "/", data=data, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"{JSON_SERVICES[service]}.{op}"})
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
            return tuple(conn.execute(select(func.count()).select_from(t)).scalar_one()
                         for t in schema.metadata.sorted_tables)
    finally:
        engine.dispose()


def test_cases_cover_every_implemented_json_operation():
    covered = {(s, o) for s, o, _, _ in CASES}
    for service in JSON_SERVICES:
        for op in implemented(service):
            shape = service_model(service).operation_model(op).input_shape
            if shape is not None and shape.members and all(
                    _minimal(shape.members[n]) is not None for n in shape.required_members):
                assert (service, op) in covered, f"no bad-input case for {service}.{op}"


@pytest.mark.parametrize("service,op,what,body", CASES, ids=[f"{s}.{o}: {w}" for s, o, w, _ in CASES])
def test_bad_input_is_a_clean_400(server, service, op, what, body):
    before = _store_fingerprint(server)
    status, payload = _post(server.url, service, op, body)
    assert status == 400, (status, payload)
    code = payload.get("__type")
    assert code in ("ValidationException", "SerializationException", "InvalidParameterException"), payload
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
    request = AWSRequest("POST", server.url + "/", data=b"{not json", headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "SageMaker.ListModels"})
    SigV4Auth(CREDS, "sagemaker", "us-east-1").add_auth(request)
    req = urllib.request.Request(server.url + "/", data=b"{not json", headers=dict(request.headers), method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    assert json.loads(err.value.read())["__type"] == "SerializationException"
