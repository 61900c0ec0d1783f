"""What the collector's application holds: one narrow key per dependency, set by `build_app`.

A handler takes only what it needs from the app: the store for large reads, the incident book
for incidents, the configuration for tokens and the inventory, the pipeline for an agent's
batch and the sites' state, the clock for "now". None of them reaches through one object that
holds everything, so what a handler depends on shows in what it reads.

The pipeline and the maintenance schedule are described by what the handlers use of them
(protocols), not by the class that happens to provide them today: the schedule is the
`Pipeline`'s (it owns the windows in force); the pipeline port is the `Collector`, as an agent's
batch needs the collector's plans, scopes, intake and retention beside the pipeline's observe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from collector.clock import Clock
from collector.heartbeat import Heartbeat
from collector.incidents import IncidentBook
from collector.ingest import Batch, Intake
from collector.leadership import Election
from collector.maintenance import Window
from collector.state import SiteView
from collector.store import IngestOutcome, Store
from probes.plan import Plan
from sitewatch.config.model import AgentCredential, CollectorConfig


class PipelinePort(Protocol):
    """What the API and the dashboard use of the pipeline: agents' batches in, site views out."""

    intake: Intake  # batches in flight per agent, and what was refused
    retention: float  # seconds of raw results kept: older ones are refused at ingest

    @property
    def heartbeats(self) -> Mapping[str, Heartbeat]:
        """Each site's agent's latest heartbeat, by site."""
        ...

    def plan(self, site: str) -> Plan:
        """Return a site's probe plan."""
        ...

    def targets_of(self, agent: AgentCredential) -> frozenset[str]:
        """Return the ids an agent may report on."""
        ...

    def links_of(self, agent: AgentCredential) -> frozenset[str]:
        """Return the ids of the links an agent's site has."""
        ...

    async def ingest(self, agent: AgentCredential, batch: Batch) -> IngestOutcome:
        """Store an agent's batch and let its results move the state."""
        ...

    def views(self, now: float | None = None) -> list[SiteView]:
        """Return every site's view as of the latest correlation."""
        ...


class Schedule(Protocol):
    """The maintenance windows in force, which staff add and delete through the API."""

    @property
    def windows(self) -> tuple[Window, ...]:
        """The windows in force."""
        ...

    def set_windows(self, windows: Iterable[Window]) -> None:
        """Put these windows in force."""
        ...


@dataclass(frozen=True, slots=True)
class Targets:
    """The inventory's link and device ids: what history may be asked for, and of which kind."""

    links: frozenset[str]
    devices: frozenset[str]

    @classmethod
    def of(cls, config: CollectorConfig) -> Targets:
        inventory = config.inventory
        return cls(
            frozenset(link.id for _, link in inventory.links()),
            frozenset(device.id for _, device in inventory.devices()),
        )

    def __contains__(self, target: object) -> bool:
        return target in self.links or target in self.devices


CONFIG: web.AppKey[CollectorConfig] = web.AppKey("config", CollectorConfig)
STORE: web.AppKey[Store] = web.AppKey("store", Store)
INCIDENTS: web.AppKey[IncidentBook] = web.AppKey("incidents", IncidentBook)
PIPELINE: web.AppKey[PipelinePort] = web.AppKey("pipeline")
MAINTENANCE: web.AppKey[Schedule] = web.AppKey("maintenance")
TARGETS: web.AppKey[Targets] = web.AppKey("targets", Targets)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
ELECTION: web.AppKey[Election] = web.AppKey("election", Election)
# Set when a staff action queued a notification, so the deliverer sends it now.
NOTIFY_WAKE: web.AppKey[asyncio.Event] = web.AppKey("notify_wake", asyncio.Event)
