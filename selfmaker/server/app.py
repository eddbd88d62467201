"""The ASGI application: every wire protocol on one port.

A request is routed by, in order: our own health and metrics paths; the S3 virtual
host (``bucket.localhost``) or an S3 signature; ``X-Amz-Target`` (the JSON protocols);
the Smithy RPC v2 CBOR path; a form body signed for a service that accepts the query
protocol; a rest-json method and path of a service signed under that name. Which
service accepts which protocol is :mod:`.wire`'s table, not this module's.
Authentication happens once, here, before any handler.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import TYPE_CHECKING

import anyio

from .. import __version__
from ..backends import Backends
from ..config import Settings
from ..observability import CONTENT_TYPE, exposition, server_metrics
from .auth import signing_scope
from .cbor_protocol import cbor_error, handle_rpc_v2_cbor, match_rpc_v2_cbor
from .errors import AWSError
from .http import Request, Response
from .limits import read_body
from .models import service_model
from .operations import Context, load_all
from .protocol import (
    ensure_form,
    handle_json,
    handle_query,
    handle_rest_json,
    json_error,
    match_rest,
    query_error,
    request_payload,
    rest_json_error,
    unserved_query_error,
)
from .wire import json_targets, only_query, query_services, rest_json_services, rpc_v2_cbor_targets, wire

if TYPE_CHECKING:
    from ..console.app import Console

log = logging.getLogger("selfmaker")

HEALTH_PATH = "/_selfmaker/health"
METRICS_PATH = "/_selfmaker/metrics"  # Prometheus; also /metrics when unsigned
NOTEBOOKS_PATH = "/_selfmaker/notebooks/"  # notebook instances' proxy (services/notebooks/proxy.py)
CONSOLE_PATH = "/console"  # the web console (selfmaker/console), for unsigned requests


class SelfMakerApp:
    def __init__(self, settings: Settings):
        load_all()
        self.settings = settings
        self.backends = Backends.build(settings)
        self._console: Console | None = None  # made at the first console request

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] == "websocket" or scope["path"].startswith(NOTEBOOKS_PATH):
            # Notebook instances (HTTP and WebSocket), behind their own signed session (docs/notebooks.md).
            if scope["path"].startswith(NOTEBOOKS_PATH):
                from ..services.notebooks import proxy  # the layer above: imported when used, as S3's endpoint

                await proxy.handle(self.backends, scope, receive, send)
            elif scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4404})
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self.handle(request)
        if request.must_close_unread() and not any(k.lower() == "connection" for k, _ in response.headers):
            response.headers.append(("Connection", "close"))
        await response.send(send)

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.backends.start_workers()  # in the order selfmaker/backends.py declares
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for worker in reversed(self.backends.workers):  # then the store closes, under them all
                    await anyio.to_thread.run_sync(worker.stop)
                self.backends.close()
                print("SelfMaker stopped cleanly.", flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- routing -------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        if request.path == HEALTH_PATH or (request.path == "/health" and "authorization" not in request.headers):
            return self._health()
        if request.method == "GET" and (
            request.path == METRICS_PATH or (request.path == "/metrics" and _metrics_authorization(request))
        ):
            return self._metrics_refusal(request) or await self._metrics()

        scope = signing_scope(request)
        bucket_host = self._virtual_host_bucket(request)
        if bucket_host is None and _unsigned(request):
            # A browser: the console's pages, and `/` leads there. Signed requests to the same paths stay the
            # API's (path-style S3 on a bucket named "console", ListBuckets on `/`).
            if request.path == CONSOLE_PATH or request.path.startswith(f"{CONSOLE_PATH}/"):
                return await self._console_page(request)
            if request.path == "/" and request.method in ("GET", "HEAD") and _wants_html(request):
                return Response(302, b"", [("Location", f"{CONSOLE_PATH}/")])
        target = request.headers.get("x-amz-target")
        signed_service = scope.service if scope else None

        if bucket_host is not None or signed_service == "s3":
            return await self._s3(request, scope, bucket_host)
        if target:
            prefix, _, op_name = target.partition(".")
            return await self._document(request, scope, json_targets(), prefix, op_name, handle_json, json_error)
        if (rpc := match_rpc_v2_cbor(request)) is not None:
            return await self._document(request, scope, rpc_v2_cbor_targets(), *rpc, handle_rpc_v2_cbor, cbor_error)
        if (service := self._query_service(request, signed_service)) is not None:
            return await self._query(request, scope, service)
        if signed_service is None and _looks_like_query(request):
            return await self._query(request, scope, None)
        if (response := await self._rest_json(request, scope, signed_service)) is not None:
            return response
        if signed_service is None:
            # Unsigned and unmatched: anonymous S3 (e.g. a public or presigned-less GET).
            return await self._s3(request, scope, None)
        ctx = self._context("sagemaker")
        unserved = AWSError(
            "UnknownOperationException",
            f"SelfMaker does not serve {request.method} {request.path} for signing service {signed_service!r}.",
        )
        if _looks_like_query(request):  # an XML client (SNS, EC2, ...) parses only an XML ErrorResponse
            return unserved_query_error(unserved, ctx.request_id, signed_service)
        return json_error(unserved, ctx.request_id)

    @staticmethod
    def _query_service(request: Request, signed_service: str | None) -> str | None:
        """The service a query-protocol request is for: signed for one that accepts query, and a form
        POST or an ``Action`` in the URL (a service that speaks only query takes anything signed for it)."""
        service = query_services().get(signed_service or "")
        if service is None:
            return None
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if only_query(service) or content_type == "application/x-www-form-urlencoded" or "Action" in request.query:
            return service
        return None

    async def _query(self, request: Request, scope, service: str | None) -> Response:
        """A query-protocol request for ``service``. Unsigned (``None``), the service shows only in the
        Action: STS's words refuse it, and in open mode the Action picks STS or IAM."""
        started = time.perf_counter()
        ctx = self._context(service or "sts")
        error = await self._authenticate(ctx, request, scope)
        if error:
            return self._observed(ctx, started, query_error(error, ctx.request_id, ctx.service))
        try:
            form = ensure_form(await request_payload(request))  # botocore gzips large PutMetricData forms
        except AWSError as err:
            ctx.error_code = err.code
            return self._observed(ctx, started, query_error(err, ctx.request_id, ctx.service))
        for key, values in request.query.items():
            form.setdefault(key, values)
        if service is None:
            ctx.service = _query_service_of((form.get("Action") or [""])[-1])
        member = wire(ctx.service).query_path_member
        if member and member not in form and request.path.strip("/"):
            # Older SDKs post to the resource's own URL (an SQS queue URL) instead of naming it in the form.
            form[member] = [f"http://{request.headers.get('host', '')}{request.path}"]
        return self._observed(ctx, started, await handle_query(ctx, form))

    async def _rest_json(self, request: Request, scope, signed_service: str | None) -> Response | None:
        """A rest-json operation of a service signed as ``signed_service`` (unsigned: SageMaker's), or None."""
        # Matched still percent-encoded, labels decoded once by match_rest: a label may hold an encoded "/"
        # (GetRecord of a feature group ARN, ".../feature-group/<name>") or "%" that decoding first would change.
        path = request.raw_path.split("?", 1)[0]
        started = time.perf_counter()
        for service in rest_json_services(signed_service or "sagemaker"):
            matched = match_rest(service, request.method, path)
            if matched:
                op, labels = matched
                ctx = self._context(service)
                ctx.operation = op.name
                error = await self._authenticate(ctx, request, scope)
                if error:
                    return self._observed(ctx, started, rest_json_error(error, op, ctx.request_id))
                return self._observed(ctx, started, await handle_rest_json(ctx, request, op, labels))
        return None

    async def _document(
        self, request: Request, scope, services: dict[str, str], api: str, op_name: str, handle, error
    ) -> Response:
        """A JSON or RPC v2 CBOR request to ``api`` (its target prefix), answered by ``handle`` or ``error``."""
        started = time.perf_counter()
        service = services.get(api)
        ctx = self._context(service or "sagemaker")
        if service is None:
            return error(
                AWSError("UnknownOperationException", f"SelfMaker does not serve the API {api!r}."), ctx.request_id
            )
        ctx.operation = op_name
        refusal = await self._authenticate(ctx, request, scope)
        if refusal:
            return self._observed(ctx, started, error(refusal, ctx.request_id, service))
        return self._observed(ctx, started, await handle(ctx, request, op_name))

    def _observed(self, ctx: Context, started: float, response: Response) -> Response:
        """``response``, once its request is counted in the API metrics of /metrics."""
        server_metrics(self.backends).observe_api(
            ctx.service, ctx.operation, time.perf_counter() - started, ctx.error_code
        )
        return response

    def _context(self, service: str) -> Context:
        return Context(
            backends=self.backends,
            account_id=self.settings.default_account,
            region=self.settings.region,
            service=service,
        )

    async def _authenticate(self, ctx: Context, request: Request, scope) -> AWSError | None:
        """Fill the context with the caller's identity, or return the error that refuses them."""
        try:
            # What the headers alone refuse (no or unknown key, malformed, expired, unsigned operation
            # headers, wrong service) is refused before a body byte is read; the body is read within its cap.
            self.backends.authenticator.check_headers(request, scope, service=ctx.service)
            body = await read_body(request, ctx.service)
            authenticator = self.backends.authenticator
            # Open mode checks no signature: hashing a body (up to 6 MB for InvokeEndpoint) would be wasted.
            payload_sha256 = hashlib.sha256(body).hexdigest() if authenticator.checks_payload else None
            principal = authenticator.authenticate(request, scope, payload_sha256, service=ctx.service)
        except AWSError as err:
            ctx.error_code = err.code
            return err
        ctx.account_id, ctx.access_key, ctx.region = principal.account_id, principal.access_key, principal.region
        ctx.headers = request.headers
        return None

    async def _console_page(self, request: Request) -> Response:
        if self._console is None:
            from ..console.app import Console  # the layer above: imported when used, as the notebooks' proxy

            self._console = Console(self.backends)
        return await self._console.handle(request)

    def _virtual_host_bucket(self, request: Request) -> str | None:
        """``bucket.localhost:7600`` or ``bucket.s3.<anything>`` names a bucket; plain hosts do not."""
        host = request.headers.get("host", "").rsplit(":", 1)[0]
        if not host or host.replace(".", "").isdigit() or host.startswith("["):
            return None
        labels = host.split(".")
        if len(labels) >= 2 and labels[-1] == "localhost":
            return ".".join(labels[:-1])
        if "s3" in labels[1:]:
            index = labels.index("s3", 1)
            return ".".join(labels[:index])
        return None

    async def _s3(self, request: Request, scope, bucket_host: str | None) -> Response:
        from ..objects.endpoint import handle_s3

        return await handle_s3(self.backends, request, scope, bucket_host)

    def _metrics_refusal(self, request: Request) -> Response | None:
        """Strict mode: /metrics answers only ``Authorization: Bearer <--metrics-token>``."""
        if self.settings.auth_mode != "strict":
            return None
        token = self.settings.metrics_token
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return None
        reason = (
            "send the metrics token as Authorization: Bearer <token>"
            if token
            else "this server has no metrics token: start it with --metrics-token (or SELFMAKER_METRICS_TOKEN)"
        )
        return Response(
            401,
            f"Unauthorized: {reason}.\n".encode(),
            [("Content-Type", "text/plain; charset=utf-8"), ("WWW-Authenticate", 'Bearer realm="selfmaker-metrics"')],
        )

    async def _metrics(self) -> Response:
        text = await anyio.to_thread.run_sync(exposition, self.backends)  # reads the store (resource counts)
        return Response(200, text, [("Content-Type", CONTENT_TYPE)])

    def _health(self) -> Response:
        body = {
            "status": "ok",
            "version": __version__,
            "database": self.backends.store.engine.dialect.name,
            "auth": self.settings.auth_mode,
        }
        return Response(200, json.dumps(body).encode(), [("Content-Type", "application/json")])


