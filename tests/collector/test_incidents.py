"""The incident book over a real database, SQLite and PostgreSQL, driven by correlation passes
on a fake clock; two books on one database stand for two collector processes."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import shipper
from collector.errors import refusal
from collector.incidents import (
    AGENT_BACK_WITHIN,
    SETTLE_MARGIN,
    IncidentBook,
    IncidentConflict,
    IncidentJson,
    IncidentNotFound,
    NoteJson,
    SlaJson,
    TimelineEntryJson,
)
from collector.state import StateBook
from collector.store import DatabaseSpec, Store
from collector.store import incidents as table
from collector.store.incidents import Incident, IncidentChanged, is_unique_violation
from collector.topology import Cause, Evidence, Maintained, Topology, correlate
from probes.result import ProbeResult
from sitewatch.config.files import load_inventory
from sitewatch.config.model import Inventory, WebhookNotifier

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = load_inventory(ROOT / "config" / "inventory.yaml")
TOPOLOGY = Topology(INVENTORY).with_agents(
    (f"{site.id}-01", site.id) for site in INVENTORY.sites if site.monitored
)
SAST = ZoneInfo("Africa/Johannesburg")
LINKS = [link.id for _, link in INVENTORY.links()]
MONITORED = [site.id for site in INVENTORY.sites if site.monitored]
AGENTS = {f"{site}-01": site for site in MONITORED}
HOOK = WebhookNotifier(url="http://127.0.0.1:9/hook", format="generic", routing_key=None)


def at(text: str) -> float:
    """Local time in the inventory's zone, as Unix seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=SAST).timestamp()


def causes(
    down: dict[str, str] | None = None,
    silent: frozenset[str] = frozenset(),
    devices: dict[str, frozenset[str]] | None = None,
) -> tuple[Cause, ...]:
    links = dict.fromkeys(LINKS, "up") | (down or {})
    alive = {site: site not in silent for site in MONITORED}
    return correlate(
        TOPOLOGY,
        Evidence(links, alive, devices or {}),  # type: ignore[arg-type]
        frozenset(),
    ).causes


CUT_CC = {"customer-care-mpls": "down", "town-hall-wireless": "down"}
CC_SILENT = frozenset({"customer-care", "town-hall"})


def book_of(store: Store, notifiers: tuple[WebhookNotifier, ...] = (HOOK,)) -> IncidentBook:
    book = IncidentBook(store, INVENTORY, notifiers)
    book.load(0.0)
    return book


def rows(store: Store, query: str) -> list[tuple[object, ...]]:
    with store.db.reading() as db:
        return list(db.execute(query).fetchall())


def test_a_cut_opens_one_p1_due_in_four_working_hours_and_resolves_itself(store: Store) -> None:
    book = book_of(store)
    friday = at("2026-11-27T16:00:00")
    assert book.reconcile(causes(CUT_CC, CC_SILENT), friday) == 1
    book.reconcile(causes(CUT_CC, CC_SILENT), friday + 30)  # the same outage: nothing new
    (incident,) = book.open_incidents()
    assert (incident.key, incident.priority, incident.sites, incident.affected_users) == (
        "link:customer-care-mpls",
        "P1",
        ("customer-care", "town-hall"),
        22,
    )
    assert incident.due_at == at("2026-11-30T11:30:00")  # Friday 16:00 + 4 h -> Monday 11:30
    body = book.to_json(incident, friday + 15 * 60)
    assert body["sla"] == {"due_at": "2026-11-30T09:30:00Z", "percent_used": 6.2, "breached": False}

    book.reconcile(causes(), friday + 600)
    assert book.open_incidents() == []
    resolved = book.get(incident.id)
    assert resolved is not None
    assert (resolved.status, resolved.resolved_at, resolved.resolved_by) == (
        "resolved",
        friday + 600,
        None,
    )
    events = [e.kind for e in book.timeline(incident.id)]
    assert events == ["opened", "resolved"]
    queued = rows(store, "SELECT event FROM notifications ORDER BY id")
    assert queued == [("opened",), ("resolved",)]


def test_a_relapse_within_the_window_reopens_and_keeps_the_clock(store: Store) -> None:
    book = book_of(store)
    t0 = at("2026-11-23T09:00:00")
    book.reconcile(causes(CUT_CC, CC_SILENT), t0)
    (first,) = book.open_incidents()
    for n in range(3):  # three flaps, each inside the 15-minute window
        book.reconcile(causes(), t0 + 60 + n * 120)
        book.reconcile(causes(CUT_CC, CC_SILENT), t0 + 120 + n * 120)
    (again,) = book.open_incidents()
    assert (again.id, again.flaps, again.opened_at, again.due_at) == (
        first.id,
        3,
        t0,
        first.due_at,
    )
    assert rows(store, "SELECT count(*) FROM incidents") == [(1,)]
    kinds = [e.kind for e in book.timeline(first.id)]
    assert kinds.count("reopened") == 3


