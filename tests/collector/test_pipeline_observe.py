"""One pipeline: the centre's sweep and agents' batches enter through `Pipeline.observe`, views
never write, the pipeline keeps the time its clock gives, and the status log's table module
(`collector.store.status`) does the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collector.clock import ManualClock
from collector.heartbeat import Heartbeat
from collector.ingest import Batch
from collector.service import Collector
from collector.state import SILENT_AFTER_AT_LEAST, StateBook, silence_allowance
from collector.store import CENTRE, IngestOutcome, Store, status
from collector.store.agents import last_heard
from collector.store.status import Gap, StatusChange
from collector.topology import Correlation
from sitewatch.config.files import load_collector_config
from tests.results import probe_result

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_collector_config(ROOT / "config" / "collector.yaml")
T0 = 1_800_000_000.0
OUTBOX = "a" * 32


def started(store: Store, clock: ManualClock) -> Collector:
    collector = Collector(CONFIG, store, clock=clock)
    collector.pipeline.warm_up()
    return collector


def entities() -> set[str]:
    """Every site and link of the example inventory, as the status log names them."""
    inventory = CONFIG.inventory
    return {f"site:{site.id}" for site in inventory.sites} | {
        f"link:{link.id}" for _, link in inventory.links()
    }


async def test_the_centres_sweep_is_numbered_stored_and_moves_the_centres_view(
    store: Store,
) -> None:
    clock = ManualClock(T0)
    pipeline = started(store, clock).pipeline
    for second in range(3):  # fail_after is 3
        clock.set(T0 + second)
        pipeline.changed.clear()
        outcome = await pipeline.observe(
            CENTRE, [probe_result("willowvale-mpls", T0 + second, ok=False)]
        )
        assert outcome == IngestOutcome(1, 0)
    assert pipeline.changed.is_set()  # the third failure put the edge down: correlate now
    assert pipeline.book.targets["willowvale-mpls", "icmp", "centre"].status == "down"
    numbers = store.results.sequences(CENTRE)
    assert len(numbers) == 3
    assert numbers == sorted(set(numbers))  # each sweep numbered after the one before
    assert pipeline.ingested == 0  # counted for agents only, as /metrics says
    assert pipeline.book.last_heard == {}  # the centre is no agent


async def test_an_agents_batch_is_stored_and_heard_at_the_clocks_time(store: Store) -> None:
    clock = ManualClock(T0 + 10)
    pipeline = started(store, clock).pipeline
    heartbeat = Heartbeat("tesko-01", version="1.2.3", clock=datetime.fromtimestamp(T0, UTC))
    batch = Batch(
        # out of order
        (
            (1, probe_result("tesko-mpls", T0 + 2, ok=True)),
            (2, probe_result("tesko-mpls", T0 + 1, ok=True)),
        ),
        heartbeat,
        OUTBOX,
    )

    assert await pipeline.observe("tesko-01", batch) == IngestOutcome(2, 0)

    state = pipeline.book.targets["tesko-mpls", "icmp", "agent"]
    assert state.last_ts == T0 + 2  # applied oldest first: the older one was not "late"
    assert pipeline.book.last_heard["tesko"] == T0 + 10
    assert pipeline.book.probed["tesko"] == T0 + 2
    assert pipeline.book.clock_offset["tesko"] == 10.0  # received at T0 + 10 by its clock's T0
    assert pipeline.heartbeats["tesko"] == heartbeat
    assert last_heard(store.db)["tesko-01"][0] == T0 + 10  # the contact stored is the clock's
    assert pipeline.ingested == 2

    assert await pipeline.observe("tesko-01", batch) == IngestOutcome(0, 2)  # sent again
    assert pipeline.duplicates == {"tesko-01": 2}
    assert pipeline.ingested == 2


def test_views_before_the_first_pass_leave_its_changes_to_log(store: Store) -> None:
    """A page loaded before the first pass once tracked every status itself, and the first
    pass then found nothing new to write to the status log."""
    pipeline = started(store, ManualClock(T0)).pipeline

    views = pipeline.views()

    assert {view.id for view in views} == {site.id for site in CONFIG.inventory.sites}
    assert all(view.since == T0 for view in views)  # a pass of now, thrown away
    assert pipeline.book.site_status == {}
    assert pipeline.book.link_status == {}
    assert pipeline.correlation is None
    _, changed = pipeline.correlate(T0 + 1)
    assert {change.entity for change in changed} == entities()


async def test_a_pass_logs_at_the_time_its_clock_gives(store: Store) -> None:
    clock = ManualClock(T0 + 30)
    pipeline = started(store, clock).pipeline
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reconcile = pipeline.reconcile

    def once(correlation: Correlation, now: float) -> int:  # a pass's last step
        queued = reconcile(correlation, now)
        loop.call_soon_threadsafe(stop.set)
        return queued

    pipeline.reconcile = once  # type: ignore[method-assign]
    async with asyncio.timeout(10):
        await pipeline.run(stop)

    with store.db.reading() as db:
        logged = db.execute("SELECT entity, ts FROM status_log").fetchall()
        (alive_until,) = db.execute("SELECT alive_until FROM collector").fetchone()
    assert {entity for entity, _ in logged} == entities()
    assert {ts for _, ts in logged} == {T0 + 30}
    assert alive_until == T0 + 30


def test_one_silence_allowance_for_every_judge() -> None:
    assert silence_allowance(30.0) == 90.0  # three intervals
    assert silence_allowance(1.0) == SILENT_AFTER_AT_LEAST  # but never sooner
    book = StateBook(CONFIG.inventory, {agent.id: agent.site for agent in CONFIG.agents})
    site = next(site for site in CONFIG.inventory.sites if site.id == "tesko")
    allowance = silence_allowance(site.thresholds.interval.total_seconds())
    book.heard_from("tesko-01", T0)
    assert book.heard_lately(site, T0 + allowance)
    assert book.agent_alive(site, T0 + allowance)
    assert not book.heard_lately(site, T0 + allowance + 0.5)
    assert not book.agent_alive(site, T0 + allowance + 0.5)


# -- the status log's table module, on both backends -----------------------------------------


def log_rows(store: Store) -> list[tuple[object, ...]]:
    """Return the status log's rows; of one time, the live rows first (NULL sorts apart)."""
    with store.db.reading() as db:
        rows = db.execute(
            "SELECT entity, ts, status, gap, evidence FROM status_log "
            "ORDER BY ts, coalesce(gap, 0), entity"
        ).fetchall()
    return [tuple(row) for row in rows]


