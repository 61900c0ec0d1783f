"""Maintenance windows: API bodies, one-off and weekly coverage across midnight and DST, storage."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, time
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector import maintenance
from collector.maintenance import (
    MaintenanceError,
    NewWindow,
    Schedule,
    Weekly,
    Window,
    parse_window,
    window_json,
)
from collector.store import DatabaseSpec, Store
from sitewatch.config.files import load_inventory
from sitewatch.config.model import WEEKDAYS, Inventory

ROOT = Path(__file__).resolve().parents[2]
MON, SAT, SUN = 0, 5, 6


def ts(text: str) -> float:
    """Return the Unix time of an RFC 3339 string."""
    return datetime.fromisoformat(text).timestamp()


NOW = ts("2026-06-01T12:00:00+00:00")
HOUR = 3600.0


@cache
def inventory(timezone: str = "Africa/Johannesburg") -> Inventory:
    """Return the example municipality, moved to `timezone` when asked."""
    loaded = load_inventory(ROOT / "config" / "inventory.yaml")
    return dataclasses.replace(loaded, timezone=timezone)


def amsterdam() -> Inventory:
    return inventory("Europe/Amsterdam")


def one_off(start: str, end: str, *, scope: Any = "site", target: str = "tesko") -> Window:
    return Window(1, scope, target, ts(start), ts(end), None, "works", "ann", NOW)


def weekly(
    days: set[int], start: str, end: str, *, scope: Any = "site", target: str = "tesko"
) -> Window:
    recurrence = Weekly(frozenset(days), time.fromisoformat(start), time.fromisoformat(end))
    return Window(1, scope, target, None, None, recurrence, "works", "ann", NOW)


def body(**fields: object) -> dict[str, object]:
    """Return a valid one-off body with `fields` changed; a field set to ... is left out."""
    base: dict[str, object] = {
        "scope": "link",
        "target": "customer-care-mpls",
        "reason": "replacing the router",
        "start": "2026-06-02T22:00:00+02:00",
        "end": "2026-06-03T02:00:00+02:00",
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


def weekly_body(**fields: object) -> dict[str, object]:
    """Return a valid weekly body with the weekly object's `fields` changed."""
    recurrence: dict[str, object] = {"days": ["sun"], "start": "02:00", "end": "04:00"}
    recurrence.update(fields)
    recurrence = {key: value for key, value in recurrence.items() if value is not ...}
    return body(start=..., end=..., weekly=recurrence)


# -- parsing ---------------------------------------------------------------------------------


def test_a_one_off_body_parses_to_unix_seconds() -> None:
    parsed = parse_window(body(reason="  replacing the router "), inventory(), now=NOW)
    assert parsed == NewWindow(
        "link",
        "customer-care-mpls",
        ts("2026-06-02T20:00:00+00:00"),
        ts("2026-06-03T00:00:00+00:00"),
        None,
        "replacing the router",
    )


def test_a_weekly_body_parses_to_weekday_numbers_and_times() -> None:
    parsed = parse_window(
        weekly_body(days=["sat", "mon"], start="22:00", end="02:00"), inventory(), now=NOW
    )
    assert parsed.weekly == Weekly(frozenset({MON, SAT}), time(22, 0), time(2, 0))
    assert (parsed.start, parsed.end) == (None, None)


@pytest.mark.parametrize(
    ("scope", "target"),
    [("site", "town-hall"), ("link", "workshop-fibre"), ("device", "cc-prn-01")],
)
def test_each_scope_takes_its_own_inventory_ids(scope: str, target: str) -> None:
    parsed = parse_window(body(scope=scope, target=target), inventory(), now=NOW)
    assert (parsed.scope, parsed.target) == (scope, target)


