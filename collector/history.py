"""Collector gaps: rebuild the status log of the collector's own outages from late results.

While the collector is down nobody watches; when it starts again `Collector.mark_gap` logs every
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
centre's own evidence ends at the gap's start: it did not probe while it was down, and its last
look at an edge says nothing about the time after. Without either, a site stays unknown.

Only collector gaps are rebuilt. One agent falling silent while the collector runs (its site cut
off) needs no correction: the centre kept pinging the site's edges, so the live log already
holds the evidence for that time (down), and the agent's replayed results are history there.
The functions here block on the database: call them via `asyncio.to_thread`.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

from collector import maintenance
from collector.state import SILENT_AFTER_AT_LEAST, SILENT_AFTER_INTERVALS, StateBook, Vantage
from collector.store import CENTRE, Store, stored_reading, stored_time
from collector.topology import Evidence, correlate
from probes.result import MAX_RTT_MS, ErrorKind, ProbeResult
from sitewatch.config.model import Inventory

WARM_UP_SECONDS = 3_600.0  # results before a gap replayed to know each state at its start
LOOK_BACK_SECONDS = 30 * 86_400.0  # gaps older than this are left as they are
# Results are stamped `received` before the store's lock is taken, so one stamped just before a
# rebuild began may be committed after it read the results; results received this long before
# a rebuild surely were not, and only those count as rebuilt.
RECEIPT_SLACK = 60.0
_CHUNK = 5_000  # results read per query, so ingest never waits long for the store

Change = tuple[str, float, str]  # (entity, ts, status): one row of the status log


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch [start, end) the collector did not watch."""

    id: int
    start: float
    end: float
    rebuilt_at: float | None  # results received until then are in its rebuilt rows


def note_gap(db: sqlite3.Connection, start: float, end: float) -> None:
    """Record a gap inside the caller's transaction (mark_gap's).

    A restart that died before its first pass left `alive_until` as it was, so the next one
    reports a gap with the same start: that gap grows, loses the rows rebuilt for its shorter
    self (their last status would hold over the new part) and is rebuilt again.
    """
    if end <= start:
        return
    db.execute(
        "DELETE FROM status_log WHERE gap IN (SELECT id FROM gaps WHERE start = ?)", (start,)
    )
    db.execute(
        'INSERT INTO gaps (start, "end") VALUES (?, ?) ON CONFLICT (start) DO UPDATE SET '
        '"end" = max(gaps."end", excluded."end"), rebuilt_at = NULL',
        (start, end),
    )


def gaps(store: Store, since: float) -> list[Gap]:
    """Return the gaps that end after `since`, oldest first."""
    with store.reading() as db:
        rows = db.execute(
            'SELECT id, start, "end", rebuilt_at FROM gaps WHERE "end" > ? ORDER BY start',
            (since,),
        ).fetchall()
    return [Gap(*row) for row in rows]


def due(store: Store, now: float, look_back: float = LOOK_BACK_SECONDS) -> list[Gap]:
    """Return the recent gaps with results received since their last rebuild, oldest first.

    A gap never rebuilt is due once results of its time arrive after it began: until then its
    `unknown` rows say all there is to say.
    """
    with store.reading() as db:
        rows = db.execute(
            'SELECT id, start, "end", rebuilt_at FROM gaps WHERE "end" > ? AND EXISTS ('
            '    SELECT 1 FROM results WHERE ts >= gaps.start - ? AND ts < gaps."end"'
            "    AND received > coalesce(gaps.rebuilt_at, gaps.start)"
            ") ORDER BY start",
            (now - look_back, WARM_UP_SECONDS),
        ).fetchall()
    return [Gap(*row) for row in rows]


def rebuild(
    store: Store,
    inventory: Inventory,
    agents: dict[str, str],
    windows: Iterable[maintenance.Window],
    *,
    start: float,
    end: float,
    warm_up: float = WARM_UP_SECONDS,
) -> list[Change]:
    """Return the site and link statuses that the stored results show over [start, end).

    `agents` maps agent ids to their sites. Each entity's status at `start` comes first, then
    every change before `end`, in time order.
    """
    replay = _Replay(
        StateBook(inventory, dict(agents)),
        maintenance.Schedule(windows, inventory),
        min(
            (site.thresholds.interval.total_seconds() for site in inventory.sites),
            default=inventory.thresholds.interval.total_seconds(),
        ),
        start,
    )
    for source, result in _results(store, start - warm_up, end):
        replay.feed(source, result)
    return replay.finish(end)


def apply(store: Store, gap: Gap, rows: Sequence[Change], *, rebuilt_at: float) -> None:
    """Replace the gap's rebuilt rows with `rows` and note `rebuilt_at`, in one transaction.

    Rows outside the gap are dropped: the time around it belongs to the live log. A gap that
    grew meanwhile (see `note_gap`) keeps no `rebuilt_at`, so it is rebuilt again.
    """
    inside = [
        (entity, ts, status, gap.id) for entity, ts, status in rows if gap.start <= ts < gap.end
    ]
    with store.transaction() as db:
        db.execute("DELETE FROM status_log WHERE gap = ?", (gap.id,))
        db.executemany(
            "INSERT INTO status_log (entity, ts, status, gap) VALUES (?, ?, ?, ?)", inside
        )
        db.execute(
            'UPDATE gaps SET rebuilt_at = ? WHERE id = ? AND "end" = ?',
            (rebuilt_at, gap.id, gap.end),
        )


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
    for gap in found:
        rows = rebuild(store, inventory, agents, kept, start=gap.start, end=gap.end)
        apply(store, gap, rows, rebuilt_at=now - RECEIPT_SLACK)
    return found


