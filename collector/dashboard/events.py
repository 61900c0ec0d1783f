"""`/events`: the overview's live feed, as server-sent events.

A snapshot goes out at once and then every second. A browser without a live session gets one
`expired` event, on which the page goes to the login form (after a collector restart, say);
the stream of a session that ends also closes that way. Streams end when the collector shuts
down, so a stop is never held up by open dashboards.
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from collector.dashboard.sessions import COOKIE, SESSIONS, current
from collector.dashboard.snapshot import SNAPSHOTS

log = logging.getLogger(__name__)
EVERY = 1.0  # seconds between snapshots
RETRY_MS = 2_000  # how soon a browser reconnects after losing the stream
STOPPING: web.AppKey[asyncio.Event] = web.AppKey("dashboard_stopping", asyncio.Event)
EXPIRED = b"event: expired\ndata: {}\n\n"


async def events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a proxy in front must not hold events back
        }
    )
    await response.prepare(request)
    try:
        if current(request) is None:
            await response.write(EXPIRED)
            return response
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        await _feed(request, response)
    except ConnectionResetError:
        log.debug("an event stream's browser went away")  # closing a tab is no error
    return response


async def _feed(request: web.Request, response: web.StreamResponse) -> None:
    snapshots = request.app[SNAPSHOTS]
    sessions = request.app[SESSIONS]
    stopping = request.app[STOPPING]
    token = request.cookies[COOKIE]
    while not stopping.is_set():
        if await sessions.lookup(token) is None:  # logged out elsewhere, or expired
            await response.write(EXPIRED)
            return
        snapshot = await snapshots.get()
        await response.write(f"data: {json.dumps(snapshot)}\n\n".encode())
        try:
            async with asyncio.timeout(EVERY):
                await stopping.wait()
        except TimeoutError:
            pass


async def stop_streams(app: web.Application) -> None:
    """End every event stream: called when the collector shuts down."""
    app[STOPPING].set()
