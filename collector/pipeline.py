"""The one way evidence becomes status: observe, then correlate, track, log and reconcile.

Results enter through `Pipeline.observe(source, results)`, whether an agent posted them or the
centre's own sweep of the links' edges took them: they are stored, then applied to the state
book oldest first (`StateBook.observe`). A correlation pass (`Pipeline.run`, every second and at
once when a result moved a target) then turns the book into statuses and causes, tracks since
when each status holds, writes the changes to the status log with the evidence behind them,
and brings the incidents in line with the causes. `views()` shows the latest pass and changes
nothing: what staff read never moves what the log says.

The same steps replay a collector's gap from late results (`collector.history`): `step` below
is the correlation and tracking both use, so a rebuilt hour is judged by the rules the live
hour was. Time comes from a `Clock`, so a test or a replay says what time it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property

from collector import maintenance
from collector.arrivals import Heard
from collector.clock import SYSTEM_CLOCK, Clock
from collector.heartbeat import Heartbeat
from collector.heartbeat import stored as stored_heartbeat
from collector.incidents import IncidentBook
from collector.ingest import Batch
from collector.loops import Rounds
from collector.state import SiteView, StateBook, Vantage
from collector.store import CENTRE, LEGACY_OUTBOX, IngestOutcome, Store
from collector.store.agents import last_heard
from collector.store.status import StatusChange
from collector.topology import Correlation, Maintained, correlate
from probes.result import ProbeResult
from sitewatch.config.model import Inventory, Site

log = logging.getLogger(__name__)
WARM_UP_SECONDS = 3_600.0  # the newest results of this past hour rebuild the state at start-up
CORRELATE_EVERY = 1.0  # seconds: silence, SLA percentages and maintenance move with time
ALIVE_EVERY = 5.0  # seconds between notes that the collector is watching (for unknown time)
RELOAD_EVERY = 1.0  # seconds between a follower's reads of the leader's incidents

Changed = list[tuple[str, str]]  # (entity, status) of the sites and links whose status moved


def vantage_of(source: str) -> Vantage:
    """Return where a stored result's source saw from: the centre, or an agent at its site."""
    return "centre" if source == CENTRE else "agent"


def step(
    book: StateBook, at: float, maintained: Maintained, *, agents_reach_hub: bool = True
) -> tuple[Correlation, Changed]:
    """Correlate the book's evidence at `at` and track it; return the pass and what changed.

    `agents_reach_hub`: whether a heard agent shows its site a path to the hub. Live, it does
    (its batch reached the collector). In a replay nothing was received at the time, so an
    agent's word decides its own links but joins nothing to the hub.
    """
    evidence = book.evidence(at)
    if not agents_reach_hub:
        evidence = dataclasses.replace(evidence, agents_alive={})
    correlation = correlate(book.topology, evidence, maintained)
    return correlation, book.track(correlation, at)


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


