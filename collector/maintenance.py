"""Maintenance windows: while one covers a site, link or device, SiteWatch opens no incident.

A window is one-off, `[start, end)` in Unix seconds, or weekly, on wall-clock times of the
inventory's time zone. A weekly occurrence opens the first time the local clock reaches its start
and closes the first time it reaches its end, so it follows the clock across DST: `02:00-04:00`
lasts one hour on the night the clocks skip 02:00-03:00 and three on the night they repeat it.
An occurrence whose end is not after its start crosses midnight and belongs to the day it starts:
`sat 22:00-02:00` covers Sunday 01:00.

A window on a site also covers that site's links and devices; it does not cover the sites that
reach the network through it, which the incident logic attributes to the upstream site anyway.

Staff create windows through the API: `parse_window` checks a decoded JSON body and every refusal
is a `MaintenanceError` naming the field. Windows are deleted softly (`deleted_at`) so the
record of who planned what stays; `collector.store.maintenance` holds them. The storage
functions block: call them via `asyncio.to_thread`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Literal, TypedDict, cast, get_args
from zoneinfo import ZoneInfo

from collector.store import Store
from collector.store.maintenance import StoredWindow
from collector.times import iso, iso_or_none
from probes.result import ResultFormatError, parse_ts
from probes.values import clean_text
from sitewatch.config.model import WEEKDAYS, Inventory

Scope = Literal["site", "link", "device"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
Key = tuple[Scope, str]  # what a window covers, e.g. ("link", "tesko-mpls")

MAX_REASON = 500  # characters
MAX_TARGET = 200
MAX_LENGTH = 366 * 86_400.0  # seconds a one-off window may last
FIELDS = frozenset({"scope", "target", "reason", "start", "end", "weekly"})
WEEKLY_FIELDS = frozenset({"days", "start", "end"})
_TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_DAY = timedelta(days=1)


class MaintenanceError(Exception):
    """A maintenance window was refused; the message starts with the field at fault."""


class WeeklyJson(TypedDict):
    """A weekly recurrence on the wire and in the database."""

    days: list[str]
    start: str
    end: str


class WindowJson(TypedDict):
    """A window as the API shows it."""

    id: int
    scope: str
    target: str
    start: str | None
    end: str | None
    weekly: WeeklyJson | None
    reason: str
    created_by: str
    created_at: str
    active: bool


@dataclass(frozen=True, slots=True)
class Weekly:
    """A weekly recurrence in local wall-clock time; `days` holds weekday numbers, Monday = 0.

    An `end` not after `start` means the occurrence ends on the next day.
    """

    days: frozenset[int]
    start: time
    end: time


@dataclass(frozen=True, slots=True)
class NewWindow:
    """A window as staff asked for it, checked but not yet stored."""

    scope: Scope
    target: str
    start: float | None  # a one-off window has start and end, a weekly one neither
    end: float | None
    weekly: Weekly | None
    reason: str


@dataclass(frozen=True, slots=True)
class Window:
    """A stored window."""

    id: int
    scope: Scope
    target: str
    start: float | None
    end: float | None
    weekly: Weekly | None
    reason: str
    created_by: str
    created_at: float


@dataclass(frozen=True, slots=True)
class ActiveSet:
    """What is in maintenance at one moment.

    `direct` holds the windows' own targets; `covered` adds the links and devices of the sites in
    `direct`. A site's status reads `maintenance` when it is in `direct`.
    """

    direct: frozenset[Key]
    covered: frozenset[Key]

    def __contains__(self, key: object) -> bool:
        return key in self.covered

    def __bool__(self) -> bool:
        return bool(self.covered)

    def site(self, site_id: str) -> bool:
        """Return whether a window covers the site itself."""
        return ("site", site_id) in self.covered

    def link(self, link_id: str) -> bool:
        """Return whether the link, or its site, is in maintenance."""
        return ("link", link_id) in self.covered

    def device(self, device_id: str) -> bool:
        """Return whether the device, or its site, is in maintenance."""
        return ("device", device_id) in self.covered


class Schedule:
    """The windows in force, asked what they cover at a moment."""

    __slots__ = ("_members", "windows", "zone")

    def __init__(self, windows: Iterable[Window], inventory: Inventory) -> None:
        self.windows = tuple(windows)
        self.zone = ZoneInfo(inventory.timezone)
        self._members: dict[str, frozenset[Key]] = {
            site.id: frozenset(
                [("link", link.id) for link in site.links]
                + [("device", device.id) for device in site.devices]
            )
            for site in inventory.sites
        }

    def covers(self, window: Window, at: float) -> bool:
        """Return whether `window` is open at `at`, Unix seconds."""
        return _covers(window, at, self.zone)

    def active(self, at: float) -> ActiveSet:
        """Return what is in maintenance at `at`."""
        direct = frozenset(
            (window.scope, window.target) for window in self.windows if self.covers(window, at)
        )
        covered = set(direct)
        for scope, target in direct:
            if scope == "site":
                covered |= self._members.get(target, frozenset())
        return ActiveSet(direct, frozenset(covered))

    def next_change(self, at: float) -> float | None:
        """Return the next window boundary after `at`, or None when no window has one left.

        The active set stays as it is at `at` until then. It may also stay so at the boundary
        (two windows on one target overlap there), which costs the caller one needless look.
        """
        bounds = [bound for window in self.windows for bound in _bounds(window, at, self.zone)]
        return min(bounds, default=None)


def window_json(window: Window, tz: str, *, now: float) -> WindowJson:
    """Return the API form of a window; `tz` is the inventory's time zone, `now` sets `active`."""
    return {
        "id": window.id,
        "scope": window.scope,
        "target": window.target,
        "start": iso_or_none(window.start),
        "end": iso_or_none(window.end),
        "weekly": None if window.weekly is None else weekly_json(window.weekly),
        "reason": window.reason,
        "created_by": window.created_by,
        "created_at": iso(window.created_at),
        "active": _covers(window, now, ZoneInfo(tz)),
    }


