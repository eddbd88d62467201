"""Serialize handler results against a botocore output shape.

Only members the shape declares and that hold a value are written (SDK v3
validates responses with pydantic, and an empty or unknown member breaks it).
Handlers return plain dicts with epoch-seconds floats for timestamps and
bytes for blobs; this module turns them into each protocol's wire form.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from xml.sax.saxutils import escape

from botocore.model import Shape


def to_json_value(value, shape: Shape):
    """The JSON form of ``value`` under ``shape``, or None when nothing should be sent."""
    if value is None:
        return None
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return None
        out = {}
        for name, member in shape.members.items():
            if member.serialization.get("location"):  # headers, status code: not in the body
                continue
            v = to_json_value(value.get(name), member)
            if v is not None:
                out[member.serialization.get("name", name)] = v
        return out
    if kind == "list":
        return [v for item in value if (v := to_json_value(item, shape.member)) is not None]
    if kind == "map":
        return {k: v for k, item in value.items() if (v := to_json_value(item, shape.value)) is not None}
    if kind == "timestamp":
        return _epoch(value)
    if kind == "blob":
        return base64.b64encode(value if isinstance(value, bytes) else str(value).encode()).decode()
    if kind in ("integer", "long"):
        return int(value)
    if kind in ("float", "double"):
        return float(value)
    if kind == "boolean":
        return bool(value)
    return value if isinstance(value, str) else str(value)


def _epoch(value) -> float:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return round(float(value), 3)


def _iso(value) -> str:
    if not isinstance(value, dt.datetime):
        value = dt.datetime.fromtimestamp(float(value), tz=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def json_body(result: dict | None, shape: Shape | None) -> bytes:
    if shape is None:
        return b"{}"
    return json.dumps(to_json_value(result or {}, shape) or {}, separators=(",", ":")).encode()


def rest_json_response(result: dict | None, shape: Shape | None) -> tuple[int | None, dict, bytes, str | None]:
    """(status, headers, body, content type) for a rest-json output shape."""
    result = result or {}
    if shape is None:
        return None, {}, b"{}", None
    status = None
    headers: dict[str, str] = {}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        value = result.get(name)
        if value is None:
            continue
        if location == "statusCode":
            status = int(value)
        elif location == "header":
            header = member.serialization["name"]
            if member.type_name == "timestamp":
                value = _iso(value)
            elif member.type_name == "boolean":
                value = "true" if value else "false"
            headers[header] = str(value)
        elif location == "headers":
            prefix = member.serialization.get("name", "")
            for key, item in value.items():
                headers[prefix + key] = str(item)
    payload = shape.serialization.get("payload")
    if payload:
        member = shape.members[payload]
        value = result.get(payload)
        if member.type_name in ("blob", "string"):
            body = value if isinstance(value, bytes) else (value or "").encode()
            return status, headers, body, None
        return status, headers, json_body(value, member), "application/json"
    return status, headers, json_body(result, shape), "application/json"


def to_xml(value, shape: Shape, tag: str) -> str:
    """XML for the query protocol (STS, IAM)."""
    if value is None:
        return ""
    kind = shape.type_name
    if kind == "structure":
        inner = "".join(
            to_xml(value.get(name), member, member.serialization.get("name", name))
            for name, member in shape.members.items()
        )
        return f"<{tag}>{inner}</{tag}>"
    if kind == "list":
        item_tag = shape.member.serialization.get("name", "member")
        inner = "".join(to_xml(item, shape.member, item_tag) for item in value)
        return f"<{tag}>{inner}</{tag}>"
    if kind == "map":
        inner = "".join(
            f"<entry>{to_xml(k, shape.key, 'key')}{to_xml(v, shape.value, 'value')}</entry>" for k, v in value.items()
        )
        return f"<{tag}>{inner}</{tag}>"
    if kind == "timestamp":
        text = _iso(value)
    elif kind == "boolean":
        text = "true" if value else "false"
    elif kind == "blob":
        text = base64.b64encode(value).decode()
    else:
        text = str(value)
    return f"<{tag}>{escape(text)}</{tag}>"