@dataclass
class _Replay:
    """One replay: the state book fed in probe order, correlated when anything may have moved."""

    book: StateBook
    schedule: maintenance.Schedule
    step: float  # correlate at least this often, so an agent's silence is noticed
    start: float
    changes: list[Change] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)
    began: bool = False
    moved: float = math.inf  # when a state moved that no correlation has seen yet
    tick: float = math.inf  # the next correlation due for the passing of time
    boundary: float = math.inf  # the next maintenance window boundary
    silence: dict[str, float] = field(init=False)  # site id -> its silence allowance

    def __post_init__(self) -> None:
        self.silence = {
            site.id: max(
                SILENT_AFTER_INTERVALS * site.thresholds.interval.total_seconds(),
                SILENT_AFTER_AT_LEAST,
            )
            for site in self.book.inventory.sites
        }

    def feed(self, source: str, result: ProbeResult) -> None:
        """Apply one result, after correlating at every moment due before it."""
        ts = result.ts.timestamp()
        if ts >= self.start:
            self._begin()
            self._until(ts)
        vantage: Vantage = "centre" if source == CENTRE else "agent"
        moved = self.book.observe(vantage, result)
        if vantage == "agent":
            moved |= self._was_silent(source, ts)  # its word counts again, though no target moved
            self.book.heard_from(source, ts, ts)
        if moved and self.began:
            self.moved = min(self.moved, ts)

    def _was_silent(self, agent: str, ts: float) -> bool:
        """Return whether the agent had been unheard for long enough to count as silent."""
        site = self.book.agents.get(agent)
        if site is None:
            return False
        heard = self.book.last_heard.get(site)
        return heard is None or ts - heard > self.silence.get(site, SILENT_AFTER_AT_LEAST)

    def finish(self, end: float) -> list[Change]:
        """Correlate up to `end` and return the changes."""
        self._begin()
        self._until(end)
        return self.changes

    def _begin(self) -> None:
        if self.began:
            return
        self.began = True
        for key in [key for key in self.book.targets if key[2] == "centre"]:
            del self.book.targets[key]  # the centre did not probe during its own outage
        self.boundary = self._next_boundary(self.start)
        self._correlate(self.start)

    def _until(self, ts: float) -> None:
        """Correlate at every due moment before `ts`."""
        while (due := min(self.moved, self.tick, self.boundary)) < ts:
            self._correlate(due)

    def _correlate(self, at: float) -> None:
        known = self.book.evidence(at)
        # the agents' word decides their links, but in a replay it is no path to the hub
        evidence = Evidence(known.links, {}, known.devices_down)
        correlation = correlate(self.book.topology, evidence, self.schedule.active(at))
        statuses = [(f"site:{site}", status) for site, status in correlation.sites.items()]
        statuses += [(f"link:{link}", status) for link, status in correlation.links.items()]
        for entity, status in statuses:
            if self.statuses.get(entity) != status:
                self.statuses[entity] = status
                self.changes.append((entity, at, status))
        if self.moved <= at:
            self.moved = math.inf
        self.tick = at + self.step
        if at >= self.boundary:
            self.boundary = self._next_boundary(at)

    def _next_boundary(self, at: float) -> float:
        following = self.schedule.next_change(at)
        return math.inf if following is None else following


def _results(store: Store, start: float, end: float) -> Iterator[tuple[str, ProbeResult]]:
    """Yield (source, result) for the results probed in [start, end), in probe order.

    Read in chunks, each from where the last one stopped; only what the state book reads.
    """
    columns = (
        "SELECT ts, source, outbox, seq, target, kind, ok, rtt_ms, loss, error_kind FROM results"
    )
    # A row is one (source, outbox, seq): a reinstalled agent numbers from 1 again
    order = "ORDER BY ts, source, outbox, seq LIMIT ?"
    after: tuple[float, str, str, int] | None = None
    while True:
        with store.reading() as db:
            if after is None:
                rows = db.execute(
                    f"{columns} WHERE ts >= ? AND ts < ? {order}", (start, end, _CHUNK)
                ).fetchall()
            else:
                rows = db.execute(
                    f"{columns} WHERE ts >= ? AND ts < ? "
                    f"AND (ts, source, outbox, seq) > (?, ?, ?, ?) {order}",
                    (after[0], end, *after, _CHUNK),
                ).fetchall()
        for ts, source, _, _, target, kind, ok, rtt_ms, loss, error_kind in rows:
            yield (
                source,
                ProbeResult(  # read as tolerantly as the store's own readers read a row
                    target,
                    kind,
                    stored_time(ts),
                    ok=bool(ok),
                    rtt_ms=stored_reading(rtt_ms, MAX_RTT_MS),
                    loss=stored_reading(loss, 1.0),
                    error_kind=cast("ErrorKind | None", error_kind),
                ),
            )
        if len(rows) < _CHUNK:
            return
        after = (rows[-1][0], rows[-1][1], rows[-1][2], rows[-1][3])