def weekly_json(weekly: Weekly) -> WeeklyJson:
    """Return the wire form of a weekly recurrence, days in week order."""
    return {
        "days": [WEEKDAYS[day] for day in sorted(weekly.days)],
        "start": weekly.start.strftime("%H:%M"),
        "end": weekly.end.strftime("%H:%M"),
    }


# -- parsing ---------------------------------------------------------------------------------


def parse_window(body: object, inventory: Inventory, *, now: float) -> NewWindow:
    """Return the window a decoded JSON body asks for, or raise MaintenanceError."""
    if not isinstance(body, dict):
        raise MaintenanceError("body: must be a JSON object")
    _refuse_unknown(body, FIELDS, prefix="")
    scope = body.get("scope")
    if scope not in SCOPES:
        raise MaintenanceError(f"scope: must be one of {', '.join(SCOPES)}")
    scope = cast("Scope", scope)
    target = _text(body, "target", limit=MAX_TARGET)
    if target not in _ids(inventory, scope):
        raise MaintenanceError(f"target: no {scope} {target!r} in the inventory")
    reason = _text(body, "reason", limit=MAX_REASON)
    weekly_node = body.get("weekly")
    if weekly_node is not None:
        if body.get("start") is not None or body.get("end") is not None:
            raise MaintenanceError("weekly: give either start and end, or weekly, not both")
        return NewWindow(scope, target, None, None, _weekly(weekly_node), reason)
    if body.get("start") is None:
        raise MaintenanceError("start: required, with end (or give weekly instead)")
    if body.get("end") is None:
        raise MaintenanceError("end: required with start")
    start = _timestamp(body, "start")
    end = _timestamp(body, "end")
    if end <= start:
        raise MaintenanceError("end: must be after start")
    if end <= now:
        raise MaintenanceError("end: the window has already ended")
    if end - start > MAX_LENGTH:
        raise MaintenanceError(f"end: a window may last at most {MAX_LENGTH / 86_400:g} days")
    return NewWindow(scope, target, start, end, None, reason)


def _refuse_unknown(node: Mapping[object, object], known: frozenset[str], *, prefix: str) -> None:
    unknown = sorted(str(key) for key in node if key not in known)
    if unknown:
        raise MaintenanceError(f"{prefix}{unknown[0]}: unknown field")


def _text(body: Mapping[object, object], key: str, *, limit: int) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise MaintenanceError(f"{key}: must be a string")
    value = value.strip()
    if not value:
        raise MaintenanceError(f"{key}: must not be empty")
    if len(value) > limit:
        raise MaintenanceError(f"{key}: longer than {limit} characters")
    if not clean_text(value):  # SQLite cannot encode it: refused here, not a 500 at the insert
        raise MaintenanceError(f"{key}: holds a lone surrogate (not valid Unicode text)")
    return value


def _ids(inventory: Inventory, scope: Scope) -> set[str]:
    if scope == "site":
        return {site.id for site in inventory.sites}
    if scope == "link":
        return {link.id for _, link in inventory.links()}
    return {device.id for _, device in inventory.devices()}


def _timestamp(body: Mapping[object, object], key: str) -> float:
    value = body.get(key)
    if not isinstance(value, str):
        raise MaintenanceError(f'{key}: must be an RFC 3339 time like "2026-03-01T22:00:00+02:00"')
    try:
        return parse_ts(value).timestamp()
    except ResultFormatError as err:
        raise MaintenanceError(f"{key}: {str(err).removeprefix('ts: ')}") from err
    except OverflowError as err:  # a valid time whose offset takes it past year 1 or 9999
        raise MaintenanceError(f"{key}: {value!r} is out of range") from err