def test_a_relapse_after_the_window_is_a_new_incident(store: Store) -> None:
    book = book_of(store)
    t0 = at("2026-11-23T09:00:00")
    book.reconcile(causes(CUT_CC, CC_SILENT), t0)
    book.reconcile(causes(), t0 + 60)
    book.reconcile(causes(CUT_CC, CC_SILENT), t0 + 60 + 16 * 60)
    assert rows(store, "SELECT id, status FROM incidents ORDER BY id") == [
        (1, "resolved"),
        (2, "open"),
    ]


def test_growing_impact_upgrades_in_place(store: Store) -> None:
    book = book_of(store)
    t0 = at("2026-11-23T09:00:00")
    book.reconcile(causes({"workshop-mpls": "down"}), t0)  # on its backup: P2
    (incident,) = book.open_incidents()
    assert (incident.key, incident.priority) == ("link:workshop-mpls", "P2")
    cut = {"workshop-mpls": "down", "workshop-fibre": "down"}
    book.reconcile(causes(cut, frozenset({"dutywa-workshop"})), t0 + 60)
    (same,) = book.open_incidents()
    assert (same.id, same.priority) == (incident.id, "P2")  # 7 users: still P2, same incident
    # Town Hall behind Customer Care: first only its own wireless, then the whole chain.
    book.reconcile(causes({"town-hall-wireless": "down"}, frozenset({"town-hall"})), t0 + 120)
    assert [i.key for i in book.open_incidents()] == ["link:town-hall-wireless"]
    book.reconcile(causes(CUT_CC, CC_SILENT), t0 + 180)
    (chain,) = book.open_incidents()
    assert chain.key == "link:customer-care-mpls"
    merged = rows(store, "SELECT detail FROM incident_events WHERE kind = 'resolved'")
    assert any("merged_into" in str(detail) for (detail,) in merged)


def test_a_p2_growing_into_a_p1_is_upgraded_with_a_new_due_time(store: Store) -> None:
    book = book_of(store)
    t0 = at("2026-11-23T09:00:00")
    small = Cause("link:x", "link", "P2", "x down", ("tesko",), 7, {"links": ["x"]})
    big = Cause("link:x", "link", "P1", "x down", ("tesko", "elliotdale"), 22, {"links": ["x"]})
    book.reconcile([small], t0)
    book.reconcile([big], t0 + 60)
    (incident,) = book.open_incidents()
    assert (incident.priority, incident.sites, incident.affected_users) == (
        "P1",
        ("tesko", "elliotdale"),
        22,
    )
    assert incident.due_at == at("2026-11-23T13:00:00")  # 4 h from the first opening
    assert [e.kind for e in book.timeline(incident.id)] == ["opened", "upgraded"]


def test_two_p1s_at_once_are_both_major_and_escalated(store: Store) -> None:
    book = book_of(store)
    t0 = at("2026-11-23T09:00:00")
    book.reconcile(causes(CUT_CC, CC_SILENT), t0)
    assert not book.open_incidents()[0].major
    both = {**CUT_CC, "elliotdale-mpls": "down", "elliotdale-wireless": "down"}
    book.reconcile(causes(both, CC_SILENT | {"elliotdale"}), t0 + 60)
    opened = book.open_incidents()
    assert [(i.priority, i.major) for i in opened] == [("P1", True), ("P1", True)]
    escalations = rows(store, "SELECT count(*) FROM notifications WHERE event = 'escalated'")
    assert escalations == [(2,)]


def test_a_p1_at_75_percent_of_its_sla_is_escalated_once(store: Store) -> None:
    book = book_of(store)
    t0 = at("2026-11-23T09:00:00")  # due 13:00; 75% is 12:00
    book.reconcile(causes(CUT_CC, CC_SILENT), t0)
    book.reconcile(causes(CUT_CC, CC_SILENT), at("2026-11-23T11:59:00"))
    assert not book.open_incidents()[0].major
    book.reconcile(causes(CUT_CC, CC_SILENT), at("2026-11-23T12:00:00"))
    book.reconcile(causes(CUT_CC, CC_SILENT), at("2026-11-23T12:30:00"))
    (incident,) = book.open_incidents()
    assert incident.major
    assert [e.kind for e in book.timeline(incident.id)].count("escalated") == 1


