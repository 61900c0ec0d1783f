"""The collector's background loops live in the app: served by aiohttp's own test server with
`loops=True`, the real edge sweep and correlation run against a real store; cleanup stops them
within a deadline; a loop that dies is logged and reported to `sitewatch collector` (which exits 1).

The inventory's edges are on loopback, so the sweep pings only this machine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from collector import api
from collector.api import LOOP_ENDED, build_app
from collector.service import Collector
from collector.store import CENTRE, Store
from collector.store.agents import last_heard
from sitewatch.config.files import load_collector_config

DEADLINE = 10.0  # seconds any awaited condition may take before the test fails
LOOP_NAMES = {
    "the election",
    "the other collectors' results",
    "the edge sweep",
    "roll-ups",
    "correlation",
    "notification delivery",
    "gap replay",
}
INVENTORY = """\
organisation: Test Municipality
timezone: Africa/Johannesburg
thresholds: {interval: 1s, timeout: 300ms, fail_after: 2, recover_after: 1}
sites:
  - id: alpha
    name: Alpha Offices
    users: 12
    links:
      - {id: alpha-mpls, kind: mpls, role: primary, to: hub, probe: [127.0.0.1],
         edge: 127.0.0.1}
"""


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    path = tmp_path / "collector.yaml"
    database = tmp_path / "collector.db"
    path.write_text(f"listen: 127.0.0.1:8080\ndatabase: {database}\ninventory: inventory.yaml\n")
    store = Store(database)
    made = Collector(load_collector_config(path), store)
    made.pipeline.warm_up()  # as `sitewatch collector` does before it serves
    yield made
    store.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait until `condition` holds, failing the test after DEADLINE seconds."""
    for _ in range(int(DEADLINE / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)  # polling a condition, with a deadline
    assert condition(), f"not within {DEADLINE} s: {what}"


def running_loops() -> set[str]:
    return {task.get_name() for task in asyncio.all_tasks() if not task.done()} & LOOP_NAMES


def swept(store: Store) -> bool:
    """Whether the centre's ping of alpha-mpls's edge is stored (any time: the wall clock's)."""
    rows = store.results.history("alpha-mpls", 0.0, 2**40, 10)
    return any(row.source == CENTRE for row in rows)


async def test_the_test_server_runs_the_real_loops_and_stops_them(collector: Collector) -> None:
    # nothing from the centre before the app runs
    assert CENTRE not in last_heard(collector.store.db)
    async with TestClient(TestServer(build_app(collector, loops=True))) as client:
        assert running_loops() == LOOP_NAMES
        # the correlation loop's pass, without the test calling correlate()
        await until(lambda: collector.pipeline.correlation is not None, "a correlation pass")
        # the edge sweep pinged 127.0.0.1 and stored the centre's result
        await until(lambda: swept(collector.store), "the centre's edge sweep")
        assert (await client.get("/healthz")).status == 200
    assert running_loops() == set()  # cleanup stopped every loop


async def test_without_loops_the_app_runs_none(collector: Collector) -> None:
    async with TestClient(TestServer(build_app(collector))) as client:
        assert (await client.get("/healthz")).status == 200
        assert running_loops() == set()
    assert collector.pipeline.correlation is None  # nobody correlated


async def test_a_loop_that_dies_is_logged_and_ends_the_app(
    collector: Collector, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(stop: asyncio.Event) -> None:
        raise RuntimeError("a bug in the replay")

    monkeypatch.setattr(collector, "replay_gaps", broken)
    app = build_app(collector, loops=True)
    async with TestClient(TestServer(app)):
        await until(app[LOOP_ENDED].is_set, "the dead loop reported")
        assert running_loops() == LOOP_NAMES - {"gap replay"}  # the others go on
    (record,) = [r for r in caplog.records if r.name == "collector.api"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "the background loop of gap replay ended"
    assert record.exc_info is not None
    assert "a bug in the replay" in str(record.exc_info[1])


async def test_a_loop_that_ignores_the_stop_is_cancelled_at_cleanup(
    collector: Collector, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancelled = asyncio.Event()

    async def deaf(stop: asyncio.Event) -> None:
        try:
            await asyncio.Event().wait()  # never looks at `stop`
        except asyncio.CancelledError:
            cancelled.set()
            raise

    monkeypatch.setattr(collector, "housekeeping", deaf)
    monkeypatch.setattr(api, "LOOPS_STOP_SECONDS", 0.2)
    app = build_app(collector, loops=True)
    async with TestClient(TestServer(app)):
        assert running_loops() == LOOP_NAMES
    assert cancelled.is_set()
    assert running_loops() == set()
    assert not app[LOOP_ENDED].is_set()  # stopped by the app, not dead
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["the background loop of roll-ups did not stop: cancelled"]
