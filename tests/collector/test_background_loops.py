"""Background loops of the collector: a failed round is logged once, its recovery once, and the
loop goes on, against a real store whose calls fail for a while (a locked or failing disk)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path

import pytest

from collector.loops import Rounds
from collector.notify import Deliverer
from collector.service import Collector
from collector.store import Store
from sitewatch.config.files import load_collector_config
from tests.apps import leading
from tests.collector.test_notify import Receiver, add_incident, enqueue, webhook

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 10.0  # seconds any awaited condition may take before the test fails


class Fault:
    """Make one store method raise SQLite's own error for its next `count` calls."""

    def __init__(self, store: object, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.remaining = 0
        self.raised = 0
        real: Callable[[], AbstractContextManager[sqlite3.Connection]] = getattr(store, method)

        def failing() -> AbstractContextManager[sqlite3.Connection]:
            if self.remaining > 0:
                self.remaining -= 1
                self.raised += 1
                raise sqlite3.OperationalError("database is locked")
            return real()

        monkeypatch.setattr(store, method, failing)


class LogWatch(logging.Handler):
    """Wakes a waiting test whenever a record is logged (from any thread)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.loop = asyncio.get_running_loop()
        self.logged = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.loop.call_soon_threadsafe(self.logged.set)

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(DEADLINE):
            while not condition():
                self.logged.clear()
                await self.logged.wait()


@pytest.fixture
async def watch() -> AsyncIterator[LogWatch]:
    handler = LogWatch()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    made = Receiver()
    try:
        yield made
    finally:
        await made.close()


def records(caplog: pytest.LogCaptureFixture, logger: str, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger and r.levelno == level]


def test_a_failure_is_logged_once_and_its_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tests.rounds")
    rounds = Rounds("a test round", logging.getLogger("tests.rounds"))
    for fails in (False, True, True, True, False, False, True, False):
        with rounds.one():
            if fails:
                raise sqlite3.OperationalError("disk I/O error")
    errors = records(caplog, "tests.rounds", logging.ERROR)
    assert [r.getMessage() for r in errors] == [
        "a test round failed; trying again on every round"
    ] * 2
    assert all(r.exc_info is not None for r in errors)  # each outage's traceback, once
    repeats = records(caplog, "tests.rounds", logging.DEBUG)
    assert [r.getMessage() for r in repeats] == [
        "a test round failed again (2 in a row): OperationalError('disk I/O error')",
        "a test round failed again (3 in a row): OperationalError('disk I/O error')",
    ]
    recoveries = records(caplog, "tests.rounds", logging.INFO)
    assert [r.getMessage() for r in recoveries] == [
        "a test round recovered after 3 failed rounds",
        "a test round recovered after 1 failed rounds",
    ]


def test_cancelling_a_round_is_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    rounds = Rounds("a test round", logging.getLogger("tests.rounds"))
    with pytest.raises(asyncio.CancelledError), rounds.one():
        raise asyncio.CancelledError
    assert not rounds.failing
    assert not caplog.records


async def test_delivery_survives_a_failed_round_and_delivers_after(
    store: Store,
    receiver: Receiver,
    watch: LogWatch,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG, logger="collector.notify")
    await receiver.up()
    hook = webhook(receiver.url())
    incident = add_incident(store)
    await asyncio.to_thread(enqueue, store, [hook], incident, "opened", now=time.time())
    fault = Fault(store.db, "reading", monkeypatch)  # the outbox is read through the database
    fault.remaining = 3
    stop, wake = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(Deliverer(store, [hook]).run(stop, wake))
    try:
        for failed in (1, 2, 3):
            await watch.wait_for(partial(failures_logged, caplog, "collector.notify", failed))
            assert not task.done()  # the loop goes on
            wake.set()  # the next round now, not after FAILED_ROUND_RETRY
        await receiver.wait_for(1)  # the fault cleared: the row goes out
        await watch.wait_for(partial(recovered, caplog, "collector.notify"))
    finally:
        stop.set()
        async with asyncio.timeout(DEADLINE):
            await task
    assert [body["event"] for _, body in receiver.received] == ["opened"]
    errors = records(caplog, "collector.notify", logging.ERROR)
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    assert "database is locked" in caplog.text
    assert len(records(caplog, "collector.notify", logging.DEBUG)) == 2
    (recovery,) = recoveries(caplog, "collector.notify")
    assert recovery.getMessage() == (
        "a notification delivery round recovered after 3 failed rounds"
    )


def failures_logged(caplog: pytest.LogCaptureFixture, logger: str, count: int) -> bool:
    """Whether a loop has logged `count` failed rounds (one error, then debug)."""
    logged = [
        r
        for r in caplog.records
        if r.name == logger and r.levelno in (logging.ERROR, logging.DEBUG)
    ]
    return len(logged) >= count


async def test_a_correlation_pass_failing_on_the_store_is_logged_once(
    store: Store,
    watch: LogWatch,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG, logger="collector.pipeline")
    collector = Collector(load_collector_config(ROOT / "config" / "collector.yaml"), store)
    collector.pipeline.mark_gap(1_000.0)  # the collector's row: each working pass notes it is alive
    async with leading(collector):  # before the fault: taking the lead writes too
        fault = Fault(store.db, "writing", monkeypatch)  # the status log's writes, every other
        fault.remaining = 3
        stop = asyncio.Event()
        task = asyncio.create_task(collector.correlation_loop(stop))
        try:
            for failed in (1, 2, 3):
                await watch.wait_for(partial(failures_logged, caplog, "collector.pipeline", failed))
                assert not task.done()  # the loop goes on
                # the next pass now (it also comes by itself each second)
                collector.pipeline.changed.set()
            await watch.wait_for(partial(recovered, caplog, "collector.pipeline"))
        finally:
            stop.set()
            async with asyncio.timeout(DEADLINE):
                await task
    errors = records(caplog, "collector.pipeline", logging.ERROR)
    assert [r.getMessage() for r in errors] == [
        "a correlation pass failed; trying again on every round"
    ]
    assert len(records(caplog, "collector.pipeline", logging.DEBUG)) == 2
    assert [r.getMessage() for r in recoveries(caplog, "collector.pipeline")] == [
        "a correlation pass recovered after 3 failed rounds"
    ]
    assert fault.raised == 3
    with store.db.reading() as db:
        (alive_until,) = db.execute("SELECT alive_until FROM collector").fetchone()
    assert alive_until > 1_000.0  # the pass that worked did its work


def recovered(caplog: pytest.LogCaptureFixture, logger: str) -> bool:
    return bool(recoveries(caplog, logger))


def recoveries(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [
        r for r in records(caplog, logger, logging.INFO) if " recovered after " in r.getMessage()
    ]
