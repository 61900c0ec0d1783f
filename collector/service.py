"""The running collector: the store, the pipeline, plans, the centre's own probes, incidents.

The API calls into this; so do the background loops. Evidence reaches the state through one
call, `Pipeline.observe` (`collector.pipeline`), from agents and from the centre's sweep alike;
the pipeline's correlation pass runs every second, and at once when a result moves a target's
state, so an outage becomes an incident without waiting for a tick. State is rebuilt at
start-up from the last hour of stored results, so a restarted collector knows at once what it
knew before; open incidents are read back from the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from collector import history, maintenance
from collector.arrivals import Listener
from collector.clock import SYSTEM_CLOCK, Clock
from collector.heartbeat import Heartbeat
from collector.incidents import IncidentBook
from collector.ingest import Batch, Intake
from collector.leadership import Election, replica_name
from collector.loops import Rounds, pause
from collector.notify import Deliverer
from collector.pipeline import Pipeline
from collector.state import SiteView
from collector.store import CENTRE, DEFAULT_RETENTION, IngestOutcome, Store
from collector.times import log_time
from probes import icmp
from probes.plan import Plan, build_plan
from probes.target import Target
from sitewatch.config.model import AgentCredential, CollectorConfig, IcmpProbe

log = logging.getLogger(__name__)
ROLLUP_EVERY = 3_600.0
# Looks for late results of the collector's gaps, in the inventory's probe intervals: agents
# replay their backlog within a few intervals of the collector answering again. The first
# two intervals after start, then every six while leading: 1 and 3 minutes at the default 30 s.
REPLAY_FIRST = 2.0
REPLAY_EVERY = 6.0


@dataclass
class Collector:
    """One collector process's shared state: its config, store, pipeline and incidents."""

    config: CollectorConfig
    store: Store
    retention: float = DEFAULT_RETENTION
    clock: Clock = SYSTEM_CLOCK
    incidents: IncidentBook = field(init=False)
    pipeline: Pipeline = field(init=False)
    intake: Intake = field(default_factory=Intake)  # batches in flight, what was refused
    election: Election = field(init=False)  # whether this collector leads the others
    arrivals: Listener = field(init=False)  # what the others store, read into the pipeline

    def __post_init__(self) -> None:
        name = replica_name(self.config.listen_host, self.config.listen_port)
        self.election = Election(self.store, name)
        agents = {agent.id: agent.site for agent in self.config.agents}
        self.incidents = IncidentBook(
            self.store, self.config.inventory, self.config.notify, agents=agents
        )
        self.pipeline = Pipeline(
            self.config.inventory, agents, self.store, self.incidents, clock=self.clock, name=name
        )
        self.arrivals = Listener(self.store, name)

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
    def _site_links(self) -> dict[str, frozenset[str]]:
        return {
            site.id: frozenset(link.id for link in site.links)
            for site in self.config.inventory.sites
        }

    def links_of(self, agent: AgentCredential) -> frozenset[str]:
        """Return the ids of the links an agent's site has: what its link evidence is about."""
        return self._site_links[agent.site]

    @cached_property
    def known_targets(self) -> frozenset[str]:
        """Every link and device id of the inventory: what history can be asked for."""
        return frozenset().union(*self._site_targets.values())

    # The API's agent and site handlers hold this collector (the PIPELINE key, PipelinePort):
    # an agent's batch needs its plans, the agent's scope, the intake and the retention beside
    # the pipeline's observe, so the pipeline's part is passed on here. Anything else of the
    # pipeline (its book, windows, warm-up, counters) is reached as `collector.pipeline`.

    async def ingest(self, agent: AgentCredential, batch: Batch) -> IngestOutcome:
        """Store an agent's batch and let it move the state (`Pipeline.observe`)."""
        return await self.pipeline.observe(agent.id, batch)

    @property
    def heartbeats(self) -> dict[str, Heartbeat]:
        return self.pipeline.heartbeats

    def views(self, now: float | None = None) -> list[SiteView]:
        return self.pipeline.views(now)

    # The background loops, which `collector.api.background_loops` runs for the app's life.

    async def arrivals_loop(self, stop: asyncio.Event) -> None:
        await self.arrivals.run(stop, self.pipeline.take_in)

    async def correlation_loop(self, stop: asyncio.Event) -> None:
        await self.pipeline.run(stop, lambda: self.election.term)

    def rebuild_gaps(self, now: float, windows: Sequence[maintenance.Window]) -> list[history.Gap]:
        """Rebuild the status log of the recent gaps with late results; blocks on the store."""
        agents = {agent.id: agent.site for agent in self.config.agents}
        return history.rebuild_due(self.store, self.config.inventory, agents, windows, now)

    async def replay_gaps(self, stop: asyncio.Event) -> None:
        """Correct the collector's own gaps with the results agents replay late, until `stop`.

        Only gaps of the collector count: while it runs, the centre's pings already give the
        live log evidence for a site whose agent fell silent.
        """
        interval = self.config.inventory.thresholds.interval.total_seconds()
        await pause(stop, REPLAY_FIRST * interval)
        rounds = Rounds("rebuilding the collector's gaps", log)
        while await self.election.until_leading(stop):
            windows = self.pipeline.windows  # a tuple: the API replaces it, never edits it
            with rounds.one():
                now = self.clock.now()
                rebuilt = await asyncio.to_thread(self.rebuild_gaps, now, windows)
                for gap in rebuilt:
                    log.info(
                        "rebuilt the status log of the collector gap %s-%s from late results",
                        log_time(gap.start),
                        log_time(gap.end),
                    )
            await pause(stop, REPLAY_EVERY * interval)

    async def deliver_notifications(self, stop: asyncio.Event) -> None:
        deliverer = Deliverer(self.store, self.config.notify)
        await deliverer.run(stop, self.pipeline.notify_wake, self.election.until_leading)

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
        rounds = Rounds("a sweep of the links' edges", log)
        while await self.election.until_leading(stop):
            began = time.monotonic()
            with rounds.one():
                if targets:
                    await self.pipeline.observe(CENTRE, await icmp.sweep(targets, timeout=timeout))
            await pause(stop, interval - (time.monotonic() - began))

    async def housekeeping(self, stop: asyncio.Event) -> None:
        """Roll old raw results up and make the next days' partitions (PostgreSQL), hourly."""
        rounds = Rounds("rolling up old results", log)
        while await self.election.until_leading(stop):
            with rounds.one():
                await asyncio.to_thread(self.store.results.prepare_days, self.clock.now())
                older_than = self.clock.now() - self.retention
                folded = await asyncio.to_thread(self.store.results.roll_up, older_than)
                if folded:
                    log.info("rolled up %d results older than the retention period", folded)
            await pause(stop, ROLLUP_EVERY)
