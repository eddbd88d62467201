"""What every console page is built from: routes, the view a handler receives, and the responses it returns.

A page module declares ``ROUTES``, a list of :class:`Route` (method, pattern, handler); the console's
dispatcher (:mod:`.app`) matches a request against them. A handler is ``async def handler(view) -> Response``.
It reads and acts only through :meth:`View.call`: the same operation handlers, input validation and account
walls as the API, run as the signed-in account, answering what a client would see (the output shape's
members only, timestamps as epoch seconds). An AWSError it does not catch becomes an error page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..server.http import Request, Response
from ..server.models import operation_model
from ..server.operations import Context, invoke
from ..server.serialize import to_json_value
from .rendering import render
from .sessions import Session

if TYPE_CHECKING:
    from ..backends import Backends

PREFIX = "/console"

# Pages are ours alone: no script, style or frame from elsewhere, no inline script, no framing by others.
# Inline styles are allowed: Cytoscape.js sizes its canvas through a style attribute it writes.
SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
]

Handler = Callable[["View"], Awaitable[Response]]


@dataclass
class Route:
    method: str
    pattern: str  # below /console, e.g. "/pipelines/{name}"; a {label} matches one path segment
    handler: Handler
    regex: re.Pattern = field(init=False)

    def __post_init__(self):
        parts = re.split(r"\{(\w+)\}", self.pattern)
        source = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
        self.regex = re.compile(source + r"/?")


def match(routes: list[Route], method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """The route for ``method path`` and its labels; the bool says whether the path exists for another method."""
    other_method = False
    for route in routes:
        found = route.regex.fullmatch(path)
        if found:
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route, found.groupdict(), False
            other_method = True
    return None, {}, other_method


@dataclass
class View:
    """One request to a console page: who asks, what they asked, and how to answer."""

    request: Request
    backends: Backends
    session: Session
    labels: dict[str, str]
    form: dict[str, list[str]] = field(default_factory=dict)

    def query(self, name: str, default: str = "") -> str:
        return self.request.query_value(name) or default

    def queries(self, name: str) -> list[str]:
        return self.request.query.get(name, [])

    def field(self, name: str, default: str = "") -> str:
        values = self.form.get(name)
        return values[-1] if values else default

    async def call(self, operation: str, params: dict | None = None, service: str = "sagemaker") -> dict:
        """Run ``operation`` as the session's account, exactly as a signed API request would run it."""
        assert self.session.account_id is not None  # the dispatcher lets only signed-in sessions reach pages
        ctx = Context(
            backends=self.backends,
            account_id=self.session.account_id,
            region=self.backends.settings.region,
            service=service,
            operation=operation,
            access_key=self.session.access_key,
        )
        model = operation_model(service, operation)
        result = await invoke(ctx, model, params or {})
        if model.output_shape is None:
            return {}
        return to_json_value(result or {}, model.output_shape) or {}

    async def pages(
        self, operation: str, params: dict, items: str, limit: int = 1000, service: str = "sagemaker", token="NextToken"
    ) -> list:
        """Every item of a paginated answer (for small, bounded lists such as a pipeline execution's steps);
        ``token`` names the pagination member (CloudWatch Logs spells it nextToken)."""
        found: list = []
        next_token = None
        while len(found) < limit:
            page_params = {**params, token: next_token} if next_token else params
            answer = await self.call(operation, page_params, service=service)
            found += answer.get(items, [])
            next_token = answer.get(token)
            if not next_token:
                break
        return found[:limit]

    def flash(self, kind: str, message: str) -> None:
        self.session.flash = (kind, message)

    def render(self, template: str, status: int = 200, **values) -> Response:
        return page(template, self.session, status, request_path=self.request.path.removeprefix(PREFIX), **values)


def page(template: str, session: Session, status: int = 200, request_path: str = "", **values) -> Response:
    """A page of ``template``; ``request_path`` (below /console) marks the navigation's current entry."""
    body = render(template, session=session, flash=session.take_flash(), request_path=request_path or "/", **values)
    return Response(status, body.encode(), [("Content-Type", "text/html; charset=utf-8"), *SECURITY_HEADERS])


def redirect(location: str, status: int = 303) -> Response:
    return Response(status, b"", [("Location", location), *SECURITY_HEADERS])


def json_response(value, status: int = 200) -> Response:
    return Response(status, json.dumps(value).encode(), [("Content-Type", "application/json"), *SECURITY_HEADERS])
