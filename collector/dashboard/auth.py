"""Logging in and out, and the guard in front of every page.

A login checks the password with scrypt in a worker thread (a few at a time, so a burst of
attempts cannot eat the collector's memory). An unknown user name is checked against a dummy
hash of the same cost, so the answer takes as long as for a real user with a wrong password.
The login form has no session yet: its CSRF token is a double-submit cookie, scoped to /login.
Failures are counted per client address: behind a reverse proxy listed in `trusted_proxies`,
the address its X-Forwarded-For names; nobody else's X-Forwarded-For is believed.

Every form body is read by `read_form`: at most MAX_FORM bytes, LOGIN_FORM for the login form
that strangers may send (a larger declared body is refused before a byte of it is read), within
the front door's `body_seconds`, URL-encoded only.
The login form is read before anyone is known, so without those limits a stranger could hold
a connection open for ever, one byte at a time, or make the collector decode megabytes.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl, quote

from aiohttp import ClientPayloadError, web
from multidict import MultiDict, MultiDictProxy

from collector.appkeys import CONFIG
from collector.dashboard.limits import LIMITER
from collector.dashboard.render import error_page, render
from collector.dashboard.sessions import (
    COOKIE,
    CSRF_FIELD,
    SAFE_METHODS,
    SESSIONS,
    Login,
    Session,
    csrf_ok,
    current,
    same_origin,
)
from collector.errors import REFUSALS, CollectorError, Refusal, refusal
from collector.front import FRONT, client_address
from probes.values import HOLDS_NUL, NUL
from sitewatch.config.model import Role, User
from sitewatch.passwords import verify_password

log = logging.getLogger(__name__)
LOGIN_COOKIE = "sitewatch_login"
MAX_NAME, MAX_PASSWORD = 200, 1_024  # characters: longer is not a login, it is an attack
CONCURRENT_CHECKS = 4  # scrypt checks at once: each takes ~32 MB for ~0.1 s
# The cost of the default hash, for names that are nobody's: verifying it always fails.
DUMMY_HASH = "scrypt$32768$8$1$c2l0ZXdhdGNoLWR1bW15IQ$bmV2ZXItdGhlLWhhc2gtb2YtYW55LXBhc3N3b3JkISE"
CHECKS: web.AppKey[asyncio.Semaphore] = web.AppKey("dashboard_password_checks", asyncio.Semaphore)

# Bytes of one form: a note of MAX_TEXT characters is at most 12 bytes each percent-encoded.
MAX_FORM = 64 * 1024
# The login form: a name, a password, a path and a token. Parsing it runs on the event loop
# for anyone who asks (~1 ms for 16 KiB of percent-escapes: 32 strangers at once put /healthz's
# p99 over 100 ms). A real one is well under 2 KiB; a 1,000-character password, percent-encoded,
# is ~3 KiB: 4 KiB still takes it, and costs a quarter of 16 KiB to parse.
LOGIN_FORM = 4 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 50
FORM: web.RequestKey[MultiDictProxy[str]] = web.RequestKey("dashboard_form", MultiDictProxy)

PageHandler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PageError(CollectorError):
    """A page that cannot be shown: a refusal with a short title for its error page."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(status, title.lower().replace(" ", "_"), message)
        self.title = title


DOMAIN_TITLE = "Not done"  # a staff action the domain refused: an incident resolved already


def refusal_page(request: web.Request, session: Session | None, err: Refusal) -> web.Response:
    """Return the error page of a refusal: the dashboard's one mapping of errors to pages.

    A page's own refusal has its title; a domain error (`collector.errors`) keeps its status
    and message, under DOMAIN_TITLE.
    """
    mapped = refusal(err)
    title = err.title if isinstance(err, PageError) else DOMAIN_TITLE
    page = error_page(request, session, mapped.status, title, mapped.message)
    page.headers.update(mapped.headers)  # a 503's Retry-After
    return page


