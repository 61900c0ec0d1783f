"""The running collector: the store, the state book, plans, the centre's own probes, incidents.

The API calls into this; so do the background loops. State is rebuilt at start-up from the
last hour of stored results, so a restarted collector knows at once what it knew before; open
incidents are read back from the store. A correlation pass runs every second, and at once when
a result moves a target's state, so an outage becomes an incident without waiting for a tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from collector import history, maintenance
from collector.heartbeat import Heartbeat
from collector.heartbeat import stored as stored_heartbeat
from collector.incidents import IncidentBook
from collector.ingest import Batch, Intake
from collector.loops import Rounds
from collector.notify import Deliverer
from collector.state import SiteView, StateBook
from collector.store import CENTRE, DEFAULT_RETENTION, IngestOutcome, Store
from collector.topology import Correlation, Maintained
from probes import icmp
from probes.plan import Plan, build_plan
from probes.target import Target
from sitewatch.config.model import AgentCredential, CollectorConfig, IcmpProbe, Site

log = logging.getLogger(__name__)
WARM_UP_SECONDS = 3_600.0
ROLLUP_EVERY = 3_600.0
CORRELATE_EVERY = 1.0  # seconds: silence, SLA percentages and maintenance move with time
ALIVE_EVERY = 5.0  # seconds between notes that the collector is watching (for unknown time)
REPLAY_FIRST = 60.0  # seconds after start before the first look for late results of a gap
REPLAY_EVERY = 180.0  # seconds between looks: agents replay their backlog within minutes


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A site's or link's new status, as the status log keeps it, with the evidence for it."""

    entity: str  # site:ID or link:ID
    status: str
    evidence: str | None  # for people: the status and what moved it; None: nothing to say


def site_evidence_text(
    status: str, agent_alive: bool | None, links: Iterable[tuple[str, str]]
) -> str:
    """Return a site's status and what it rests on, its agent and its links, as one line.

    E.g. "degraded; agent heard; willowvale-mpls down, willowvale-fibre up". `agent_alive`
    is None for a site without an agent; `links` are (id, status) pairs.
    """
    agent = {None: "no agent", True: "agent heard", False: "agent silent"}[agent_alive]
    said = ", ".join(f"{link} {link_status}" for link, link_status in links) or "no links"
    return f"{status}; {agent}; {said}"


