"""The status log that availability is computed from: changes, and the collector's own gaps."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from collector.maintenance import Window
from collector.service import Collector
from collector.store import Store
from collector.store.status import StatusChange
from collector.topology import Correlation
from sitewatch.config.files import load_collector_config
from tests.apps import leading
from tests.results import probe_result

ROOT = Path(__file__).resolve().parents[2]


def log_rows(store: Store) -> list[tuple[str, float, str]]:
    with store.db.reading() as db:
        return list(db.execute("SELECT entity, ts, status FROM status_log ORDER BY rowid"))


def test_changes_are_logged_once_and_a_restart_logs_the_gap_as_unknown(store: Store) -> None:
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    first = Collector(config, store)
    first.pipeline.warm_up()
    correlation, changed = first.pipeline.correlate(1000.0)
    first.pipeline.record(correlation, changed, 1000.0)
    logged = log_rows(store)
    entities = {entity for entity, _, _ in logged}
    assert "site:tesko" in entities
    assert "link:customer-care-mpls" in entities
    assert ("site:dutywa-pound", 1000.0, "unmonitored") in logged
    again, changed = first.pipeline.correlate(1001.0)
    assert changed == []  # nothing moved: nothing more to log
    first.pipeline.record(again, changed, 1010.0)  # notes that it is alive at 1010
    assert log_rows(store) == logged

    restarted = Collector(config, store)
    restarted.pipeline.warm_up()
    gap = [row for row in log_rows(store) if row not in logged]
    assert {status for _, _, status in gap} == {"unknown"}
    assert {ts for _, ts, _ in gap} == {1010.0}
    assert {entity for entity, _, _ in gap} == entities


async def test_a_failed_write_neither_stops_the_loop_nor_loses_the_changes(store: Store) -> None:
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    collector = Collector(config, store)
    collector.pipeline.warm_up()
    stop = asyncio.Event()
    calls: list[list[StatusChange]] = []
    loop = asyncio.get_running_loop()

    def flaky(changed: Sequence[StatusChange], now: float) -> None:
        calls.append(list(changed))
        if len(calls) == 1:
            loop.call_soon_threadsafe(collector.pipeline.changed.set)  # go round again at once
            raise sqlite3.OperationalError("database is locked")
        loop.call_soon_threadsafe(stop.set)

    collector.pipeline.log_changes = flaky  # type: ignore[method-assign]
    async with asyncio.timeout(10):
        async with leading(collector):
            await collector.correlation_loop(stop)
    assert len(calls) == 2
    assert calls[0]  # the first pass found every status new...
    assert calls[1] == calls[0]  # ...and the next pass logs them again after the failure


def evidence_rows(store: Store) -> dict[str, tuple[str, str | None]]:
    """Return each entity's newest status in the log, with the evidence logged for it."""
    with store.db.reading() as db:
        rows = db.execute("SELECT entity, status, evidence FROM status_log ORDER BY rowid")
        return {entity: (status, evidence) for entity, status, evidence in rows}


async def test_a_change_is_logged_and_stored_with_the_evidence_that_caused_it(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Willowvale's primary is cut: the centre's pings of its edge fail while the agent's ping
    of its far end answers over the fibre. The log says why the link is down."""
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    collector = Collector(config, store)
    t0 = time.time() - 10.0  # the loop correlates at the time it runs
    collector.pipeline.warm_up(now=t0)
    book = collector.pipeline.book
    for second in range(3):
        for link in ("tesko-mpls", "willowvale-mpls", "willowvale-fibre"):
            book.observe("agent", probe_result(link, t0 + second, ok=True))
        book.observe("centre", probe_result("willowvale-fibre", t0 + second, ok=True))
        book.observe(
            "centre", probe_result("willowvale-mpls", t0 + second, ok=False, detail="no reply")
        )
    book.heard_from("tesko-01", t0 + 3, probed=t0 + 2)
    book.heard_from("willowvale-01", t0 + 3, probed=t0 + 2)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    reconcile = collector.pipeline.reconcile

    def once(correlation: Correlation, now: float) -> int:  # after the real write, stop
        queued = reconcile(correlation, now)
        loop.call_soon_threadsafe(stop.set)
        return queued

    collector.pipeline.reconcile = once  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="collector.pipeline"):
        async with asyncio.timeout(10), leading(collector):
            await collector.correlation_loop(stop)
    logged = evidence_rows(store)
    assert logged["site:tesko"] == ("up", "up; agent heard; tesko-mpls up")
    assert logged["link:tesko-mpls"] == ("up", "up; far-end-ping up: 2.5 ms")  # its only way out
    assert logged["site:willowvale"] == (
        "degraded",
        "degraded; agent heard; willowvale-mpls down, willowvale-fibre up",
    )
    status, evidence = logged["link:willowvale-mpls"]
    assert status == "down"
    assert evidence == (
        "down; centre-ping down: no reply; far-end-ping up (reachability, not counted): 2.5 ms; "
        "conflict: seen by centre: down; agent: reachable (via backup)"
    )
    assert f"link:willowvale-mpls: {evidence}" in caplog.text
    assert "site:willowvale: degraded; agent heard; " in caplog.text
    # a site nobody hears from says so, and the log keeps why it is unknown
    assert logged["site:elliotdale"] == (
        "unknown",
        "unknown; agent silent; elliotdale-mpls unknown, elliotdale-wireless unknown",
    )


def test_a_link_put_in_maintenance_is_logged_as_in_maintenance(store: Store) -> None:
    """The change's status and its evidence agree: the text does not call the link down.

    Its sources still say what they saw (the centre's pings fail while the fibre is worked
    on), but the status that changed is "maintenance", and the log line leads with it.
    """
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    collector = Collector(config, store)
    t0 = time.time() - 10.0
    collector.pipeline.warm_up(now=t0)
    for second in range(3):
        collector.pipeline.book.observe(
            "centre", probe_result("willowvale-fibre", t0 + second, ok=False)
        )
    window = Window(1, "link", "willowvale-fibre", t0, t0 + 3_600, None, "splice", "ann", t0)
    collector.pipeline.set_windows([window])
    _, changed = collector.pipeline.correlate(t0 + 5)
    (change,) = [c for c in changed if c.entity == "link:willowvale-fibre"]
    assert change.status == "maintenance"
    assert change.evidence is not None
    assert change.evidence.startswith("maintenance; centre-ping down")