def test_staff_acknowledge_note_and_resolve(store: Store) -> None:
    book = book_of(store)
    t0 = at("2026-11-23T09:00:00")
    book.reconcile(causes(CUT_CC, CC_SILENT), t0)
    (incident,) = book.open_incidents()
    acknowledged = book.acknowledge(incident.id, "desk", t0 + 60)
    assert (acknowledged.status, acknowledged.acknowledged_by) == ("acknowledged", "desk")
    with pytest.raises(IncidentConflict, match="acknowledged"):
        book.acknowledge(incident.id, "desk", t0 + 61)
    book.add_note(incident.id, "desk", "Telkom ticket 4411 logged", t0 + 90)
    resolved = book.resolve(incident.id, "desk", "fibre spliced", t0 + 120)
    assert (resolved.status, resolved.resolved_by) == ("resolved", "desk")
    # the cause is still there: a manual resolution is not undone by the next pass
    book.reconcile(causes(CUT_CC, CC_SILENT), t0 + 150)
    assert book.open_incidents() == []
    # once it has cleared, a relapse within the window reopens it
    book.reconcile(causes(), t0 + 180)
    book.reconcile(causes(CUT_CC, CC_SILENT), t0 + 240)
    assert [i.id for i in book.open_incidents()] == [incident.id]
    body = book.to_json(incident, t0 + 240, book.timeline(incident.id))
    assert [n["text"] for n in body["notes"]] == ["Telkom ticket 4411 logged", "fibre spliced"]
    # the JSON is what IncidentJson declares, no more, no less (timeline only with the events)
    assert body.keys() == IncidentJson.__annotations__.keys()
    assert book.to_json(incident, t0 + 240).keys() == IncidentJson.__annotations__.keys() - {
        "timeline"
    }
    assert body["sla"].keys() == SlaJson.__annotations__.keys()
    assert body["notes"][0].keys() == NoteJson.__annotations__.keys()
    assert body["timeline"][0].keys() == TimelineEntryJson.__annotations__.keys()
    with pytest.raises(IncidentNotFound, match="no incident 99"):
        book.resolve(99, "desk", "x", t0)


def test_the_store_refuses_two_open_incidents_with_one_key(store: Store) -> None:
    book = book_of(store)
    book.reconcile(causes(CUT_CC, CC_SILENT), at("2026-11-23T09:00:00"))
    with (
        pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)) as refused,
        store.db.writing() as db,
    ):
        db.execute(
            "INSERT INTO incidents (key, priority, status, title, cause, sites, affected_users,"
            " opened_at, due_at) VALUES (?, 'P1', 'open', 't', '{}', '[]', 0, 0, 0)",
            ("link:customer-care-mpls",),  # a parameter: SQL text holds no ':' (database.py)
        )
    assert is_unique_violation(refused.value)
    assert rows(store, "SELECT count(*) FROM incidents") == [(1,)]


def test_a_restart_reads_open_incidents_back(store: Store) -> None:
    t0 = at("2026-11-23T09:00:00")
    book_of(store).reconcile(causes(CUT_CC, CC_SILENT), t0)
    again = IncidentBook(store, INVENTORY, (HOOK,))
    again.load(t0 + 30)
    again.reconcile(causes(CUT_CC, CC_SILENT), t0 + 30)
    assert rows(store, "SELECT count(*) FROM incidents") == [(1,)]
    # Just after a restart agents count as heard, so a cause may look cleared for a while:
    # what was open stays open until the silence allowance (90 s) and an interval have passed.
    again.reconcile(causes(), t0 + 60)
    assert [i.key for i in again.open_incidents()] == ["link:customer-care-mpls"]
    again.reconcile(causes(), t0 + 30 + 120)
    assert again.open_incidents() == []


def test_a_bigger_outage_breaks_the_quiet_of_a_hand_resolved_incident(store: Store) -> None:
    book = book_of(store)
    t0 = at("2026-11-23T09:00:00")
    book.reconcile(causes({"customer-care-mpls": "degraded"}), t0)
    (degraded,) = book.open_incidents()
    assert degraded.priority == "P2"
    book.resolve(degraded.id, "desk", "ISP ticket raised", t0 + 60)
    book.reconcile(causes({"customer-care-mpls": "degraded"}), t0 + 90)
    assert book.open_incidents() == []  # the same cause: quiet
    book.reconcile(causes(CUT_CC, CC_SILENT), t0 + 120)  # then the link fails outright
    (cut,) = book.open_incidents()
    assert (cut.key, cut.priority, cut.sites) == (
        "link:customer-care-mpls",
        "P1",
        ("customer-care", "town-hall"),
    )


