"""Check raw responses against the botocore output shape, for every call a test makes.

botocore's parser silently drops unknown members and accepts wrong types; the
SDK v3's pydantic models do not. So we look at the wire body before botocore
parses it: no member the shape lacks, the right JSON types, valid enum values,
required members present.
"""

from __future__ import annotations

import base64
import datetime
import json

_NUMBER = (int, float)


def _check(value, shape, path: str, problems: list[str]) -> None:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        wire_names = {m.serialization.get("name", n): (n, m) for n, m in shape.members.items()}
        for key, item in value.items():
            if key not in wire_names:
                problems.append(f"{path}.{key}: not a member of {shape.name}")
                continue
            _check(item, wire_names[key][1], f"{path}.{key}", problems)
        for name in shape.required_members:
            member = shape.members[name]
            if member.serialization.get("location"):
                continue
            if member.serialization.get("name", name) not in value:
                problems.append(f"{path}.{name}: required member missing")
        if not value and shape.members and shape.required_members:
            problems.append(f"{path}: empty object for {shape.name}")
    elif kind == "list":
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list")
            return
        for i, item in enumerate(value):
            _check(item, shape.member, f"{path}[{i}]", problems)
    elif kind == "map":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a map")
            return
        for k, item in value.items():
            _check(item, shape.value, f"{path}[{k}]", problems)
    elif kind == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: expected a string, got {value!r}")
        elif getattr(shape, "enum", None) and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of {shape.name}'s values")
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: expected an integer, got {value!r}")
    elif kind in ("float", "double"):
        if not isinstance(value, _NUMBER) or isinstance(value, bool):
            problems.append(f"{path}: expected a number, got {value!r}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{path}: expected a boolean, got {value!r}")
    elif kind == "timestamp":
        if not isinstance(value, _NUMBER) or isinstance(value, bool):
            problems.append(f"{path}: expected epoch seconds, got {value!r}")
    elif kind == "blob" and not isinstance(value, str):
        problems.append(f"{path}: expected base64 text")


def check_response(operation_model, response_dict) -> list[str]:
    """Problems with one HTTP response, [] when it conforms (only JSON bodies are checked)."""
    status = response_dict.get("status_code", 200)
    protocol = operation_model.service_model.resolved_protocol  # what the client spoke
    if status >= 300 or protocol not in ("json", "rest-json", "smithy-rpc-v2-cbor"):
        return []
    shape = operation_model.output_shape
    if shape is None:
        return []
    payload = shape.serialization.get("payload")
    if payload:
        member = shape.members[payload]
        if member.type_name in ("blob", "string") or member.serialization.get("eventstream"):
            return []
        shape = member
    body = response_dict.get("body") or b""
    if not isinstance(body, (bytes, str)) or not body.strip():
        return []
    if response_dict.get("headers", {}).get("content-type") == "application/cbor":
        import cbor2  # here: SDK processes load this module without the test extras (support/sdk_site)

        try:
            value = _json_like(cbor2.loads(body))
        except (cbor2.CBORDecodeError, ValueError):
            return [f"{operation_model.name}: body is not CBOR"]
    else:
        try:
            value = json.loads(body)
        except ValueError:
            return [f"{operation_model.name}: body is not JSON"]
    problems: list[str] = []
    _check(value, shape, operation_model.name, problems)
    return problems


def _json_like(value):
    """A decoded CBOR value with timestamps as epoch seconds and blobs as base64 text, as JSON carries them."""
    if isinstance(value, dict):
        return {k: _json_like(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_like(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


class ConformanceRecorder:
    """Attach to a boto3 client; collects every non-conforming response."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def attach(self, client) -> None:
        # One unique_id: attaching twice (the factory, then the process-wide hook) checks each answer once.
        client.meta.events.register("before-parse", self._before_parse, unique_id=f"conformance-{id(self)}")

    def drain(self) -> list[str]:
        """The problems seen since the last drain (the answers of one test, its fixtures included)."""
        taken, self.problems[:] = list(self.problems), []
        return taken

    def _before_parse(self, operation_model, response_dict, **_):
        self.problems += check_response(operation_model, response_dict)


RECORDER = ConformanceRecorder()


def check_every_client(recorder: ConformanceRecorder = RECORDER) -> None:
    """Attach ``recorder`` to every botocore client this process creates from now on, however it is made
    (boto3.client, a boto3 Session, a module-level client, a fixture): no answer escapes the check."""
    from botocore.session import Session

    if getattr(Session.create_client, "_checked_by", None) is recorder:
        return
    create_client = Session.create_client

    def create_checked_client(self, *args, **kwargs):
        client = create_client(self, *args, **kwargs)
        recorder.attach(client)
        return client

    create_checked_client._checked_by = recorder
    Session.create_client = create_checked_client
