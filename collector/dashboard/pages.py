"""The dashboard's pages: overview, a site, the incident list, one incident and its actions."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web

from collector.appkeys import CLOCK, CONFIG, INCIDENTS, NOTIFY_WAKE, PIPELINE, STORE
from collector.dashboard.auth import PageError, guard, read_form, redirect
from collector.dashboard.charts import Chart, link_charts
from collector.dashboard.render import duration, render
from collector.dashboard.sessions import Session
from collector.dashboard.snapshot import SNAPSHOTS, availability_text
from collector.front import MAX_TEXT, expensive, whole_number
from collector.incidents import IncidentBook, StaffAction
from collector.state import SiteView
from collector.store import Store
from collector.views import availability_of, site_json
from sitewatch.config.model import HUB, PRIORITIES, Inventory

CHART_HOURS = (1, 6, 24)
CHART_ROWS = 50_000  # results read per link for its charts
SUPPLY_WINDOW = 900.0  # seconds back to look for a printer's latest SNMP reading
SUPPLY_STATES = ("ok", "low", "empty", "some_remaining", "other", "unknown")  # snmp._supply's
RECENT_DAYS = 30
RECENT_INCIDENTS = 10
LIST_LIMIT = 500
STATUSES = ("open", "resolved", "all")


@guard()
async def overview(request: web.Request, session: Session) -> web.StreamResponse:
    snapshot = await request.app[SNAPSHOTS].get()
    return render(request, "overview.html", session, snapshot=snapshot)


@dataclass(frozen=True, slots=True)
class Supply:
    """One printer supply as the page shows it; what a stored reading lacks shows as missing."""

    name: str
    percent: float | None
    state: str  # one of SUPPLY_STATES: it names a CSS class


@dataclass(frozen=True, slots=True)
class Printer:
    id: str
    address: str
    status: str
    supplies: list[Supply]
    read_at: float | None  # when the supplies were read, None without a reading


def supplies_of(value: object) -> list[Supply]:
    """Return the supplies in a stored printer reading, skipping entries that are not objects.

    The collector checks readings as they arrive, but an older version stored what it got
    (`[{}]`, a NaN percent): such a reading shows as far as it goes, never as a failed page.
    """
    if not isinstance(value, list):
        return []
    supplies = []
    for entry in value:
        if not isinstance(entry, dict):
            continue
        description, index = entry.get("description"), entry.get("index")
        if isinstance(description, str) and description:
            name = description
        elif isinstance(index, str | int) and not isinstance(index, bool):
            name = f"supply {index}"
        else:
            name = "supply"
        percent = entry.get("percent")
        shown = None
        if isinstance(percent, int | float) and not isinstance(percent, bool):
            shown = float(percent) if 0 <= percent <= 1_000 else None  # NaN compares False
        state = entry.get("state")
        supplies.append(Supply(name, shown, state if state in SUPPLY_STATES else "unknown"))
    return supplies


@guard()
async def site(request: web.Request, session: Session) -> web.StreamResponse:
    pipeline, store, book = request.app[PIPELINE], request.app[STORE], request.app[INCIDENTS]
    inventory = request.app[CONFIG].inventory
    now = request.app[CLOCK].now()
    site_id = request.match_info["id"]
    views = {view.id: view for view in pipeline.views(now)}
    view = views.get(site_id)
    if view is None:
        raise PageError(404, "No such site", f"There is no site {site_id!r} in the inventory.")
    hours_text = request.query.get("hours", "24")
    hours = whole_number(hours_text) or 0
    if hours not in CHART_HOURS:
        raise PageError(400, "Bad period", f"hours: choose one of {CHART_HOURS}")
    tz = ZoneInfo(inventory.timezone)
    read = functools.partial(
        _site_data, store, book, inventory, view, span=(now - hours * 3_600, now), tz=tz
    )
    charts, printers, recent = await expensive(request, read)
    inventory_site = inventory.site(site_id)
    shares = await availability_of(store, book.calendar, [view], now)
    body = site_json(view, pipeline.heartbeats.get(view.id), shares)
    return render(
        request,
        "site.html",
        session,
        site=body,
        availability=availability_text(body["availability"]),
        link_to={link.id: link.to for link in inventory_site.links},
        chain=_chain(view, views),
        names={v.id: v.name for v in views.values()},
        charts=charts,
        hours=hours,
        hour_choices=CHART_HOURS,
        printers=printers,
        recent=[book.to_json(i, now) for i in recent],
        now=now,
    )


def _site_data(
    store: Store,
    book: IncidentBook,
    inventory: Inventory,
    view: SiteView,
    *,
    span: tuple[float, float],
    tz: ZoneInfo,
) -> tuple[dict[str, tuple[Chart, Chart]], list[Printer], list[Any]]:
    """Read what a site page shows from the store (in the expensive-read pool).

    The charts read raw rows: rollups begin only past the raw retention (30 days), so the
    page's periods (at most 24 hours) always have raw rows and never any rollups.
    """
    start, end = span
    # Only pings: a link's interface and path readings have no round trip to draw, and must
    # not use up the rows a chart reads.
    charts = {
        link.id: link_charts(
            store.results.history(link.id, start, end, CHART_ROWS, kinds=("icmp",)), start, end, tz
        )
        for link in view.links
    }
    devices = {d.id: d for _, d in inventory.devices()}
    printers = []
    for device in view.devices:
        if device.kind != "printer":
            continue
        interval = devices[device.id].thresholds.interval.total_seconds()
        window = max(SUPPLY_WINDOW, 3 * interval)
        readings = [
            row.result
            for row in store.results.history(device.id, end - window, end + 1, CHART_ROWS)
            if row.result.kind == "snmp" and isinstance(row.result.value.get("supplies"), list)
        ]
        latest = readings[-1] if readings else None
        supplies = supplies_of(latest.value["supplies"]) if latest else []
        printers.append(
            Printer(
                device.id,
                device.address,
                device.status,
                supplies,
                latest.ts.timestamp() if latest else None,
            )
        )
    recent = [
        incident
        for incident in book.find("all", end - RECENT_DAYS * 86_400, end + 1, 1_000)
        if view.id in incident.sites
    ][:RECENT_INCIDENTS]
    return charts, printers, recent


def _chain(view: SiteView, views: Mapping[str, SiteView]) -> list[tuple[str, str, str]]:
    """Return (id, name, status) of the sites this one reaches the hub through, nearest first."""
    chain: list[tuple[str, str, str]] = []
    seen = {view.id}
    current = view
    while current.upstream and current.upstream[0] != HUB:
        parent = views.get(current.upstream[0])
        if parent is None or parent.id in seen:
            break
        chain.append((parent.id, parent.name, parent.status))
        seen.add(parent.id)
        current = parent
    return chain


@guard()
async def incidents(request: web.Request, session: Session) -> web.StreamResponse:
    status = request.query.get("status", "open")
    priority = request.query.get("priority", "")
    if status not in STATUSES:
        raise PageError(400, "Bad filter", f"status: choose one of {', '.join(STATUSES)}")
    if priority and priority not in PRIORITIES:
        raise PageError(400, "Bad filter", f"priority: choose one of {', '.join(PRIORITIES)}")
    now, book = request.app[CLOCK].now(), request.app[INCIDENTS]
    found = await asyncio.to_thread(book.find, _status(status), 0.0, now + 1, LIST_LIMIT)
    shown = [book.to_json(i, now) for i in found if not priority or i.priority == priority]
    return render(
        request,
        "incidents.html",
        session,
        incidents=shown,
        chosen_status=status,
        chosen_priority=priority,
        statuses=STATUSES,
        priorities=PRIORITIES,
        truncated=len(found) >= LIST_LIMIT,
        now=now,
    )


def _status(text: str) -> Literal["open", "resolved", "all"]:
    return "open" if text == "open" else "resolved" if text == "resolved" else "all"


@guard()
async def incident(request: web.Request, session: Session) -> web.StreamResponse:
    book = request.app[INCIDENTS]
    incident_id = _incident_id(request)
    found = await asyncio.to_thread(book.get, incident_id)
    if found is None:
        raise PageError(404, "No such incident", f"There is no incident {incident_id}.")
    events = await asyncio.to_thread(book.timeline, incident_id)
    body = book.to_json(found, request.app[CLOCK].now(), events)
    return render(
        request,
        "incident.html",
        session,
        incident=body,
        timeline=[_describe(entry) for entry in body["timeline"]],
        can_act=session.login.may("operator"),
        max_text=MAX_TEXT,
    )


@guard("operator")
async def acknowledge(request: web.Request, session: Session) -> web.StreamResponse:
    note = _text(await read_form(request), "note", required=False)
    return await _act(request, session, "acknowledge", note)


@guard("operator")
async def add_note(request: web.Request, session: Session) -> web.StreamResponse:
    text = _text(await read_form(request), "text", required=True)
    return await _act(request, session, "note", text)


@guard("operator")
async def resolve(request: web.Request, session: Session) -> web.StreamResponse:
    note = _text(await read_form(request), "note", required=True)
    return await _act(request, session, "resolve", note)


async def _act(
    request: web.Request, session: Session, action: StaffAction, text: str
) -> web.StreamResponse:
    """Do a staff action; an IncidentError (resolved already) is the guard's to show."""
    incident_id = _incident_id(request)
    book, now = request.app[INCIDENTS], request.app[CLOCK].now()
    await asyncio.to_thread(book.act, action, incident_id, session.login.name, text, now)
    request.app[NOTIFY_WAKE].set()
    return redirect(f"/incidents/{incident_id}")


