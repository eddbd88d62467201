"""Wire protocols, driven by the botocore models: JSON 1.0/1.1, rest-json and query.

Each ``handle_*`` function parses a request into the operation's input, runs it
through the registry (:func:`selfmaker.server.operations.invoke`), and renders
the output or the error the way that protocol does on AWS. S3 (rest-xml,
streaming) lives in ``selfmaker.objects.endpoint``.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections.abc import Callable
from functools import cache
from urllib.parse import unquote

from botocore.model import OperationModel

from .errors import AWSError
from .http import Request, Response
from .limits import load_json
from .models import legacy_model, operation_model, service_model
from .operations import Context, invoke
from .serialize import json_body, rest_json_response, to_xml
from .wire import wire

log = logging.getLogger("selfmaker.protocol")


def _unexpected(ctx: Context, exc: BaseException) -> AWSError:
    log.exception("internal error in %s.%s", ctx.service, ctx.operation)
    return _failed(
        ctx, AWSError("InternalFailure", f"Internal error ({type(exc).__name__}); request id {ctx.request_id}", 500)
    )


def _failed(ctx: Context, err: AWSError) -> AWSError:
    """``err``, noted on the context as the request's outcome (the API error counts of /metrics)."""
    ctx.error_code = err.code
    return err


# ---------------------------------------------------------------------------
# Query-compatible errors: services that moved from the query protocol (SQS, CloudWatch) still give
# clients the old error code, in the x-amzn-query-error header; botocore reports it as the error's Code.

# Old codes the model does not carry (SQS's error shapes have no "error" trait), by service and shape name.
_QUERY_ERROR_CODES: dict[str, dict[str, str]] = {}


def register_query_error_codes(service: str, codes: dict[str, str]) -> None:
    _QUERY_ERROR_CODES.setdefault(service, {}).update(codes)


@cache
def _modeled_query_codes(service: str) -> dict[str, str] | None:
    """The error shapes' query codes for a query-compatible service; None for any other service."""
    model = service_model(service)
    if "awsQueryCompatible" not in model.metadata:
        return None
    return {
        shape.name: shape.metadata["error"]["code"]
        for shape in model.error_shapes
        if shape.metadata.get("error", {}).get("code")
    }


@cache
def _modeled_statuses(service: str) -> dict[str, int]:
    return {
        shape.name: shape.metadata["error"]["httpStatusCode"]
        for shape in service_model(service).error_shapes
        if shape.metadata.get("error", {}).get("httpStatusCode")
    }


def error_status(service: str | None, err: AWSError) -> int:
    """The HTTP status of an error: its shape's, when the service's model gives one."""
    return _modeled_statuses(service).get(err.code, err.status) if service else err.status


def query_error_header(service: str | None, err: AWSError) -> list[tuple[str, str]]:
    if not service or _modeled_query_codes(service) is None:
        return []
    return [("x-amzn-query-error", f"{_query_code(service, err)};{'Sender' if err.status < 500 else 'Receiver'}")]


# ---------------------------------------------------------------------------
# JSON 1.0 and 1.1: POST / with X-Amz-Target (sagemaker, logs, athena, sqs, cloudwatch)


MAX_INFLATED_BYTES = 16 * 1024 * 1024  # no API body we serve is larger; a gzip bomb stops here


async def request_payload(request: Request) -> bytes:
    """The body, decompressed if the client compressed it (botocore gzips large PutMetricData requests)."""
    raw = await request.body()
    encodings = [e.strip().lower() for e in request.headers.get("content-encoding", "").split(",") if e.strip()]
    if encodings == ["gzip"]:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing
        try:
            body = inflater.decompress(raw, MAX_INFLATED_BYTES + 1)
        except zlib.error as exc:
            raise AWSError("SerializationException", f"Request body is not valid gzip: {exc}") from None
        if len(body) > MAX_INFLATED_BYTES:
            raise AWSError(
                "SerializationException", f"Request body inflates to more than {MAX_INFLATED_BYTES} bytes.", 413
            )
        if not inflater.eof:
            raise AWSError("SerializationException", "Request body is truncated gzip.")
        return body
    if encodings and encodings != ["identity"]:
        raise AWSError("SerializationException", f"Unsupported Content-Encoding {', '.join(encodings)}.")
    return raw


