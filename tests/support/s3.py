"""The S3 tests' shared pieces: an ``s3`` client factory whose XML answers are checked against their output
shapes (the S3 counterpart of the JSON conformance check), a fresh ``bucket``, and small helpers.
A test module takes the fixtures (named ``s3`` and ``bucket``) with ``from support.s3 import bucket_fixture, s3_fixture``."""

from __future__ import annotations

import base64
import http.client
import xml.etree.ElementTree as ET

import pytest

MB = 1 << 20


def _wire_names(shape, names: set, seen: set) -> None:
    if shape is None or shape.name in seen:
        return
    seen.add(shape.name)
    if shape.type_name == "structure":
        for name, member in shape.members.items():
            names.add(member.serialization.get("name", name))
            _wire_names(member, names, seen)
    elif shape.type_name == "list":
        names.add(shape.member.serialization.get("name", "member"))
        _wire_names(shape.member, names, seen)


def check_xml(operation_model, response_dict, problems: list, **_):
    """The S3 counterpart of conftest's JSON check: every element of a 2xx XML body is in the output shape."""
    body = response_dict.get("body") or b""
    shape = operation_model.output_shape
    if (
        response_dict.get("status_code", 200) >= 300
        or not isinstance(body, bytes)
        or not body.strip()
        or shape is None
        or shape.serialization.get("payload") in ("Body",)
    ):
        return
    names: set[str] = set()
    _wire_names(shape, names, set())
    root = ET.fromstring(body)
    for element in root.iter():
        tag = element.tag.split("}", 1)[-1]
        if element is not root and tag not in names:
            problems.append(f"{operation_model.name}: <{tag}> is not in {shape.name}")


@pytest.fixture(name="s3")
def s3_fixture(client, request):
    """An s3 client on the session server whose XML responses are checked against their output shapes."""
    problems: list[str] = []

    def make(**config):
        c = client("s3", **config)
        c.meta.events.register("before-parse.s3", lambda **kw: check_xml(problems=problems, **kw))
        return c

    yield make
    assert not problems, "\n".join(problems)


@pytest.fixture(name="bucket")
def bucket_fixture(s3, unique):
    name = unique("bkt")
    s3().create_bucket(Bucket=name)
    return name


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def status(excinfo) -> int:
    return excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def raw_request(server, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """A request exactly as written (no client-side path normalisation); returns (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data
