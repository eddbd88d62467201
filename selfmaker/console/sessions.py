"""The console's sessions: who is signed in, kept on the server, named by a random cookie.

A session is a random 256-bit id (the cookie: HttpOnly, SameSite=Strict, Path=/console) mapped to the account
its access key belongs to, a CSRF token every state-changing form carries, and an idle expiry. Sessions live
in this process's memory: a restart signs everyone out, and nothing of a session ever reaches the database
or a log. A visitor who has not signed in still gets a session (no account) so that the sign-in form itself
carries a CSRF token; signing in replaces it with a new id (no session fixation). Visitors' and signed-in
sessions are capped apart, oldest first out, so unauthenticated visits can neither grow memory without bound
nor push anyone's signed-in session out.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

COOKIE = "selfmaker_console"
MAX_SESSIONS = 10_000  # signed in: each took a valid access key and secret
MAX_VISITORS = 10_000  # not signed in: anyone can make one per request


@dataclass
class Session:
    id: str
    csrf: str
    expires: float
    account_id: str | None = None  # None until signed in
    access_key: str = ""
    user_name: str = ""
    # One message shown on the next page (the result of an action), then dropped.
    flash: tuple[str, str] | None = None

    @property
    def signed_in(self) -> bool:
        return self.account_id is not None

    def take_flash(self) -> tuple[str, str] | None:
        flash, self.flash = self.flash, None
        return flash

    def csrf_matches(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(self.csrf.encode(), str(given).encode())


class SessionStore:
    """The sessions of one server process, idle-expiring after ``lifetime`` seconds."""

    def __init__(self, lifetime: float, clock=time.monotonic):
        self.lifetime = lifetime
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # signed in
        self._visitors: OrderedDict[str, Session] = OrderedDict()  # not (yet) signed in
        self._lock = threading.Lock()

    def new(self, account_id: str | None = None, access_key: str = "", user_name: str = "") -> Session:
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            expires=self.clock() + self.lifetime,
            account_id=account_id,
            access_key=access_key,
            user_name=user_name,
        )
        table, cap = (self._sessions, MAX_SESSIONS) if session.signed_in else (self._visitors, MAX_VISITORS)
        with self._lock:
            table[session.id] = session
            while len(table) > cap:
                table.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of that id (its expiry pushed back), or None: unknown, or expired and now gone."""
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            table = self._sessions if session_id in self._sessions else self._visitors
            session = table.get(session_id)
            if session is None:
                return None
            if session.expires <= now:
                del table[session_id]
                return None
            session.expires = now + self.lifetime
            table.move_to_end(session_id)
            return session

    def end(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)
            self._visitors.pop(session_id, None)
