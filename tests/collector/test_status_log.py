"""The status log that availability is computed from: changes, and the collector's own gaps."""

from __future__ import annotations

from pathlib import Path

from collector.service import Collector
from collector.store import Store
from sitewatch.config.files import load_collector_config

ROOT = Path(__file__).resolve().parents[2]


def log_rows(store: Store) -> list[tuple[str, float, str]]:
    with store.reading() as db:
        return list(db.execute("SELECT entity, ts, status FROM status_log ORDER BY rowid"))


def test_changes_are_logged_once_and_a_restart_logs_the_gap_as_unknown(store: Store) -> None:
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    first = Collector(config, store)
    first.warm_up()
    correlation, changed = first.correlate(1000.0)
    first._record(correlation, changed, 1000.0)
    logged = log_rows(store)
    entities = {entity for entity, _, _ in logged}
    assert "site:tesko" in entities
    assert "link:customer-care-mpls" in entities
    assert ("site:dutywa-pound", 1000.0, "unmonitored") in logged
    again, changed = first.correlate(1001.0)
    assert changed == []  # nothing moved: nothing more to log
    first._record(again, changed, 1010.0)  # notes that it is alive at 1010
    assert log_rows(store) == logged

    restarted = Collector(config, store)
    restarted.warm_up()
    gap = [row for row in log_rows(store) if row not in logged]
    assert {status for _, _, status in gap} == {"unknown"}
    assert {ts for _, ts, _ in gap} == {1010.0}
    assert {entity for entity, _, _ in gap} == entities