def test_a_window_that_has_begun_but_not_ended_is_accepted() -> None:
    parsed = parse_window(body(), inventory(), now=ts("2026-06-03T01:00:00+02:00"))
    assert parsed.end == ts("2026-06-03T00:00:00+00:00")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([], "body: must be a JSON object"),
        (None, "body: must be a JSON object"),
        ("scope", "body: must be a JSON object"),
        (body(colour="red"), "colour: unknown field"),
        (body(id=4), "id: unknown field"),
        (body(scope=...), "scope: must be one of site, link, device"),
        (body(scope="printer"), "scope: must be one of site, link, device"),
        (body(scope=["site"]), "scope: must be one of site, link, device"),
        (body(target=...), "target: must be a string"),
        (body(target=7), "target: must be a string"),
        (body(target=" "), "target: must not be empty"),
        (body(target="x"), "target: no link 'x' in the inventory"),
        (body(scope="device", target="tesko"), "target: no device 'tesko' in the inventory"),
        (body(scope="site", target="cc-prn-01"), "target: no site 'cc-prn-01' in the inventory"),
        (body(reason=...), "reason: must be a string"),
        (body(reason=""), "reason: must not be empty"),
        (body(reason=" \n "), "reason: must not be empty"),
        (body(reason="x" * 501), "reason: longer than 500 characters"),
        (body(start=..., end=...), "start: required, with end (or give weekly instead)"),
        (body(start=None, end=None), "start: required, with end (or give weekly instead)"),
        (body(start=...), "start: required"),
        (body(end=...), "end: required with start"),
        (body(start=1_780_000_000), "start: must be an RFC 3339 time"),
        (body(start="tomorrow"), "start: 'tomorrow' is not an RFC 3339 time"),
        (body(start="2026-06-02T22:00:00"), "start: '2026-06-02T22:00:00' has no time zone"),
        (body(end="2026-06-03"), "end: '2026-06-03' has no time zone offset"),
        (body(start="0001-01-01T00:00:00+01:00"), "start: '0001-01-01T00:00:00+01:00' is out"),
        (body(end="2026-06-02T21:00:00+02:00"), "end: must be after start"),
        (body(end="2026-06-02T22:00:00+02:00"), "end: must be after start"),
        (
            body(start="2026-05-01T00:00:00Z", end="2026-05-02T00:00:00Z"),
            "end: the window has already ended",
        ),
        (body(end="2026-06-01T12:00:00Z", start="2026-06-01T11:00:00Z"), "end: the window has"),
        (body(end="2027-06-04T22:00:00+02:00"), "end: a window may last at most 366 days"),
        (
            body(weekly={"days": ["sun"], "start": "02:00", "end": "04:00"}),
            "weekly: give either start and end, or weekly, not both",
        ),
        (body(start=..., end=..., weekly=["sun"]), "weekly: must be an object"),
        (body(start=..., end=..., weekly="sun 02:00-04:00"), "weekly: must be an object"),
        (weekly_body(hours=2), "weekly.hours: unknown field"),
        (weekly_body(days=...), "weekly.days: must be a non-empty list"),
        (weekly_body(days=[]), "weekly.days: must be a non-empty list"),
        (weekly_body(days="sun"), "weekly.days: must be a non-empty list"),
        (weekly_body(days=["funday"]), "weekly.days: 'funday' is not one of mon, tue"),
        (weekly_body(days=["Sun"]), "weekly.days: 'Sun' is not one of"),
        (weekly_body(days=[6]), "weekly.days: must hold day names"),
        (weekly_body(days=[["sun"]]), "weekly.days: must hold day names"),
        (weekly_body(days=["sun", "mon", "sun"]), "weekly.days: 'sun' is given twice"),
        (weekly_body(start=...), 'weekly.start: must be a time of day like "02:00"'),
        (weekly_body(start="2:00"), "weekly.start: must be a time of day"),
        (weekly_body(start="24:00"), "weekly.start: must be a time of day"),
        (weekly_body(start=200), "weekly.start: must be a time of day"),
        (weekly_body(end="04:00:00"), "weekly.end: must be a time of day"),
        (weekly_body(end="02:00"), "weekly.end: must differ from weekly.start"),
    ],
)
def test_a_bad_body_is_refused_naming_the_field(bad: object, message: str) -> None:
    with pytest.raises(MaintenanceError) as caught:
        parse_window(bad, inventory(), now=NOW)
    assert str(caught.value).startswith(message)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
