"""Smithy RPC v2 CBOR, driven by the botocore models (CloudWatch speaks it in botocore 1.44).

A request is ``POST /service/<targetPrefix>/operation/<Operation>`` with the header
``smithy-protocol: rpc-v2-cbor`` and the input as one CBOR map (timestamps are tag 1,
epoch seconds; blobs are byte strings). The answer is the output as a CBOR map, or an
error map with ``__type`` and ``message`` and the error shape's HTTP status; services
that moved here from the query protocol also send the old code in x-amzn-query-error.
"""

from __future__ import annotations

import datetime as dt
import math
import re

import cbor2
from botocore.model import OperationModel, Shape

from .errors import AWSError
from .http import Request, Response
from .limits import check_document
from .operations import Context
from .protocol import error_status, handle_document, query_error_header

CONTENT_TYPE = "application/cbor"
_PATH = re.compile(r"/service/(?P<target>[^/]+)/operation/(?P<operation>[^/]+)")


def match_rpc_v2_cbor(request: Request) -> tuple[str, str] | None:
    """(target prefix, operation) of an RPC v2 CBOR request, or None."""
    if request.method != "POST" or request.headers.get("smithy-protocol") != "rpc-v2-cbor":
        return None
    matched = _PATH.fullmatch(request.path)
    return (matched["target"], matched["operation"]) if matched else None


def _headers(request_id: str) -> list[tuple[str, str]]:
    return [("Content-Type", CONTENT_TYPE), ("smithy-protocol", "rpc-v2-cbor"), ("X-Amzn-RequestId", request_id)]


def cbor_error(err: AWSError, request_id: str, service: str | None = None) -> Response:
    body = {"__type": err.code, "message": err.message, **err.fields}
    return Response(
        error_status(service, err), cbor2.dumps(body), [*_headers(request_id), *query_error_header(service, err)]
    )


def _decode(raw: bytes) -> dict:
    try:
        params = cbor2.loads(raw) if raw else {}
    except (cbor2.CBORDecodeError, ValueError) as exc:
        raise AWSError("SerializationException", f"Request body is not valid CBOR: {exc}") from None
    if not isinstance(params, dict):
        raise AWSError("SerializationException", "Request body must be a CBOR map.")
    check_document(params)  # depth, NaN and infinities
    return params


def _respond(ctx: Context, op: OperationModel, result: dict | None) -> Response:
    body = cbor2.dumps(to_cbor_value(result or {}, op.output_shape) or {}) if op.output_shape else b""
    return Response(200, body, _headers(ctx.request_id))


async def handle_rpc_v2_cbor(ctx: Context, request: Request, operation_name: str) -> Response:
    return await handle_document(ctx, request, operation_name, _decode, _respond, cbor_error)


def to_cbor_value(value, shape: Shape):
    """``value`` as the CBOR encoder should see it under ``shape``; None when nothing should be sent.

    Only members the shape declares and that hold a value are written, as for JSON.
    """
    if value is None:
        return None
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return None
        out = {}
        for name, member in shape.members.items():
            item = to_cbor_value(value.get(name), member)
            if item is not None:
                out[member.serialization.get("name", name)] = item
        return out
    if kind == "list":
        return [v for item in value if (v := to_cbor_value(item, shape.member)) is not None]
    if kind == "map":
        return {k: v for k, item in value.items() if (v := to_cbor_value(item, shape.value)) is not None}
    if kind == "timestamp":
        seconds = value.timestamp() if isinstance(value, dt.datetime) else float(value)
        return cbor2.CBORTag(1, round(seconds, 3))
    if kind == "blob":
        return value if isinstance(value, bytes) else str(value).encode()
    if kind in ("integer", "long"):
        return int(value)
    if kind in ("float", "double"):
        return float(value) if math.isfinite(float(value)) else None  # AWS never sends NaN or infinities
    if kind == "boolean":
        return bool(value)
    return value if isinstance(value, str) else str(value)
