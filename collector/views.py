"""A site as staff read it: the contract's site JSON, with its links' evidence and availability.

The API's `GET /api/v1/sites` and the dashboard's overview and site page all show a site in this
one form; it lives here, apart from both, so that neither imports the other. The form is the
external contract (DESIGN.md): times are RFC 3339 UTC (`collector.times`), an availability is a
share 0..1 per period, or null while there is no history to compute it from.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TypedDict

from collector import availability
from collector.evidence import EvidenceView
from collector.heartbeat import Heartbeat
from collector.sla import WorkingCalendar
from collector.state import SiteView
from collector.store import Store
from collector.times import format_ts, iso_since

Shares = availability.Shares
Availability = dict[str, tuple[Shares, Shares]]  # entity -> (round the clock, business hours)


class EvidenceJson(TypedDict):
    """One source's word about a link, as `GET /api/v1/sites/{id}` gives it."""

    source: str  # centre-ping | far-end-ping | bound-ping | interface | path
    kind: str  # path-bound | reachability
    status: str  # up | degraded | down | unknown
    since: str | None  # when this source's status began; null before it had one
    probed: str | None  # probe time of its newest result; null without one
    detail: str
    counted: bool  # whether it took part in the link's status


class LinkJson(TypedDict):
    """One of a site's links: its status, the evidence for it, its availability."""

    id: str
    kind: str
    role: str
    status: str
    vantage: str | None  # whose evidence decided; null without any
    evidence: list[EvidenceJson]
    conflict: str | None  # for staff, when sources disagree with the status shown
    availability: Shares | None  # round the clock; null when not asked for


class DeviceJson(TypedDict):
    id: str
    kind: str
    address: str
    status: str


class AgentJson(TypedDict):
    """The site's agent as of its last heartbeat: who, which version, how far behind."""

    id: str
    version: str | None
    clock: str | None
    outbox_depth: int | None
    dropped: int | None


class SiteJson(TypedDict):
    """The contract's site."""

    id: str
    name: str
    status: str
    status_since: str | None  # null until the site has had a status
    users: int
    upstream: list[str]  # the sites (or the hub) it reaches the network through
    agent_alive: bool | None  # null for a site without an agent
    agent: AgentJson | None  # null until its agent sent a heartbeat
    links: list[LinkJson]
    devices: list[DeviceJson]
    availability: Shares | None
    availability_business_hours: Shares | None


def site_json(
    view: SiteView, heartbeat: Heartbeat | None, shares: Availability | None = None
) -> SiteJson:
    """Return the contract's site, with its links' and its own availability when `shares` has
    them; `heartbeat` is its agent's latest."""
    none: tuple[Shares | None, Shares | None] = (None, None)
    known: Mapping[str, tuple[Shares | None, Shares | None]] = shares or {}
    return {
        "id": view.id,
        "name": view.name,
        "status": view.status,
        "status_since": iso_since(view.since),
        "users": view.users,
        "upstream": list(view.upstream),
        "agent_alive": view.agent_alive,
        "agent": agent_json(heartbeat),
        "links": [
            {
                "id": link.id,
                "kind": link.kind,
                "role": link.role,
                "status": link.status,
                "vantage": link.vantage,
                "evidence": [evidence_json(evidence) for evidence in link.evidence],
                "conflict": link.conflict,
                "availability": known.get(f"link:{link.id}", none)[0],
            }
            for link in view.links
        ],
        "devices": [
            {"id": d.id, "kind": d.kind, "address": d.address, "status": d.status}
            for d in view.devices
        ],
        "availability": known.get(f"site:{view.id}", none)[0],
        "availability_business_hours": known.get(f"site:{view.id}", none)[1],
    }


def evidence_json(evidence: EvidenceView) -> EvidenceJson:
    """Return one piece of a link's evidence in the API's form."""
    return {
        "source": evidence.source,
        "kind": evidence.kind,
        "status": evidence.status,
        "since": iso_since(evidence.since),
        "probed": iso_since(evidence.probed),
        "detail": evidence.detail,
        "counted": evidence.counted,
    }


def agent_json(heartbeat: Heartbeat | None) -> AgentJson | None:
    """Return the agent's last heartbeat as staff need it, or None before one came."""
    if heartbeat is None:
        return None
    return {
        "id": heartbeat.agent,
        "version": heartbeat.version,
        "clock": None if heartbeat.clock is None else format_ts(heartbeat.clock),
        "outbox_depth": heartbeat.outbox_depth,
        "dropped": heartbeat.dropped,
    }


async def availability_of(
    store: Store, calendar: WorkingCalendar, views: list[SiteView], now: float
) -> Availability:
    """The sites' and their links' availability over 24h, 7d and 30d, both ways, in one read."""
    entities = [f"site:{view.id}" for view in views]
    entities += [f"link:{link.id}" for view in views for link in view.links]
    return await asyncio.to_thread(
        availability.windows_availability, store, calendar, entities, now
    )