TIMES = st.sampled_from(["2026-06-02T22:00:00+02:00", "2026-06-03T02:00Z", "2026-06-01", "x"])
FIELD_VALUES: dict[str, st.SearchStrategy[object]] = {
    "scope": st.sampled_from(["site", "link", "device", "town"]) | JSON,
    "target": st.sampled_from(["tesko", "tesko-mpls", "cc-prn-01", ""]) | JSON,
    "reason": st.sampled_from(["works", " "]) | JSON,
    "start": TIMES | JSON,
    "end": TIMES | JSON,
    "weekly": st.fixed_dictionaries(
        {},
        optional={
            "days": st.lists(st.sampled_from([*WEEKDAYS, "x"]), max_size=8) | JSON,
            "start": st.sampled_from(["02:00", "23:59", "7:00"]) | JSON,
            "end": st.sampled_from(["02:00", "04:00", "24:00"]) | JSON,
            "every": JSON,
        },
    )
    | JSON,
    "colour": JSON,
}


@given(JSON | st.fixed_dictionaries({}, optional=FIELD_VALUES))
def test_any_json_value_parses_or_is_refused_cleanly(value: object) -> None:
    try:
        parsed = parse_window(value, inventory(), now=NOW)
    except MaintenanceError as err:
        if not str(err).endswith(": unknown field"):
            field, explanation = str(err).split(": ", 1)
            assert field in {"body", *maintenance.FIELDS} or field.startswith("weekly.")
            assert explanation
    else:
        assert (parsed.weekly is None) == (parsed.start is not None)


# -- one-off windows -------------------------------------------------------------------------


def test_a_one_off_window_covers_start_but_not_end() -> None:
    window = one_off("2026-06-02T22:00:00+02:00", "2026-06-03T02:00:00+02:00")
    schedule = Schedule([window], inventory())
    start, end = window.start or 0, window.end or 0
    assert not schedule.covers(window, start - 0.001)
    assert schedule.covers(window, start)
    assert schedule.covers(window, end - 0.001)
    assert not schedule.covers(window, end)
    assert schedule.active(start).site("tesko")
    assert not schedule.active(end).site("tesko")


# -- weekly windows --------------------------------------------------------------------------


def covered(windows: list[Window], inv: Inventory, *moments: str) -> list[bool]:
    """Return whether the first window covers each local or offset time in `moments`."""
    schedule = Schedule(windows, inv)
    zone = ZoneInfo(inv.timezone)
    return [
        schedule.covers(windows[0], datetime.fromisoformat(m).replace(tzinfo=zone).timestamp())
        if datetime.fromisoformat(m).tzinfo is None
        else schedule.covers(windows[0], ts(m))
        for m in moments
    ]


def test_a_weekly_window_is_local_wall_clock_time() -> None:
    window = weekly({MON}, "02:00", "04:00")  # Johannesburg is UTC+2 all year
    assert covered(
        [window],
        inventory(),
        "2026-06-01T01:59",  # a Monday
        "2026-06-01T02:00",
        "2026-06-01T03:59:59",
        "2026-06-01T04:00",
        "2026-06-02T03:00",  # Tuesday
        "2026-06-08T00:00:00Z",  # the next Monday, 02:00 local
    ) == [False, True, True, False, False, True]


def test_a_window_crossing_midnight_belongs_to_the_day_it_starts() -> None:
    window = weekly({SAT}, "22:00", "02:00")
    assert covered(
        [window],
        inventory(),
        "2026-06-06T21:59",  # Saturday
        "2026-06-06T22:00",
        "2026-06-06T23:59",
        "2026-06-07T01:00",  # Sunday
        "2026-06-07T02:00",
        "2026-06-06T01:00",  # Saturday's small hours belong to Friday
        "2026-06-07T22:30",  # Sunday evening
    ) == [False, True, True, True, False, False, False]


def test_weekly_windows_keep_to_the_clock_across_dst() -> None:
    window = weekly({SUN}, "09:00", "10:00", scope="link", target="tesko-mpls")
    assert covered(
        [window],
        amsterdam(),
        "2026-01-04T08:00:00Z",  # CET: 09:00 local
        "2026-01-04T07:30:00Z",
        "2026-07-05T07:00:00Z",  # CEST: 09:00 local
        "2026-07-05T08:00:00Z",
    ) == [True, False, True, False]