def shows_refusals(handler: Handler) -> Handler:
    """Wrap a page outside `guard` (login, logout): a refusal becomes its error page."""

    @functools.wraps(handler)
    async def shown(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except REFUSALS as err:
            return refusal_page(request, current(request), err)

    return shown


def guard(minimum: Role = "viewer") -> Callable[[PageHandler], Handler]:
    """Wrap a page: a session is needed, a POST needs its CSRF token, and `minimum` role."""

    def wrap(handler: PageHandler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            session = current(request)
            if session is None:
                if request.method in SAFE_METHODS:
                    return redirect(f"/login?next={quote(request.path_qs, safe='/')}")
                return error_page(
                    request, None, 403, "Logged out", "Your session has ended: log in again."
                )
            try:
                if request.method not in SAFE_METHODS:
                    form = await read_form(request)
                    if not csrf_ok(request, session, form.get(CSRF_FIELD)):
                        return error_page(
                            request,
                            session,
                            403,
                            "Refused",
                            "The form was stale or came from another site; reload the page "
                            "and try again.",
                        )
                if not session.login.may(minimum):
                    return error_page(
                        request, session, 403, "Not allowed", f"This needs the {minimum} role."
                    )
                return await handler(request, session)
            except REFUSALS as err:
                return refusal_page(request, session, err)

        return guarded

    return wrap


async def read_form(request: web.Request, limit: int = MAX_FORM) -> MultiDictProxy[str]:
    """Return the request's URL-encoded form, read once, small and in time; PageError if not.

    413 for a body over `limit` bytes (declared or as it arrives), 415 for another type or an
    encoding, 408 for a body slower than `body_seconds`. A browser that leaves mid-body is
    logged at debug: its answer has nowhere to go.
    """
    if FORM in request:
        return request[FORM]
    too_large = PageError(413, "Too large", f"A form may hold at most {limit} bytes.")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if (request.body_exists and request.content_type != FORM_TYPE) or encoding != "identity":
        raise PageError(415, "Not a form", f"Send the form as {FORM_TYPE}, not compressed.")
    raw = bytearray()
    try:
        async with asyncio.timeout(request.app[FRONT].body_seconds):
            while chunk := await request.content.read(limit + 1 - len(raw)):
                raw += chunk
                if len(raw) > limit:
                    raise too_large
    except TimeoutError as err:
        raise PageError(408, "Too slow", "The form did not arrive in time.") from err
    except (ConnectionError, web.RequestPayloadError, ClientPayloadError) as err:
        log.debug("%s %s: the browser left mid-form (%s)", request.method, request.path, err)
        raise PageError(400, "Incomplete", "The form ended before its end.") from err
    try:
        pairs = parse_qsl(
            raw.decode("utf-8", "replace"),
            keep_blank_values=True,
            max_num_fields=MAX_FIELDS,
            encoding="utf-8",
            errors="replace",  # bad UTF-8 (or a lone surrogate's bytes) shows as U+FFFD
        )
    except ValueError as err:
        raise PageError(400, "Bad form", f"A form may hold at most {MAX_FIELDS} fields.") from err
    if b"%00" in raw or b"\x00" in raw:  # cheap: most forms hold neither
        _refuse_nul(pairs)
    form = MultiDictProxy(MultiDict(pairs))
    request[FORM] = form
    return form


def _refuse_nul(pairs: list[tuple[str, str]]) -> None:
    """Refuse a form holding U+0000: PostgreSQL's text columns cannot store it (SQLite can)."""
    for name, value in pairs:
        if NUL in name or NUL in value:
            shown = "A field's name" if NUL in name else f"The {name[:40]}"
            raise PageError(422, "Not text", f"{shown} {HOLDS_NUL}.")


async def login_page(request: web.Request) -> web.StreamResponse:
    session = current(request)
    target = safe_next(request.query.get("next"))
    if session is not None:
        return redirect(target)
    return _login_form(request, target)


@shows_refusals
async def login(request: web.Request) -> web.StreamResponse:
    form = await read_form(request, LOGIN_FORM)
    target = safe_next(_field(form, "next", 2_000))
    presented = _field(form, CSRF_FIELD, 100)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    same = hmac.compare_digest(presented.encode(), expected.encode())
    if not (same_origin(request) and expected and same):
        return _login_form(
            request, target, error="The login form was stale; please try again.", status=403
        )
    name = _field(form, "name", MAX_NAME).strip()
    password = _field(form, "password", MAX_PASSWORD)
    config = request.app[CONFIG]
    address = client_address(request, config.trusted_proxies)
    limiter = request.app[LIMITER]
    wait = limiter.retry_after(address, name)
    if wait > 0:
        log.warning("login refused: too many failures from %s or for %r", address, name)
        minutes = max(1, math.ceil(wait / 60))
        return _login_form(
            request,
            target,
            error=f"Too many failed logins. Try again in {minutes} minute(s).",
            status=429,
            headers={"Retry-After": str(math.ceil(wait))},
        )
    user = _find(config.users, name)
    # Counted as failed before the (slow) check, so that a burst of concurrent attempts cannot
    # all get past the limit while the first ones are still being checked.
    limiter.failed(address, name)
    async with request.app[CHECKS]:
        matches = await asyncio.to_thread(
            verify_password, password, user.password_hash if user else DUMMY_HASH
        )
    if user is None or not matches or not name:
        log.warning("failed login for %r from %s", name, address)
        return _login_form(request, target, error="Wrong user name or password.", status=401)
    limiter.succeeded(address, name)
    # The session is written to the database: in a worker thread, not on the event loop.
    token = await asyncio.to_thread(request.app[SESSIONS].create, Login(user.name, user.role))
    log.info("%s logged in from %s", user.name, address)
    response = redirect(target)
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="Strict", secure=_secure(request), path="/"
    )
    response.del_cookie(LOGIN_COOKIE, path="/login")
    return response


@shows_refusals
async def logout(request: web.Request) -> web.StreamResponse:
    session = current(request)
    if session is not None:
        form = await read_form(request)
        if not csrf_ok(request, session, form.get(CSRF_FIELD)):
            return error_page(request, session, 403, "Refused", "Reload the page and try again.")
        await asyncio.to_thread(request.app[SESSIONS].drop, request.cookies[COOKIE])
        log.info("%s logged out", session.login.name)
    response = redirect("/login")
    response.del_cookie(COOKIE, path="/")
    return response


def _login_form(
    request: web.Request,
    target: str,
    *,
    error: str = "",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    if len(token) > 100:
        token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        None,
        status=status,
        headers=headers,
        login_csrf=token,
        next=target,
        error=error,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
        path="/login",
    )
    return response


def _find(users: tuple[User, ...], name: str) -> User | None:
    """Return the user called `name`, comparing against every user whatever matches."""
    found = None
    for user in users:
        if hmac.compare_digest(user.name.encode(), name.encode()):
            found = user
    return found


def _field(form: Mapping[str, object], name: str, limit: int) -> str:
    value = form.get(name)
    return value[:limit] if isinstance(value, str) else ""


def safe_next(target: str | None) -> str:
    """Return a local path to go to after login; anything else (another host) becomes /."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if any(not 0x20 < ord(c) < 0x7F or c == "\\" for c in target):
        return "/"  # a Location header carries printable ASCII; browsers read \ as /
    return target


def redirect(location: str) -> web.Response:
    """Return a 303 to `location` (a local path)."""
    return web.Response(status=303, headers={"Location": location})


def _secure(request: web.Request) -> bool:
    return request.app[CONFIG].tls is not None
