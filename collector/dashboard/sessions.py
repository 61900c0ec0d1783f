"""Dashboard sessions: a random token in a cookie, the session itself in the database.

The sessions table (`collector.store.sessions`) holds every login, so a restarted collector,
or another collector process on the same database, keeps everyone logged in. A session unused
for IDLE_SECONDS expires; an open overview's live stream counts as use, so a wall screen stays
logged in while it shows the dashboard. At most MAX_SESSIONS live at once: a login beyond
that drops the least recently used. The cookie is HttpOnly and SameSite=Strict, and Secure
when the collector serves TLS. Only the SHA-256 of a token is kept, in memory and in the
database, so neither a dump of the process nor a copy of the database hands out live cookies.

Each process keeps the sessions it has seen in memory, and asks the database about one at most
every TOUCH_EVERY seconds: then it notices a logout done through another process, and writes
the session's last use if that is TOUCH_EVERY or more behind. So a busy dashboard costs one
read and one write per session a minute, not a write per request; idle expiry (12 hours)
and the least-recently-used order are off by at most that minute between processes. A
request's session is looked up before its handler by `middleware`, in a worker thread when the
database must be asked, so `current` never waits on the database on the event loop.

Each session carries a CSRF token. Forms send it in a hidden field and scripts in the
X-CSRF-Token header; every request that changes something must present it, and a request
that carries an Origin header must come from the collector's own origin as well.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from aiohttp import hdrs, web
from yarl import URL

from collector.store.sessions import SessionTable, StoredSession, Touch
from sitewatch.config.model import ROLES, Role

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

IDLE_SECONDS = 12 * 3600.0
MAX_SESSIONS = 10_000  # beyond this the least recently used session is dropped
# Seconds between a session's looks at the database (a logout elsewhere is seen within this)
# and at least between two writes of its last use: a minute is nothing against 12 idle hours.
TOUCH_EVERY = 60.0
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


@dataclass(slots=True)
class _Known:
    """A session as this process knows it, and what it knows of the database's row."""

    session: Session
    checked: float  # when the database last said the session is there
    written: float  # the last use the database holds


class SessionBook:
    """The dashboard's sessions, by the SHA-256 of their token: the database's, and the ones
    this process has seen lately in memory.

    The methods block on the database when they must ask it: `lookup` does that in a worker
    thread, for the event loop.
    """

    def __init__(
        self,
        table: SessionTable,
        idle: float = IDLE_SECONDS,
        capacity: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.time,
        touch_every: float = TOUCH_EVERY,
    ) -> None:
        self.table = table
        self.idle, self.capacity, self.clock = idle, capacity, clock
        self.touch_every = touch_every
        self._lock = threading.Lock()
        self._known: dict[str, _Known] = {}  # insertion order is least recently used first

    def __len__(self) -> int:
        """Return how many sessions the database holds."""
        return self.table.count()

    def create(self, login: Login) -> str:
        """Start a session for `login`; return its token, for the cookie."""
        now = self.clock()
        token = secrets.token_urlsafe(32)
        key = _key(token)
        session = Session(login, secrets.token_urlsafe(32), now, now)
        dropped = self.table.start(
            StoredSession(key, login.name, login.role, session.csrf, now, now),
            alive_since=now - self.idle,
            capacity=self.capacity,
            touched=self._unwritten(),
        )
        with self._lock:
            for gone in dropped:
                self._known.pop(gone, None)
            self._remember(key, _Known(session, now, now))
        return token

    def get(self, token: str) -> Session | None:
        """Return the live session of `token` and count this as use; None if there is none."""
        key, now = _key(token), self.clock()
        found = self._recent(key, now)
        return self._asked(key, now) if isinstance(found, _Ask) else found

    async def lookup(self, token: str) -> Session | None:
        """`get` for the event loop: the database is asked in a worker thread, when at all."""
        key, now = _key(token), self.clock()
        found = self._recent(key, now)
        if isinstance(found, _Ask):
            return await asyncio.to_thread(self._asked, key, now)
        return found

    def drop(self, token: str) -> None:
        """End the session of `token`, if it is live."""
        key = _key(token)
        with self._lock:
            self._known.pop(key, None)
        self.table.end(key)

    def flush(self) -> None:
        """Write the last uses the database does not have yet: when the collector stops."""
        self.table.touch(self._unwritten())

    def _recent(self, key: str, now: float) -> Session | _Ask | None:
        """Return the session if memory may answer for it, counting the use; else _ASK."""
        with self._lock:
            known = self._known.pop(key, None)
            if known is None:
                return _ASK
            if now - known.checked >= self.touch_every or now - known.session.last_seen > self.idle:
                self._known[key] = known
                return _ASK  # time to ask: ended elsewhere? used elsewhere since?
            known.session.last_seen = now
            self._known[key] = known  # to the end: most recently used
            return known.session

    def _asked(self, key: str, now: float) -> Session | None:
        """Return the session as the database has it, and note this use there if it is due."""
        stored = self.table.find(key)
        with self._lock:
            known = self._known.pop(key, None)
        if stored is None:
            return None  # logged out, here or through another process, or pushed out
        seen_here = known.session.last_seen if known is not None else stored.last_seen
        if now - max(stored.last_seen, seen_here) > self.idle:
            return None
        written = stored.last_seen
        if now - written >= self.touch_every:
            if not self.table.touch([(key, now)]):
                return None  # ended while we looked
            written = now
        if known is None:
            login = Login(stored.name, cast("Role", stored.role))
            known = _Known(Session(login, stored.csrf, stored.created, now), now, written)
        known.session.last_seen, known.checked, known.written = now, now, written
        with self._lock:
            self._remember(key, known)
        return known.session

    def _remember(self, key: str, known: _Known) -> None:
        self._known[key] = known
        while len(self._known) > self.capacity:  # memory holds at most what the table may
            del self._known[next(iter(self._known))]

    def _unwritten(self) -> list[Touch]:
        with self._lock:
            return [
                (key, known.session.last_seen)
                for key, known in self._known.items()
                if known.session.last_seen > known.written
            ]


class _Ask:
    """The answer of memory when the database must be asked."""


_ASK = _Ask()
SESSIONS: web.AppKey[SessionBook] = web.AppKey("dashboard_sessions", SessionBook)
_CURRENT: web.RequestKey[Session | None] = web.RequestKey("dashboard_session")


def install(app: web.Application, book: SessionBook) -> None:
    """Keep the app's dashboard sessions in `book`: each request's session is looked up before
    its handler (`middleware`), and uses not yet written are written when the app stops."""
    app[SESSIONS] = book
    app.middlewares.append(middleware)
    app.on_cleanup.append(_flush)


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Look the request's session up before its handler, so `current` need not wait."""
    book = request.app.get(SESSIONS)
    token = request.cookies.get(COOKIE)
    if book is not None and token:
        request[_CURRENT] = await book.lookup(token)
    return await handler(request)


async def _flush(app: web.Application) -> None:
    await asyncio.to_thread(app[SESSIONS].flush)


def _key(token: str) -> str:
    # surrogateescape: a cookie with bytes that are not UTF-8 is simply no session's key
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def current(request: web.Request) -> Session | None:
    """Return the session of the request's cookie, or None.

    The middleware has looked it up; without it (an app that did not `install` the book) the
    book is asked here.
    """
    if _CURRENT in request:
        return request[_CURRENT]
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