@dataclass
class Collector:
    """One collector process's shared state."""

    config: CollectorConfig
    store: Store
    retention: float = DEFAULT_RETENTION
    book: StateBook = field(init=False)
    incidents: IncidentBook = field(init=False)
    heartbeats: dict[str, Heartbeat] = field(default_factory=dict)  # by site
    correlation: Correlation | None = None  # the latest pass
    unsure: frozenset[str] = frozenset()  # incident keys with no evidence of recovery then
    unwatched: dict[str, str] = field(default_factory=dict)  # incident keys nobody watches: why
    pass_seconds: float = 0.0  # how long the latest pass took
    schedule: maintenance.Schedule = field(init=False)  # the maintenance windows in force
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # a target's state moved
    notify_wake: asyncio.Event = field(default_factory=asyncio.Event)  # something to send
    ingested: int = 0  # results stored from agents since start
    duplicates: dict[str, int] = field(default_factory=dict)  # by agent: refused, since start
    intake: Intake = field(default_factory=Intake)  # batches in flight, what was refused
    _duplicating: set[str] = field(default_factory=set)  # agents warned of, until a good batch
    _alive_noted: float = 0.0

    def __post_init__(self) -> None:
        self.book = StateBook(
            self.config.inventory, {agent.id: agent.site for agent in self.config.agents}
        )
        self.incidents = IncidentBook(self.store, self.config.inventory, self.config.notify)
        self.schedule = maintenance.Schedule((), self.config.inventory)

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

    @cached_property
    def warm_up_depth(self) -> int:
        """Return how many of each target's newest results rebuild its state at start-up.

        A run of failures long enough to go down followed by successes too few to recover
        must replay as down, so both thresholds' worth.
        """
        limits = [thresholds for thresholds, _ in self.book.limits.values()]
        return max((t.fail_after + t.recover_after for t in limits), default=1)

    def warm_up(self, now: float | None = None) -> None:
        """Replay the recent past from the store into the state book: the newest evidence."""
        now = time.time() if now is None else now
        probed: dict[str, float] = {}
        for stored in self.store.newest(now - WARM_UP_SECONDS, self.warm_up_depth):
            self.book.observe("centre" if stored.source == CENTRE else "agent", stored.result)
            ts = stored.result.ts.timestamp()
            probed[stored.source] = max(probed.get(stored.source, ts), ts)
        sites = {agent.id: agent.site for agent in self.config.agents}
        for agent, (last_seen, heartbeat) in self.store.sources().items():
            # An agent heard before counts as heard now: after a restart it gets its silence
            # allowance again instead of every site being judged on the collector's own gap.
            self.book.heard_from(agent, max(last_seen, now), probed.get(agent))
            if agent in sites and (checked := stored_heartbeat(agent, heartbeat)) is not None:
                self.heartbeats[sites[agent]] = checked
        self.incidents.load(now)
        self.set_windows(maintenance.load(self.store))
        self.mark_gap(now)

    async def ingest(self, agent: AgentCredential, batch: Batch) -> IngestOutcome:
        """Store a batch, then let its results move the state, oldest first."""
        now = time.time()
        outcome = await asyncio.to_thread(
            self.store.ingest,
            agent.id,
            batch.items,
            None if batch.heartbeat is None else dict(batch.heartbeat.to_json()),
            now,
            outbox=batch.outbox,
        )
        self._count_duplicates(agent.id, batch.outbox, outcome)
        probed = max((result.ts.timestamp() for _, result in batch.items), default=None)
        self.book.heard_from(agent.id, now, probed)
        if batch.heartbeat is not None and batch.heartbeat.clock is not None:
            self.book.agent_clock(agent.id, now, batch.heartbeat.clock.timestamp())
        self.ingested += outcome.stored
        if batch.heartbeat is not None:
            self.heartbeats[agent.site] = batch.heartbeat
        moved = False
        for _, result in sorted(batch.items, key=lambda item: item[1].ts):
            moved |= self.book.observe("agent", result)
        if moved:
            self.changed.set()
        return outcome

    def _count_duplicates(self, agent: str, outbox: str, outcome: IngestOutcome) -> None:
        """Count what an agent sent that was stored already; warn when it is most of a batch.

        A resend after a lost reply is a few duplicates, and harmless. Batch after batch of
        them means an agent numbering results the collector already holds (an agent too old
        to name its outbox, reinstalled): say so once, not on every batch.
        """
        if outcome.duplicates:
            self.duplicates[agent] = self.duplicates.get(agent, 0) + outcome.duplicates
        mostly = outcome.duplicates > outcome.stored
        if mostly and agent not in self._duplicating:
            log.warning(
                "agent %s sent %d results the collector already holds from outbox %s "
                "(and %d new): refused as duplicates",
                agent,
                outcome.duplicates,
                outbox,
                outcome.stored,
            )
        elif mostly:
            log.debug("agent %s: %d more duplicates", agent, outcome.duplicates)
        (self._duplicating.add if mostly else self._duplicating.discard)(agent)

    def views(self, now: float | None = None) -> list[SiteView]:
        return list(self.book.views(time.time() if now is None else now, self.correlation))

    @property
    def windows(self) -> tuple[maintenance.Window, ...]:
        return self.schedule.windows

    def set_windows(self, windows: Iterable[maintenance.Window]) -> None:
        """Put these maintenance windows in force (built once, asked every pass)."""
        self.schedule = maintenance.Schedule(windows, self.config.inventory)
        self.changed.set()

    def maintained(self, now: float) -> Maintained:
        """Return what is inside a maintenance window at `now`."""
        return self.schedule.active(now)

    def correlate(self, now: float) -> tuple[Correlation, list[StatusChange]]:
        """Run one correlation pass; return it and the sites and links whose status changed."""
        began = time.perf_counter()
        correlation = self.book.correlate(now, self.maintained(now))
        # read on the loop, used by _record: only the open incidents' subjects matter
        open_keys = [incident.key for incident in self.incidents.open_incidents()]
        self.unsure = self.book.unsure(correlation, now, open_keys)
        self.unwatched = self.book.unwatched(open_keys)
        self.pass_seconds = time.perf_counter() - began
        self.correlation = correlation
        return correlation, self._explain(correlation, self.book.track(correlation, now), now)

    def _explain(
        self, correlation: Correlation, changed: list[tuple[str, str]], now: float
    ) -> list[StatusChange]:
        """Return the changes with the evidence behind each, read from the state book now.

        On the loop, like every read of the state book. Only what changed is explained: the
        full site views cost about a third of a second on an inventory of 1,000 sites
        (bench/correlation_bench.py), one link's decision some microseconds.
        """
        explained = []
        for entity, status in changed:
            kind, _, ident = entity.partition(":")
            evidence = None
            if kind == "link":
                evidence = self.book.explain(ident, now, status)
            elif kind == "site" and ident in self._sites:
                site = self._sites[ident]
                alive = self.book.agent_alive(site, now) if ident in self.book.with_agent else None
                links = [
                    (link.id, correlation.links.get(link.id, "unknown")) for link in site.links
                ]
                evidence = site_evidence_text(status, alive, links)
            explained.append(StatusChange(entity, status, evidence))
        return explained

    @cached_property
    def _sites(self) -> dict[str, Site]:
        return {site.id: site for site in self.config.inventory.sites}

    async def correlation_loop(self, stop: asyncio.Event) -> None:
        """Correlate every second, or at once when a target's state moves, until `stop`."""
        unlogged: list[StatusChange] = []  # changes a failed write could not log yet
        rounds = Rounds("a correlation pass", log)
        while not stop.is_set():
            self.changed.clear()
            with rounds.one():
                now = time.time()
                correlation, changed = self.correlate(now)
                for change in changed:
                    # state changes, not polls: each is said once, with what moved it
                    log.info("%s: %s", change.entity, change.evidence or change.status)
                unlogged += changed
                queued = await asyncio.to_thread(self._record, correlation, unlogged, now)
                unlogged = []
                if queued:
                    self.notify_wake.set()
            await _wait_any(stop, self.changed, CORRELATE_EVERY)

    def _record(self, correlation: Correlation, changed: list[StatusChange], now: float) -> int:
        """Log status changes with their evidence, and note that we are alive.

        Availability is computed from the log's statuses; people read there why each changed.
        """
        if changed or now - self._alive_noted >= ALIVE_EVERY:
            with self.store.transaction() as db:
                db.executemany(
                    "INSERT INTO status_log (entity, ts, status, evidence) VALUES (?, ?, ?, ?)",
                    [(c.entity, now, c.status, c.evidence) for c in changed],
                )
                db.execute("UPDATE collector SET alive_until = ?", (now,))
            self._alive_noted = now
        return self.incidents.reconcile(correlation.causes, now, self.unsure, self.unwatched)

    def mark_gap(self, now: float | None = None) -> None:
        """Log every site and link unknown from when this collector was last known alive.

        Nobody watched between then and now, so that time is neither up nor down; the first
        correlation pass logs what each status is now. The gap is recorded too, so that the
        results the agents probed meanwhile and replay later can rebuild it (`replay_gaps`).
        """
        now = time.time() if now is None else now
        with self.store.transaction() as db:
            row = db.execute("SELECT alive_until FROM collector").fetchone()
            if row is None:
                db.execute("INSERT INTO collector (alive_until) VALUES (?)", (now,))
                return
            entities = [f"site:{site.id}" for site in self.config.inventory.sites]
            entities += [f"link:{link.id}" for _, link in self.config.inventory.links()]
            db.executemany(
                "INSERT INTO status_log (entity, ts, status) VALUES (?, ?, 'unknown')",
                [(entity, row[0]) for entity in entities],
            )
            history.note_gap(db, row[0], now)

    def rebuild_gaps(self, now: float, windows: Sequence[maintenance.Window]) -> list[history.Gap]:
        """Rebuild the status log of the recent gaps with late results; blocks on the store."""
        agents = {agent.id: agent.site for agent in self.config.agents}
        return history.rebuild_due(self.store, self.config.inventory, agents, windows, now)

    async def replay_gaps(self, stop: asyncio.Event) -> None:
        """Correct the collector's own gaps with the results agents replay late, until `stop`.

        Only gaps of the collector count: while it runs, the centre's pings already give the
        live log evidence for a site whose agent fell silent.
        """
        await _wait(stop, REPLAY_FIRST)
        rounds = Rounds("rebuilding the collector's gaps", log)
        while not stop.is_set():
            windows = self.windows  # a tuple: the API replaces it on the loop, never edits it
            with rounds.one():
                rebuilt = await asyncio.to_thread(self.rebuild_gaps, time.time(), windows)
                for gap in rebuilt:
                    log.info(
                        "rebuilt the status log of the collector gap %s-%s from late results",
                        _iso(gap.start),
                        _iso(gap.end),
                    )
            await _wait(stop, REPLAY_EVERY)

    async def deliver_notifications(self, stop: asyncio.Event) -> None:
        await Deliverer(self.store, self.config.notify).run(stop, self.notify_wake)

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
        while not stop.is_set():
            began = time.monotonic()
            with rounds.one():
                if targets:
                    results = await icmp.sweep(targets, timeout=timeout)
                    first = await asyncio.to_thread(self.store.next_sequence, CENTRE, len(results))
                    items = tuple(enumerate(results, start=first))
                    await asyncio.to_thread(self.store.ingest, CENTRE, items, None)
                    moved = False
                    for result in results:
                        moved |= self.book.observe("centre", result)
                    if moved:
                        self.changed.set()
            await _wait(stop, interval - (time.monotonic() - began))

    async def housekeeping(self, stop: asyncio.Event) -> None:
        """Roll old raw results up, hourly."""
        rounds = Rounds("rolling up old results", log)
        while not stop.is_set():
            with rounds.one():
                folded = await asyncio.to_thread(self.store.roll_up, time.time() - self.retention)
                if folded:
                    log.info("rolled up %d results older than the retention period", folded)
            await _wait(stop, ROLLUP_EVERY)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


async def _wait_any(stop: asyncio.Event, event: asyncio.Event, seconds: float) -> None:
    """Wait until `stop` or `event` is set, or `seconds` pass."""
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(event.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(max(seconds, 0.0)):
            await stop.wait()
    except TimeoutError:
        pass
