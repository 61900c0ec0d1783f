"""The collector's HTTP API: agents' plan and results, staff's sites and history, /healthz.

Every error leaves as `{"error": {"code", "message"}}` with a 4xx status; a request the code did
not foresee is logged and answered 500 with the same body, never a traceback page. Tokens are
compared by their SHA-256, in constant time, against every known token so that timing tells
nothing about which one came close.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from collector.ingest import BatchError, parse_batch
from collector.service import Collector
from collector.state import SiteView
from probes.plan import plan_to_json
from probes.result import ResultFormatError, format_ts, parse_ts
from sitewatch.config.model import ROLES, AgentCredential, ApiToken, Role

log = logging.getLogger(__name__)
MAX_BODY = 16 * 1024 * 1024  # bytes after decompression: about 20,000 results
COLLECTOR: web.AppKey[Collector] = web.AppKey("collector", Collector)
Known = TypeVar("Known", AgentCredential, ApiToken)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An expected refusal: its status, a stable code and a message for people."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the contract's error body."""
    try:
        return await handler(request)
    except ApiError as err:
        return web.json_response(error_body(err.code, err.message, **err.extra), status=err.status)
    except web.HTTPRequestEntityTooLarge:
        return web.json_response(
            error_body("too_large", f"the body is over {MAX_BODY} bytes"), status=413
        )
    except web.HTTPException as err:
        if err.status < 400:
            raise
        code = err.reason.lower().replace(" ", "_")
        return web.json_response(error_body(code, err.reason), status=err.status)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return web.json_response(error_body("internal", "internal error, see the log"), status=500)


def token_of(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthenticated", "send Authorization: Bearer <token>")
    return token.strip()


def _matching(token: str, known: tuple[Known, ...]) -> Known | None:
    digest = hashlib.sha256(token.encode()).hexdigest()
    found = None
    for entry in known:  # every one compared, whatever matches first
        if hmac.compare_digest(digest, entry.token_sha256):
            found = entry
    return found


def agent_of(request: web.Request) -> AgentCredential:
    agent = _matching(token_of(request), request.app[COLLECTOR].config.agents)
    if agent is None:
        raise ApiError(401, "unauthenticated", "unknown agent token")
    return agent


def staff(minimum: Role) -> Callable[[web.Request], ApiToken]:
    def check(request: web.Request) -> ApiToken:
        token = _matching(token_of(request), request.app[COLLECTOR].config.api_tokens)
        if token is None:
            raise ApiError(401, "unauthenticated", "unknown API token")
        if ROLES.index(token.role) < ROLES.index(minimum):
            raise ApiError(403, "forbidden", f"this needs the {minimum} role")
        return token

    return check


viewer = staff("viewer")


async def get_plan(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    plan = request.app[COLLECTOR].plan(agent.site)
    etag = f'"{plan.version}"'
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    return web.json_response(plan_to_json(plan), headers={"ETag": etag})


async def post_results(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    collector = request.app[COLLECTOR]
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(400, "bad_json", f"the body is not JSON: {err}") from err
    try:
        batch = parse_batch(
            body, agent=agent.id, targets=collector.targets_of(agent), now=time.time()
        )
    except BatchError as err:
        extra = {} if err.index is None else {"index": err.index}
        raise ApiError(422, "invalid", str(err), **extra) from err
    outcome = await collector.ingest(agent, batch)
    return web.json_response({"stored": outcome.stored, "duplicates": outcome.duplicates})


async def get_sites(request: web.Request) -> web.StreamResponse:
    viewer(request)
    collector = request.app[COLLECTOR]
    return web.json_response([site_json(view, collector) for view in collector.views()])


async def get_site(request: web.Request) -> web.StreamResponse:
    viewer(request)
    site_id = request.match_info["id"]
    collector = request.app[COLLECTOR]
    for view in collector.views():
        if view.id == site_id:
            return web.json_response(site_json(view, collector))
    raise ApiError(404, "not_found", f"no site {site_id!r}")


async def get_history(request: web.Request) -> web.StreamResponse:
    viewer(request)
    collector = request.app[COLLECTOR]
    target = request.query.get("target", "")
    if target not in collector.known_targets:
        raise ApiError(400, "bad_target", f"target: {target!r} is not a link or device id")
    now = time.time()
    start = _time_param(request, "from", now - 86_400)
    end = _time_param(request, "to", now)
    if end <= start:
        raise ApiError(400, "bad_range", "to: must be after from")
    rows = await asyncio.to_thread(collector.store.history, target, start, end)
    return web.json_response(
        [
            {
                "ts": format_ts(row.result.ts),
                "kind": row.result.kind,
                "source": row.source,
                "ok": row.result.ok,
                "rtt_ms": row.result.rtt_ms,
                "loss": row.result.loss,
                "value": row.result.value,
            }
            for row in rows
        ]
    )


async def healthz(request: web.Request) -> web.StreamResponse:
    healthy = await request.app[COLLECTOR].healthy()
    return web.json_response(
        {"status": "ok" if healthy else "failing", "database": "ok" if healthy else "failing"},
        status=200 if healthy else 503,
    )


def _time_param(request: web.Request, name: str, default: float) -> float:
    text = request.query.get(name)
    if not text:
        return default
    try:
        return parse_ts(text).timestamp()
    except ResultFormatError as err:
        raise ApiError(400, "bad_time", f"{name}: {text!r} is not an RFC 3339 time") from err


def site_json(view: SiteView, collector: Collector) -> dict[str, Any]:
    return {
        "id": view.id,
        "name": view.name,
        "status": view.status,
        "status_since": _iso(view.since),
        "users": view.users,
        "upstream": list(view.upstream),
        "agent_alive": view.agent_alive,
        "agent": _agent_json(collector.heartbeats.get(view.id)),
        "links": [
            {
                "id": link.id,
                "kind": link.kind,
                "role": link.role,
                "status": link.status,
                "evidence": link.vantage,
            }
            for link in view.links
        ],
        "devices": [
            {"id": d.id, "kind": d.kind, "address": d.address, "status": d.status}
            for d in view.devices
        ],
        "availability": None,  # filled by the availability issue
    }


def _agent_json(heartbeat: dict[str, Any] | None) -> dict[str, Any] | None:
    """The agent's last heartbeat as staff need it: who, which version, how far behind."""
    if heartbeat is None:
        return None
    keys = ("id", "version", "clock", "outbox_depth", "dropped")
    return {key: heartbeat.get(key) for key in keys}


def _iso(ts: float) -> str | None:
    return format_ts(datetime.fromtimestamp(ts, UTC)) if ts > 0 else None


async def not_found(request: web.Request) -> web.StreamResponse:
    raise ApiError(404, "not_found", f"no such endpoint: {request.method} {request.path}")


def build_app(collector: Collector) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    app[COLLECTOR] = collector
    app.router.add_get("/api/v1/agent/plan", get_plan)
    app.router.add_post("/api/v1/agent/results", post_results)
    app.router.add_get("/api/v1/sites", get_sites)
    app.router.add_get("/api/v1/sites/{id}", get_site)
    app.router.add_get("/api/v1/history", get_history)
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
