"""What a request may carry before any work is done on it, and how each protocol refuses the rest.

Bodies are capped per protocol and read incrementally, so an oversized one is refused as soon as it
crosses the cap (at once when Content-Length declares it) and never sits in memory whole. Documents
(JSON, CBOR) are refused when nested deeper than MAX_DEPTH or when they hold NaN or an infinity:
AWS services accept neither, and refusing them on input means none is ever stored or sent back.
"""

from __future__ import annotations

import json
import math
import re

from .errors import AWSError
from .http import BodyTooLarge, Request

# JSON 1.0/1.1, query, RPC v2 CBOR and the rest-json control plane. The largest inputs AWS takes on
# these APIs are about 1 MiB (PutMetricData, PutLogEvents, SQS batches); 8 MiB leaves room for
# large definitions while bounding what one request can make the server hold.
MAX_DOCUMENT_BODY = 8 << 20
# sagemaker-runtime: InvokeEndpoint's payload limit is 6 MB; AWS answers 413 above it.
MAX_INVOKE_BODY = 6 << 20
MAX_DEPTH = 64  # nesting of objects and arrays; no AWS input shape we serve comes near


def body_limit(service: str) -> int:
    return MAX_INVOKE_BODY if service == "sagemaker-runtime" else MAX_DOCUMENT_BODY


def too_large(service: str, limit: int) -> AWSError:
    if service == "sagemaker-runtime":  # the runtime's wording; botocore raises its ValidationError
        return AWSError("ValidationError", f"HTTP content length exceeded {limit} bytes.", 413)
    return AWSError("RequestEntityTooLarge", f"Request body is larger than the {limit} bytes this API accepts.", 413)


async def read_body(request: Request, service: str) -> bytes:
    """The body, within ``service``'s cap, or the protocol's 413."""
    try:
        return await request.body(body_limit(service))
    except BodyTooLarge as exc:
        raise too_large(service, exc.limit) from None


# ---------------------------------------------------------------------------
# Documents

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKET = re.compile(rb"[\[\]{}]")


def _serialization(message: str) -> AWSError:
    return AWSError("SerializationException", message)


def _refuse_constant(name: str):
    raise _serialization(f"Request body holds {name}: numbers must be finite.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to infinity
        raise _serialization(f"Request body holds the number {text}, which is out of range.")
    return value


def _check_json_depth(raw: bytes) -> None:
    """Counted on the text (strings blanked out), so a deep document is refused before it is parsed."""
    depth = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub(b'""', raw)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise _serialization(f"Request body is nested deeper than {MAX_DEPTH} levels.")
        else:
            depth -= 1


def load_json(raw: bytes):
    """The JSON value of ``raw``; SerializationException when it is not JSON, too deep or not finite."""
    _check_json_depth(raw)
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise _serialization(f"Request body is not valid JSON: {exc}") from None


def check_document(value) -> None:
    """A decoded document (CBOR) within MAX_DEPTH and without NaN or infinities; walked without recursion."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise _serialization("Request body holds NaN or an infinity: numbers must be finite.")
        if isinstance(item, (dict, list, tuple)):
            if depth > MAX_DEPTH:
                raise _serialization(f"Request body is nested deeper than {MAX_DEPTH} levels.")
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
