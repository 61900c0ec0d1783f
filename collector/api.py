"""The collector's HTTP API: agents' plan and results; staff's sites, history, incidents and
maintenance windows; /healthz.

Every error leaves as `{"error": {"code", "message"}}` with a 4xx status: handlers raise a
`CollectorError`, or let a domain error (an incident in the wrong state, a refused window or
batch) propagate, and the `errors` middleware maps it once (`collector.errors`). A request the
code did not foresee is logged and answered 500 with the same body, never a traceback page.
Handlers take what they need from narrow app keys (`collector.appkeys`), never one object
holding the whole collector; `build_app(collector)` sets them. Tokens are
compared by their SHA-256, in constant time, against every known token so that timing tells
nothing about which one came close.

A body is read only after its sender is authenticated, and inflated in bounded steps
(`collector.body`). Large reads (history, reports) are fetched and serialised in a small pool of
threads, never on the event loop, and each token or session may run only a few at once.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from aiohttp import ClientPayloadError, web

from collector import maintenance, report
from collector.appkeys import (
    CLOCK,
    CONFIG,
    ELECTION,
    INCIDENTS,
    MAINTENANCE,
    NOTIFY_WAKE,
    PIPELINE,
    STORE,
    TARGETS,
    Targets,
)
from collector.body import Inflater, decode_json, finite, unstorable_text
from collector.dashboard.routes import add_routes
from collector.dashboard.sessions import COOKIE, Login, logged_in
from collector.errors import REFUSALS, CollectorError, refusal
from collector.front import (
    FRONT,
    MAX_TEXT,
    FrontLimits,
    error_json,
    expensive,
    expensive_pool,
    json_response,
    strict_dumps,
    whole_number,
)
from collector.health import HEALTH, health_check
from collector.incidents import StaffAction
from collector.ingest import Batch, BatchError, parse_batch
from collector.metrics import METRICS, get_metrics, registry_of
from collector.service import Collector
from collector.site_cache import SITE_CACHE, SiteCache
from collector.store import Store, Stored
from collector.times import format_ts
from collector.views import site_json
from probes.plan import plan_to_json
from probes.result import ResultFormatError, parse_ts
from probes.values import KINDS
from sitewatch.config.model import ROLES, AgentCredential, ApiToken, Role

log = logging.getLogger(__name__)
MAX_BODY = 16 * 1024 * 1024  # bytes after decompression: about 20,000 results
Known = TypeVar("Known", AgentCredential, ApiToken)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def refused(err: CollectorError) -> web.Response:
    """Return the contract's error response for a refusal."""
    return error_json(err.status, err.code, err.message, headers=err.headers, **err.extra)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the contract's error body: the API's one mapping of errors."""
    try:
        return await handler(request)
    except REFUSALS as err:
        return refused(refusal(err))
    except web.HTTPRequestEntityTooLarge:
        return error_json(413, "too_large", f"the body is over {MAX_BODY} bytes")
    except web.HTTPException as err:
        if err.status < 400:
            raise
        code = err.reason.lower().replace(" ", "_")
        return error_json(err.status, code, err.reason, headers=_kept(err))
    except asyncio.CancelledError:
        raise
    except (ConnectionError, web.RequestPayloadError, ClientPayloadError) as err:
        # A client that hung up mid-body, wherever its body was being read: no fault of ours.
        return refused(_gone(request, err))
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return error_json(500, "internal", "internal error, see the log")


def _kept(err: web.HTTPException) -> dict[str, str]:
    """Return the headers of aiohttp's error worth keeping, such as a 405's Allow."""
    return {name: err.headers[name] for name in ("Allow",) if name in err.headers}


EXPENSIVE_PATHS = frozenset(
    {"/api/v1/history", "/api/v1/reports/sla", "/reports", "/reports/sla.csv"}
)
EXPENSIVE_PREFIXES = ("/sites/",)  # the dashboard's site page: every link's charts, its printers
IN_FLIGHT: web.AppKey[Counter[str]] = web.AppKey("expensive_in_flight", Counter)


@web.middleware
async def expensive_reads(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Let one token or session run only a few expensive reads at once; 429 beyond that.

    Counted by the credential presented (its hash), before it is checked: a stranger's guesses
    count only against themselves, and a real token's slots are taken only by its holder.
    """
    if not _is_expensive(request.path) or request.method not in ("GET", "HEAD"):
        return await handler(request)
    key, in_flight = _reader_key(request), request.app[IN_FLIGHT]
    limit = request.app[FRONT].expensive_per_client
    if in_flight[key] >= limit:
        raise CollectorError(
            429,
            "busy",
            f"{limit} large reads are already running for this token: wait for them",
            headers={"Retry-After": "2"},
        )
    in_flight[key] += 1
    try:
        return await handler(request)
    finally:
        in_flight[key] -= 1
        if in_flight[key] <= 0:
            del in_flight[key]


