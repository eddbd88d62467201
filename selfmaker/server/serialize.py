"""Serialize handler results against a botocore output shape.

Only members the shape declares and that hold a value are written (SDK v3
validates responses with pydantic, and an empty or unknown member breaks it).
Handlers return plain dicts with epoch-seconds floats for timestamps and
bytes for blobs; this module turns them into each protocol's wire form.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import math
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from xml.sax.saxutils import escape

import orjson
from botocore.model import Shape


class Verbatim(list):
    """A list its maker has checked is already in its wire form (only modeled members, each of its type):
    written as it is. BatchGetRecord's 100 records of 50 features each would otherwise be walked value by
    value, the larger part of its time."""


class RawJSON:
    """A list member's JSON text that its maker has checked is already exactly its wire form: spliced into
    the response body as it is, neither decoded nor encoded again. GetRecord and BatchGetRecord send stored
    records this way (featurestore/runtime.py checks each against the FeatureValue grammar first)."""

    __slots__ = ("text",)

    def __init__(self, text: bytes):
        self.text = text


# While json_body writes a response, the RawJSON values it holds (to be spliced); otherwise None, and a
# RawJSON is decoded (the console and the event writers want values, not text).
_SPLICING: ContextVar[list | None] = ContextVar("splicing", default=None)


def to_json_value(value, shape: Shape):
    """The JSON form of ``value`` under ``shape``, or None when nothing should be sent."""
    if value is None:
        return None
    return _json_writer(shape)(value)


# Walking a botocore shape costs attribute lookups and dict probes at every node,
# and a page of a list walks the same shapes hundreds of times. So each shape gets
# a writer closure, built once, that already knows its members, their wire names
# and their writers. A structure finds its members' writers on its first call, not
# when it is built: recursive shapes (e.g. SearchExpression) expand only as deep as
# some value actually nests. Weak keys: a shape nobody holds takes its writer along.
_WRITERS: weakref.WeakKeyDictionary[Shape, Callable] = weakref.WeakKeyDictionary()


def _json_writer(shape: Shape) -> Callable:
    write = _WRITERS.get(shape)
    if write is None:
        write = _WRITERS[shape] = _build_json_writer(shape)
    return write


def _build_json_writer(shape: Shape) -> Callable:
    kind = shape.type_name
    if kind == "structure":
        return _structure_writer(shape)
    if kind == "list":
        write_item = _json_writer(shape.member)

        def write_list(value):
            if type(value) is Verbatim:
                return value
            if type(value) is RawJSON:
                spliced = _SPLICING.get()
                if spliced is None:
                    return decode_json(value.text)
                spliced.append(value)
                return value
            return [v for item in value if item is not None and (v := write_item(item)) is not None]

        return write_list
    if kind == "map":
        write_value = _json_writer(shape.value)

        def write_map(value):
            return {k: v for k, item in value.items() if item is not None and (v := write_value(item)) is not None}

        return write_map
    return _SCALAR_WRITERS.get(kind, _string)


def _structure_writer(shape: Shape) -> Callable:
    fields: list[tuple[str, str, Callable]] | None = None

    def write(value):
        nonlocal fields
        if not isinstance(value, dict):
            return None
        if fields is None:  # headers and status codes are not in the body
            fields = [
                (name, member.serialization.get("name", name), _json_writer(member))
                for name, member in shape.members.items()
                if not member.serialization.get("location")
            ]
        out = {}
        for name, wire, write_member in fields:
            item = value.get(name)
            if item is not None and (v := write_member(item)) is not None:
                out[wire] = v
        return out

    return write


def _string(value):
    return value if isinstance(value, str) else str(value)


def _blob(value):
    return base64.b64encode(value if isinstance(value, bytes) else str(value).encode()).decode()


def _epoch(value) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return round(float(value), 3)


def _finite(value) -> float | None:
    """NaN and infinities are left out: AWS never sends them, and JSON has no words for them."""
    number = float(value)
    return number if math.isfinite(number) else None


_SCALAR_WRITERS: dict[str, Callable] = {
    "timestamp": _epoch,
    "blob": _blob,
    "integer": int,
    "long": int,
    "float": _finite,
    "double": _finite,
    "boolean": bool,
    "string": _string,
}


def _iso(value) -> str:
    if not isinstance(value, dt.datetime):
        value = dt.datetime.fromtimestamp(float(value), tz=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def json_body(result: dict | None, shape: Shape | None) -> bytes:
    if shape is None:
        return b"{}"
    spliced: list[RawJSON] = []
    token = _SPLICING.set(spliced)
    try:
        value = to_json_value(result or {}, shape) or {}
    finally:
        _SPLICING.reset(token)
    if spliced:
        try:  # orjson writes a Fragment's bytes in place; json.dumps has no way to
            return orjson.dumps(value, default=_fragment)
        except orjson.JSONEncodeError:  # what orjson refuses (a lone surrogate, an int beyond 64 bits)
            return json.dumps(value, separators=(",", ":"), allow_nan=False, default=_decoded).encode()
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def decode_json(raw: bytes):
    """orjson first (half json's time); json for what orjson refuses, such as a lone surrogate's escape."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _decoded(value):
    if type(value) is RawJSON:
        return decode_json(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _fragment(value) -> orjson.Fragment:
    if type(value) is RawJSON:
        return orjson.Fragment(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@functools.cache
def _rest_outputs(shape: Shape) -> tuple[tuple[tuple[str, str, str, str], ...], str | None, str | None]:
    """(member, location, wire name, type) of each output member bound to the status code or headers, the
    payload member and its type: read from the model once per shape, not on every response."""
    bound = []
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        if location in ("statusCode", "header", "headers"):
            wire = member.serialization.get("name", name if location == "header" else "")
            bound.append((name, location, wire, member.type_name))
    payload = shape.serialization.get("payload")
    return tuple(bound), payload, shape.members[payload].type_name if payload else None


def rest_json_response(result: dict | None, shape: Shape | None) -> tuple[int | None, dict, bytes, str | None]:
    """(status, headers, body, content type) for a rest-json output shape."""
    result = result or {}
    if shape is None:
        return None, {}, b"{}", None
    status = None
    headers: dict[str, str] = {}
    bound, payload, payload_type = _rest_outputs(shape)
    for name, location, wire, type_name in bound:
        value = result.get(name)
        if value is None:
            continue
        if location == "statusCode":
            status = int(value)
        elif location == "header":
            if type_name == "timestamp":
                value = _iso(value)
            elif type_name == "boolean":
                value = "true" if value else "false"
            headers[wire] = str(value)
        else:  # headers: a prefix
            for key, item in value.items():
                headers[wire + key] = str(item)
    if payload:
        value = result.get(payload)
        if payload_type in ("blob", "string"):
            body = value if isinstance(value, bytes) else (value or "").encode()
            return status, headers, body, None
        return status, headers, json_body(value, shape.members[payload]), "application/json"
    return status, headers, json_body(result, shape), "application/json"


def to_xml(value, shape: Shape, tag: str) -> str:
    """XML for the query protocol (STS, IAM, CloudWatch, SQS), as botocore's query parser reads it:
    lists in ``<member>`` (or the member's name) unless flattened, maps in ``<entry>`` unless flattened."""
    if value is None:
        return ""
    kind = shape.type_name
    if kind == "structure":
        inner = "".join(
            _xml_member(value.get(name), member, member.serialization.get("name", name))
            for name, member in shape.members.items()
        )
        return f"<{tag}>{inner}</{tag}>"
    if kind == "list":
        item_tag = shape.member.serialization.get("name", "member")
        return f"<{tag}>{''.join(to_xml(item, shape.member, item_tag) for item in value)}</{tag}>"
    if kind == "map":
        return f"<{tag}>{''.join(f'<entry>{_xml_pair(k, v, shape)}</entry>' for k, v in value.items())}</{tag}>"
    if kind == "timestamp":
        text = _iso(value)
    elif kind == "boolean":
        text = "true" if value else "false"
    elif kind == "blob":
        text = base64.b64encode(value if isinstance(value, bytes) else str(value).encode()).decode()
    elif kind in ("float", "double") and not math.isfinite(float(value)):
        return ""
    else:
        text = str(value)
    return f"<{tag}>{escape(text)}</{tag}>"


def _xml_member(value, shape: Shape, tag: str) -> str:
    """A structure member: a flattened list or map repeats its items in place of a wrapping element."""
    if value is None or not shape.serialization.get("flattened"):
        return to_xml(value, shape, tag)
    if shape.type_name == "list":
        item_tag = shape.member.serialization.get("name", tag)
        return "".join(to_xml(item, shape.member, item_tag) for item in value)
    return "".join(f"<{tag}>{_xml_pair(k, v, shape)}</{tag}>" for k, v in value.items())


def _xml_pair(key, value, shape: Shape) -> str:
    return to_xml(key, shape.key, shape.key.serialization.get("name", "key")) + to_xml(
        value, shape.value, shape.value.serialization.get("name", "value")
    )