SCENES = st.sampled_from(
    [
        ({}, frozenset(), {}),
        (CUT_CC, CC_SILENT, {}),
        ({"town-hall-wireless": "down"}, frozenset({"town-hall"}), {}),
        ({"workshop-mpls": "down"}, frozenset(), {}),
        ({"workshop-mpls": "down", "workshop-fibre": "down"}, frozenset({"dutywa-workshop"}), {}),
        ({}, frozenset({"tesko"}), {}),
        ({}, frozenset(), {"dutywa-main": frozenset({"dm-phone-01"})}),
        ({}, frozenset(), {"dutywa-main": frozenset({"dm-phone-01", "dm-phone-02"})}),
        ({"elliotdale-mpls": "degraded"}, frozenset(), {}),
    ]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    passes=st.lists(st.tuples(SCENES, st.integers(1, 1200)), min_size=1, max_size=25),
    resolve_by_hand=st.lists(st.integers(0, 24), max_size=3),
)
def test_properties_over_random_passes(
    tmp_path_factory: pytest.TempPathFactory,
    passes: list[tuple[tuple[dict[str, str], frozenset[str], dict[str, frozenset[str]]], int]],
    resolve_by_hand: list[int],
) -> None:
    store = Store(tmp_path_factory.mktemp("db") / "collector.db")
    try:
        book = book_of(store)
        now = at("2026-11-23T08:00:00")
        for n, ((down, silent, devices), step) in enumerate(passes):
            now += step
            found = causes(down, silent, devices)
            book.reconcile(found, now)
            if n in resolve_by_hand and book.open_incidents():
                book.resolve(book.open_incidents()[0].id, "desk", "by hand", now)
            open_keys = rows(store, "SELECT key FROM incidents WHERE status != 'resolved'")
            assert len(open_keys) == len(set(open_keys)), "one open incident per key"
            # a device behind a cut never has its own incident
            unreachable = correlate(
                TOPOLOGY,
                Evidence(
                    dict.fromkeys(LINKS, "up") | down,  # type: ignore[arg-type]
                    {site: site not in silent for site in MONITORED},
                    devices,
                ),
                frozenset(),
            ).unreachable
            assert not {f"device:{d}" for d in unreachable} & {k for (k,) in open_keys}
        book.reconcile(causes(), now + 1)
        assert book.open_incidents() == []
        assert rows(store, "SELECT count(*) FROM incidents WHERE status != 'resolved'") == [(0,)]
    finally:
        store.close()


def test_what_a_cleared_cut_explained_settles_before_it_may_open(store: Store) -> None:
    book = book_of(store)
    t0 = at("2026-11-23T09:00:00")
    book.reconcile(causes(CUT_CC, CC_SILENT), t0)
    # Healing: Customer Care's agent is back, Town Hall's evidence not yet refreshed.
    echo = causes({"town-hall-wireless": "down"}, frozenset({"town-hall"}))
    assert [c.key for c in echo] == ["link:town-hall-wireless"]
    book.reconcile(echo, t0 + 10)
    book.reconcile(echo, t0 + 10 + book.settle - 0.1)
    assert book.open_incidents() == []  # the echo of the cleared cut opens nothing
    book.reconcile(echo, t0 + 10 + book.settle)  # still down after the settling time: real
    assert [i.key for i in book.open_incidents()] == ["link:town-hall-wireless"]
    # an outage that explained nothing before opens at once
    book.reconcile([*echo, *causes({"tesko-mpls": "down"}, frozenset({"tesko"}))], t0 + 100)
    assert sorted(i.key for i in book.open_incidents()) == [
        "link:tesko-mpls",
        "link:town-hall-wireless",
    ]


def test_an_agent_cut_off_with_its_site_has_its_backoff_to_come_back(store: Store) -> None:
    """After a long cut an agent's shipper may wait its longest backoff before it tries again:
    its silence at a site the centre sees back is the cut's echo for that long, at any probe
    interval, then its own fault."""
    assert AGENT_BACK_WITHIN >= shipper.BACKOFF_MAX + 2 * shipper.REPLY_TIMEOUT + 1
    every_second = dataclasses.replace(INVENTORY.thresholds, interval=timedelta(seconds=1))
    book = IncidentBook(store, dataclasses.replace(INVENTORY, thresholds=every_second), (HOOK,))
    book.load(0.0)
    assert book.settle == 4.0  # two intervals and the margin: far less than a backoff
    t0 = at("2026-11-23T09:00:00")
    book.reconcile(causes(CUT_CC, CC_SILENT), t0)
    unheard = causes(silent=CC_SILENT)  # restored: the centre sees the edges, agents not yet
    book.reconcile(unheard, t0 + 10)
    book.reconcile(unheard, t0 + 10 + AGENT_BACK_WITHIN)
    assert book.open_incidents() == []
    book.reconcile(unheard, t0 + 10 + AGENT_BACK_WITHIN + SETTLE_MARGIN)
    assert {i.key for i in book.open_incidents()} == {
        "agent:customer-care-01",
        "agent:town-hall-01",
    }


