"""What `GET /api/v1/sites` would otherwise redo on every request, kept between requests.

Both caches here are exact: the answer with them is the answer without them (availability to
the last bits of a float, since sums are taken in another order), whenever the request comes.

`AvailabilityCache`: each site's and link's status log rows from the opening of the longest
window on, read once, with running totals at every row of the seconds that count towards
availability (usable: up or degraded; counted: up, degraded or down), round the clock and in
the calendar's working time. A window [now - span, now) then costs two binary searches and a
few subtractions per entity, however many rows it holds; time moving on needs no reload, since
every request measures up to its own `now` (the open row's share runs to it). Without it, every
request read a month of the log for every site and link and asked the SLA calendar about every
row: seconds per request at 1,000 sites (bench/report_bench.py).

What can change the rows is noticed by one small read per request, so writers in another
process (a second collector on one PostgreSQL) are seen as well as ours:
- every live write of the log (`StatusLog.log`) sets `collector.alive_until` in the same
  transaction: when it moved, the rows logged since the value seen before are read (one index
  range per entity) and replace the cached ones from there on;
- the collector's gaps write rows in the past (`mark_gap`'s `unknown` rows, the rows rebuilt
  from late results): each of those writes changes the `gaps` table, and a changed `gaps` table
  reloads every entity;
- a collector that never marked its start (`Pipeline.warm_up` does, before it serves) has no
  `alive_until` to go by: then every request reads the rows from the newest one held on.
Maintenance windows write nothing to the log by themselves: the correlation pass after a change
logs the statuses it causes, a live write like any other. So there is no TTL: nothing goes
stale with time.

`SiteFragments`: each site's JSON text, kept with what it was made from (the site's view, its
agent's heartbeat, its availability) and reused while those are equal. The inventory's parts
(names, ids, kinds, addresses, users, upstream) and the statuses of fifty devices rarely change
between two requests; turning them into JSON again each time was most of the rest.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import threading
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, MutableSequence, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from collector.availability import WINDOWS, Shares
from collector.body import finite
from collector.heartbeat import Heartbeat
from collector.sla import WorkingCalendar
from collector.state import SiteView
from collector.store import Store
from collector.store.status import Version
from collector.views import Availability, site_json

USABLE = frozenset(("up", "degraded"))
COUNTED = frozenset(("up", "degraded", "down"))
LONGEST = max(WINDOWS.values())
TRIM_AFTER = 1_024  # rows fallen out of every window that are kept before they are dropped
NO_END = sys.float_info.max  # read every row after the start, whatever its time


@dataclass(slots=True)
class _Rows:
    """One entity's rows, oldest first, with running totals before each row (arrays of
    doubles: a month of 1,000 sites' log is some 200,000 rows).

    `usable[j]`/`counted[j]`: seconds of rows 0..j-1 (each row lasting until the next);
    `work_*` the same in working seconds; `worked[j]` the working seconds from the cache's
    origin to `ts[j]` (negative before it).
    """

    start: float  # the rows hold the entity's status at every instant from here on
    ts: array[float] = field(default_factory=lambda: array("d"))
    status: list[str] = field(default_factory=list)
    worked: array[float] = field(default_factory=lambda: array("d"))
    usable: array[float] = field(default_factory=lambda: array("d"))
    counted: array[float] = field(default_factory=lambda: array("d"))
    work_usable: array[float] = field(default_factory=lambda: array("d"))
    work_counted: array[float] = field(default_factory=lambda: array("d"))


class AvailabilityCache:
    """Sites' and links' availability over the API's windows; see the module's docstring.

    Its methods block on the store: call them from a worker thread. Requests in several
    threads at once take turns.
    """

    def __init__(self, store: Store, calendar: WorkingCalendar) -> None:
        self._store = store
        self._calendar = calendar
        self._lock = threading.Lock()
        self._rows: dict[str, _Rows] = {}
        self._version: Version | None = None
        self._origin: float | None = None  # where working seconds are counted from
        self._newest = -math.inf  # the time of the newest row held

    def windows(self, entities: Iterable[str], now: float) -> Availability:
        """Return each entity's shares over 24h, 7d and 30d, round the clock and working."""
        wanted = list(dict.fromkeys(entities))
        with self._lock:
            self._refresh(wanted, now)
            edges = {name: now - span for name, span in WINDOWS.items()}
            worked = {name: self._worked(at) for name, at in edges.items()}
            worked_now = self._worked(now)
            found: Availability = {}
            horizon = now - LONGEST
            for entity in wanted:
                rows = self._rows[entity]
                if (old := bisect_right(rows.ts, horizon) - 1) > TRIM_AFTER:
                    _drop_before(rows, old)  # out of every window: no use kept
                always: Shares = {}
                working: Shares = {}
                for name, at in edges.items():
                    always[name], working[name] = _shares(rows, at, now, worked[name], worked_now)
                found[entity] = (always, working)
            return found

    def _refresh(self, wanted: Sequence[str], now: float) -> None:
        """Bring the rows of `wanted` up to what the log holds now."""
        version = self._store.status.version()
        before, self._version = self._version, version
        if before is None or before[1] != version[1]:
            self._rows.clear()  # the past was written: start again
            self._newest = -math.inf
        elif not (before[0] and version[0]):
            # No note of the collector watching (it never marked its start, so the log's
            # writes set none): look for rows from the newest one held on, on every request.
            self._newer(self._newest)
        elif before[0] != version[0]:
            self._newer(min(float(row[0]) for row in before[0]))
        horizon = now - LONGEST
        missing = [e for e in wanted if e not in self._rows or self._rows[e].start > horizon]
        if missing:
            self._load(missing, horizon)

    def _newer(self, since: float) -> None:
        """Replace every cached entity's rows from `since` on with the log's."""
        read = self._read(list(self._rows), since)
        for entity, rows in self._rows.items():
            fresh = read.get(entity, [])
            if fresh:  # the log's last row at or before `since`, then every row after it
                cut = bisect_left(rows.ts, fresh[0][0])
                _truncate(rows, cut)
                self._extend(rows, fresh)

    def _load(self, entities: list[str], start: float) -> None:
        """Read the rows of `entities` that say their status from `start` on."""
        if self._origin is None:
            self._origin = start
        read = self._read(entities, start)
        for entity in entities:
            rows = self._rows[entity] = _Rows(start)
            self._extend(rows, read.get(entity, []))

    def _read(self, entities: list[str], start: float) -> dict[str, list[tuple[float, str]]]:
        """Each entity's last row at or before `start` and every row after it, oldest first."""
        return self._store.status.touching(entities, start, NO_END)

    def _extend(self, rows: _Rows, more: Iterable[tuple[float, str]]) -> None:
        """Append rows, keeping the running totals."""
        for ts, status in more:
            worked = self._worked(ts)
            if rows.ts:
                last, seconds, working = rows.status[-1], ts - rows.ts[-1], worked - rows.worked[-1]
                rows.usable.append(rows.usable[-1] + (seconds if last in USABLE else 0.0))
                rows.counted.append(rows.counted[-1] + (seconds if last in COUNTED else 0.0))
                rows.work_usable.append(rows.work_usable[-1] + (working if last in USABLE else 0.0))
                rows.work_counted.append(
                    rows.work_counted[-1] + (working if last in COUNTED else 0.0)
                )
            else:
                for totals in (rows.usable, rows.counted, rows.work_usable, rows.work_counted):
                    totals.append(0.0)
            self._newest = max(self._newest, ts)
            rows.ts.append(ts)
            rows.status.append(status)
            rows.worked.append(worked)

    def _worked(self, instant: float) -> float:
        """Return the working seconds from the origin to `instant` (negative before it)."""
        origin = instant if self._origin is None else self._origin
        between = self._calendar.between
        return between(origin, instant) - between(instant, origin)


