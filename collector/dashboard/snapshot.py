"""What the overview shows, as one JSON-ready snapshot: every site worst first, open incidents.

The page renders it once on the server and then again in the browser from each snapshot the
event stream pushes, so both read the same fields; display strings that need the server's
knowledge (availability) are made here once. Snapshots are shared between the viewers of one
collector for up to MAX_AGE seconds, so twenty wall screens cost one snapshot a second; the
availability, which reads 30 days of the status log, is read again every AVAILABILITY_EVERY.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, TypedDict

from aiohttp import web

from collector import availability
from collector.appkeys import PipelinePort
from collector.clock import Clock
from collector.incidents import IncidentBook
from collector.sla import WorkingCalendar
from collector.store import Store
from collector.views import Availability, SiteJson, site_json

STATUS_ORDER = ("down", "degraded", "unknown", "maintenance", "up", "unmonitored")
AVAILABILITY_PERIODS = ("24h", "7d", "30d")
MAX_AGE = 0.5  # seconds a snapshot may be reused
AVAILABILITY_EVERY = 60.0  # seconds
Shares = dict[str, float | None]


class LinkTile(TypedDict):
    id: str
    kind: str
    role: str
    status: str


class SiteTile(TypedDict):
    id: str
    name: str
    status: str
    status_since: str | None
    users: int
    agent_alive: bool | None
    links: list[LinkTile]
    availability: str


class IncidentRow(TypedDict):
    id: int
    priority: str
    status: str
    title: str
    sites: str
    affected_users: int
    opened_at: str
    due_at: str
    percent_used: float
    breached: bool
    major: bool


class Snapshot(TypedDict):
    now: float
    sites: list[SiteTile]
    incidents: list[IncidentRow]
    summary: str


def availability_text(availability: object) -> str:
    """Return e.g. "24h 99.95% · 7d 99.10% · 30d —", or "—" while nobody computes it."""
    if not isinstance(availability, Mapping) or not any(
        isinstance(availability.get(period), int | float) for period in AVAILABILITY_PERIODS
    ):
        return "—"
    parts = []
    for period in AVAILABILITY_PERIODS:
        value = availability.get(period)
        shown = f"{100 * value:.2f}%" if isinstance(value, int | float) else "—"
        parts.append(f"{period} {shown}")
    return " · ".join(parts)


def site_tile(site: SiteJson) -> SiteTile:
    """Return the tile of a site from its API JSON."""
    return {
        "id": site["id"],
        "name": site["name"],
        "status": site["status"],
        "status_since": site["status_since"],
        "users": site["users"],
        "agent_alive": site["agent_alive"],
        "links": [
            {"id": x["id"], "kind": x["kind"], "role": x["role"], "status": x["status"]}
            for x in site["links"]
        ],
        "availability": availability_text(site.get("availability")),
    }


def incident_row(incident: Mapping[str, Any]) -> IncidentRow:
    """Return an incident as the overview lists it, from its API JSON."""
    return {
        "id": incident["id"],
        "priority": incident["priority"],
        "status": incident["status"],
        "title": incident["title"],
        "sites": ", ".join(incident["site_names"]),
        "affected_users": incident["affected_users"],
        "opened_at": incident["opened_at"],
        "due_at": incident["sla"]["due_at"],
        "percent_used": incident["sla"]["percent_used"],
        "breached": incident["sla"]["breached"],
        "major": incident["major"],
    }


def worst_first(tile: SiteTile) -> tuple[int, int, str]:
    status = tile["status"]
    rank = STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)
    return rank, -tile["users"], tile["name"].casefold()


def summary(tiles: list[SiteTile]) -> str:
    """Return e.g. "1 down · 2 degraded · 6 up"."""
    counts = Counter(tile["status"] for tile in tiles)
    return " · ".join(f"{counts[s]} {s}" for s in STATUS_ORDER if counts[s])


async def site_availability(
    store: Store, calendar: WorkingCalendar, sites: list[str], now: float
) -> dict[str, Shares]:
    """Return each site's availability over 24h, 7d and 30d, round the clock."""
    return await asyncio.to_thread(availability.sites_availability, store, calendar, sites, now)


def _site_shares(site_id: str, shares: Mapping[str, Shares]) -> Availability | None:
    """The site's round-the-clock shares in the form `site_json` takes."""
    found = shares.get(site_id)
    return None if found is None else {f"site:{site_id}": (found, {})}


def build(
    pipeline: PipelinePort, book: IncidentBook, shares: Mapping[str, Shares], now: float
) -> Snapshot:
    """Return the overview at `now`, with the sites' availability `shares`."""
    heartbeats = pipeline.heartbeats
    tiles = sorted(
        (
            site_tile(site_json(view, heartbeats.get(view.id), _site_shares(view.id, shares)))
            for view in pipeline.views(now)
        ),
        key=worst_first,
    )
    open_now = book.open_incidents()  # published by the book: never waits on a write
    return {
        "now": now,
        "sites": tiles,
        "incidents": [incident_row(book.to_json(incident, now)) for incident in open_now],
        "summary": summary(tiles),
    }


class SnapshotCache:
    """The latest snapshot, shared by every viewer for up to MAX_AGE seconds."""

    def __init__(
        self,
        pipeline: PipelinePort,
        book: IncidentBook,
        store: Store,
        sites: list[str],
        clock: Clock,
    ) -> None:
        self.pipeline, self.book, self.store, self.sites = pipeline, book, store, sites
        self.clock = clock
        self._lock = asyncio.Lock()
        self._taken = self._measured = float("-inf")
        self._latest: Snapshot | None = None
        self._shares: dict[str, Shares] = {}

    async def get(self) -> Snapshot:
        """Return the overview, taken at most MAX_AGE seconds ago."""
        async with self._lock:
            if time.monotonic() - self._measured > AVAILABILITY_EVERY:
                calendar, now = self.book.calendar, self.clock.now()
                self._shares = await site_availability(self.store, calendar, self.sites, now)
                self._measured = time.monotonic()
            if self._latest is None or time.monotonic() - self._taken > MAX_AGE:
                self._latest = build(self.pipeline, self.book, self._shares, self.clock.now())
                self._taken = time.monotonic()
            return self._latest


SNAPSHOTS: web.AppKey[SnapshotCache] = web.AppKey("dashboard_snapshots", SnapshotCache)
