"""Whether the collector's database can be read: the answer `/healthz` gives.

A health check must not wait behind the work it watches: the store's one connection is held for
a whole history read, and the default thread pool may be busy, so a check queued behind them would
call a busy collector dead. It asks on a read-only connection of its own, in a thread of its own
(a SQLite file); on PostgreSQL it asks on one of the store's read connections, never the writer.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from collector.store import Store

log = logging.getLogger(__name__)


class HealthCheck:
    """Whether the database can be read; checks asked while one runs share its answer, and
    one that takes longer than SECONDS is a failure."""

    SECONDS = 2.0

    def __init__(self, path: Path | None, store: Store | None = None) -> None:
        self.path, self.store = path, store  # a SQLite file, or else the store's readers
        self._db: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sitewatch-health")
        self._running: asyncio.Future[bool] | None = None
        self._why = ""
        self._failing = False  # logged once when it starts failing, once when it recovers

    async def healthy(self) -> bool:
        """Return whether the database answered a small read in time."""
        if self._running is None or self._running.done():
            loop = asyncio.get_running_loop()
            self._running = loop.run_in_executor(self._pool, self._check)
        try:
            async with asyncio.timeout(self.SECONDS):
                return self._note(await asyncio.shield(self._running), "")
        except TimeoutError:
            return self._note(False, f"the database did not answer in {self.SECONDS:.0f} s")

    def _note(self, healthy: bool, why: str) -> bool:
        """Log a change of health once, not every scrape of a failing collector."""
        if not healthy and not self._failing:
            log.warning("health check failing: %s", why or self._why)
        elif healthy and self._failing:
            log.info("health check: the database answers again")
        self._failing = not healthy
        return healthy

    def _check(self) -> bool:
        if self.path is None:
            return self._check_store()
        try:
            if self._db is None:
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as err:
            self._why = f"the database cannot be read: {err}"
            self._close()
            return False
        return True

    def _check_store(self) -> bool:
        if self.store is None:
            self._why = "no database to check"
            return False
        try:
            with self.store.reading() as db:
                db.execute("SELECT 1").fetchone()
        # Whatever the driver raises (a lost server, a full pool) means unhealthy: the check
        # answers /healthz, and must never turn a database's failure into a 500.
        except Exception as err:  # noqa: BLE001
            self._why = f"the database cannot be read: {err}"
            return False
        return True

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def close(self) -> None:
        """Close the check's connection, once no check runs."""
        self._pool.submit(self._close)
        self._pool.shutdown(wait=True)


HEALTH: web.AppKey[HealthCheck] = web.AppKey("health_check", HealthCheck)


def health_check(store: Store) -> Callable[[web.Application], AsyncIterator[None]]:
    """Return the cleanup context that keeps a HealthCheck of the store's database in the app."""

    async def keep(app: web.Application) -> AsyncIterator[None]:
        app[HEALTH] = HealthCheck(store.path, store)
        yield
        await asyncio.to_thread(app[HEALTH].close)

    return keep