def _columns(rows: _Rows) -> tuple[MutableSequence[Any], ...]:
    return (
        rows.ts,
        rows.status,
        rows.worked,
        rows.usable,
        rows.counted,
        rows.work_usable,
        rows.work_counted,
    )


def _truncate(rows: _Rows, cut: int) -> None:
    """Drop the rows from `cut` on."""
    for column in _columns(rows):
        del column[cut:]


def _drop_before(rows: _Rows, keep: int) -> None:
    """Drop the rows before `keep`: the running totals still hold as differences."""
    rows.start = max(rows.start, rows.ts[keep])
    for column in _columns(rows):
        del column[:keep]


def _shares(
    rows: _Rows, start: float, end: float, worked_start: float, worked_end: float
) -> tuple[float | None, float | None]:
    """Return the availability over [start, end), round the clock and in working time.

    As `availability.measure` counts it: the status at `start` is the last row's at or before
    it (none: unknown, which counts neither way), each row holds until the next, and rows at
    or after `end` are not yet.
    """
    ts, status = rows.ts, rows.status
    first = bisect_right(ts, start) - 1  # the row in force at `start`, -1 for none
    last = bisect_left(ts, end) - 1  # the last row before `end`
    if last < 0:
        return None, None
    usable = counted = work_usable = work_counted = 0.0
    if first == last:
        spans = [(status[first], end - start, worked_end - worked_start)]
    else:
        spans = [(status[last], end - ts[last], worked_end - rows.worked[last])]
        whole = first + 1  # rows from here to `last` lie wholly inside
        if first >= 0:
            nxt = ts[first + 1]
            spans.append((status[first], nxt - start, rows.worked[first + 1] - worked_start))
        else:
            whole = 0
        usable = rows.usable[last] - rows.usable[whole]
        counted = rows.counted[last] - rows.counted[whole]
        work_usable = rows.work_usable[last] - rows.work_usable[whole]
        work_counted = rows.work_counted[last] - rows.work_counted[whole]
    for said, seconds, working in spans:
        if said in COUNTED:
            counted += seconds
            work_counted += working
            if said in USABLE:
                usable += seconds
                work_usable += working
    return (
        usable / counted if counted > 0 else None,
        work_usable / work_counted if work_counted > 0 else None,
    )


