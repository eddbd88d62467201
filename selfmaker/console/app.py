"""The console's front door: static files, signing in and out, sessions, CSRF, and dispatch to the pages.

The ASGI app (server/app.py) hands this every unsigned request under /console. Open mode opens a session
as the default account at the first visit; strict mode asks for an access key and its secret once, checked
against the credentials file SigV4 verifies against, and keeps the session on the server (:mod:`.sessions`).
Every POST must carry the session's CSRF token (and, when the browser says where it comes from, come from
this origin); the cookie is SameSite=Strict besides. Pages then run as the session's account through the
API's own operations (:meth:`.web.View.call`).
"""

from __future__ import annotations

import hmac
import logging
import mimetypes
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from ..server.errors import AWSError
from ..server.http import BodyTooLarge, Request, Response
from .pages import (
    endpoints,
    experiments,
    featurestore,
    home,
    jobs,
    lineage,
    notebooks,
    pipelines,
    projects,
    registry,
    shadow_tests,
    tuning,
)
from .sessions import COOKIE, Session, SessionStore
from .web import PREFIX, SECURITY_HEADERS, View, match, page, redirect

if TYPE_CHECKING:
    from ..backends import Backends

log = logging.getLogger("selfmaker.console")

STATIC = Path(__file__).parent / "static"
# Every file the console serves, found once: a request names one of these or gets a 404 (no path is joined).
STATIC_FILES = {
    f"{PREFIX}/static/{path.relative_to(STATIC).as_posix()}": path for path in STATIC.rglob("*") if path.is_file()
}
FORM_LIMIT = 64 * 1024
# The codes by which operations say "no such resource": the page answers them 404, as a web page would.
NOT_FOUND_CODES = {"ResourceNotFound", "ResourceNotFoundException"}
# Every page, in one table; a new area adds its module's ROUTES here and its entry to rendering.NAVIGATION.
ROUTES = [
    *home.ROUTES,
    *pipelines.ROUTES,
    *jobs.ROUTES,
    *registry.ROUTES,
    *experiments.ROUTES,
    *endpoints.ROUTES,
    *featurestore.ROUTES,
    *lineage.ROUTES,
    *tuning.ROUTES,
    *notebooks.ROUTES,
    *shadow_tests.ROUTES,
    *projects.ROUTES,
]


class Console:
    def __init__(self, backends: Backends):
        self.backends = backends
        self.settings = backends.settings
        self.sessions = SessionStore(self.settings.console_session_seconds)

    async def handle(self, request: Request) -> Response:
        path = request.path
        if path == PREFIX:
            return redirect(f"{PREFIX}/", 308)
        if path in STATIC_FILES:
            return _static(STATIC_FILES[path])
        if path.startswith(f"{PREFIX}/static/"):
            return _plain(404, "Not found.")

        session, fresh = self._session(request)
        response = await self._answer(request, session)
        if fresh and not any(name == "Set-Cookie" for name, _ in response.headers):
            self._set_cookie(request, response, session.id)
        return response

    # -- sessions ------------------------------------------------------------

    def _session(self, request: Request) -> tuple[Session, bool]:
        """The caller's session, or a new one (open mode: signed in as the default account)."""
        session = self.sessions.get(_cookie(request))
        if session is not None:
            return session, False
        if self.settings.auth_mode == "strict":
            return self.sessions.new(), True
        return self.sessions.new(account_id=self.settings.default_account), True

    def _set_cookie(self, request: Request, response: Response, session_id: str) -> None:
        secure = "; Secure" if request.scope.get("scheme") == "https" else ""
        response.headers.append(
            (
                "Set-Cookie",
                f"{COOKIE}={session_id}; Path={PREFIX}; HttpOnly; SameSite=Strict; "
                f"Max-Age={self.settings.console_session_seconds}{secure}",
            )
        )

    # -- answering -----------------------------------------------------------

    async def _answer(self, request: Request, session: Session) -> Response:
        path, method = request.path, request.method
        form: dict[str, list[str]] = {}
        if method == "POST":
            try:
                form = await _form(request)
            except BodyTooLarge:
                return _plain(413, "The form is too large.")
            except ValueError as err:
                return _plain(400, str(err))
            refusal = _csrf_refusal(request, session, form)
            if refusal:
                return refusal

        if path == f"{PREFIX}/login":
            return await self._login(request, session, form)
        if path == f"{PREFIX}/logout" and method == "POST":
            self.sessions.end(session.id)
            response = self._after_logout()
            response.headers.append(("Set-Cookie", f"{COOKIE}=; Path={PREFIX}; HttpOnly; SameSite=Strict; Max-Age=0"))
            return response
        if not session.signed_in:
            if method in ("GET", "HEAD"):
                return redirect(f"{PREFIX}/login?next={_safe_next(request.path)}")
            return _plain(401, "Sign in first.")

        route, labels, other_method = match(ROUTES, method, path.removeprefix(PREFIX))
        if route is None:
            if other_method:
                return _plain(405, f"{method} is not allowed here.")
            return page("error.html", session, 404, title="Not found", message=f"No page at {path}.")
        view = View(request=request, backends=self.backends, session=session, labels=labels, form=form)
        try:
            return await route.handler(view)
        except AWSError as err:
            status = 404 if _not_found(err) else err.status if 400 <= err.status < 500 else 400
            return page("error.html", session, status, title=err.code, message=err.message)
        except Exception:  # a bug: said plainly to the reader, in full in the server's log
            log.exception("console page %s %s failed", method, path)
            return page(
                "error.html", session, 500, title="Internal error", message="This page failed; see the server's log."
            )

    def _after_logout(self) -> Response:
        if self.settings.auth_mode == "strict":
            return redirect(f"{PREFIX}/login")
        return redirect(f"{PREFIX}/")

    async def _login(self, request: Request, session: Session, form: dict) -> Response:
        if self.settings.auth_mode != "strict":
            return redirect(f"{PREFIX}/")  # open mode has nobody to sign in
        next_path = _safe_next(_first(form, "next") or request.query_value("next") or f"{PREFIX}/")
        if request.method != "POST":
            if session.signed_in:
                return redirect(next_path)
            return page("login.html", session, next=next_path, error=None)
        credential = self._credential(_first(form, "access_key"), _first(form, "secret_key"))
        if credential is None:
            log.info("console sign-in refused for access key %r", _first(form, "access_key")[:128])
            return page("login.html", session, 401, next=next_path, error="The access key or secret is wrong.")
        # A new session id at sign-in: an id planted before it (session fixation) never becomes signed in.
        self.sessions.end(session.id)
        signed_in = self.sessions.new(
            account_id=credential.account_id, access_key=credential.access_key, user_name=credential.user_name
        )
        response = redirect(next_path)
        self._set_cookie(request, response, signed_in.id)
        return response

    def _credential(self, access_key: str, secret: str):
        """The credentials file's entry for this key when ``secret`` is its secret. Only a person's key signs in:
        a workload's key dies with its job, endpoint or notebook, and a session opened with it would not."""
        credentials = getattr(self.backends.authenticator, "credentials", None)
        known = credentials.of_person(access_key) if credentials is not None else None
        # Compared even for an unknown key, so the time taken does not tell which keys exist.
        expected = known.secret_key if known else "\x00" * 40
        if hmac.compare_digest(expected.encode(), secret.encode()) and known is not None:
            return known
        return None


