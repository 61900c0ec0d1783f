"""Availability from the status log: known outage histories, checked to the second."""

from __future__ import annotations

import sqlite3
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.availability import (
    STATUSES,
    Durations,
    availabilities,
    availability,
    measure,
    segments,
    site_availability,
    sites_availability,
)
from collector.sla import WorkingCalendar
from collector.store import Store
from collector.store.database import Connection
from sitewatch.config.model import BusinessHours

JOBURG = "Africa/Johannesburg"
HOURS = BusinessHours(days=frozenset(range(5)), start=time(8), end=time(16, 30), holidays="ZA")
CALENDAR = WorkingCalendar(HOURS, JOBURG)
MINUTE, HOUR, DAY = 60.0, 3600.0, 86_400.0


def at(moment: str) -> float:
    """Return the Unix time of a Johannesburg wall-clock moment ("2024-03-08 16:00:00")."""
    return datetime.fromisoformat(moment).replace(tzinfo=ZoneInfo(JOBURG)).timestamp()


def log(store: Store, entity: str, *changes: tuple[str, str]) -> None:
    """Write status rows (local moment, status) in the order given, as the collector would."""
    with store.db.writing() as db:
        db.executemany(
            "INSERT INTO status_log (entity, ts, status) VALUES (?, ?, ?)",
            [(entity, at(moment), status) for moment, status in changes],
        )


def test_outage_history_is_measured_to_the_second(store: Store) -> None:
    log(
        store,
        "site:willowvale",
        ("2024-03-04 00:00:00", "up"),
        ("2024-03-04 10:00:00", "down"),
        ("2024-03-04 11:17:23", "up"),
        ("2024-03-04 12:00:00", "degraded"),
        ("2024-03-04 12:45:10", "up"),
        ("2024-03-04 20:00:00", "maintenance"),
        ("2024-03-04 22:00:00", "up"),
    )
    found = availability(store, "site:willowvale", at("2024-03-04 06:00"), at("2024-03-05 06:00"))
    down = 1 * HOUR + 17 * MINUTE + 23
    degraded = 45 * MINUTE + 10
    assert found.always == Durations(
        up=DAY - down - degraded - 2 * HOUR, degraded=degraded, down=down, maintenance=2 * HOUR
    )
    assert found.always.counted == DAY - 2 * HOUR
    assert found.always.availability == (DAY - 2 * HOUR - down) / (DAY - 2 * HOUR)
    assert found.always.degraded_share == degraded / (DAY - 2 * HOUR)
    assert found.working is None  # no calendar, no working-hours figures


def test_before_the_first_row_is_unknown_and_not_counted(store: Store) -> None:
    log(store, "link:tesko-mpls", ("2024-03-04 12:00:00", "up"), ("2024-03-04 13:00:00", "down"))
    found = availability(store, "link:tesko-mpls", at("2024-03-04 10:00"), at("2024-03-04 14:00"))
    assert found.always == Durations(up=HOUR, down=HOUR, unknown=2 * HOUR)
    assert found.always.availability == 0.5


def test_collector_outage_reads_as_unknown(store: Store) -> None:
    """The collector, back after a crash, writes `unknown` where it was last alive."""
    log(store, "site:tesko", ("2024-03-04 08:00:00", "up"), ("2024-03-04 09:00:00", "down"))
    # restarted at 11:30 having last been alive at 10:00: the retroactive row, then fresh status
    log(store, "site:tesko", ("2024-03-04 10:00:00", "unknown"), ("2024-03-04 11:30:00", "up"))
    found = availability(store, "site:tesko", at("2024-03-04 08:00"), at("2024-03-04 12:00"))
    assert found.always == Durations(up=1.5 * HOUR, down=HOUR, unknown=1.5 * HOUR)
    assert found.always.availability == 1.5 / 2.5