def test_a_cause_that_changes_its_story_is_retitled_in_place(store: Store) -> None:
    book = book_of(store)
    t0 = at("2026-11-23T09:00:00")
    book.reconcile(causes({"workshop-mpls": "degraded"}), t0)
    (incident,) = book.open_incidents()
    assert "degraded" in incident.title
    book.reconcile(causes({"workshop-mpls": "down"}), t0 + 5)
    (same,) = book.open_incidents()
    assert same.id == incident.id
    assert "on its backup" in same.title
    assert [e.kind for e in book.timeline(incident.id)] == ["opened", "changed"]


# -- the state book's doubts, as the collector's correlation pass hands them over ------------

TESKO = {"tesko-01": "tesko"}


def seen(states: StateBook, target: str, when: float, *, ok: bool) -> None:
    """The Tesko agent's ping of `target` at `when`, heard at once."""
    probed = datetime.fromtimestamp(when, UTC)
    states.observe("agent", ProbeResult(target, "icmp", probed, ok=ok, rtt_ms=5.0, loss=0.0))
    states.heard_from("tesko-01", when, when)


def a_pass(
    states: StateBook, book: IncidentBook, now: float, maintained: Maintained = frozenset()
) -> None:
    """One correlation pass as the collector runs it: only open incidents' doubts computed."""
    correlation = states.correlate(now, maintained)
    keys = [incident.key for incident in book.open_incidents()]
    book.reconcile(
        correlation.causes, now, states.unsure(correlation, now, keys), states.unwatched(keys)
    )


def printer_down_at_tesko(store: Store, t0: float) -> IncidentBook:
    states, book = StateBook(INVENTORY, dict(TESKO)), book_of(store)
    for n in range(3):
        seen(states, "tesko-mpls", t0 + n, ok=True)
        seen(states, "ts-prn-01", t0 + n, ok=False)
    a_pass(states, book, t0 + 3)
    assert [i.key for i in book.open_incidents()] == ["device:ts-prn-01"]
    return book


def resolved_reason(book: IncidentBook, incident_id: int) -> object:
    (resolved,) = [e for e in book.timeline(incident_id) if e.kind == "resolved"]
    return resolved.detail["reason"]


def unmonitored(inventory: Inventory, site_id: str) -> Inventory:
    sites = tuple(
        dataclasses.replace(site, monitored=False) if site.id == site_id else site
        for site in inventory.sites
    )
    return dataclasses.replace(inventory, sites=sites)


@pytest.mark.parametrize(
    ("inventory", "agents", "reason"),
    [
        (unmonitored(INVENTORY, "tesko"), TESKO, "no longer monitored"),
        (INVENTORY, {}, "no longer monitored: its site has no agent configured"),
        (INVENTORY, TESKO, None),  # still watched, no fresh evidence: it waits
    ],
    ids=["site-unmonitored", "agent-removed", "still-watched"],
)
def test_an_incident_nobody_watches_after_a_restart_resolves(
    store: Store, inventory: Inventory, agents: dict[str, str], reason: str | None
) -> None:
    t0 = at("2026-11-23T09:00:00")
    (incident,) = printer_down_at_tesko(store, t0).open_incidents()
    t1 = t0 + 600  # restarted with a changed config; the printer sends nothing new
    states, book = StateBook(inventory, dict(agents)), IncidentBook(store, inventory, (HOOK,))
    book.load(t1)
    for step in range(0, 400, 10):
        seen(states, "tesko-mpls", t1 + step, ok=True)
        a_pass(states, book, t1 + step + 1)
    if reason is None:
        assert [i.id for i in book.open_incidents()] == [incident.id]
        return
    assert book.open_incidents() == []
    assert resolved_reason(book, incident.id) == reason


def test_an_incident_whose_site_goes_into_maintenance_resolves(store: Store) -> None:
    t0 = at("2026-11-23T09:00:00")
    (incident,) = printer_down_at_tesko(store, t0).open_incidents()
    # The printer's incident is held open while its state is unknown (the agent was switched
    # off for the work); a window on the site excuses it, as it excuses a printer seen down.
    states, book = StateBook(INVENTORY, dict(TESKO)), IncidentBook(store, INVENTORY, (HOOK,))
    book.load(t0 + 600)
    a_pass(states, book, t0 + 1000)
    assert [i.id for i in book.open_incidents()] == [incident.id]
    a_pass(states, book, t0 + 1010, frozenset({("site", "tesko")}))
    assert book.open_incidents() == []
    assert resolved_reason(book, incident.id) == "the cause cleared"