def _is_expensive(path: str) -> bool:
    return path in EXPENSIVE_PATHS or path.startswith(EXPENSIVE_PREFIXES)


def _reader_key(request: web.Request) -> str:
    """Return who is reading: the token as `token_of` reads it, else the session, else the address.

    The key is what authentication compares: the SHA-256 of the token once its scheme and
    spaces are taken off (for a known token, its `token_sha256`), so "bearer  X" and "Bearer X"
    share one count. A session counts by the SHA-256 of its cookie, as the session book keys it.
    """
    if "Authorization" in request.headers:
        token = _bearer(request.headers["Authorization"])
        if token is None:
            return f"address:{request.remote}"  # refused by the handler, counted by address
        return "token:" + _digest(token)
    cookie = request.cookies.get(COOKIE)
    if cookie:
        return "session:" + _digest(cookie)
    return f"address:{request.remote}"


def _bearer(header: str) -> str | None:
    """Return the token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def token_of(request: web.Request) -> str:
    """Return the bearer token a request carries; 401 without one."""
    token = _bearer(request.headers.get("Authorization", ""))
    if token is None:
        raise CollectorError(401, "unauthenticated", "send Authorization: Bearer <token>")
    return token


def _matching(token: str, known: tuple[Known, ...]) -> Known | None:
    digest = _digest(token)
    found = None
    for entry in known:  # every one compared, whatever matches first
        if hmac.compare_digest(digest, entry.token_sha256):
            found = entry
    return found


def agent_of(request: web.Request) -> AgentCredential:
    agent = _matching(token_of(request), request.app[CONFIG].agents)
    if agent is None:
        raise CollectorError(401, "unauthenticated", "unknown agent token")
    return agent


def staff(minimum: Role) -> Callable[[web.Request], ApiToken | Login]:
    def check(request: web.Request) -> ApiToken | Login:
        # A dashboard session counts when no bearer token is sent (changes need its CSRF token).
        token: ApiToken | Login | None = None
        if "Authorization" not in request.headers:
            token = logged_in(request)
        if token is None:
            token = _matching(token_of(request), request.app[CONFIG].api_tokens)
        if token is None:
            raise CollectorError(401, "unauthenticated", "unknown API token")
        if ROLES.index(token.role) < ROLES.index(minimum):
            raise CollectorError(403, "forbidden", f"this needs the {minimum} role")
        return token

    return check


viewer = staff("viewer")
HISTORY_LIMIT, MAX_HISTORY = 10_000, 100_000  # results in one history reply
operator = staff("operator")


def now_of(request: web.Request) -> float:
    """Return the time by the app's clock: once per request, for every part of its answer."""
    return request.app[CLOCK].now()


