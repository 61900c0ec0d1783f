"""Availability: how long each site or link was up, degraded, down, planned away or unseen.

The status log holds one row per change: an entity has a row's status from its `ts` until the
entity's next row, so a range is measured by walking the rows that touch it. The shares follow
what management is promised, not what is easy to count:

- availability = (up + degraded) / (up + degraded + down). A degraded link still carries
  traffic, so it counts as available, and its share is reported beside it.
- maintenance and unmonitored time are planned absences: they count neither way.
- unknown time is no evidence (before an entity's first row, or a collector outage, which the
  collector writes as `unknown` when it restarts): reported apart, never guessed either way.
- a range with nothing counted has no availability (None), not 100%.

The business-hours variant counts only working time of the SLA calendar, so an outage at
night or over a public holiday weighs nothing there. Every batch reads all its entities in one
query: the sites API asks on each request.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields

from collector.sla import WorkingCalendar
from collector.store import Store

STATUSES = ("up", "degraded", "down", "maintenance", "unmonitored", "unknown")
WINDOWS: dict[str, float] = {"24h": 86_400.0, "7d": 7 * 86_400.0, "30d": 30 * 86_400.0}


@dataclass(frozen=True, slots=True)
class Durations:
    """Seconds spent in each status; the shares are of counted time (up, degraded, down)."""

    up: float = 0.0
    degraded: float = 0.0
    down: float = 0.0
    maintenance: float = 0.0
    unmonitored: float = 0.0
    unknown: float = 0.0

    @property
    def counted(self) -> float:
        """Return the seconds that count towards availability."""
        return self.up + self.degraded + self.down

    @property
    def availability(self) -> float | None:
        """Return the share of counted time the entity was usable, or None with none counted."""
        counted = self.counted
        return (self.up + self.degraded) / counted if counted > 0 else None

    @property
    def degraded_share(self) -> float | None:
        """Return the share of counted time the entity was degraded, or None with none counted."""
        counted = self.counted
        return self.degraded / counted if counted > 0 else None

    def __add__(self, other: Durations) -> Durations:
        """Pool two entities' (or ranges') seconds, status by status."""
        return Durations(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(Durations))
        )

    def as_json(self) -> dict[str, float]:
        """Return the seconds by status, for the wire."""
        return {f.name: getattr(self, f.name) for f in fields(Durations)}


@dataclass(frozen=True, slots=True)
class Availability:
    """One entity's time in each status over [start, end): round the clock and working hours."""

    entity: str
    start: float
    end: float
    always: Durations
    working: Durations | None  # None when no calendar was given


def site_entity(site_id: str) -> str:
    """Return the status log's name of a site."""
    return f"site:{site_id}"


def link_entity(link_id: str) -> str:
    """Return the status log's name of a link."""
    return f"link:{link_id}"


def availability(
    store: Store,
    entity: str,
    start: float,
    end: float,
    calendar: WorkingCalendar | None = None,
) -> Availability:
    """Return one entity's availability over [start, end); working hours too with a calendar."""
    return availabilities(store, [entity], start, end, calendar)[entity]


def availabilities(
    store: Store,
    entities: Iterable[str],
    start: float,
    end: float,
    calendar: WorkingCalendar | None = None,
) -> dict[str, Availability]:
    """Return the availability of each entity over [start, end), read in one query."""
    wanted = list(dict.fromkeys(entities))
    rows = _read(store, wanted, start, end)
    return {
        entity: Availability(
            entity,
            start,
            end,
            measure(rows.get(entity, ()), start, end),
            None if calendar is None else measure(rows.get(entity, ()), start, end, calendar),
        )
        for entity in wanted
    }


def site_availability(
    store: Store,
    calendar: WorkingCalendar,
    site_id: str,
    now: float,
    *,
    business_hours: bool = False,
) -> dict[str, float | None]:
    """Return a site's availability over the last 24h, 7d and 30d (the API's field)."""
    return sites_availability(store, calendar, [site_id], now, business_hours=business_hours)[
        site_id
    ]


def sites_availability(
    store: Store,
    calendar: WorkingCalendar,
    site_ids: Iterable[str],
    now: float,
    *,
    business_hours: bool = False,
) -> dict[str, dict[str, float | None]]:
    """Return each site's availability over the last 24h, 7d and 30d, read in one query.

    Round the clock by default, as the contract's `availability` field is; `business_hours`
    counts only the calendar's working time instead.
    """
    ids = list(dict.fromkeys(site_ids))
    shares = windows_availability(store, calendar, [site_entity(i) for i in ids], now)
    return {site_id: shares[site_entity(site_id)][int(business_hours)] for site_id in ids}


Shares = dict[str, float | None]


def windows_availability(
    store: Store, calendar: WorkingCalendar, entities: Iterable[str], now: float
) -> dict[str, tuple[Shares, Shares]]:
    """Return each entity's (`site:ID`, `link:ID`) availability over 24h, 7d and 30d.

    Both ways from one read of the log: round the clock, and in the calendar's working time.
    """
    wanted = list(dict.fromkeys(entities))
    rows = _read(store, wanted, now - max(WINDOWS.values()), now)

    def shares(entity: str, counting: WorkingCalendar | None) -> Shares:
        found = rows.get(entity, ())
        return {
            name: measure(found, now - span, now, counting).availability
            for name, span in WINDOWS.items()
        }

    return {entity: (shares(entity, None), shares(entity, calendar)) for entity in wanted}


def measure(
    rows: Sequence[tuple[float, str]],
    start: float,
    end: float,
    calendar: WorkingCalendar | None = None,
) -> Durations:
    """Return the seconds in each status over [start, end) of one entity's rows, oldest first.

    `rows` must hold the entity's last row at or before `start` (if any) and every row after
    it; with a calendar, only working seconds are counted.
    """
    totals = dict.fromkeys(STATUSES, 0.0)
    for since, until, status in segments(rows, start, end):
        seconds = until - since if calendar is None else calendar.between(since, until)
        totals[status if status in totals else "unknown"] += seconds
    return Durations(**totals)


def segments(
    rows: Sequence[tuple[float, str]], start: float, end: float
) -> Iterator[tuple[float, float, str]]:
    """Yield (since, until, status) for each stretch of [start, end); no row yet is unknown."""
    status, since = "unknown", start
    for ts, new in rows:
        if ts > start:
            if ts >= end:
                break
            if ts > since:
                yield since, ts, status
            since = ts
        status = new
    if end > since:
        yield since, end, status


def _read(
    store: Store, entities: Sequence[str], start: float, end: float
) -> dict[str, list[tuple[float, str]]]:
    """Return each entity's rows that touch [start, end), oldest first (absent: no rows)."""
    return store.status.touching(entities, start, end)