def test_a_group_of_devices_stays_open_while_any_member_is_unknown(store: Store) -> None:
    t0 = at("2026-11-23T09:00:00")
    states, book = StateBook(INVENTORY, dict(TESKO)), book_of(store)
    for n in range(3):
        seen(states, "tesko-mpls", t0 + n, ok=True)
        seen(states, "ts-phone-01", t0 + n, ok=False)
        seen(states, "ts-phone-02", t0 + n, ok=False)
    a_pass(states, book, t0 + 3)
    (group,) = book.open_incidents()
    assert group.key == "devices:tesko:phone"
    # Restarted: phone 1 is seen back (recover_after successes), phone 2 sends nothing.
    t1 = t0 + 600
    states, book = StateBook(INVENTORY, dict(TESKO)), IncidentBook(store, INVENTORY, (HOOK,))
    book.load(t1)
    for step in range(0, 400, 10):
        seen(states, "tesko-mpls", t1 + step, ok=True)
        seen(states, "ts-phone-01", t1 + step, ok=True)
        a_pass(states, book, t1 + step + 1)
    assert [i.id for i in book.open_incidents()] == [group.id]
    for n in range(2):  # then phone 2 is seen back too
        seen(states, "ts-phone-02", t1 + 400 + n, ok=True)
    a_pass(states, book, t1 + 402)
    assert book.open_incidents() == []
    assert resolved_reason(book, group.id) == "the cause cleared"


# -- two collectors on one database ----------------------------------------------------------


@pytest.fixture
def second(database_spec: DatabaseSpec, store: Store) -> Iterator[Store]:
    """Another process's store on the same database as `store`."""
    other = Store(database_spec)
    try:
        yield other
    finally:
        other.close()


def test_a_book_with_an_old_copy_cannot_open_a_second_incident_of_a_key(
    store: Store, second: Store, caplog: pytest.LogCaptureFixture
) -> None:
    t0 = at("2026-11-23T09:00:00")
    late = book_of(second)  # loaded before the other opened anything: its copy is empty
    first = book_of(store)
    first.reconcile(causes(CUT_CC, CC_SILENT), t0)
    (opened,) = first.open_incidents()
    # The same cause, seen by the book that does not know: the database refuses its INSERT,
    # the pass is undone, the book reads the incidents again and carries on with the one open.
    assert late.reconcile(causes(CUT_CC, CC_SILENT), t0 + 30) == 0
    assert "read again" in caplog.text  # the database refused, not the copy
    assert [i.id for i in late.open_incidents()] == [opened.id]
    assert rows(store, "SELECT count(*) FROM incidents") == [(1,)]
    assert rows(store, "SELECT count(*) FROM notifications WHERE event = 'opened'") == [(1,)]
    late.reconcile(causes(), t0 + 60)
    assert late.open_incidents() == []
    assert [e.kind for e in late.timeline(opened.id)] == ["opened", "resolved"]


def test_a_pass_does_not_write_over_what_another_process_did(
    store: Store, second: Store, caplog: pytest.LogCaptureFixture
) -> None:
    t0 = at("2026-11-23T09:00:00")
    leader = book_of(store)
    leader.reconcile(causes(CUT_CC, CC_SILENT), t0)
    (incident,) = leader.open_incidents()
    other = book_of(second)  # the API of another collector process
    other.acknowledge(incident.id, "desk", t0 + 60)
    assert leader.open_incidents()[0].status == "open"  # the leader's copy is old
    leader.reconcile(causes(), t0 + 120)  # the cause cleared: resolve what was acknowledged
    assert "is no longer open" in caplog.text
    resolved = leader.get(incident.id)
    assert resolved is not None
    assert (resolved.status, resolved.acknowledged_by, resolved.acknowledged_at) == (
        "resolved",
        "desk",
        t0 + 60,
    )
    assert [e.kind for e in leader.timeline(incident.id)] == ["opened", "acknowledged", "resolved"]
    (payload,) = rows(store, "SELECT payload FROM notifications WHERE event = 'resolved'")
    assert json.loads(str(payload[0]))["acknowledged_by"] == "desk"


def test_reload_takes_over_what_another_process_opened_and_acknowledged(
    store: Store, second: Store
) -> None:
    t0 = at("2026-11-23T09:00:00")
    gone = book_of(store)
    gone.reconcile(causes(CUT_CC, CC_SILENT), t0)
    (incident,) = gone.open_incidents()
    gone.acknowledge(incident.id, "desk", t0 + 30)
    heir = book_of(second)
    assert heir.open_incidents()[0].status == "acknowledged"  # loaded at start
    gone.resolve(incident.id, "desk", "fixed", t0 + 60)
    assert heir.open_incidents() != []
    heir.reload(t0 + 90)
    assert heir.open_incidents() == []
    # Resolved by hand while its cause was there: quiet in the heir too.
    heir.reconcile(causes(CUT_CC, CC_SILENT), t0 + 120)
    assert heir.open_incidents() == []
    assert rows(store, "SELECT count(*) FROM incidents") == [(1,)]