def _incident_id(request: web.Request) -> int:
    text = request.match_info["id"]
    number = whole_number(text)
    if number is None:
        raise PageError(404, "No such incident", f"There is no incident {text!r}.")
    return number


def _text(form: Mapping[str, object], name: str, *, required: bool) -> str:
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if required and not text:
        raise PageError(422, "Text needed", f"Write a {name} first.")
    if len(text) > MAX_TEXT:
        raise PageError(422, "Too long", f"The {name} is longer than {MAX_TEXT} characters.")
    return text


def _describe(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Return a timeline entry with a sentence for people."""
    kind, detail = entry["kind"], entry["detail"]
    text: str
    if kind == "opened":
        text = f"Opened as {detail.get('priority', '?')}: {detail.get('title', '')}"
    elif kind == "reopened":
        text = f"Reopened: the cause came back (flap {detail.get('flap', '?')})"
    elif kind == "upgraded":
        text = f"Upgraded from {detail.get('from', '?')} to {detail.get('to', '?')}"
    elif kind == "extended":
        text = f"Now affects {', '.join(detail.get('sites', []))}"
    elif kind == "changed":
        text = f"Now: {detail.get('title', '')}"
    elif kind == "escalated":
        text = f"Escalated as a major incident: {detail.get('reason', '')}"
    elif kind == "acknowledged":
        text = "Acknowledged"
    elif kind == "note":
        text = str(detail.get("text", ""))
    elif kind == "resolved":
        text = _resolution(detail)
    elif kind == "notified":
        text = (
            f"Sent {detail.get('event', '?')} to {detail.get('channel', '?')}"
            f" (attempt {detail.get('attempts', '?')})"
        )
    else:
        text = ", ".join(f"{k}: {v}" for k, v in detail.items())
    return {"ts": entry["ts"], "kind": kind, "author": entry["author"], "text": text}


def _resolution(detail: Mapping[str, Any]) -> str:
    took = detail.get("duration_s")
    after = f" after {duration(took)}" if isinstance(took, int | float) else ""
    if "merged_into" in detail:
        return f"Resolved{after}: now part of {detail['merged_into']}"
    if "reason" in detail:
        return f"Resolved{after}: {detail['reason']}"
    return f"Resolved by hand{after}"
