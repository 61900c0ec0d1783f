"""/healthz's database check, through the store on both backends: a failing database is reported
on every scrape and logged once, and its recovery once; the check says why it failed."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager

import pytest

from collector.health import HealthCheck, redacted
from collector.store import Store
from collector.store.database import Connection


class Failing:
    """Make the store's reads raise `error` while `on` is set (a locked disk, a lost server)."""

    def __init__(self, store: Store, error: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on = False
        real = store.db.reading

        def reading() -> AbstractContextManager[Connection]:
            if self.on:
                raise error
            return real()

        monkeypatch.setattr(store.db, "reading", reading)


@pytest.fixture
def check(store: Store) -> Iterator[HealthCheck]:
    made = HealthCheck(store)
    yield made
    made.close()


async def test_a_failing_database_is_logged_once_and_its_recovery_once(
    store: Store,
    check: HealthCheck,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fault = Failing(store, sqlite3.OperationalError("database is locked"), monkeypatch)
    caplog.set_level(logging.DEBUG, logger="collector.health")
    assert await check.healthy() is True
    assert check.reason == ""
    fault.on = True
    assert [await check.healthy() for _ in range(3)] == [False, False, False]
    assert check.reason == "database is locked"
    fault.on = False
    assert [await check.healthy() for _ in range(2)] == [True, True]
    assert check.reason == ""
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages == [
        ("WARNING", "health check failing: database is locked"),
        ("INFO", "health check: the database answers again"),
    ]


async def test_the_check_reads_the_database_itself(store: Store, check: HealthCheck) -> None:
    """A read of a real table on the store's reader, not a constant: without it, it fails."""
    with store.db.writing() as db:
        db.execute("DROP TABLE collector")
    assert await check.healthy() is False
    assert "collector" in check.reason  # the driver's own words: no such table


def test_a_reason_never_carries_credentials() -> None:
    assert (
        redacted('connection to "postgresql://watch:s3cret@db.example:5432/sw" failed')
        == 'connection to "postgresql://db.example:5432/sw" failed'
    )
    assert redacted("host=db user=watch password=s3cret dbname=sw") == (
        "host=db user=watch password=*** dbname=sw"
    )
    assert redacted("password = 'two words' sslmode=require") == "password = *** sslmode=require"
    assert redacted("couldn't get a connection after 2.00 sec") == (
        "couldn't get a connection after 2.00 sec"
    )