def test_a_follower_taking_over_holds_only_what_opened_before_it_started(
    store: Store, second: Store
) -> None:
    """The hold after a start covers incidents opened before it: a follower watched the later
    ones open, so when it takes over, their cause clearing resolves them at once."""
    t0 = at("2026-11-23T09:00:00")
    gone = book_of(store)
    gone.reconcile(causes(CUT_CC, CC_SILENT), t0)  # open before the follower started
    heir = IncidentBook(second, INVENTORY, (HOOK,))
    heir.load(t0 + 10)  # the follower starts, its hold ending two minutes later (30 s interval)
    gone.reconcile(causes(CUT_CC, CC_SILENT, {"tesko": frozenset({"ts-prn-01"})}), t0 + 15)
    heir.reload(t0 + 16)  # the leader died: the follower takes over
    opened = {i.key for i in heir.open_incidents()}
    assert opened == {"link:customer-care-mpls", "device:ts-prn-01"}
    heir.reconcile(causes(), t0 + 17)  # both causes gone, within the hold
    assert [i.key for i in heir.open_incidents()] == ["link:customer-care-mpls"]
    heir.reconcile(causes(), t0 + 200)  # past the hold
    assert heir.open_incidents() == []


@pytest.mark.parametrize("start", ["restart", "takeover"])
def test_what_an_open_outage_explained_settles_after_a_restart_or_takeover(
    store: Store, second: Store, start: str
) -> None:
    """Customer Care cut off takes Town Hall with it. The collector that restarts (or takes
    over) as the link comes back may see Customer Care's agent get through before the
    centre sees Town Hall's edge again: Town Hall's own link seems the cause for a moment.
    That echo opens nothing, as it opens nothing in the collector that watched the cut."""
    t0 = at("2026-11-23T09:00:00")
    book_of(store).reconcile(causes(CUT_CC, CC_SILENT), t0)
    heir = IncidentBook(second, INVENTORY, (HOOK,), agents=AGENTS)
    if start == "restart":
        heir.load(t0 + 60)
    else:
        heir.reload(t0 + 60)
    echo = causes(CUT_CC, frozenset({"town-hall"}))  # Customer Care's agent heard again
    assert {c.key for c in echo} == {"link:customer-care-mpls", "link:town-hall-wireless"}
    heir.reconcile(echo, t0 + 61)
    assert [i.key for i in heir.open_incidents()] == ["link:customer-care-mpls"]
    heir.reconcile(causes(), t0 + 62)  # the centre sees the edge again: nothing to open
    heir.reconcile(echo, t0 + 200)  # long after: Town Hall's own link down is its own outage
    assert {i.key for i in heir.open_incidents()} >= {"link:town-hall-wireless"}


def test_a_takeover_as_a_cut_clears_opens_nothing_for_the_agents_still_unheard(
    store: Store, second: Store
) -> None:
    """The centre sees the edges back before the cut-off agents' backlogs arrive: for a
    moment the agents seem silent at sites that answer. Their silence was the cut's."""
    t0 = at("2026-11-23T09:00:00")
    book_of(store).reconcile(causes(CUT_CC, CC_SILENT), t0)
    heir = IncidentBook(second, INVENTORY, (HOOK,), agents=AGENTS)
    heir.reload(t0 + 60)
    unheard = causes(silent=CC_SILENT)
    assert {c.key for c in unheard} == {"agent:customer-care-01", "agent:town-hall-01"}
    heir.reconcile(unheard, t0 + 61)
    assert heir.open_incidents() == []


def test_a_takeover_beside_a_site_on_its_backup_opens_a_new_fault_there_at_once(
    store: Store, second: Store
) -> None:
    """A site on its backup is no outage that explains anything: a printer that dies there
    after a takeover is opened at once, as the old leader would have."""
    t0 = at("2026-11-23T09:00:00")
    primary_down = {"willowvale-mpls": "down"}
    book_of(store).reconcile(causes(primary_down), t0)
    heir = IncidentBook(second, INVENTORY, (HOOK,), agents=AGENTS)
    heir.reload(t0 + 60)
    printer = causes(primary_down, devices={"willowvale": frozenset({"wv-prn-01"})})
    heir.reconcile(printer, t0 + 61)
    assert {i.key for i in heir.open_incidents()} == {"link:willowvale-mpls", "device:wv-prn-01"}