def test_a_later_row_at_the_same_instant_wins(store: Store) -> None:
    log(store, "site:tesko", ("2024-03-04 08:00:00", "up"), ("2024-03-04 09:00:00", "down"))
    log(store, "site:tesko", ("2024-03-04 09:00:00", "unknown"))  # written after, same ts
    found = availability(store, "site:tesko", at("2024-03-04 08:00"), at("2024-03-04 10:00"))
    assert found.always == Durations(up=HOUR, unknown=HOUR)
    # and the same when the tie sits exactly on the range's start
    found = availability(store, "site:tesko", at("2024-03-04 09:00"), at("2024-03-04 10:00"))
    assert found.always == Durations(unknown=HOUR)


def test_range_edges_rows_outside_and_other_entities(store: Store) -> None:
    log(
        store,
        "site:elliotdale",
        ("2024-03-01 00:00:00", "down"),
        ("2024-03-04 08:00:00", "up"),  # exactly at the start
        ("2024-03-04 09:00:00", "down"),  # exactly at the end
        ("2024-03-05 00:00:00", "up"),
    )
    log(store, "site:elliotdale-b", ("2024-03-04 08:30:00", "down"))  # a prefix, not the site
    found = availability(store, "site:elliotdale", at("2024-03-04 08:00"), at("2024-03-04 09:00"))
    assert found.always == Durations(up=HOUR)
    assert found.always.availability == 1.0


def test_unmonitored_maintenance_and_strange_statuses(store: Store) -> None:
    log(
        store,
        "site:dutywa-pound",
        ("2024-03-04 08:00:00", "unmonitored"),
        ("2024-03-04 09:00:00", "maintenance"),
        ("2024-03-04 10:00:00", "flapping"),  # a status this module does not know: no evidence
    )
    found = availability(store, "site:dutywa-pound", at("2024-03-04 08:00"), at("2024-03-04 11:00"))
    assert found.always == Durations(unmonitored=HOUR, maintenance=HOUR, unknown=HOUR)
    assert found.always.availability is None
    assert found.always.degraded_share is None


def test_no_rows_and_empty_ranges(store: Store) -> None:
    nothing = availability(store, "site:nowhere", at("2024-03-04 08:00"), at("2024-03-04 09:00"))
    assert nothing.always == Durations(unknown=HOUR)
    assert nothing.always.availability is None
    empty = availability(store, "site:nowhere", at("2024-03-04 09:00"), at("2024-03-04 09:00"))
    assert empty.always == Durations()
    assert availabilities(store, [], 0.0, 1.0) == {}


def test_business_hours_skip_a_weekend(store: Store) -> None:
    log(
        store,
        "site:customer-care",
        ("2024-03-01 00:00:00", "up"),
        ("2024-03-08 15:00:00", "down"),  # Friday afternoon
        ("2024-03-11 09:00:00", "up"),  # Monday morning
    )
    found = availability(
        store, "site:customer-care", at("2024-03-08 00:00"), at("2024-03-12 00:00"), CALENDAR
    )
    assert found.always.down == 66 * HOUR
    # Friday 08:00-15:00 up, 15:00-16:30 down; Monday 08:00-09:00 down, 09:00-16:30 up
    assert found.working == Durations(up=7 * HOUR + 7.5 * HOUR, down=1.5 * HOUR + 1 * HOUR)
    assert found.working.availability == 14.5 / 17


def test_business_hours_skip_a_public_holiday(store: Store) -> None:
    """Thursday 21 March 2024 is Human Rights Day in South Africa."""
    log(
        store,
        "link:town-hall-wireless",
        ("2024-03-20 00:00:00", "up"),
        ("2024-03-20 16:00:00", "down"),
        ("2024-03-22 08:30:00", "degraded"),
        ("2024-03-22 10:00:00", "up"),
    )
    found = availability(
        store, "link:town-hall-wireless", at("2024-03-20 00:00"), at("2024-03-23 00:00"), CALENDAR
    )
    assert found.always.down == 40.5 * HOUR
    assert found.working == Durations(
        up=8 * HOUR + 6.5 * HOUR, degraded=1.5 * HOUR, down=0.5 * HOUR + 0.5 * HOUR
    )
    assert found.working.availability == 16 / 17
    assert found.working.degraded_share == 1.5 / 17