def test_the_night_the_clocks_skip_an_hour_shortens_a_window() -> None:
    window = weekly({SUN}, "02:00", "04:00")  # 29 March 2026: 02:00 CET becomes 03:00 CEST
    assert covered(
        [window],
        amsterdam(),
        "2026-03-29T00:59:59Z",  # 01:59:59 CET
        "2026-03-29T01:00:00Z",  # 03:00 CEST, the first moment the clock reads 02:00 or later
        "2026-03-29T01:59:59Z",
        "2026-03-29T02:00:00Z",  # 04:00 CEST
        "2026-03-22T01:00:00Z",  # a week before, in CET
        "2026-04-05T00:00:00Z",  # a week after, in CEST
    ) == [False, True, True, False, True, True]
    schedule = Schedule([window], amsterdam())
    opens = ts("2026-03-29T01:00:00Z")
    assert schedule.next_change(opens - 1) == opens
    assert schedule.next_change(opens) == opens + HOUR


def test_a_window_wholly_inside_the_skipped_hour_never_opens() -> None:
    window = weekly({SUN}, "02:10", "02:40")
    schedule = Schedule([window], amsterdam())
    jump = ts("2026-03-29T01:00:00Z")
    assert not any(schedule.covers(window, jump + s) for s in range(-3600, 3600, 60))
    assert schedule.covers(window, ts("2026-04-05T02:10:00+02:00"))


def test_a_window_crossing_midnight_into_the_skipped_hour_ends_at_the_jump() -> None:
    window = weekly({SAT}, "22:00", "02:30")
    assert covered(
        [window], amsterdam(), "2026-03-28T21:00:00Z", "2026-03-29T00:59:59Z", "2026-03-29T01:00Z"
    ) == [True, True, False]


def test_the_night_the_clocks_repeat_an_hour_lengthens_a_window() -> None:
    window = weekly({SUN}, "02:00", "04:00")  # 25 October 2026: 03:00 CEST becomes 02:00 CET
    assert covered(
        [window],
        amsterdam(),
        "2026-10-24T23:59:59Z",  # 01:59:59 CEST
        "2026-10-25T00:00:00Z",  # 02:00 CEST
        "2026-10-25T01:30:00Z",  # 02:30 CET, the second time round
        "2026-10-25T02:59:59Z",  # 03:59:59 CET
        "2026-10-25T03:00:00Z",  # 04:00 CET
    ) == [False, True, True, True, False]
    schedule = Schedule([window], amsterdam())
    assert schedule.next_change(ts("2026-10-25T00:00:00Z")) == ts("2026-10-25T03:00:00Z")


def test_a_repeated_time_opens_and_closes_on_its_first_pass() -> None:
    window = weekly({SUN}, "02:30", "02:45")
    assert covered(
        [window],
        amsterdam(),
        "2026-10-25T00:30:00Z",  # 02:30 CEST
        "2026-10-25T00:44:59Z",
        "2026-10-25T00:45:00Z",
        "2026-10-25T01:35:00Z",  # 02:35 CET
    ) == [True, True, False, False]


def reference(recurrence: Weekly, local: datetime) -> bool:
    """Return whether a weekly window covers a local wall time, read off the wall clock."""
    day, now = local.weekday(), local.time()
    if recurrence.start < recurrence.end:
        return day in recurrence.days and recurrence.start <= now < recurrence.end
    return (day in recurrence.days and now >= recurrence.start) or (
        (day - 1) % 7 in recurrence.days and now < recurrence.end
    )


WEEKLIES = st.builds(
    Weekly,
    st.frozensets(st.integers(0, 6), min_size=1),
    st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    st.times().map(lambda t: t.replace(second=0, microsecond=0)),
).filter(lambda w: w.start != w.end)
MOMENTS = st.floats(ts("2026-01-01T00:00Z"), ts("2028-01-01T00:00Z"))