def _metrics_authorization(request: Request) -> bool:
    """/metrics is ours when unsigned or bearing a token; SigV4-signed, it is S3's bucket "metrics"."""
    authorization = request.headers.get("authorization")
    return authorization is None or authorization.strip().partition(" ")[0].lower() == "bearer"


def _unsigned(request: Request) -> bool:
    """No AWS signature of any form: neither an Authorization header nor a presigned URL's credential."""
    return "authorization" not in request.headers and "X-Amz-Credential" not in request.query


def _wants_html(request: Request) -> bool:
    """A browser navigating: it asks for HTML first (SDKs and the CLI never do)."""
    return "text/html" in request.headers.get("accept", "").lower()


def _looks_like_query(request: Request) -> bool:
    """An unsigned STS or IAM request: an Action in the query string, or a form-encoded POST."""
    content_type = request.headers.get("content-type", "").lower()
    return "Action" in request.query or (
        request.method == "POST" and content_type.startswith("application/x-www-form-urlencoded")
    )


def _query_service_of(action: str) -> str:
    return (
        "iam"
        if action in service_model("iam").operation_names and action not in service_model("sts").operation_names
        else "sts"
    )


def create_app(settings: Settings | None = None) -> SelfMakerApp:
    return SelfMakerApp(settings or Settings())