def test_site_availability_over_24h_7d_30d(store: Store) -> None:
    now = at("2024-03-31 12:00")
    log(
        store,
        "site:willowvale",
        ("2024-02-01 00:00:00", "up"),
        ("2024-03-05 12:00:00", "down"),  # 26 days ago, for 6 hours
        ("2024-03-05 18:00:00", "up"),
        ("2024-03-27 12:00:00", "down"),  # 4 days ago, for 12 hours
        ("2024-03-28 00:00:00", "up"),
        ("2024-03-31 06:00:00", "maintenance"),  # today, 3 hours
        ("2024-03-31 09:00:00", "down"),  # and down since
    )
    assert site_availability(store, CALENDAR, "willowvale", now) == {
        "24h": (DAY - 6 * HOUR) / (DAY - 3 * HOUR),
        "7d": (7 * DAY - 3 * HOUR - 15 * HOUR) / (7 * DAY - 3 * HOUR),
        "30d": (30 * DAY - 3 * HOUR - 21 * HOUR) / (30 * DAY - 3 * HOUR),
    }
    business = site_availability(store, CALENDAR, "willowvale", now, business_hours=True)
    # Sunday 31 March has no working time; Friday 29 March is Good Friday
    assert business["24h"] is None
    # 7d: Mon 25, Tue 26, Wed 27 (down 12:00-16:30), Thu 28 working; Good Friday and Sunday not
    assert business["7d"] == (4 * 8.5 - 4.5) / (4 * 8.5)


def test_sites_availability_reads_all_sites_in_one_query(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = at("2024-03-31 12:00")
    for site in ("tesko", "customer-care", "town-hall"):
        log(store, f"site:{site}", ("2024-03-31 00:00:00", "up"), ("2024-03-31 06:00:00", "down"))
    statements: list[str] = []
    with store.db.reading() as db:
        connection = type(db)  # the dialect's connection class: note each statement it runs
    execute = connection.execute

    def noting(self: Connection, sql: str, params: Any = ()) -> Any:
        statements.append(sql)
        return execute(self, sql, params)

    monkeypatch.setattr(connection, "execute", noting)
    found = sites_availability(
        store, CALENDAR, ["tesko", "customer-care", "town-hall", "elliotdale"], now
    )
    assert sum("status_log" in s for s in statements) == 1
    assert found["tesko"] == found["customer-care"] == found["town-hall"]
    # the day before midnight had no rows: unknown, so only today's 12 hours count
    assert found["tesko"] == {"24h": 0.5, "7d": 0.5, "30d": 0.5}
    assert found["elliotdale"] == {"24h": None, "7d": None, "30d": None}


def test_a_broken_database_raises_the_driver_s_error(store: Store) -> None:
    """A missing table is a fault to see, never an availability of nothing."""
    with store.db.writing() as db:
        db.execute("DROP TABLE status_log")
    expected = sqlite3.OperationalError if store.dialect == "sqlite" else psycopg.Error
    with pytest.raises(expected, match="status_log"):
        availability(store, "site:tesko", 0.0, 1.0)


# -- invariants --------------------------------------------------------------------------------

BASE = at("2024-03-01 00:00")
offsets = st.integers(min_value=0, max_value=int(40 * DAY))
histories = st.lists(st.tuples(offsets, st.sampled_from([*STATUSES, "odd"])), max_size=20)


@settings(max_examples=200, deadline=None)
@given(histories, offsets, offsets)
def test_every_second_is_counted_once(
    history: list[tuple[int, str]], first: int, second: int
) -> None:
    rows = sorted((BASE + offset, status) for offset, status in history)
    start, end = BASE + min(first, second), BASE + max(first, second)
    pieces = list(segments(rows, start, end))
    assert sum(until - since for since, until, _ in pieces) == end - start
    assert all(start <= since < until <= end for since, until, _ in pieces)
    always = measure(rows, start, end)
    working = measure(rows, start, end, CALENDAR)
    assert sum(always.as_json().values()) == end - start
    assert sum(working.as_json().values()) == pytest.approx(CALENDAR.between(start, end))
    share = always.availability
    assert share is None or 0.0 <= share <= 1.0