def test_staff_action_on_an_incident_another_process_resolved_is_a_conflict(
    store: Store, second: Store
) -> None:
    t0 = at("2026-11-23T09:00:00")
    book = book_of(store)
    book.reconcile(causes(CUT_CC, CC_SILENT), t0)
    (incident,) = book.open_incidents()
    book_of(second).resolve(incident.id, "desk", "done elsewhere", t0 + 30)
    with pytest.raises(IncidentConflict, match="resolved") as refused:
        book.acknowledge(incident.id, "ann", t0 + 60)
    mapped = refusal(refused.value)
    assert (mapped.status, mapped.code) == (409, "conflict")
    stored = book.get(incident.id)
    assert stored is not None
    assert (stored.status, stored.acknowledged_by) == ("resolved", None)


def test_a_staff_action_whose_incident_another_process_changes_twice_is_a_conflict(
    store: Store, second: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's case: the row changes between the read and the write on both attempts.

    This book read the incident open; meanwhile the other process acknowledged it. Each of
    the book's attempts reads it open (the read is held to what it saw before the other's
    write, which is what a change between read and write looks like), so its write finds the
    row changed both times: IncidentChanged, which the one table maps to a 409, nothing written.
    """
    t0 = at("2026-11-23T09:00:00")
    book = book_of(store)
    book.reconcile(causes(CUT_CC, CC_SILENT), t0)
    (seen,) = book.open_incidents()
    book_of(second).acknowledge(seen.id, "other desk", t0 + 30)
    reads: list[int] = []

    def read_as_seen_before(tx: object, incident_id: int) -> Incident | None:
        reads.append(incident_id)
        return seen

    monkeypatch.setattr(table, "read", read_as_seen_before)
    with pytest.raises(IncidentChanged, match=f"incident {seen.id} .* is no longer open") as err:
        book.resolve(seen.id, "desk", "fixed", t0 + 60)
    assert reads == [seen.id, seen.id]  # tried once more, then gave up
    mapped = refusal(err.value)
    assert (mapped.status, mapped.code) == (409, "conflict")
    assert mapped.message == (
        f"{err.value}: another collector changed it at the same moment; look again and retry"
    )
    monkeypatch.undo()
    stored = book_of(second).get(seen.id)
    assert stored is not None
    assert (stored.status, stored.acknowledged_by, stored.resolved_by) == (
        "acknowledged",
        "other desk",
        None,
    )
    kinds = [event.kind for event in book_of(second).timeline(seen.id)]
    assert kinds == ["opened", "acknowledged"]  # the refused resolution wrote nothing


def test_events_written_at_one_instant_keep_their_order(store: Store) -> None:
    book = book_of(store)
    t0 = at("2026-11-23T09:00:00")
    book.reconcile(causes(CUT_CC, CC_SILENT), t0)
    (incident,) = book.open_incidents()
    for n in range(5):
        book.act("note", incident.id, "desk", f"note {n}", t0 + 60)
    book.act("acknowledge", incident.id, "desk", "on it", t0 + 60)
    book.act("resolve", incident.id, "desk", "fixed", t0 + 60)
    kinds = [(e.kind, e.detail.get("text")) for e in book.timeline(incident.id)]
    assert kinds == [
        ("opened", None),
        *[("note", f"note {n}") for n in range(5)],
        ("acknowledged", None),
        ("note", "on it"),
        ("resolved", None),
        ("note", "fixed"),
    ]
    notes = book.notes_of([incident.id])[incident.id]
    assert [n["text"] for n in notes] == [*(f"note {n}" for n in range(5)), "on it", "fixed"]


def test_a_failed_pass_leaves_the_copy_as_the_database_has_it(store: Store) -> None:
    book = book_of(store)
    t0 = at("2026-11-23T09:00:00")
    book.reconcile(causes(CUT_CC, CC_SILENT), t0)
    workshop = causes({"workshop-mpls": "down"})
    # A cause no SLA knows fails the pass after the workshop's incident was written: the
    # transaction is rolled back, and the copy must not keep an incident the database lacks.
    broken = dataclasses.replace(workshop[0], key="link:nowhere", priority="P9")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="P9"):
        book.reconcile([*causes(CUT_CC, CC_SILENT), *workshop, broken], t0 + 30)
    assert [i.key for i in book.open_incidents()] == ["link:customer-care-mpls"]
    assert rows(store, "SELECT key FROM incidents ORDER BY id") == [("link:customer-care-mpls",)]
    book.reconcile([*causes(CUT_CC, CC_SILENT), *workshop], t0 + 60)
    assert sorted(i.key for i in book.open_incidents()) == [
        "link:customer-care-mpls",
        "link:workshop-mpls",
    ]
    (opened,) = [i for i in book.open_incidents() if i.key == "link:workshop-mpls"]
    assert book.get(opened.id) == opened
