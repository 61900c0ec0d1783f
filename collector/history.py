"""Collector gaps: rebuild the status log of the collector's own outages from late results.

While the collector is down nobody watches; when it starts again `Pipeline.mark_gap` logs every
site and link `unknown` from when it was last known alive and records the gap here. The agents
kept probing meanwhile and replay their backlog once the collector is back, each result
carrying the time it was probed. A rebuild replays the stored results of the gap, with the hour
before it as warm-up, in probe-time order through a fresh state book and logs the site and link
statuses it finds as rows of the status log that name their gap, so the next rebuild (more
late results arrived) replaces them. Availability then reads them by its own rules: a row holds
until the entity's next row, and of rows with one timestamp the one written later wins. The
rebuilt rows at the gap's start are written after mark_gap's `unknown` rows, so they win there;
every rebuilt row is before the gap's end, so the first live pass after the restart, logged at
or after the end, takes over from there.

A replay differs from the live book in what it can know, because nothing was received at the
time: an agent's contact time is when its result was probed, which proves the agent ran and
what it saw, not that anything reached the collector then. So an agent's word decides its own
links while it keeps probing, but is not a path to the hub: a site reaches the hub only through
links seen working (a site whose one link its agent saw fail is down, not "on its backup"). The
centre's evidence counts as an agent's does live: while it is news, probed within the silence
allowance. Its last look at an edge before the gap covers the gap's first moments, where a
router that could not be read for a second would leave a backup link with no word at all, and
says nothing after; what another collector's sweep saw inside the gap (a takeover's few
seconds) is replayed like any result. A down seen meanwhile wins over that last look: an "up"
refutes only failures that began before it. Without evidence, a site stays unknown.

Only collector gaps are rebuilt. One agent falling silent while the collector runs (its site cut
off) needs no correction: the centre kept pinging the site's edges, so the live log already
holds the evidence for that time (down), and the agent's replayed results are history there.
The replay is the live pipeline's correlation (`collector.pipeline.step`) driven in probe time,
and its rows are kept by the status log's table module (`collector.store.status`). The
functions here block on the database: call them via `asyncio.to_thread`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from collector import maintenance
from collector.pipeline import step, vantage_of
from collector.state import StateBook, silence_allowance
from collector.store import Store
from collector.store.status import Gap, Rebuilt
from probes.result import ProbeResult
from sitewatch.config.model import Inventory, Site

__all__ = ["Gap", "Rebuilt", "due", "rebuild", "rebuild_due"]

WARM_UP_SECONDS = 3_600.0  # results before a gap replayed to know each state at its start
LOOK_BACK_SECONDS = 30 * 86_400.0  # gaps older than this are left as they are
# Results are stamped `received` before the store's lock is taken, so one stamped just before a
# rebuild began may be committed after it read the results; results received this long before
# a rebuild surely were not, and only those count as rebuilt.
RECEIPT_SLACK = 60.0


def due(store: Store, now: float, look_back: float = LOOK_BACK_SECONDS) -> list[Gap]:
    """Return the recent gaps with results received since their last rebuild, oldest first."""
    return store.status.due(now - look_back, WARM_UP_SECONDS)


def rebuild(
    store: Store,
    inventory: Inventory,
    agents: dict[str, str],
    windows: Iterable[maintenance.Window],
    *,
    start: float,
    end: float,
    warm_up: float = WARM_UP_SECONDS,
) -> list[Rebuilt]:
    """Return the site and link statuses that the stored results show over [start, end).

    `agents` maps agent ids to their sites. Each entity's status at `start` comes first, then
    every change before `end`, in time order.
    """
    interval = min(
        (site.thresholds.interval.total_seconds() for site in inventory.sites),
        default=inventory.thresholds.interval.total_seconds(),
    )
    # the centre sweeps every edge on the inventory's own interval (collector.service)
    sweep = inventory.thresholds.interval.total_seconds()
    replay = _Replay(
        StateBook(inventory, dict(agents)),
        maintenance.Schedule(windows, inventory),
        interval,
        start,
        silence_allowance(sweep),
    )
    for source, result in store.status.results(start - warm_up, end):
        replay.feed(source, result)
    return replay.finish(end)


def rebuild_due(
    store: Store,
    inventory: Inventory,
    agents: dict[str, str],
    windows: Iterable[maintenance.Window],
    now: float,
) -> list[Gap]:
    """Rebuild every recent gap with results received since its last rebuild; return them."""
    found = due(store, now)
    kept = tuple(windows)
    log = store.status
    for gap in found:
        rows = rebuild(store, inventory, agents, kept, start=gap.start, end=gap.end)
        log.replace(gap, rows, rebuilt_at=now - RECEIPT_SLACK)
    return found


@dataclass
class _Replay:
    """One replay: the state book fed in probe order, correlated when anything may have moved.

    The correlation and the tracking of what changed are the live pipeline's (`step`); only
    the moments of the passes and what counts as contact differ (see the module docstring).
    """

    book: StateBook
    schedule: maintenance.Schedule
    step: float  # correlate at least this often, so an agent's silence is noticed
    start: float
    news_for: float  # how long after its probe a result of the centre's still counts
    changes: list[Rebuilt] = field(default_factory=list)
    began: bool = False
    moved: float = math.inf  # when a state moved that no correlation has seen yet
    tick: float = math.inf  # the next correlation due for the passing of time
    boundary: float = math.inf  # the next maintenance window boundary
    sites: dict[str, Site] = field(init=False)

    def __post_init__(self) -> None:
        self.sites = {site.id: site for site in self.book.inventory.sites}

    def feed(self, source: str, result: ProbeResult) -> None:
        """Apply one result, after correlating at every moment due before it."""
        ts = result.ts.timestamp()
        if ts >= self.start:
            self._begin()
            self._until(ts)
        vantage = vantage_of(source)
        moved = self.book.observe(vantage, result)
        if vantage == "agent":
            moved |= self._was_silent(source, ts)  # its word counts again, though no target moved
            self.book.heard_from(source, ts, ts)
        if moved and self.began:
            self.moved = min(self.moved, ts)

    def _was_silent(self, agent: str, ts: float) -> bool:
        """Return whether the agent had been unheard for long enough to count as silent."""
        site = self.sites.get(self.book.agents.get(agent, ""))
        return site is not None and not self.book.heard_lately(site, ts)

    def finish(self, end: float) -> list[Rebuilt]:
        """Correlate up to `end` and return the changes."""
        self._begin()
        self._until(end)
        return self.changes

    def _begin(self) -> None:
        if self.began:
            return
        self.began = True
        self.boundary = self._next_boundary(self.start)
        self._correlate(self.start)

    def _until(self, ts: float) -> None:
        """Correlate at every due moment before `ts`."""
        while (due := min(self.moved, self.tick, self.boundary)) < ts:
            self._correlate(due)

    def _correlate(self, at: float) -> None:
        targets = self.book.targets
        for key in [k for k, state in targets.items() if k[2] == "centre"]:
            if targets[key].last_ts < at - self.news_for:
                del targets[key]  # old news: the centre did not probe during its outage
        # the agents' word decides their links, but in a replay it is no path to the hub
        _, changed = step(self.book, at, self.schedule.active(at), agents_reach_hub=False)
        self.changes += [(entity, at, status) for entity, status in changed]
        if self.moved <= at:
            self.moved = math.inf
        self.tick = at + self.step
        if at >= self.boundary:
            self.boundary = self._next_boundary(at)

    def _next_boundary(self, at: float) -> float:
        following = self.schedule.next_change(at)
        return math.inf if following is None else following