class Pipeline:
    """The state book of one collector and the passes that turn it into status and incidents.

    Reads and writes of the book happen on the event loop; the store is reached through
    worker threads.
    """

    def __init__(
        self,
        inventory: Inventory,
        agents: Mapping[str, str],
        store: Store,
        incidents: IncidentBook,
        *,
        clock: Clock = SYSTEM_CLOCK,
        name: str | None = None,
    ) -> None:
        """`agents` maps each configured agent's id to its site's; `name` is this collector's
        among the others on its database, announced with each batch it stores."""
        self.name = name
        self.inventory = inventory
        self.store = store
        self.incidents = incidents
        self.clock = clock
        self.book = StateBook(inventory, dict(agents))
        self.status_log = store.status
        self.schedule = maintenance.Schedule((), inventory)  # the maintenance windows in force
        self.correlation: Correlation | None = None  # the latest pass
        self.unsure: frozenset[str] = frozenset()  # incident keys with no evidence of recovery
        self.unwatched: dict[str, str] = {}  # incident keys nobody watches any more: why
        self.pass_seconds = 0.0  # how long the latest pass took
        self.passes = 0  # correlation passes since start
        self.changed = asyncio.Event()  # a target's state moved: correlate now
        self.notify_wake = asyncio.Event()  # notifications are queued: send them
        self.heartbeats: dict[str, Heartbeat] = {}  # the latest, by site
        self.ingested = 0  # results stored from agents since start
        self.duplicates: dict[str, int] = {}  # by agent: results refused as held already
        self._duplicating: set[str] = set()  # agents warned of, until a good batch
        self._alive_noted = 0.0
        # warm_up marked the gap, and the collector's note as it then stood: unchanged at the
        # first take_over, nobody watched in between and the gap is marked already
        self._gap_marked: tuple[float | None] | None = None
        self._log_all = False  # the next pass logs every status, not only what moved

    @cached_property
    def _sites(self) -> dict[str, Site]:
        return {site.id: site for site in self.inventory.sites}

    @cached_property
    def warm_up_depth(self) -> int:
        """Return how many of each target's newest results rebuild its state at start-up.

        A run of failures long enough to go down followed by successes too few to recover
        must replay as down, so both thresholds' worth.
        """
        limits = [thresholds for thresholds, _ in self.book.limits.values()]
        return max((t.fail_after + t.recover_after for t in limits), default=1)

    def warm_up(self, now: float | None = None) -> None:
        """Replay the recent past from the store into the state book, and log the gap.

        Blocks on the store; the collector calls it once, before it serves anything.
        """
        now = self.clock.now() if now is None else now
        # A collector starting beside a live leader (PostgreSQL) has no gap: the other watched
        watched = self.store.leadership.led()
        probed: dict[str, float] = {}
        for stored in self.store.results.newest(now - WARM_UP_SECONDS, self.warm_up_depth):
            self.book.observe(vantage_of(stored.source), stored.result)
            ts = stored.result.ts.timestamp()
            probed[stored.source] = max(probed.get(stored.source, ts), ts)
        for agent, (last_seen, heartbeat) in last_heard(self.store.db).items():
            # An agent heard before counts as heard now: after a restart it gets its silence
            # allowance again instead of every site being judged on the collector's own gap.
            # Beside a live leader its last contact is the truth, as the leader's book has it
            # (and this one's from now on, collector.arrivals): a follower that took over must
            # not find a silent agent heard and resolve the leader's incident about it.
            heard_at = last_seen if watched else max(last_seen, now)
            self.book.heard_from(agent, heard_at, probed.get(agent))
            site = self.book.agents.get(agent)
            if site is not None and (checked := stored_heartbeat(agent, heartbeat)) is not None:
                self.heartbeats[site] = checked
        self.incidents.load(now)
        self.set_windows(maintenance.load(self.store))
        if not watched:  # the time since the last note is a gap
            self.mark_gap(now)
            self._gap_marked = (self.status_log.alive_until(),)

    def take_over(self, now: float) -> None:
        """Start writing as the leader: the incidents as the last leader left them, the time
        since its last note a gap, and every status logged afresh by the next pass.

        A follower tracked statuses without logging them, so what moved since the last
        leader's final write would never be logged otherwise. A process that leads from its
        start found the gap marked by warm_up already. The incidents are read
        again, not loaded as at start-up: a follower's state book is live (collector.arrivals),
        so the hold that warm_up set on resolving them (`IncidentBook.load`) is all it needs.
        Blocks on the store.
        """
        self.incidents.reload(now)
        if self._gap_marked != (self.status_log.alive_until(),):  # another led since warm_up
            self.mark_gap(now)
        self._gap_marked = None
        self._log_all = True

    def mark_gap(self, now: float | None = None) -> None:
        """Log every site and link unknown from when this collector was last known alive.

        Nobody watched between then and now, so that time is neither up nor down; the first
        correlation pass logs what each status is now. The gap is recorded too, so that the
        results the agents probed meanwhile and replay later can rebuild it.
        """
        entities = [f"site:{site.id}" for site in self.inventory.sites]
        entities += [f"link:{link.id}" for _, link in self.inventory.links()]
        self.status_log.mark_gap(entities, self.clock.now() if now is None else now)

    # -- evidence in ----------------------------------------------------------------------

    async def observe(self, source: str, results: Batch | Sequence[ProbeResult]) -> IngestOutcome:
        """Store what a source saw, then let it move the state book, oldest first.

        `source` is an agent's id with the batch it posted (numbered by its outbox, perhaps
        with a heartbeat), or CENTRE with the results of the centre's sweep, numbered here.
        """
        now = self.clock.now()
        if isinstance(results, Batch):
            items, outbox, heartbeat = results.items, results.outbox, results.heartbeat
        else:
            first = await asyncio.to_thread(self.store.results.next_sequence, source, len(results))
            items, outbox, heartbeat = tuple(enumerate(results, start=first)), LEGACY_OUTBOX, None
        clock = None if heartbeat is None or heartbeat.clock is None else heartbeat.clock
        outcome = await asyncio.to_thread(
            self.store.results.ingest,
            source,
            items,
            heartbeat=None if heartbeat is None else dict(heartbeat.to_json()),
            received=now,
            outbox=outbox,
            origin=self.name,
            clock=None if clock is None else clock.timestamp(),
        )
        if source != CENTRE:
            self._count_duplicates(source, outbox, outcome)
            self.ingested += outcome.stored
            self._heard(source, now, items, heartbeat)
        vantage = vantage_of(source)
        moved = False
        for _, result in sorted(items, key=lambda item: item[1].ts):
            moved |= self.book.observe(vantage, result)
        if moved:
            self.changed.set()
        return outcome

    async def take_in(self, heard: Heard) -> None:
        """Apply what the other collectors on the database stored (collector.arrivals).

        After announcements were missed, the newest results are read again first, as at
        start-up; the state book drops what it applied already.
        """
        moved = False
        if heard.missed:
            since = self.clock.now() - WARM_UP_SECONDS
            newest = await asyncio.to_thread(self.store.results.newest, since, self.warm_up_depth)
            for stored in newest:
                moved |= self.book.observe(vantage_of(stored.source), stored.result)
        for arrival, stored_batch in heard.batches:
            for stored in stored_batch:
                moved |= self.book.observe(vantage_of(stored.source), stored.result)
            if arrival.source == CENTRE:
                continue
            probed = max((s.result.ts.timestamp() for s in stored_batch), default=None)
            self.book.heard_from(arrival.source, arrival.received, probed)
            if arrival.clock is not None:
                self.book.agent_clock(arrival.source, arrival.received, arrival.clock)
            site = self.book.agents.get(arrival.source)
            beat = stored_heartbeat(arrival.source, heard.heartbeats.get(arrival.source))
            if site is not None and beat is not None:
                self.heartbeats[site] = beat
        if moved:
            self.changed.set()

    def _heard(
        self,
        agent: str,
        now: float,
        items: Sequence[tuple[int, ProbeResult]],
        heartbeat: Heartbeat | None,
    ) -> None:
        """Note an agent's contact at `now`, with results probed up to the newest of `items`."""
        probed = max((result.ts.timestamp() for _, result in items), default=None)
        self.book.heard_from(agent, now, probed)
        if heartbeat is not None:
            if heartbeat.clock is not None:
                self.book.agent_clock(agent, now, heartbeat.clock.timestamp())
            site = self.book.agents.get(agent)
            if site is not None:
                self.heartbeats[site] = heartbeat

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

    # -- maintenance ----------------------------------------------------------------------

    @property
    def windows(self) -> tuple[maintenance.Window, ...]:
        return self.schedule.windows

    def set_windows(self, windows: Iterable[maintenance.Window]) -> None:
        """Put these maintenance windows in force (built once, asked every pass)."""
        self.schedule = maintenance.Schedule(windows, self.inventory)
        self.changed.set()

    def maintained(self, now: float) -> Maintained:
        """Return what is inside a maintenance window at `now`."""
        return self.schedule.active(now)

    # -- status out -----------------------------------------------------------------------

    def views(self, now: float | None = None) -> list[SiteView]:
        """Return every site's view as the latest pass decided it; nothing is remembered.

        Before the first pass, the view is of a pass run now and thrown away: a page loaded
        then must not take from the first pass the changes it has to log.
        """
        now = self.clock.now() if now is None else now
        correlation = self.correlation
        if correlation is None:
            evidence = self.book.evidence(now)
            correlation = correlate(self.book.topology, evidence, self.maintained(now))
        return list(self.book.views(now, correlation))

    def correlate(self, now: float) -> tuple[Correlation, list[StatusChange]]:
        """Run one correlation pass; return it and the sites and links whose status changed."""
        began = time.perf_counter()
        correlation, changed = step(self.book, now, self.maintained(now))
        if self._log_all:
            changed = [(f"site:{site}", status) for site, status in correlation.sites.items()]
            changed += [(f"link:{link}", status) for link, status in correlation.links.items()]
            self._log_all = False
        # read on the loop, used by record: only the open incidents' subjects matter
        open_keys = [incident.key for incident in self.incidents.open_incidents()]
        self.unsure = self.book.unsure(correlation, now, open_keys)
        self.unwatched = self.book.unwatched(open_keys)
        self.pass_seconds = time.perf_counter() - began
        self.passes += 1
        self.correlation = correlation
        return correlation, self._explain(correlation, changed, now)

    def _explain(
        self, correlation: Correlation, changed: Changed, now: float
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

    def record(self, correlation: Correlation, changed: Sequence[StatusChange], now: float) -> int:
        """Log status changes with their evidence, note that we are alive, reconcile incidents.

        Returns the notifications queued. Blocks on the store: call it from a worker thread.
        """
        self.log_changes(changed, now)
        return self.reconcile(correlation, now)

    def log_changes(self, changed: Sequence[StatusChange], now: float) -> None:
        """Log status changes with their evidence, and note that we are alive.

        Availability is computed from the log's statuses; people read there why each changed.
        """
        if changed or now - self._alive_noted >= ALIVE_EVERY:
            self.status_log.log(changed, now)
            self._alive_noted = now

    def reconcile(self, correlation: Correlation, now: float) -> int:
        """Open, update and resolve incidents from a pass; return the notifications queued."""
        return self.incidents.reconcile(correlation.causes, now, self.unsure, self.unwatched)

    async def run(self, stop: asyncio.Event, term: Callable[[], int] = lambda: 1) -> None:
        """Correlate every second, or at once when a target's state moves, until `stop`.

        `term` is this collector's term as leader (collector.leadership), 0 while it does not
        lead: only then does a pass write (the status log, the incidents), and a new term
        begins with `take_over`. A follower's passes keep its views current for the API and
        the dashboard, and it reads the leader's incidents at most every RELOAD_EVERY.
        """
        unlogged: list[StatusChange] = []  # changes a failed write could not log yet
        led = 0  # the term the last round ran in
        reloaded = float("-inf")
        rounds = Rounds("a correlation pass", log)
        while not stop.is_set():
            self.changed.clear()
            with rounds.one():
                now = self.clock.now()
                lead = term()
                if lead and lead != led:
                    await asyncio.to_thread(self.take_over, now)
                    unlogged.clear()  # take_over logs everything afresh
                elif not lead and time.monotonic() - reloaded >= RELOAD_EVERY:
                    await asyncio.to_thread(self.incidents.reload, now)
                    reloaded = time.monotonic()
                led = lead
                correlation, changed = self.correlate(now)
                if lead:
                    await self._write(correlation, changed, unlogged, now)
            await _wait_any(stop, self.changed, CORRELATE_EVERY)

    async def _write(
        self,
        correlation: Correlation,
        changed: list[StatusChange],
        unlogged: list[StatusChange],
        now: float,
    ) -> None:
        """Log a leader's pass and reconcile its incidents; `unlogged` keeps what a failed
        write could not log, for the next pass."""
        for change in changed:
            # state changes, not polls: each is said once, with what moved it
            log.info("%s: %s", change.entity, change.evidence or change.status)
        unlogged += changed
        await asyncio.to_thread(self.log_changes, unlogged, now)
        unlogged.clear()  # logged: a failure of what follows must not log them again
        queued = await asyncio.to_thread(self.reconcile, correlation, now)
        if queued:
            self.notify_wake.set()


async def _wait_any(stop: asyncio.Event, event: asyncio.Event, seconds: float) -> None:
    """Wait until `stop` or `event` is set, or `seconds` pass."""
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(event.wait())]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