def _weekly(node: object) -> Weekly:
    if not isinstance(node, dict):
        raise MaintenanceError("weekly: must be an object with days, start and end")
    _refuse_unknown(node, WEEKLY_FIELDS, prefix="weekly.")
    items = node.get("days")
    if not isinstance(items, list) or not items:
        raise MaintenanceError(f"weekly.days: must be a non-empty list of {', '.join(WEEKDAYS)}")
    days: set[int] = set()
    for item in items:
        if item not in WEEKDAYS:
            raise MaintenanceError(
                f"weekly.days: {item!r} is not one of {', '.join(WEEKDAYS)}"
                if isinstance(item, str)
                else f"weekly.days: must hold day names ({', '.join(WEEKDAYS)})"
            )
        day = WEEKDAYS.index(item)
        if day in days:
            raise MaintenanceError(f"weekly.days: {item!r} is given twice")
        days.add(day)
    start, end = _time_of_day(node, "start"), _time_of_day(node, "end")
    if start == end:
        raise MaintenanceError("weekly.end: must differ from weekly.start")
    return Weekly(frozenset(days), start, end)


def _time_of_day(node: Mapping[object, object], key: str) -> time:
    value = node.get(key)
    match = _TIME_OF_DAY.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise MaintenanceError(f'weekly.{key}: must be a time of day like "02:00"')
    return time(int(match.group(1)), int(match.group(2)))


# -- storage ---------------------------------------------------------------------------------


def add(store: Store, new: NewWindow, *, created_by: str, now: float) -> Window:
    """Store a new window and return it with its id."""
    weekly = None if new.weekly is None else json.dumps(weekly_json(new.weekly))
    window_id = store.maintenance.add(
        new.scope,
        new.target,
        start=new.start,
        end=new.end,
        weekly=weekly,
        reason=new.reason,
        created_by=created_by,
        now=now,
    )
    return Window(
        window_id,
        new.scope,
        new.target,
        new.start,
        new.end,
        new.weekly,
        new.reason,
        created_by,
        now,
    )


def load(store: Store) -> list[Window]:
    """Return every window not deleted, oldest first, ended one-off windows included."""
    return [_window(row) for row in store.maintenance.windows()]


def delete(store: Store, window_id: int, *, now: float) -> bool:
    """Delete a window softly; return False when there is no such window left to delete."""
    return store.maintenance.delete(window_id, now)


def _window(row: StoredWindow) -> Window:
    weekly = None if row.weekly is None else _stored_weekly(row.weekly)
    return Window(
        row.id,
        cast("Scope", row.scope),
        row.target,
        row.start,
        row.end,
        weekly,
        row.reason,
        row.created_by,
        row.created_at,
    )


def _stored_weekly(text: str) -> Weekly:
    data: WeeklyJson = json.loads(text)  # written by `add`: a bad row is a bug, let it raise
    return Weekly(
        frozenset(WEEKDAYS.index(day) for day in data["days"]),
        time.fromisoformat(data["start"]),
        time.fromisoformat(data["end"]),
    )


# -- time ------------------------------------------------------------------------------------


def _covers(window: Window, at: float, zone: tzinfo) -> bool:
    if window.weekly is None:
        return (
            window.start is not None and window.end is not None and window.start <= at < window.end
        )
    today = datetime.fromtimestamp(at, zone).date()
    # Yesterday's occurrence may cross midnight; tomorrow's may have begun where the clocks go
    # back across midnight, so the local date of `at` is still today.
    occurrences = _occurrences(window.weekly, zone, today - _DAY, today + _DAY)
    return any(start <= at < end for start, end in occurrences)


def _bounds(window: Window, at: float, zone: tzinfo) -> Iterator[float]:
    """Yield the instants after `at` at which `window` opens or closes, the next week's at least."""
    if window.weekly is None:
        yield from (
            bound for bound in (window.start, window.end) if bound is not None and bound > at
        )
        return
    today = datetime.fromtimestamp(at, zone).date()
    for start, end in _occurrences(window.weekly, zone, today - _DAY, today + 8 * _DAY):
        yield from (bound for bound in (start, end) if bound > at)


def _occurrences(
    weekly: Weekly, zone: tzinfo, first: date, last: date
) -> Iterator[tuple[float, float]]:
    """Yield `[start, end)` in Unix seconds of each occurrence starting on a day in the range."""
    day = first
    while day <= last:
        if day.weekday() in weekly.days:
            end_day = day + _DAY if weekly.end <= weekly.start else day
            yield (
                _reached(datetime.combine(day, weekly.start), zone),
                _reached(datetime.combine(end_day, weekly.end), zone),
            )
        day += _DAY


def _reached(wall: datetime, zone: tzinfo) -> float:
    """Return the first instant at which the local clock reads `wall` or later.

    For a time the clocks pass twice that is the first pass (fold 0). For a time they skip it is
    the moment of the jump, which zoneinfo does not give: it lies between the two readings of the
    skipped time with the offsets either side, found by bisecting whole seconds.
    """
    early = wall.replace(tzinfo=zone).timestamp()
    if _wall(early, zone) == wall:
        return early
    before = wall.replace(tzinfo=zone, fold=1).timestamp()
    low, high = math.floor(min(before, early)), math.ceil(max(before, early))
    # wall(low) < wall <= wall(high): bisect for the first whole second that reads `wall` or on
    while high - low > 1:
        middle = (low + high) // 2
        if _wall(middle, zone) >= wall:
            high = middle
        else:
            low = middle
    return float(high)


def _wall(at: float, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(at, zone).replace(tzinfo=None)
