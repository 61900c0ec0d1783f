"""Wire the dashboard into the collector's application: its state, routes and static files."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from collector.appkeys import CLOCK, CONFIG, INCIDENTS, PIPELINE, STORE
from collector.dashboard import auth, events, pages, reports
from collector.dashboard.limits import LIMITER, LoginLimiter
from collector.dashboard.render import security_headers
from collector.dashboard.sessions import SessionBook, install
from collector.dashboard.snapshot import SNAPSHOTS, SnapshotCache

STATIC = Path(__file__).resolve().parent / "static"


def add_routes(app: web.Application) -> None:
    """Add the dashboard to `app`, whose keys (`collector.appkeys`) are set; call before any
    catch-all route."""
    install(app, SessionBook(app[STORE].sessions))  # in the database: restarts keep logins
    app[LIMITER] = LoginLimiter()
    app[auth.CHECKS] = asyncio.Semaphore(auth.CONCURRENT_CHECKS)
    sites = [site.id for site in app[CONFIG].inventory.sites]
    app[SNAPSHOTS] = SnapshotCache(app[PIPELINE], app[INCIDENTS], app[STORE], sites, app[CLOCK])
    app[events.STOPPING] = asyncio.Event()
    app.on_shutdown.append(events.stop_streams)
    app.on_response_prepare.append(security_headers)
    router = app.router
    router.add_get("/login", auth.login_page)
    router.add_post("/login", auth.login)
    router.add_post("/logout", auth.logout)
    router.add_get("/", pages.overview)
    router.add_get("/events", events.events)
    router.add_get("/sites/{id}", pages.site)
    router.add_get("/incidents", pages.incidents)
    router.add_get("/incidents/{id}", pages.incident)
    router.add_post("/incidents/{id}/acknowledge", pages.acknowledge)
    router.add_post("/incidents/{id}/notes", pages.add_note)
    router.add_post("/incidents/{id}/resolve", pages.resolve)
    router.add_get("/reports", reports.reports_page)
    router.add_get("/reports/sla.csv", reports.sla_csv)
    router.add_static("/static/", STATIC)