@settings(deadline=None)
@given(WEEKLIES, MOMENTS, st.sampled_from(["Africa/Johannesburg", "Europe/Amsterdam"]))
def test_away_from_dst_changes_weekly_windows_read_the_wall_clock(
    recurrence: Weekly, at: float, timezone: str
) -> None:
    zone = ZoneInfo(timezone)
    offsets = {datetime.fromtimestamp(at + d * 86_400, zone).utcoffset() for d in (-2, 0, 2)}
    if len(offsets) > 1:
        return  # near a change of offset the wall clock is not a translation of time
    window = Window(1, "site", "tesko", None, None, recurrence, "works", "ann", NOW)
    schedule = Schedule([window], inventory(timezone))
    local = datetime.fromtimestamp(at, zone).replace(tzinfo=None)
    assert schedule.covers(window, at) == reference(recurrence, local)


# -- the active set --------------------------------------------------------------------------


def test_a_site_window_covers_its_links_and_devices_but_not_sites_behind_it() -> None:
    windows = [
        one_off("2026-06-02T00:00Z", "2026-06-03T00:00Z", target="customer-care"),
        one_off("2026-06-02T00:00Z", "2026-06-03T00:00Z", scope="device", target="ws-prn-01"),
    ]
    active = Schedule(windows, inventory()).active(ts("2026-06-02T12:00Z"))
    assert active.direct == {("site", "customer-care"), ("device", "ws-prn-01")}
    assert active.site("customer-care")
    assert active.link("customer-care-mpls")
    assert active.device("cc-prn-01")
    assert ("device", "cc-phone-02") in active
    assert active.device("ws-prn-01")
    assert not active.site("town-hall")  # reaches the network through customer-care
    assert not active.link("town-hall-wireless")
    assert not active.site("dutywa-workshop")
    assert not active.device("ws-phone-01")
    assert not Schedule(windows, inventory()).active(ts("2026-06-03T00:00Z"))


def test_a_link_window_covers_only_that_link() -> None:
    window = weekly({MON}, "00:00", "06:00", scope="link", target="workshop-fibre")
    active = Schedule([window], inventory()).active(ts("2026-06-01T03:00+02:00"))
    assert active.covered == {("link", "workshop-fibre")}
    assert not active.site("dutywa-workshop")
    assert not active.link("workshop-mpls")


def test_next_change_is_the_next_boundary_of_any_window() -> None:
    windows = [
        one_off("2026-06-02T00:00Z", "2026-06-03T00:00Z"),
        weekly({MON}, "02:00", "04:00", scope="link", target="tesko-mpls"),  # UTC 00:00-02:00
    ]
    schedule = Schedule(windows, inventory())
    assert schedule.next_change(ts("2026-06-01T00:00Z")) == ts("2026-06-01T02:00Z")
    assert schedule.next_change(ts("2026-06-01T02:00Z")) == ts("2026-06-02T00:00Z")
    assert schedule.next_change(ts("2026-06-02T00:00Z")) == ts("2026-06-03T00:00Z")
    assert schedule.next_change(ts("2026-06-03T00:00Z")) == ts("2026-06-08T00:00Z")
    assert Schedule(windows[:1], inventory()).next_change(ts("2026-06-03T00:00Z")) is None
    assert Schedule([], inventory()).next_change(NOW) is None


ONE_OFFS = st.tuples(MOMENTS, st.floats(1, 10 * 86_400)).map(
    lambda span: Window(1, "site", "x", span[0], span[0] + span[1], None, "w", "ann", NOW)
)
WINDOWS = ONE_OFFS | WEEKLIES.map(lambda w: Window(1, "site", "x", None, None, w, "w", "ann", NOW))
TARGETS = st.sampled_from([("site", "tesko"), ("link", "tesko-mpls"), ("site", "town-hall")])


@settings(deadline=None)
@given(
    st.lists(st.tuples(WINDOWS, TARGETS), max_size=4),
    MOMENTS,
    st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=5),
)
def test_nothing_changes_before_next_change(
    windows: list[tuple[Window, tuple[Any, str]]], at: float, fractions: list[float]
) -> None:
    placed = [dataclasses.replace(w, scope=scope, target=target) for w, (scope, target) in windows]
    schedule = Schedule(placed, amsterdam())
    now = schedule.active(at)
    upcoming = schedule.next_change(at)
    if upcoming is None:
        assert all(w.weekly is None and (w.end or 0) <= at for w in placed)
        upcoming = at + 30 * 86_400
    assert upcoming > at
    last = math.nextafter(upcoming, at)  # at + fraction * span can round up to `upcoming`
    for fraction in fractions:
        assert schedule.active(min(at + fraction * (upcoming - at), last)) == now