def _json_content_type(service: str | None) -> str:
    return f"application/x-amz-json-{wire(service).json_version if service else '1.1'}"


def json_error(err: AWSError, request_id: str, service: str | None = None) -> Response:
    body = {"__type": err.code, "Message": err.message, **err.fields}
    return Response(
        error_status(service, err),
        json.dumps(body).encode(),
        [
            ("Content-Type", _json_content_type(service)),
            ("X-Amzn-ErrorType", err.code),
            ("X-Amzn-RequestId", request_id),
            *query_error_header(service, err),
        ],
    )


async def handle_document(
    ctx: Context,
    request: Request,
    operation_name: str,
    decode: Callable[[bytes], dict],
    respond: Callable[[Context, OperationModel, dict | None], Response],
    error: Callable[[AWSError, str, str | None], Response],
) -> Response:
    """One operation of a protocol whose input and output are each one document (JSON, RPC v2 CBOR):
    ``decode`` reads the (inflated) body as the input, ``respond`` writes the result, ``error`` any failure."""
    ctx.operation = operation_name
    try:
        if operation_name not in service_model(ctx.service).operation_names:
            raise AWSError("UnknownOperationException", f"Unknown operation {operation_name}.")
        op = operation_model(ctx.service, operation_name)
        params = decode(await request_payload(request))
        return respond(ctx, op, await invoke(ctx, op, params))
    except AWSError as err:
        return error(_failed(ctx, err), ctx.request_id, ctx.service)
    except Exception as exc:  # a bug: still answer like AWS, and log it
        return error(_unexpected(ctx, exc), ctx.request_id, ctx.service)


def _json_response(ctx: Context, op: OperationModel, result: dict | None) -> Response:
    return Response(
        200,
        json_body(result, op.output_shape),
        [("Content-Type", _json_content_type(ctx.service)), ("X-Amzn-RequestId", ctx.request_id)],
    )


async def handle_json(ctx: Context, request: Request, operation_name: str) -> Response:
    return await handle_document(
        ctx, request, operation_name, lambda raw: _json_object(raw) if raw.strip() else {}, _json_response, json_error
    )


# ---------------------------------------------------------------------------
# rest-json: method + path templates (runtime, featurestore-runtime, edge, metrics, athena)


@cache
def _rest_routes(service: str) -> list[tuple[str, re.Pattern, OperationModel]]:
    routes = []
    model = service_model(service)
    for name in model.operation_names:
        op = model.operation_model(name)
        uri = op.http["requestUri"].split("?", 1)[0]
        pattern = ""
        for part in re.split(r"(\{[^}]+\})", uri):
            if part.startswith("{"):
                label = part[1:-1]
                greedy = label.endswith("+")
                label = label.rstrip("+")
                pattern += f"(?P<{label}>{'.+' if greedy else '[^/]+'})"
            else:
                pattern += re.escape(part)
        routes.append((op.http["method"], re.compile(pattern + "/?$"), op))
    # Literal paths first, so "/BatchGetRecord" never matches a template.
    routes.sort(key=lambda r: r[1].pattern.count("(?P<"))
    return routes


def match_rest(service: str, method: str, path: str):
    """The operation and its URI labels for a rest-json request, or None."""
    for route_method, pattern, op in _rest_routes(service):
        if route_method == method and (m := pattern.match(path)):
            return op, {k: unquote(v) for k, v in m.groupdict().items()}
    return None


@cache
def _rest_inputs(op: OperationModel) -> tuple[tuple[tuple[str, str, str, str], ...], str | None, str | None]:
    """(member, location, wire name, type) of each input member bound to the URI, query or headers, the
    payload member and its type: read from the model once per operation, not on every request."""
    shape = op.input_shape
    bound = []
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        if location in ("uri", "querystring", "header", "headers"):
            wire = member.serialization.get("name", name)
            bound.append(
                (name, location, wire.lower() if location in ("header", "headers") else wire, member.type_name)
            )
    payload = shape.serialization.get("payload")
    return tuple(bound), payload, shape.members[payload].type_name if payload else None


