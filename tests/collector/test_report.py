"""The SLA report: incidents just inside and just outside target across weekends and holidays."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.availability import Durations
from collector.report import (
    CSV_COLUMNS,
    Report,
    build_report,
    nearest_rank,
    period_bounds,
    report_csv,
    report_json,
    report_table,
)
from collector.sla import WorkingCalendar
from collector.store import DatabaseSpec, Store
from sitewatch.config import load_inventory
from sitewatch.config.model import Inventory

EXAMPLE_INVENTORY = Path(__file__).resolve().parents[2] / "config" / "inventory.yaml"
JOBURG = "Africa/Johannesburg"
MINUTE, HOUR, DAY = 60.0, 3600.0, 86_400.0
MARCH_WORKING = 19 * 8.5 * HOUR  # 21 weekdays less Human Rights Day and Good Friday


def at(moment: str) -> float:
    """Return the Unix time of a Johannesburg wall-clock moment ("2024-03-08 16:00")."""
    return datetime.fromisoformat(moment).replace(tzinfo=ZoneInfo(JOBURG)).timestamp()


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(EXAMPLE_INVENTORY)


@pytest.fixture(scope="module")
def calendar(inventory: Inventory) -> WorkingCalendar:
    return WorkingCalendar(inventory.business_hours, inventory.timezone)


def incident(
    store: Store,
    calendar: WorkingCalendar,
    inventory: Inventory,
    *,
    key: str,
    priority: str,
    opened: str,
    resolved: str | None = None,
    sites: tuple[str, ...] = (),
    major: bool = False,
) -> int:
    """Insert an incident as the collector would have; return its id."""
    opened_at = at(opened)
    due_at = calendar.due_at(opened_at, inventory.sla[priority])
    with store.db.writing() as db:
        cursor = db.execute(
            "INSERT INTO incidents (key, priority, status, title, cause, sites, affected_users, "
            "opened_at, resolved_at, due_at, major) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "RETURNING id",
            (
                key,
                priority,
                "open" if resolved is None else "resolved",
                f"{key} is down",
                json.dumps({"kind": key.partition(":")[0], "id": key.partition(":")[2]}),
                json.dumps(list(sites)),
                10,
                opened_at,
                None if resolved is None else at(resolved),
                due_at,
                int(major),
            ),
        )
        (made,) = cursor.fetchone()
        return int(made)


def log(store: Store, entity: str, *changes: tuple[str, str]) -> None:
    """Write status rows (local moment, status) in the order given."""
    with store.db.writing() as db:
        db.executemany(
            "INSERT INTO status_log (entity, ts, status) VALUES (?, ?, ?)",
            [(entity, at(moment), status) for moment, status in changes],
        )


def march(store: Store, inventory: Inventory, now: float | None = None) -> Report:
    start, end = period_bounds(date(2024, 3, 1), date(2024, 3, 31), JOBURG)
    return build_report(
        store, inventory, start, end, at("2024-04-10 09:00") if now is None else now
    )


@pytest.fixture
def ids(store: Store, calendar: WorkingCalendar, inventory: Inventory) -> dict[str, int]:
    """March 2024 at Mbhashe: incidents either side of their due times, and site histories."""
    cc = ("customer-care", "town-hall")

    made: dict[str, int] = {}

    def add(
        name: str,
        priority: str,
        opened: str,
        resolved: str | None = None,
        sites: tuple[str, ...] = (),
        *,
        major: bool = False,
    ) -> None:
        made[name] = incident(
            store, calendar, inventory, key=f"link:{name}", priority=priority, opened=opened,
            resolved=resolved, sites=sites, major=major,
        )  # fmt: skip

    # P1 Friday 16:00: due Monday 11:30, over a plain weekend
    add("cc-mpls", priority="P1", opened="2024-03-08 16:00", resolved="2024-03-11 11:29",
        sites=cc, major=True)  # fmt: skip
    add("tesko-mpls", priority="P1", opened="2024-03-15 16:00", resolved="2024-03-18 11:31",
        sites=("tesko",))  # fmt: skip
    # P1 Thursday 16:00 before Easter: Good Friday and Family Day, due Tuesday 2 April 11:30;
    # resolved after the period, so in March it is open and not yet due: pending
    add("main-mpls", priority="P1", opened="2024-03-28 16:00", resolved="2024-04-02 10:00",
        sites=("dutywa-main",), major=True)  # fmt: skip
    # P2 Wednesday 15:00 before Human Rights Day (Thursday 21 March): due Friday 14:30
    add("willowvale-fibre", priority="P2", opened="2024-03-20 15:00",
        resolved="2024-03-22 14:29", sites=("willowvale",))  # fmt: skip
    add("elliotdale-mpls", priority="P2", opened="2024-03-20 15:00",
        resolved="2024-03-22 14:31", sites=("elliotdale",))  # fmt: skip
    # P3 Monday 09:00: two working days, due Wednesday 09:00; never resolved: breached
    add("ts-prn-01", priority="P3", opened="2024-03-04 09:00", sites=("tesko",))
    # from February: not in March's figures, but one is still open at the end of March
    add("old-open", priority="P2", opened="2024-02-26 10:00", sites=("tesko",))
    add("old-done", priority="P3", opened="2024-02-26 10:00", resolved="2024-03-04 10:00")

    log(
        store,
        "site:customer-care",
        ("2024-02-01 00:00", "up"),
        ("2024-03-08 16:00", "down"),
        ("2024-03-11 11:29", "up"),
        ("2024-03-16 10:00", "maintenance"),  # a Saturday
        ("2024-03-16 12:00", "up"),
    )
    # a collector outage at night, written when it came back
    log(store, "site:customer-care", ("2024-03-12 03:00", "unknown"), ("2024-03-12 04:00", "up"))
    log(store, "site:dutywa-pound", ("2024-02-01 00:00", "unmonitored"))
    return made


def test_due_times_cross_the_weekend_and_holidays(
    calendar: WorkingCalendar, inventory: Inventory
) -> None:
    p1, p2, p3 = (inventory.sla[p] for p in ("P1", "P2", "P3"))
    assert calendar.due_at(at("2024-03-08 16:00"), p1) == at("2024-03-11 11:30")
    assert calendar.due_at(at("2024-03-28 16:00"), p1) == at("2024-04-02 11:30")
    assert calendar.due_at(at("2024-03-20 15:00"), p2) == at("2024-03-22 14:30")
    assert calendar.due_at(at("2024-03-04 09:00"), p3) == at("2024-03-06 09:00")
    start, end = period_bounds(date(2024, 3, 1), date(2024, 3, 31), JOBURG)
    assert calendar.between(start, end) == MARCH_WORKING


def test_period_bounds_are_local_midnights() -> None:
    assert period_bounds(date(2024, 3, 1), date(2024, 3, 31), JOBURG) == (
        at("2024-03-01 00:00"),
        at("2024-04-01 00:00"),
    )
    assert period_bounds(date(2024, 3, 5), date(2024, 3, 5), JOBURG) == (
        at("2024-03-05 00:00"),
        at("2024-03-06 00:00"),
    )
    with pytest.raises(ValueError, match="before it starts"):
        period_bounds(date(2024, 3, 5), date(2024, 3, 4), JOBURG)


def test_priorities_just_inside_and_just_outside_target(
    store: Store, inventory: Inventory, ids: dict[str, int]
) -> None:
    report = march(store, inventory)
    p1, p2, p3 = report.priorities
    assert (p1.priority, p1.target, p1.opened, p1.resolved) == ("P1", 0.95, 3, 2)
    assert (p1.within, p1.breached, p1.pending, p1.open_at_end) == (1, 1, 1, 1)
    assert p1.achieved == 0.5
    assert p1.met is False
    # Friday 16:00-16:30 and Monday 08:00-11:29 (or 11:31) of working time
    assert p1.mean_to_resolve == (14_340 + 14_460) / 2
    assert p1.p95_to_resolve == 14_460

    assert (p2.opened, p2.resolved, p2.within, p2.breached, p2.pending) == (2, 2, 1, 1, 0)
    assert p2.open_at_end == 1  # opened in February, still open
    assert p2.achieved == 0.5
    # Wednesday 15:00-16:30 and Friday 08:00-14:29 (or 14:31): the holiday counts nothing
    assert p2.mean_to_resolve == (28_740 + 28_860) / 2

    assert (p3.opened, p3.resolved, p3.within, p3.breached, p3.pending) == (1, 0, 0, 1, 0)
    assert p3.achieved == 0.0
    assert p3.met is False
    assert p3.mean_to_resolve is None
    assert p3.p95_to_resolve is None
    assert (report.opened, report.open_at_end) == (6, 3)


def test_target_met_when_everything_is_on_time(
    store: Store, inventory: Inventory, ids: dict[str, int]
) -> None:
    start, end = period_bounds(date(2024, 3, 8), date(2024, 3, 11), JOBURG)
    report = build_report(store, inventory, start, end, at("2024-04-10 09:00"))
    p1, p2, p3 = report.priorities
    assert (p1.opened, p1.within, p1.achieved, p1.met) == (1, 1, 1.0, True)
    assert (p2.opened, p2.achieved, p2.met) == (0, None, None)
    assert p3.open_at_end == 1  # the printer from the 4th, still open


def test_a_period_not_over_yet_is_measured_to_now(
    store: Store, inventory: Inventory, ids: dict[str, int]
) -> None:
    now = at("2024-03-11 10:00")  # the Friday P1 is open and not yet due; the P3 is late
    report = march(store, inventory, now)
    assert report.as_of == now
    p1, _, p3 = report.priorities
    assert (p1.opened, p1.resolved, p1.pending, p1.achieved) == (1, 0, 1, None)
    assert (p3.opened, p3.breached) == (1, 1)
    site = {s.id: s for s in report.sites}["customer-care"]
    elapsed = now - at("2024-03-01 00:00")
    assert site.always.counted == elapsed
    assert site.always.down == now - at("2024-03-08 16:00")
    table = report_table(report)
    assert "Figures to date: as of 2024-03-11 10:00" in table


def test_per_site_figures(store: Store, inventory: Inventory, ids: dict[str, int]) -> None:
    report = march(store, inventory)
    sites = {s.id: s for s in report.sites}
    assert [s.id for s in report.sites] == [s.id for s in inventory.sites]
    cc = sites["customer-care"]
    down = 67 * HOUR + 29 * MINUTE  # Friday 16:00 to Monday 11:29
    assert cc.always == Durations(
        up=31 * DAY - down - 2 * HOUR - HOUR, down=down, maintenance=2 * HOUR, unknown=HOUR
    )
    assert cc.always.availability == (31 * DAY - 3 * HOUR - down) / (31 * DAY - 3 * HOUR)
    working_down = 30 * MINUTE + 3 * HOUR + 29 * MINUTE
    assert cc.working == Durations(up=MARCH_WORKING - working_down, down=working_down)
    assert cc.working.availability == (MARCH_WORKING - working_down) / MARCH_WORKING
    assert cc.incidents == {"P1": 1, "P2": 0, "P3": 0}
    assert sites["town-hall"].incidents == {"P1": 1, "P2": 0, "P3": 0}
    assert sites["town-hall"].always == Durations(unknown=31 * DAY)  # never logged
    assert sites["town-hall"].always.availability is None
    assert sites["tesko"].incidents == {"P1": 1, "P2": 0, "P3": 1}  # February's P2 not counted
    pound = sites["dutywa-pound"]
    assert (pound.monitored, pound.always.unmonitored, pound.always.availability) == (
        False,
        31 * DAY,
        None,
    )
    # all monitored sites pooled: only Customer Care has evidence; each incident counted once
    assert report.overall.always.counted == cc.always.counted
    assert report.overall.incidents == {"P1": 3, "P2": 2, "P3": 1}


def test_major_incidents_with_cause_and_duration(
    store: Store, inventory: Inventory, ids: dict[str, int]
) -> None:
    report = march(store, inventory)
    first, second = report.majors
    assert (first.id, first.key, first.title) == (
        ids["cc-mpls"],
        "link:cc-mpls",
        "link:cc-mpls is down",
    )
    assert first.cause["kind"] == "link"
    assert first.sites == ("customer-care", "town-hall")
    assert first.duration == 67 * HOUR + 29 * MINUTE
    assert first.working == 14_340
    assert first.outcome == "within"
    # open at the end of March (it was resolved on 2 April): its duration runs to the period end
    assert second.id == ids["main-mpls"]
    assert second.resolved_at is None
    assert second.duration == 80 * HOUR
    assert second.working == 30 * MINUTE  # Thursday 16:00-16:30; Good Friday is a holiday
    assert second.outcome == "pending"


def test_a_read_only_store_gives_the_same_report(
    store: Store, database_spec: DatabaseSpec, inventory: Inventory, ids: dict[str, int]
) -> None:
    """`sitewatch report sla` reads beside a running collector, on a store opened read-only."""
    reader = Store(database_spec, readonly=True)
    try:
        read = report_json(march(reader, inventory))
        assert read == report_json(march(store, inventory))
        assert read["volume"]["opened"] == 6  # March's incidents, read through the reader
        assert {m["id"] for m in read["major_incidents"]} == {ids["cc-mpls"], ids["main-mpls"]}
    finally:
        reader.close()


def test_resolved_exactly_at_due_is_within(
    store: Store, calendar: WorkingCalendar, inventory: Inventory
) -> None:
    incident(store, calendar, inventory, key="link:a", priority="P1",
             opened="2024-03-08 16:00", resolved="2024-03-11 11:30")  # fmt: skip
    report = march(store, inventory)
    assert (report.priorities[0].within, report.priorities[0].breached) == (1, 0)


def test_nearest_rank_percentile() -> None:
    assert nearest_rank([], 0.95) is None
    assert nearest_rank([5.0], 0.95) == 5.0
    values = [float(v) for v in range(1, 21)]
    assert nearest_rank(values, 0.95) == 19.0
    assert nearest_rank([*values, 21.0], 0.95) == 20.0


def test_json_output(store: Store, inventory: Inventory, ids: dict[str, int]) -> None:
    body = report_json(march(store, inventory))
    json.dumps(body)  # plain JSON types only
    assert body["period"] == {
        "from": "2024-02-29T22:00:00Z",
        "to": "2024-03-31T22:00:00Z",
        "as_of": "2024-03-31T22:00:00Z",
        "first_day": "2024-03-01",
        "last_day": "2024-03-31",
    }
    assert body["volume"] == {"opened": 6, "by_priority": {"P1": 3, "P2": 2, "P3": 1},
                              "open_at_end": 3}  # fmt: skip
    p1 = body["priorities"][0]
    assert p1 == {
        "priority": "P1",
        "target": 0.95,
        "resolve_within_s": 4 * HOUR,
        "opened": 3,
        "resolved": 2,
        "within_target": 1,
        "breached": 1,
        "pending": 1,
        "open_at_end": 1,
        "achieved": 0.5,
        "target_met": False,
        "mean_to_resolve_s": 14_400.0,
        "p95_to_resolve_s": 14_460.0,
    }
    cc = next(s for s in body["sites"] if s["id"] == "customer-care")
    assert cc["seconds"]["down"] == 67 * HOUR + 29 * MINUTE
    assert cc["business_seconds"]["down"] == 14_340
    assert cc["incidents"] == {"P1": 1, "P2": 0, "P3": 0}
    assert body["overall"]["id"] == "all"
    major = body["major_incidents"][0]
    assert major["opened_at"] == "2024-03-08T14:00:00Z"
    assert major["resolved_at"] == "2024-03-11T09:29:00Z"
    assert major["cause"] == {"kind": "link", "id": "cc-mpls"}
    assert body["major_incidents"][1]["resolved_at"] is None


def test_csv_output(store: Store, inventory: Inventory, ids: dict[str, int]) -> None:
    text = report_csv(march(store, inventory))
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert all(len(row) == 4 for row in rows)
    figures = {(s, subject, metric): value for s, subject, metric, value in rows[1:]}
    assert len(figures) == len(rows) - 1  # each figure once
    assert figures["period", "", "first_day"] == "2024-03-01"
    assert figures["volume", "all", "opened"] == "6"
    assert figures["priority", "P1", "achieved"] == "0.5"
    assert figures["priority", "P1", "target_met"] == "false"
    assert figures["priority", "P2", "mean_to_resolve_s"] == "28800"
    assert figures["priority", "P3", "mean_to_resolve_s"] == ""
    assert figures["site", "customer-care", "down_s"] == "242940"
    assert figures["site", "customer-care", "business_down_s"] == "14340"
    assert figures["site", "customer-care", "incidents_P1"] == "1"
    assert figures["site", "town-hall", "availability"] == ""
    assert figures["site", "dutywa-pound", "monitored"] == "false"
    assert float(figures["overall", "all", "availability"]) == pytest.approx(
        1 - 242_940 / (31 * DAY - 3 * HOUR), abs=1e-6
    )
    major = str(ids["cc-mpls"])
    assert figures["major", major, "sites"] == "customer-care;town-hall"
    assert figures["major", major, "outcome"] == "within"
    assert figures["major", major, "cause_kind"] == "link"


def test_table_output(store: Store, inventory: Inventory, ids: dict[str, int]) -> None:
    table = report_table(march(store, inventory))
    lines = table.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0] == "SLA and availability report: Mbhashe Local Municipality"
    assert lines[1] == "Period: 2024-03-01 to 2024-03-31 (Africa/Johannesburg)"
    assert lines[2] == "Working time: Mon-Fri 08:00-16:30, except ZA public holidays"
    rows = {line.split()[0]: line.split() for line in lines if line[:2] in {"P1", "P2", "P3"}}
    assert rows["P1"] == ["P1", "95%", "in", "4h", "3", "2", "1", "1", "1", "50.00%", "NO",
                          "4h00m", "4h01m"]  # fmt: skip
    assert rows["P3"][:4] == ["P3", "80%", "in", "2d"]
    assert rows["P3"][-4:] == ["0.00%", "NO", "-", "-"]
    assert (
        "Volume: 6 incidents opened (P1 3, P2 2, P3 1); 3 open at the end of the period." in lines
    )
    cc = next(line for line in lines if line.startswith("Customer Care "))
    assert cc.split()[2:] == ["10", "90.89%", "97.53%", "2d19h29m", "1h00m", "1", "0", "0"]
    assert any(line.startswith("All monitored sites") for line in lines)
    assert "Not monitored: Dutywa Pound." in lines
    assert any("link:cc-mpls" in line and "within" in line for line in lines)
    assert any("3d08h00m+" in line and "pending" in line for line in lines)
    print(table)  # shown with -s: the report as the manager sees it


def test_an_empty_period_prints_cleanly(store: Store, inventory: Inventory) -> None:
    report = march(store, inventory)
    assert report.opened == 0
    assert all(p.achieved is None and p.met is None for p in report.priorities)
    table = report_table(report)
    assert "None in this period." in table
    assert report_json(report)["major_incidents"] == []
    assert report_csv(report).startswith("section,subject,metric,value\n")