# -- the API form ----------------------------------------------------------------------------


def test_window_json_gives_utc_times_and_whether_it_is_active() -> None:
    window = dataclasses.replace(
        one_off("2026-06-02T22:00:00+02:00", "2026-06-03T02:00:00+02:00"), id=7
    )
    assert window_json(window, "Africa/Johannesburg", now=NOW) == {
        "id": 7,
        "scope": "site",
        "target": "tesko",
        "start": "2026-06-02T20:00:00Z",
        "end": "2026-06-03T00:00:00Z",
        "weekly": None,
        "reason": "works",
        "created_by": "ann",
        "created_at": "2026-06-01T12:00:00Z",
        "active": False,
    }
    assert window_json(window, "Africa/Johannesburg", now=ts("2026-06-02T21:00Z"))["active"]


def test_window_json_gives_weekly_days_in_week_order_and_local_times() -> None:
    window = weekly({SUN, MON}, "22:00", "02:00")
    shown = window_json(window, "Europe/Amsterdam", now=ts("2026-06-07T22:30:00+02:00"))
    assert (shown["start"], shown["end"]) == (None, None)
    assert shown["weekly"] == {"days": ["mon", "sun"], "start": "22:00", "end": "02:00"}
    assert shown["active"]
    winter_monday = ts("2026-01-05T00:30Z")  # 01:30 in Amsterdam, 02:30 in Johannesburg
    assert window_json(window, "Europe/Amsterdam", now=winter_monday)["active"]
    assert not window_json(window, "Africa/Johannesburg", now=winter_monday)["active"]


# -- storage ---------------------------------------------------------------------------------


# `store` and `database_spec` (tests/conftest.py): each test on SQLite and PostgreSQL.


def test_windows_survive_a_reopen_and_deleted_ones_stay_deleted(
    store: Store, database_spec: DatabaseSpec
) -> None:
    first = maintenance.add(
        store, parse_window(body(), inventory(), now=NOW), created_by="ann", now=NOW
    )
    second = maintenance.add(
        store,
        parse_window(weekly_body(days=["sat", "sun"], end="01:30"), inventory(), now=NOW),
        created_by="bob",
        now=NOW + 60,
    )
    third = maintenance.add(
        store,
        parse_window(body(scope="device", target="cc-prn-01"), inventory(), now=NOW),
        created_by="ann",
        now=NOW + 120,
    )
    assert second.id > first.id
    assert second.weekly == Weekly(frozenset({SAT, SUN}), time(2, 0), time(1, 30))
    assert (second.created_by, second.created_at) == ("bob", NOW + 60)
    assert maintenance.load(store) == [first, second, third]

    assert maintenance.delete(store, second.id, now=NOW + 600)
    assert not maintenance.delete(store, second.id, now=NOW + 700)
    assert not maintenance.delete(store, 9999, now=NOW + 700)
    store.close()

    reopened = Store(database_spec)
    try:
        assert maintenance.load(reopened) == [first, third]
        with reopened.db.reading() as db:
            rows = db.execute(
                "SELECT id, weekly, deleted_at FROM maintenance ORDER BY id"
            ).fetchall()
    finally:
        reopened.close()
    assert [tuple(row) for row in rows] == [
        (first.id, None, None),
        (second.id, '{"days": ["sat", "sun"], "start": "02:00", "end": "01:30"}', NOW + 600),
        (third.id, None, None),
    ]


def test_a_stored_window_is_active_as_parsed(store: Store) -> None:
    added = maintenance.add(
        store,
        parse_window(weekly_body(days=["sat"], start="22:00", end="02:00"), inventory(), now=NOW),
        created_by="ann",
        now=NOW,
    )
    schedule = Schedule(maintenance.load(store), inventory())
    sunday_1am = ts("2026-06-07T01:00:00+02:00")
    assert schedule.covers(added, sunday_1am)
    assert schedule.active(sunday_1am).link("customer-care-mpls")
    assert not schedule.active(sunday_1am + HOUR).link("customer-care-mpls")
