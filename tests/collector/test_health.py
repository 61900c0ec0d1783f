"""/healthz's database check on real files: a failing database is reported on every scrape and
logged once, and its recovery once."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from collector.health import HealthCheck


async def test_a_failing_database_is_logged_once_and_its_recovery_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "collector.db"
    path.write_bytes(b"this is not a database" * 100)
    check = HealthCheck(path)
    caplog.set_level(logging.DEBUG, logger="collector.health")
    try:
        assert [await check.healthy() for _ in range(3)] == [False, False, False]
        path.unlink()
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE t (x)")
        assert await check.healthy() is True
        assert await check.healthy() is True
    finally:
        check.close()
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0][0] == "WARNING"
    assert "cannot be read" in messages[0][1]
    assert messages[1] == ("INFO", "health check: the database answers again")
