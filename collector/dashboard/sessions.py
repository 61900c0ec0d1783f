"""Dashboard sessions: a random token in a cookie, the session itself in this process's memory.

Restarting the collector forgets every session, so everyone logs in again. A session unused for
IDLE_SECONDS expires; an open overview's live stream counts as use, so a wall screen stays
logged in while it shows the dashboard. The cookie is HttpOnly and SameSite=Strict, and Secure
when the collector serves TLS. Only the SHA-256 of a token is kept, so a dump of the process
memory does not hand out live cookies by name.

Each session carries a CSRF token. Forms send it in a hidden field and scripts in the
X-CSRF-Token header; every request that changes something must present it, and a request
that carries an Origin header must come from the collector's own origin as well.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import hdrs, web
from yarl import URL

from sitewatch.config.model import ROLES, Role

IDLE_SECONDS = 12 * 3600.0
MAX_SESSIONS = 10_000  # beyond this the least recently used session is dropped
COOKIE = "sitewatch_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Login:
    """Who a session belongs to; the API's staff check returns this for a logged-in user."""

    name: str
    role: Role

    def may(self, minimum: Role) -> bool:
        """Return whether this login holds at least the `minimum` role."""
        return ROLES.index(self.role) >= ROLES.index(minimum)


@dataclass(slots=True)
class Session:
    """One logged-in browser."""

    login: Login
    csrf: str
    created: float
    last_seen: float


class SessionBook:
    """The live sessions of this process, by the SHA-256 of their token."""

    def __init__(
        self,
        idle: float = IDLE_SECONDS,
        capacity: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle, self.capacity, self.clock = idle, capacity, clock
        self._sessions: dict[str, Session] = {}  # insertion order is least recently used first

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, login: Login) -> str:
        """Start a session for `login`; return its token, for the cookie."""
        now = self.clock()
        self._expire(now)
        while len(self._sessions) >= self.capacity:
            del self._sessions[next(iter(self._sessions))]
        token = secrets.token_urlsafe(32)
        self._sessions[_key(token)] = Session(login, secrets.token_urlsafe(32), now, now)
        return token

    def get(self, token: str) -> Session | None:
        """Return the live session of `token` and count this as use; None if there is none."""
        key = _key(token)
        session = self._sessions.pop(key, None)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen > self.idle:
            return None
        session.last_seen = now
        self._sessions[key] = session  # to the end: most recently used
        return session

    def drop(self, token: str) -> None:
        """End the session of `token`, if it is live."""
        self._sessions.pop(_key(token), None)

    def _expire(self, now: float) -> None:
        for key, session in list(self._sessions.items()):
            if now - session.last_seen <= self.idle:
                break  # ordered by use: every later one is fresher
            del self._sessions[key]


SESSIONS: web.AppKey[SessionBook] = web.AppKey("dashboard_sessions", SessionBook)


def _key(token: str) -> str:
    # surrogateescape: a cookie with bytes that are not UTF-8 is simply no session's key
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def current(request: web.Request) -> Session | None:
    """Return the session of the request's cookie, or None."""
    book = request.app.get(SESSIONS)
    token = request.cookies.get(COOKIE)
    if book is None or not token:
        return None
    return book.get(token)


def same_origin(request: web.Request) -> bool:
    """Return whether the request's Origin, when it sends one, is this collector's own.

    Host names and ports are compared, not schemes: behind a proxy that terminates TLS the
    collector sees http while the browser's origin is https.
    """
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return True
    try:
        theirs = URL(origin)
        ours = URL.build(scheme=theirs.scheme, authority=request.host)
    except (TypeError, ValueError):
        return False
    if theirs.scheme not in ("http", "https") or not theirs.host or not ours.host:
        return False  # "null" and other opaque origins
    return (theirs.host.lower(), theirs.port) == (ours.host.lower(), ours.port)


def csrf_ok(request: web.Request, session: Session, presented: object) -> bool:
    """Return whether a state-changing request may go ahead: its origin and its CSRF token."""
    if not isinstance(presented, str) or not same_origin(request):
        return False
    return hmac.compare_digest(presented.encode(), session.csrf.encode())


def logged_in(request: web.Request) -> Login | None:
    """Return the login of the request's session for the API's staff check; None without one.

    A request that changes something must send the session's CSRF token in X-CSRF-Token.
    """
    session = current(request)
    if session is None:
        return None
    if request.method not in SAFE_METHODS and not csrf_ok(
        request, session, request.headers.get(CSRF_HEADER)
    ):
        raise web.HTTPForbidden(reason="CSRF check failed")
    return session.login