def _rest_params(op: OperationModel, labels: dict, request: Request, body: bytes) -> dict:
    params: dict = {}
    if op.input_shape is None:
        return params
    bound, payload, payload_type = _rest_inputs(op)
    headers = request.headers
    for name, location, key, type_name in bound:
        if location == "header":
            if (value := headers.get(key)) is not None:
                params[name] = value
        elif location == "uri":
            if key in labels:
                params[name] = labels[key]
        elif location == "querystring":
            if type_name == "list":
                if key in request.query:
                    params[name] = request.query[key]
            elif type_name == "map":
                params[name] = {k: v[-1] for k, v in request.query.items()}
            elif (value := request.query_value(key)) is not None:
                params[name] = value
        else:  # headers: a prefix
            found = {k[len(key) :]: v for k, v in headers.items() if k.startswith(key)}
            if found:
                params[name] = found
    if payload:
        if payload_type in ("blob", "string"):
            params[payload] = body if payload_type == "blob" else body.decode("utf-8", "replace")
        elif body.strip():
            params[payload] = _json_object(body)
    elif body.strip():
        for key, value in _json_object(body).items():
            params.setdefault(key, value)
    return params


def _json_object(body: bytes) -> dict:
    value = load_json(body)  # depth, NaN and infinities refused as SerializationException
    if not isinstance(value, dict):
        raise AWSError("SerializationException", "Request body must be a JSON object.")
    return value


def rest_json_error(err: AWSError, op: OperationModel | None, request_id: str) -> Response:
    status = err.status
    if op is not None and status != 413:  # an oversized payload is a 413 whatever its code (limits.py)
        for shape in op.error_shapes:
            if shape.name == err.code:
                status = shape.metadata.get("error", {}).get("httpStatusCode", status)
    body = {"Message": err.message, **err.fields}
    if err.code == "ValidationError" and "message" not in body:
        body["message"] = err.message
    return Response(
        status,
        json.dumps(body).encode(),
        [("Content-Type", "application/json"), ("X-Amzn-ErrorType", err.code), ("X-Amzn-RequestId", request_id)],
    )


async def handle_rest_json(ctx: Context, request: Request, op: OperationModel, labels: dict) -> Response:
    ctx.operation = op.name
    try:
        body = await request.body()
        params = _rest_params(op, labels, request, body)
        result = await invoke(ctx, op, params)
        status, headers, payload, content_type = rest_json_response(result, op.output_shape)
        status = status or op.http.get("responseCode", 200)
        out_headers = [("X-Amzn-RequestId", ctx.request_id), *headers.items()]
        if content_type and not any(k.lower() == "content-type" for k, _ in out_headers):
            out_headers.append(("Content-Type", content_type))
        return Response(status, payload, out_headers)
    except AWSError as err:
        return rest_json_error(_failed(ctx, err), op, ctx.request_id)
    except Exception as exc:
        return rest_json_error(_unexpected(ctx, exc), op, ctx.request_id)


# ---------------------------------------------------------------------------
# query: form-encoded POST with Action= (sts, iam; cloudwatch and sqs for their older clients)


def _from_form(form: dict[str, list[str]], shape, prefix: str = ""):
    """The value under ``prefix`` of a query form, named as botocore's query serializer names it:
    ``Tags.member.1.Key``, flattened lists ``AttributeName.1``, maps ``Attribute.1.Name`` or ``X.entry.1.key``."""
    kind = shape.type_name
    if kind == "structure":
        out = {}
        for name, member in shape.members.items():
            wire_name = member.serialization.get("name", name)
            value = _from_form(form, member, f"{prefix}.{wire_name}" if prefix else wire_name)
            if value is not None:
                out[name] = value
        return out or None
    if kind == "list":
        if form.get(prefix) == [""]:
            return []  # botocore's spelling of an empty list
        if shape.serialization.get("flattened"):
            item_name = shape.member.serialization.get("name")
            item_prefix = ".".join(prefix.split(".")[:-1] + [item_name]) if item_name else prefix
        else:
            item_prefix = f"{prefix}.{shape.member.serialization.get('name', 'member')}"
        items, i = [], 1
        while (value := _from_form(form, shape.member, f"{item_prefix}.{i}")) is not None:
            items.append(value)
            i += 1
        return items or None
    if kind == "map":
        base = prefix if shape.serialization.get("flattened") else f"{prefix}.entry"
        key_name = shape.key.serialization.get("name", "key")
        value_name = shape.value.serialization.get("name", "value")
        out, i = {}, 1
        while f"{base}.{i}.{key_name}" in form:
            out[form[f"{base}.{i}.{key_name}"][-1]] = _from_form(form, shape.value, f"{base}.{i}.{value_name}")
            i += 1
        return out or None
    values = form.get(prefix)
    return values[-1] if values else None