def test_changes_a_restart_and_a_gap_rebuilt(store: Store) -> None:
    log = store.status
    watched = ["link:b", "site:a"]
    assert log.mark_gap(watched, 100.0) is None  # a first start: nothing was missed
    assert log_rows(store) == []
    log.log([StatusChange("site:a", "up", "up; agent heard; b up")], 110.0)
    log.log([], 120.0)  # nothing changed: only alive until then

    assert log.mark_gap(watched, 200.0) == 120.0
    [gap] = log.gaps(0.0)
    assert (gap.start, gap.end, gap.rebuilt_at) == (120.0, 200.0, None)
    assert log.gaps(200.0) == []  # ends at 200: not after it
    rebuilt = [("site:a", 120.0, "up"), ("site:a", 150.0, "down"), ("site:a", 250.0, "up")]
    log.replace(gap, rebuilt, 300.0)
    assert log_rows(store) == [
        ("site:a", 110.0, "up", None, "up; agent heard; b up"),
        ("link:b", 120.0, "unknown", None, None),
        ("site:a", 120.0, "unknown", None, None),
        ("site:a", 120.0, "up", gap.id, None),
        ("site:a", 150.0, "down", gap.id, None),  # 250 is after the gap: the live log's
    ]
    assert log.gaps(0.0) == [Gap(gap.id, 120.0, 200.0, 300.0)]

    # died before its first pass: the next start finds the same gap, longer
    assert log.mark_gap(watched, 400.0) == 120.0
    assert log.gaps(0.0) == [Gap(gap.id, 120.0, 400.0, None)]
    assert [row for row in log_rows(store) if row[3] is not None] == []
    log.replace(gap, rebuilt, 500.0)  # the rebuild of the shorter gap it read before: kept,
    assert log.gaps(0.0) == [Gap(gap.id, 120.0, 400.0, None)]  # but not marked rebuilt


def test_a_gap_is_due_once_results_of_its_time_arrive_after_it(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = store.status
    log.mark_gap(["site:tesko"], 1_000.0)
    log.mark_gap(["site:tesko"], 2_000.0)  # down from 1,000 to 2,000
    assert log.due(0.0, warm_up=60.0) == []  # nothing of its time received
    store.results.ingest(
        "tesko-01", [(1, probe_result("tesko-mpls", 950.0, ok=True))], received=990.0
    )
    assert log.due(0.0, warm_up=60.0) == []  # received before the gap began: nothing new
    later = [
        (2, probe_result("tesko-mpls", 1_200.0, ok=True)),
        (3, probe_result("tesko-mpls", 1_500.0, ok=True)),
    ]
    store.results.ingest("tesko-01", later, received=2_100.0)
    [gap] = log.due(0.0, warm_up=60.0)
    assert (gap.start, gap.end) == (1_000.0, 2_000.0)
    assert log.due(2_000.0, warm_up=60.0) == []  # a gap ended by then is not looked at
    log.replace(gap, [], 2_150.0)
    assert log.due(0.0, warm_up=60.0) == []  # rebuilt since they arrived

    store.results.ingest(
        CENTRE, [(1, probe_result("tesko-mpls", 1_200.0, ok=False))], received=2_100.0
    )
    monkeypatch.setattr(status, "READ_CHUNK", 1)  # one row a query: each resumes after the last
    read = [(source, result.ts.timestamp()) for source, result in log.results(900.0, 2_000.0)]
    assert read == [
        ("tesko-01", 950.0),
        ("centre", 1_200.0),  # one timestamp: by source, then outbox and seq
        ("tesko-01", 1_200.0),
        ("tesko-01", 1_500.0),
    ]


async def test_a_failed_reconcile_does_not_log_the_changes_again(store: Store) -> None:
    """The status log is written before incidents are reconciled: when reconciling fails, the
    next pass must not log the same changes again at a later time (a change that never was)."""
    clock = ManualClock(T0 + 30)
    pipeline = started(store, clock).pipeline
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reconcile = pipeline.incidents.reconcile
    calls: list[float] = []

    def failing_once(*args: Any, **kwargs: Any) -> int:
        calls.append(clock.now())
        clock.advance(1.0)  # the next pass is a second later
        if len(calls) == 1:
            raise RuntimeError("the database went away for a moment")
        loop.call_soon_threadsafe(stop.set)
        return reconcile(*args, **kwargs)

    pipeline.incidents.reconcile = failing_once  # type: ignore[method-assign]
    async with asyncio.timeout(30):
        await pipeline.run(stop)
    assert len(calls) == 2
    with store.db.reading() as db:
        rows = db.execute(
            "SELECT entity, count(*) FROM status_log WHERE gap IS NULL GROUP BY entity"
        ).fetchall()
    assert {entity for entity, _ in rows} == entities()  # the first pass logged every one
    assert [entity for entity, count in rows if count > 1] == []