class SiteFragments:
    """Each site's JSON text, reused while what it was made from is unchanged."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[str, tuple[SiteView, Heartbeat | None, list[Any], str]] = {}

    def text(
        self, views: Sequence[SiteView], heartbeats: Mapping[str, Heartbeat], shares: Availability
    ) -> str:
        """Return the sites as the API's JSON array: the text `json_response` would send."""
        parts = []
        with self._lock:
            for view in views:
                heartbeat = heartbeats.get(view.id)
                mine = [shares.get(entity) for entity in entities_of((view,))]
                kept = self._kept.get(view.id)
                if (
                    kept is not None
                    and (kept[0] is view or kept[0] == view)  # the state book keeps its views
                    and kept[1] == heartbeat
                    and kept[2] == mine
                ):
                    parts.append(kept[3])
                    continue
                text = json.dumps(finite(site_json(view, heartbeat, shares)), allow_nan=False)
                self._kept[view.id] = (view, heartbeat, mine, text)
                parts.append(text)
        return "[" + ", ".join(parts) + "]"


class SiteCache:
    """The sites API's caches of one collector: availability, and each site's JSON."""

    def __init__(self, store: Store, calendar: WorkingCalendar) -> None:
        self.availability = AvailabilityCache(store, calendar)
        self.fragments = SiteFragments()

    async def shares(self, views: Sequence[SiteView], now: float) -> Availability:
        """The sites' and their links' availability, as `views.availability_of` gives it."""
        return await asyncio.to_thread(self.availability.windows, entities_of(views), now)

    async def sites_text(
        self, views: Sequence[SiteView], heartbeats: Mapping[str, Heartbeat], now: float
    ) -> str:
        """Return `GET /api/v1/sites`'s body for `views`, with their availability at `now`."""
        shares = await self.shares(views, now)
        return self.fragments.text(views, heartbeats, shares)


def entities_of(views: Iterable[SiteView]) -> list[str]:
    """Return the status log's names of the sites and their links."""
    found = []
    for view in views:
        found.append(f"site:{view.id}")
        found += [f"link:{link.id}" for link in view.links]
    return found


SITE_CACHE: web.AppKey[SiteCache] = web.AppKey("site_cache", SiteCache)