async def get_plan(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    plan = request.app[PIPELINE].plan(agent.site)
    etag = f'"{plan.version}"'
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    return json_response(plan_to_json(plan), headers={"ETag": etag})


async def read_body(request: web.Request) -> bytes:
    """Return the request's body inflated, never more than MAX_BODY bytes of it.

    Call only once the sender is authenticated: nothing is inflated for a stranger. The body
    must arrive within the front door's `body_seconds`; a client that hangs up mid-body is
    logged at debug, it is no fault of ours.
    """
    declared = request.content_length
    if declared is not None and declared > MAX_BODY:
        raise CollectorError(413, "too_large", f"the body is over {MAX_BODY} bytes")
    try:  # a BodyError (bad encoding, too large inflated) is the middleware's to map
        inflater = Inflater(request.headers.get("Content-Encoding", ""), MAX_BODY)
        async with asyncio.timeout(request.app[FRONT].body_seconds):
            async for chunk in request.content.iter_chunked(64 * 1024):
                for _step in inflater.feed(chunk):
                    await asyncio.sleep(0)  # let health checks in between steps
        return inflater.finish()
    except TimeoutError as err:
        raise CollectorError(408, "too_slow", "the body did not arrive in time") from err
    except (ConnectionError, web.RequestPayloadError) as err:  # the client hung up mid-body
        raise _gone(request, err) from err


def _gone(request: web.Request, err: BaseException) -> CollectorError:
    log.debug("%s %s: the client left mid-body (%s)", request.method, request.path, err)
    return CollectorError(400, "incomplete_body", "the body ended before its end")


PARSE_OFF_LOOP = 256 * 1024  # bytes of inflated body above which a batch is parsed in a thread
# JSON values in one batch, counted before decoding: the decoder holds the GIL through a flat
# list (16 MiB of `0,0,...` is 8 M values, 0.35 s of stalled loop even from a thread). A batch of
# the agent's 500 results, all printers with 16 supplies and 5 alerts, counts ~136,000; at the
# cap the worst shape (nested empty lists) stalls the loop ~45 ms, most shapes under 10 ms
# (bench/body_bench.py). An agent told 413 sends half as many results per batch.
MAX_BATCH_VALUES = 250_000
BUSY_RETRY = "1"  # seconds an agent should wait when its previous batch is still being stored


async def post_results(request: web.Request) -> web.StreamResponse:
    """Store an agent's batch: the rules of refusal are in `collector.ingest`.

    A large batch (5,000 printer results is ~0.4 s of decoding and checking) is parsed in a
    worker thread so the loop keeps answering; one batch per agent is taken at a time, so one
    agent cannot hold several threads (a second concurrent POST is a 429 with Retry-After).
    """
    agent = agent_of(request)
    pipeline = request.app[PIPELINE]
    intake = pipeline.intake
    if not intake.admit(agent.id):
        raise CollectorError(
            429,
            "busy",
            f"a batch from {agent.id} is being stored: send the next once it is answered",
            headers={"Retry-After": BUSY_RETRY},
        )
    try:
        raw = await read_body(request)
        now = now_of(request)
        parse = functools.partial(
            _parse_results,
            raw,
            agent=agent.id,
            targets=pipeline.targets_of(agent),
            links=pipeline.links_of(agent),
            now=now,
            not_before=now - pipeline.retention,
        )
        try:
            if len(raw) > PARSE_OFF_LOOP:
                batch = await asyncio.to_thread(parse, in_thread=True)
            else:
                batch = parse(in_thread=False)
        except BatchError as err:
            intake.refused(agent.id, err)  # counted for /metrics; the middleware answers it
            raise
        outcome = await pipeline.ingest(agent, batch)
    finally:
        intake.leave(agent.id)
    intake.stored(agent.id, batch)
    reply: dict[str, Any] = {"stored": outcome.stored, "duplicates": outcome.duplicates}
    if batch.heartbeat_refused is not None:
        reply["heartbeat"] = {"refused": batch.heartbeat_refused}
    if batch.ignored:
        reply["ignored"] = list(batch.ignored[:MAX_IGNORED_SHOWN])
    return json_response(reply)


MAX_IGNORED_SHOWN = 20  # unknown keys named in a reply; /metrics counts them all


def _parse_results(
    raw: bytes,
    *,
    agent: str,
    targets: frozenset[str],
    now: float,
    not_before: float,
    in_thread: bool,
    links: frozenset[str],
) -> Batch:
    """Return the batch in a posted body, or raise BodyError or BatchError."""
    body = decode_json(raw, in_thread=in_thread, max_values=MAX_BATCH_VALUES)
    return parse_batch(
        body, agent=agent, targets=targets, now=now, not_before=not_before, links=links
    )


async def get_sites(request: web.Request) -> web.StreamResponse:
    viewer(request)
    pipeline, now = request.app[PIPELINE], now_of(request)
    views = pipeline.views(now)
    text = await request.app[SITE_CACHE].sites_text(views, pipeline.heartbeats, now)
    return web.Response(text=text, content_type="application/json")


async def get_site(request: web.Request) -> web.StreamResponse:
    viewer(request)
    site_id = request.match_info["id"]
    pipeline, now = request.app[PIPELINE], now_of(request)
    for view in pipeline.views(now):
        if view.id == site_id:
            shares = await request.app[SITE_CACHE].shares([view], now)
            body = site_json(view, pipeline.heartbeats.get(view.id), shares)
            return json_response(finite(body))
    raise CollectorError(404, "not_found", f"no site {site_id!r}")


async def get_sla_report(request: web.Request) -> web.StreamResponse:
    """The management report for whole days in the inventory's time zone, `to` included."""
    viewer(request)
    inventory = request.app[CONFIG].inventory
    first, last = _day_param(request, "from"), _day_param(request, "to")
    if last < first:
        raise CollectorError(400, "bad_range", "to: must not be before from")
    try:
        start, end = report.period_bounds(first, last, inventory.timezone)
    except ValueError as err:
        raise CollectorError(400, "bad_range", f"from, to: {err}") from err
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise CollectorError(400, "bad_format", f"format: {fmt!r} is not json or csv")
    build = functools.partial(
        report.build_report, request.app[STORE], inventory, start, end, now_of(request)
    )
    built = await expensive(request, build)
    if fmt == "csv":
        name = f"sla-{first.isoformat()}-{last.isoformat()}.csv"
        return web.Response(
            text=report.report_csv(built),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return json_response(finite(report.report_json(built)))


def _day_param(request: web.Request, name: str) -> date:
    text = request.query.get(name, "")
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise CollectorError(
            400, "bad_date", f"{name}: {text!r} is not a date (YYYY-MM-DD)"
        ) from err


async def get_history(request: web.Request) -> web.StreamResponse:
    viewer(request)
    targets = request.app[TARGETS]
    target = request.query.get("target", "")
    if target not in targets:
        raise CollectorError(400, "bad_target", f"target: {target!r} is not a link or device id")
    now = now_of(request)
    start = _time_param(request, "from", now - 86_400)
    end = _time_param(request, "to", now)
    if end <= start:
        raise CollectorError(400, "bad_range", "to: must be after from")
    limit_text = request.query.get("limit", str(HISTORY_LIMIT))
    limit = whole_number(limit_text)
    if limit is None or not 1 <= limit <= MAX_HISTORY:
        raise CollectorError(
            400, "bad_limit", f"limit: {limit_text!r} is not a number 1..{MAX_HISTORY}"
        )
    kinds = _history_kinds(request, targets, target)
    # Oldest first, as asked; a reply cut at the limit says so, and from where to ask again.
    body, count, last = await _history_json(
        request, request.app[STORE], target, (start, end), limit, kinds=kinds
    )
    headers = {}
    if count == limit and last is not None:
        headers["X-SiteWatch-Truncated"] = "true"
        headers["X-SiteWatch-Next-From"] = format_ts(last)
    return web.Response(body=body, headers=headers, content_type="application/json")


HISTORY_PAGE = 2_000  # rows built at once: few enough that the garbage collector stays quick
LINK_HISTORY_KIND = "icmp"  # a link's history by default: its round trips, what a chart draws


def _history_kinds(request: web.Request, targets: Targets, target: str) -> tuple[str, ...] | None:
    """Return the result kinds a history reply holds (None: every kind), from `kind=`.

    A link's results are of several kinds (pings, its router's interface, the path probe);
    without `kind=` a link's history is its pings, as it was before the others existed, so a
    chart of round trips is not diluted by readings without one. `kind=all` gives every kind;
    a device's history gives every kind unless one is asked for.
    """
    text = request.query.get("kind")
    if text is None:
        return (LINK_HISTORY_KIND,) if target in targets.links else None
    if text == "all":
        return None
    if text not in KINDS:
        raise CollectorError(
            400, "bad_kind", f"kind: {text!r} is not all or one of {', '.join(KINDS)}"
        )
    return (text,)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of a history reply, encoded, and where the next page starts."""

    json: str  # the rows, comma-separated, without brackets
    sent: int  # rows in `json`
    fetched: int  # rows the store gave, some of them perhaps sent already
    last: datetime | None  # the time of the last row sent
    since: float  # where the next page starts: a millisecond before the last row fetched
    seen: frozenset[tuple[str, str, int]]  # rows at or after `since` that were sent already


async def _history_json(
    request: web.Request,
    store: Store,
    target: str,
    span: tuple[float, float],
    limit: int,
    *,
    kinds: tuple[str, ...] | None = None,
) -> tuple[bytes, int, datetime | None]:
    """Return a target's history as JSON, the rows in it and the time of the last one.

    Built page by page in the large-read pool: 60,000 rows at once would be 600,000 live
    objects, and the collector's pauses for them took 150 ms of the event loop at a time.
    Two readers' pages take turns. A page starts a millisecond before the last row of the
    one before (times pass through float), and skips the rows already sent.
    """
    parts: list[str] = []
    sent, since, seen, last = 0, span[0], frozenset[tuple[str, str, int]](), None
    for _ in range(limit):  # bounded: every page but the last sends at least one row
        want = min(HISTORY_PAGE, limit - sent) + len(seen)
        fetch = functools.partial(
            _history_page, store, target, (since, span[1]), want, seen, kinds=kinds
        )
        page = await expensive(request, fetch)
        if page.sent:
            parts.append(page.json)
            sent, last = sent + page.sent, page.last
        if page.fetched < want or sent >= limit or not page.sent:
            break
        since, seen = page.since, page.seen
    return ("[" + ", ".join(parts) + "]").encode(), sent, last


def _history_page(
    store: Store,
    target: str,
    span: tuple[float, float],
    want: int,
    seen: frozenset[tuple[str, str, int]],
    *,
    kinds: tuple[str, ...] | None = None,
) -> HistoryPage:
    """Fetch and encode one page, in a worker thread; every row fetched is sent or was."""
    fetched = store.results.history(target, span[0], span[1], want, kinds=kinds)
    rows = [row for row in fetched if (row.source, row.outbox, row.seq) not in seen]
    if not rows:
        return HistoryPage("", 0, len(fetched), None, span[0], seen)
    since = fetched[-1].result.ts.timestamp() - 0.001
    now_seen = {
        (row.source, row.outbox, row.seq) for row in fetched if row.result.ts.timestamp() >= since
    }
    encoded = ", ".join(
        strict_dumps([_history_row(row) for row in rows[at : at + 500]])[1:-1]
        for at in range(0, len(rows), 500)  # json.dumps holds the GIL for all it is given
    )
    return HistoryPage(
        encoded, len(rows), len(fetched), rows[-1].result.ts, since, frozenset(now_seen)
    )


def _history_row(row: Stored) -> dict[str, Any]:
    """Return one row of a history reply; the store's reader already made its numbers finite."""
    return {
        "ts": format_ts(row.result.ts),
        "kind": row.result.kind,
        "source": row.source,
        "ok": row.result.ok,
        "rtt_ms": row.result.rtt_ms,
        "loss": row.result.loss,
        "value": row.result.value,
    }


async def get_incidents(request: web.Request) -> web.StreamResponse:
    viewer(request)
    status = request.query.get("status", "open")
    if status not in ("open", "resolved", "all"):
        raise CollectorError(400, "bad_status", f"status: {status!r} is not open, resolved or all")
    now = now_of(request)
    start = _time_param(request, "from", 0.0)
    end = _time_param(request, "to", now + 1.0)
    limit_text = request.query.get("limit", "500")
    limit = whole_number(limit_text)
    if limit is None or not 1 <= limit <= 10_000:
        raise CollectorError(400, "bad_limit", f"limit: {limit_text!r} is not a number 1..10000")
    book = request.app[INCIDENTS]
    found = await asyncio.to_thread(
        book.find,
        status,  # type: ignore[arg-type]
        start,
        end,
        limit,
    )
    notes = await asyncio.to_thread(book.notes_of, [incident.id for incident in found])
    return json_response(
        [book.to_json(incident, now) | {"notes": notes[incident.id]} for incident in found]
    )


async def get_incident(request: web.Request) -> web.StreamResponse:
    viewer(request)
    book = request.app[INCIDENTS]
    incident_id = _incident_id(request)
    incident = await asyncio.to_thread(book.get, incident_id)
    if incident is None:
        raise CollectorError(404, "not_found", f"no incident {incident_id}")
    events = await asyncio.to_thread(book.timeline, incident_id)
    return json_response(book.to_json(incident, now_of(request), events))


async def acknowledge(request: web.Request) -> web.StreamResponse:
    who = operator(request).name
    body = await _json_body(request, optional=True)
    note = _text(body, "note", required=False)
    return await _staff_action(request, "acknowledge", who, note)


async def add_note(request: web.Request) -> web.StreamResponse:
    who = operator(request).name
    text = _text(await _json_body(request), "text", required=True)
    return await _staff_action(request, "note", who, text)


async def resolve(request: web.Request) -> web.StreamResponse:
    who = operator(request).name
    note = _text(await _json_body(request), "note", required=True)
    return await _staff_action(request, "resolve", who, note)


async def _staff_action(
    request: web.Request, action: StaffAction, who: str, text: str | None
) -> web.StreamResponse:
    """Do a staff action; an IncidentError (missing, resolved) is the middleware's to answer."""
    book = request.app[INCIDENTS]
    incident_id = _incident_id(request)
    now = now_of(request)
    await asyncio.to_thread(book.act, action, incident_id, who, text or "", now)
    request.app[NOTIFY_WAKE].set()
    incident = await asyncio.to_thread(book.get, incident_id)
    events = await asyncio.to_thread(book.timeline, incident_id)
    assert incident is not None  # noqa: S101 -- it was just changed, and incidents are kept
    return json_response(book.to_json(incident, now, events))


def _incident_id(request: web.Request) -> int:
    text = request.match_info["id"]
    number = whole_number(text)
    if number is None:
        raise CollectorError(404, "not_found", f"no incident {text!r}")
    return number


async def _json_body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """Return a staff body: a JSON object whose strings can all be stored as text."""
    raw = await read_body(request)
    if not raw.strip() and optional:
        return {}
    body = decode_json(raw)
    if not isinstance(body, dict):
        raise CollectorError(422, "invalid", "the body must be a JSON object")
    problem = unstorable_text(raw, body)  # a lone surrogate, or U+0000 (PostgreSQL refuses it)
    if problem is not None:
        raise CollectorError(422, "invalid", problem)
    return body


def _text(body: dict[str, Any], name: str, *, required: bool) -> str | None:
    unknown = sorted(set(body) - {name})
    if unknown:
        raise CollectorError(422, "invalid", f"{unknown[0]}: unknown field (expected {name})")
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise CollectorError(422, "invalid", f"{name}: needs a non-empty string")
    if len(value) > MAX_TEXT:
        raise CollectorError(422, "invalid", f"{name}: longer than {MAX_TEXT} characters")
    return value.strip()


async def get_maintenance(request: web.Request) -> web.StreamResponse:
    viewer(request)
    now, tz = now_of(request), request.app[CONFIG].inventory.timezone
    windows = request.app[MAINTENANCE].windows
    return json_response([maintenance.window_json(window, tz, now=now) for window in windows])


async def post_maintenance(request: web.Request) -> web.StreamResponse:
    """Add a window; a MaintenanceError (what the body gets wrong) is the middleware's: 422."""
    who = operator(request).name
    inventory, schedule = request.app[CONFIG].inventory, request.app[MAINTENANCE]
    body = await _json_body(request)
    now = now_of(request)
    new = maintenance.parse_window(body, inventory, now=now)
    store = request.app[STORE]
    window = await asyncio.to_thread(maintenance.add, store, new, created_by=who, now=now)
    schedule.set_windows([*schedule.windows, window])
    return json_response(maintenance.window_json(window, inventory.timezone, now=now), status=201)


async def delete_maintenance(request: web.Request) -> web.StreamResponse:
    operator(request)
    schedule = request.app[MAINTENANCE]
    text = request.match_info["id"]
    window_id = whole_number(text) or -1
    deleted = await asyncio.to_thread(
        maintenance.delete, request.app[STORE], window_id, now=now_of(request)
    )
    if not deleted:
        raise CollectorError(404, "not_found", f"no maintenance window {text!r}")
    schedule.set_windows(w for w in schedule.windows if w.id != window_id)
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.StreamResponse:
    """Say whether the database answers (and why not, without credentials), and this
    collector's role among those on its database: a load balancer may route by either."""
    check, election = request.app[HEALTH], request.app[ELECTION]
    role = {
        "role": "leader" if election.leading else "follower",
        "replica": election.name,
        "leader": election.leader or None,
    }
    if await check.healthy():
        return json_response({"status": "ok", "database": "ok", **role})
    body = {"status": "failing", "database": "failing", "reason": check.reason, **role}
    return json_response(body, status=503)


def _time_param(request: web.Request, name: str, default: float) -> float:
    text = request.query.get(name)
    if not text:
        return default
    try:
        return parse_ts(text).timestamp()
    except (ResultFormatError, OverflowError, ValueError) as err:  # year 1 with an offset, etc.
        raise CollectorError(400, "bad_time", f"{name}: {text!r} is not an RFC 3339 time") from err


async def not_found(request: web.Request) -> web.StreamResponse:
    raise CollectorError(404, "not_found", f"no such endpoint: {request.method} {request.path}")


def build_app(
    collector: Collector,
    limits: FrontLimits | None = None,
    *,
    loops: bool = False,
) -> web.Application:
    """Return the collector's application; serve it with `front.FrontRunner` for every limit.

    Any runner gets the parser's settings (no inflating, keep-alive and line limits); the
    per-address cap and the JSON answers to bad HTTP need the FrontRunner. With `loops`, the
    app runs the collector's background loops while it runs (`sitewatch collector` does; a
    test asks for them, as they probe the inventory's edges and correlate on the wall clock).
    """
    config = collector.config
    front = limits or FrontLimits(exempt=config.trusted_proxies)
    app = web.Application(
        middlewares=[errors, expensive_reads],
        client_max_size=MAX_BODY,
        handler_args=front.handler_args(),
    )
    app[CONFIG] = config
    app[STORE] = collector.store
    app[SITE_CACHE] = SiteCache(collector.store, collector.incidents.calendar)
    app[INCIDENTS] = collector.incidents
    app[PIPELINE] = collector
    app[MAINTENANCE] = collector.pipeline  # its windows in force
    app[TARGETS] = Targets.of(config)
    app[CLOCK] = collector.clock  # the pipeline's own: one "now" for state and answers
    app[ELECTION] = collector.election
    app[NOTIFY_WAKE] = collector.pipeline.notify_wake
    app[FRONT] = front
    app[IN_FLIGHT] = Counter()
    app[LOOP_ENDED] = asyncio.Event()
    app.cleanup_ctx.append(expensive_pool)
    app.cleanup_ctx.append(health_check(collector.store))
    if loops:  # last: stopped first, while the store and the pools are still there
        app.cleanup_ctx.append(background_loops(collector))
    app.router.add_get("/api/v1/agent/plan", get_plan)
    app.router.add_post("/api/v1/agent/results", post_results)
    app.router.add_get("/api/v1/sites", get_sites)
    app.router.add_get("/api/v1/sites/{id}", get_site)
    app.router.add_get("/api/v1/history", get_history)
    app.router.add_get("/api/v1/incidents", get_incidents)
    app.router.add_get("/api/v1/incidents/{id}", get_incident)
    app.router.add_post("/api/v1/incidents/{id}/acknowledge", acknowledge)
    app.router.add_post("/api/v1/incidents/{id}/notes", add_note)
    app.router.add_post("/api/v1/incidents/{id}/resolve", resolve)
    app.router.add_get("/api/v1/reports/sla", get_sla_report)
    app.router.add_get("/api/v1/maintenance", get_maintenance)
    app.router.add_post("/api/v1/maintenance", post_maintenance)
    app.router.add_delete("/api/v1/maintenance/{id}", delete_maintenance)
    app.router.add_get("/healthz", healthz)
    app[METRICS] = registry_of(collector)
    app.router.add_get("/metrics", get_metrics)
    add_routes(app)  # the dashboard's pages, event stream and static files
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


LOOPS_STOP_SECONDS = 10.0  # a loop still running this long after the stop is cancelled
# Set when a background loop ended while the app runs: `sitewatch collector` then stops (exit 1).
LOOP_ENDED: web.AppKey[asyncio.Event] = web.AppKey("loop_ended", asyncio.Event)


def background_loops(collector: Collector) -> Callable[[web.Application], AsyncIterator[None]]:
    """Return the cleanup context that runs the collector's loops for the app's life.

    The loops are the election of a leader among the collectors on one database, the centre's
    edge sweep, roll-ups, correlation, notification delivery and the replay of the collector's
    own gaps (all but correlation write only while leading: collector.leadership); each goes
    on past a failed round by itself
    (`collector.loops.Rounds`). At cleanup they are told to stop and awaited for at most
    LOOPS_STOP_SECONDS, then cancelled: a stop never hangs on a loop. A loop that ends while
    the app runs is a bug: it is logged with its traceback and LOOP_ENDED is set.
    """

    async def run(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        ended = app[LOOP_ENDED]
        jobs = {
            "the election": collector.election.run,
            "the other collectors' results": collector.arrivals_loop,
            "the edge sweep": collector.central_probes,
            "roll-ups": collector.housekeeping,
            "correlation": collector.correlation_loop,
            "notification delivery": collector.deliver_notifications,
            "gap replay": collector.replay_gaps,
        }
        tasks = [asyncio.create_task(job(stop), name=name) for name, job in jobs.items()]

        def finished(task: asyncio.Task[None]) -> None:
            if stop.is_set() or task.cancelled():
                return
            log.error("the background loop of %s ended", task.get_name(), exc_info=task.exception())
            ended.set()

        for task in tasks:
            task.add_done_callback(finished)
        try:
            yield
        finally:
            stop.set()
            _, late = await asyncio.wait(tasks, timeout=LOOPS_STOP_SECONDS)
            for task in late:
                log.warning("the background loop of %s did not stop: cancelled", task.get_name())
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    return run
