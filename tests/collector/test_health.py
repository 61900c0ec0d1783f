"""/healthz's database check, through the store on both backends: a failing database is reported
on every scrape and logged once, and its recovery once; the check says why it failed."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from collector.health import HealthCheck, redacted
from collector.store import DatabaseSpec, Store, StoreError
from collector.store.database import Connection
from sitewatch.config.files import load_collector_config
from tests import apps


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


# -- /healthz says why ------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 10.0  # seconds a held check may wait for the test to release it


Served = tuple[TestClient[Any, Any], Store]


OK = {"status": "ok", "database": "ok"}


def health(body: dict[str, Any]) -> dict[str, Any]:
    """Return what /healthz says of the database; its role fields are checked on their own."""
    assert set(body) - {"status", "database", "reason"} == {"role", "replica", "leader"}
    return {key: body[key] for key in ("status", "database", "reason") if key in body}


@pytest.fixture
async def served(database_spec: DatabaseSpec) -> AsyncIterator[Served]:
    """The collector's app on each backend, and its store."""
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    async with apps.served(config, database_spec) as (client, collector):
        yield client, collector.store


async def test_healthz_says_why_the_database_fails_without_its_credentials(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, store = served
    said = (
        "postgresql://watch:s3cret@db.example:5432/sitewatch: no database connection: "
        "couldn't get a connection after 2.00 sec\nDETAIL: password=s3cret"
    )
    fault = Failing(store, StoreError(said), monkeypatch)
    response = await client.get("/healthz")
    assert (response.status, health(await response.json())) == (200, OK)
    fault.on = True
    response = await client.get("/healthz")
    text = await response.text()
    assert response.status == 503
    assert health(json.loads(text)) == {
        "status": "failing",
        "database": "failing",
        "reason": "postgresql://db.example:5432/sitewatch: no database connection: "
        "couldn't get a connection after 2.00 sec",
    }
    assert "s3cret" not in text
    assert "//watch" not in text
    fault.on = False
    response = await client.get("/healthz")
    assert (response.status, health(await response.json())) == (200, OK)


async def test_healthz_says_when_the_database_does_not_answer_in_time(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, store = served
    release = threading.Event()
    real = store.db.reading

    def stuck() -> AbstractContextManager[Connection]:
        release.wait(DEADLINE)  # a server that accepted the connection and never answers
        return real()

    monkeypatch.setattr(HealthCheck, "SECONDS", 0.05)
    monkeypatch.setattr(store.db, "reading", stuck)
    try:
        response = await client.get("/healthz")
        assert (response.status, health(await response.json())) == (
            503,
            {
                "status": "failing",
                "database": "failing",
                "reason": "the database did not answer in 0.05 s",
            },
        )
    finally:
        release.set()