def _not_found(err: AWSError) -> bool:
    """SageMaker says "no such resource" with ResourceNotFound, or (jobs, endpoints, notebook instances, model package groups, as AWS does)
    a ValidationException whose words say so: either way the page is a 404."""
    if err.code in NOT_FOUND_CODES:
        return True
    words = err.message.lower()
    return err.code == "ValidationException" and any(
        phrase in words for phrase in ("does not exist", "not found", "could not find", "recordnotfound")
    )


def _cookie(request: Request) -> str | None:
    header = request.headers.get("cookie")
    if not header:
        return None
    try:
        jar = SimpleCookie(header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel else None


async def _form(request: Request) -> dict[str, list[str]]:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise ValueError("The console takes forms as application/x-www-form-urlencoded.")
    body = await request.body(FORM_LIMIT)
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except UnicodeDecodeError:
        raise ValueError("The form is not UTF-8.") from None


def _first(form: dict, name: str) -> str:
    values = form.get(name)
    return values[-1] if values else ""


def _csrf_refusal(request: Request, session: Session, form: dict) -> Response | None:
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        if urlsplit(origin).netloc != host:
            return _plain(403, "Cross-site form posts are refused.")
    if not session.csrf_matches(_first(form, "csrf")):
        return _plain(403, "The form's CSRF token is missing or stale: reload the page and try again.")
    return None


def _safe_next(path: str) -> str:
    """Only a console path may follow sign-in (never another site: no open redirect)."""
    if not path.startswith(f"{PREFIX}/") or path.startswith("//") or "\\" in path or "\r" in path or "\n" in path:
        return f"{PREFIX}/"
    return path


def _static(path: Path) -> Response:
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type.endswith("javascript"):
        content_type += "; charset=utf-8"
    headers = [h for h in SECURITY_HEADERS if h[0] != "Cache-Control"]
    # Vendored files carry their version in their name; our own change with the server: revalidate those.
    cache = "public, max-age=31536000, immutable" if "/vendor/" in path.as_posix() else "no-cache"
    return Response(200, path.read_bytes(), [("Content-Type", content_type), ("Cache-Control", cache), *headers])


def _plain(status: int, text: str) -> Response:
    return Response(status, f"{text}\n".encode(), [("Content-Type", "text/plain; charset=utf-8"), *SECURITY_HEADERS])