def _query_code(service: str | None, err: AWSError) -> str:
    """The code a query client matches: a query-compatible service's old code, else the error's own."""
    modeled = _modeled_query_codes(service) if service else None
    if service is None or modeled is None:
        return err.code
    return _QUERY_ERROR_CODES.get(service, {}).get(err.code) or modeled.get(err.code) or err.code


def query_error(err: AWSError, request_id: str, service: str) -> Response:
    body = _error_response(_query_namespace(service), _query_code(service, err), err, request_id)
    return Response(
        error_status(service, err), body.encode(), [("Content-Type", "text/xml"), ("X-Amzn-RequestId", request_id)]
    )


def unserved_query_error(err: AWSError, request_id: str, service: str) -> Response:
    """A query-protocol request for a service SelfMaker has no model of: still an XML ErrorResponse, which its
    client parses into a clean error (a JSON body would be a parser error, and a retry)."""
    body = _error_response(f"https://{service}.amazonaws.com/doc/", err.code, err, request_id)
    return Response(err.status, body.encode(), [("Content-Type", "text/xml"), ("X-Amzn-RequestId", request_id)])


def _error_response(namespace: str, code: str, err: AWSError, request_id: str) -> str:
    from xml.sax.saxutils import escape, quoteattr

    kind = "Sender" if err.status < 500 else "Receiver"
    return (
        f"<ErrorResponse xmlns={quoteattr(namespace)}><Error><Type>{kind}</Type>"
        f"<Code>{escape(code)}</Code><Message>{escape(err.message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )


def _query_namespace(service: str) -> str:
    model = legacy_model(service, "query") or service_model(service)
    return model.metadata.get("xmlNamespace") or f"https://{service}.amazonaws.com/doc/{model.api_version}/"


def _query_wire_operation(service: str, op: OperationModel) -> OperationModel:
    """The operation as the query protocol's clients name its members: the legacy wire model's, when the
    served model dropped those names (SQS), else the served one."""
    legacy = legacy_model(service, "query")
    return legacy.operation_model(op.name) if legacy and op.name in legacy.operation_names else op


async def handle_query(ctx: Context, form: dict[str, list[str]]) -> Response:
    action = (form.get("Action") or [""])[-1]
    ctx.operation = action
    try:
        if action not in service_model(ctx.service).operation_names:
            raise AWSError(
                "InvalidAction",
                f"Could not find operation {action} for version {service_model(ctx.service).api_version}",
            )
        op = operation_model(ctx.service, action)
        wire_op = _query_wire_operation(ctx.service, op)
        params = (_from_form(form, wire_op.input_shape) if wire_op.input_shape is not None else None) or {}
        result = await invoke(ctx, op, params)
        shape = wire_op.output_shape
        wrapper = shape.serialization.get("resultWrapper", f"{action}Result") if shape is not None else ""
        result_xml = to_xml(result or {}, shape, wrapper) if shape is not None else ""
        body = (
            f'<{action}Response xmlns="{_query_namespace(ctx.service)}">{result_xml}'
            f"<ResponseMetadata><RequestId>{ctx.request_id}</RequestId></ResponseMetadata></{action}Response>"
        )
        return Response(200, body.encode(), [("Content-Type", "text/xml"), ("X-Amzn-RequestId", ctx.request_id)])
    except AWSError as err:
        return query_error(_failed(ctx, err), ctx.request_id, ctx.service)
    except Exception as exc:
        return query_error(_unexpected(ctx, exc), ctx.request_id, ctx.service)


def ensure_form(body: bytes) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise AWSError(
            "MalformedQueryString", "The request body is not a valid form-encoded query: it is not UTF-8."
        ) from None
