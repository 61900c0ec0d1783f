"""The running collector: the store, the state book, plans and the centre's own probes.

The API calls into this; so do the background loops. State is rebuilt at start-up from the
last hour of stored results, so a restarted collector knows at once what it knew before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from collector.ingest import Batch
from collector.state import SiteView, StateBook
from collector.store import CENTRE, DEFAULT_RETENTION, IngestOutcome, Store
from probes import icmp
from probes.plan import Plan, build_plan
from probes.target import Target
from sitewatch.config.model import AgentCredential, CollectorConfig, IcmpProbe

log = logging.getLogger(__name__)
WARM_UP_SECONDS = 3_600.0
ROLLUP_EVERY = 3_600.0


@dataclass
class Collector:
    """One collector process's shared state."""

    config: CollectorConfig
    store: Store
    retention: float = DEFAULT_RETENTION
    book: StateBook = field(init=False)
    heartbeats: dict[str, dict[str, Any]] = field(default_factory=dict)  # by site

    def __post_init__(self) -> None:
        self.book = StateBook(
            self.config.inventory, {agent.id: agent.site for agent in self.config.agents}
        )

    @cached_property
    def _plans(self) -> dict[str, Plan]:
        inventory = self.config.inventory
        return {site.id: build_plan(inventory, site.id) for site in inventory.sites}

    def plan(self, site: str) -> Plan:
        return self._plans[site]

    @cached_property
    def _site_targets(self) -> dict[str, frozenset[str]]:
        return {
            site.id: frozenset([*(link.id for link in site.links), *(d.id for d in site.devices)])
            for site in self.config.inventory.sites
        }

    def targets_of(self, agent: AgentCredential) -> frozenset[str]:
        """Return the ids an agent may report on: its site's links and devices, and itself."""
        return self._site_targets[agent.site] | {agent.id}

    @cached_property
    def known_targets(self) -> frozenset[str]:
        """Every link and device id of the inventory: what history can be asked for."""
        return frozenset().union(*self._site_targets.values())

    def warm_up(self, now: float | None = None) -> None:
        """Replay the recent past from the store into the state book."""
        now = time.time() if now is None else now
        for stored in self.store.since(now - WARM_UP_SECONDS):
            self.book.observe("centre" if stored.source == CENTRE else "agent", stored.result)
        sites = {agent.id: agent.site for agent in self.config.agents}
        for agent, (last_seen, heartbeat) in self.store.sources().items():
            self.book.heard_from(agent, last_seen)
            if agent in sites and heartbeat:
                self.heartbeats[sites[agent]] = {"id": agent, **heartbeat}

    async def ingest(self, agent: AgentCredential, batch: Batch) -> IngestOutcome:
        """Store a batch, then let its results move the state, oldest first."""
        now = time.time()
        outcome = await asyncio.to_thread(
            self.store.ingest, agent.id, batch.items, batch.heartbeat, now
        )
        self.book.heard_from(agent.id, now)
        if batch.heartbeat is not None:
            self.heartbeats[agent.site] = {"id": agent.id, **batch.heartbeat}
        for _, result in sorted(batch.items, key=lambda item: item[1].ts):
            self.book.observe("agent", result)
        return outcome

    def views(self, now: float | None = None) -> list[SiteView]:
        return list(self.book.views(time.time() if now is None else now))

    async def healthy(self) -> bool:
        try:
            await asyncio.to_thread(self.store.sources)
        except Exception:
            log.exception("health check: the database cannot be read")
            return False
        return True

    def edge_targets(self) -> list[Target]:
        """Every link's edge, pinged from the centre: evidence when an agent falls silent."""
        return [
            Target(str(link.edge), IcmpProbe(count=1), id=link.id)
            for site, link in self.config.inventory.links()
            if link.edge is not None and site.monitored
        ]

    async def central_probes(self, stop: asyncio.Event) -> None:
        """Sweep every edge on the inventory's interval until `stop` is set."""
        inventory = self.config.inventory
        interval = inventory.thresholds.interval.total_seconds()
        timeout = min(inventory.thresholds.timeout.total_seconds(), interval / 2)
        targets = self.edge_targets()
        while not stop.is_set():
            began = time.monotonic()
            if targets:
                results = await icmp.sweep(targets, timeout=timeout)
                first = await asyncio.to_thread(self.store.next_sequence, CENTRE, len(results))
                items = tuple(enumerate(results, start=first))
                await asyncio.to_thread(self.store.ingest, CENTRE, items, None)
                for result in results:
                    self.book.observe("centre", result)
            await _wait(stop, interval - (time.monotonic() - began))

    async def housekeeping(self, stop: asyncio.Event) -> None:
        """Roll old raw results up, hourly."""
        while not stop.is_set():
            folded = await asyncio.to_thread(self.store.roll_up, time.time() - self.retention)
            if folded:
                log.info("rolled up %d results older than the retention period", folded)
            await _wait(stop, ROLLUP_EVERY)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(max(seconds, 0.0)):
            await stop.wait()
    except TimeoutError:
        pass
