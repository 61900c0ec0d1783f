"""Whether the collector's database can be read: the answer `/healthz` gives, and why not.

A health check must not wait behind the work it watches: the default thread pool may be busy
with a month's report, so a check queued behind it would call a busy collector dead. It asks
in a thread of its own, through the store like every other reader (`StatusLog.alive_until`, a
read of a real table): on SQLite that thread's own read-only connection, never the writer; on
PostgreSQL one of the pool's connections.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from collector.store import Store

log = logging.getLogger(__name__)

# A URL's user and password (`scheme://user:secret@host`), and libpq's `password=...` field: a
# driver's message may quote the connection it failed on, and /healthz is read without login.
_USERINFO = re.compile(r"(?<=://)[^@/\s]*@")
_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def redacted(text: str) -> str:
    """Return a database error's text without credentials: only what failed, and where."""
    return _PASSWORD.sub(r"\1***", _USERINFO.sub("", text))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class HealthCheck:
    """Whether the database can be read; checks asked while one runs share its answer, and
    one that takes longer than SECONDS is a failure. `reason` says why the last one failed."""

    SECONDS = 2.0

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sitewatch-health")
        self._running: asyncio.Future[str] | None = None
        self.reason = ""  # why the last check failed; empty when it passed
        self._failing = False  # logged once when it starts failing, once when it recovers

    async def healthy(self) -> bool:
        """Return whether the database answered a small read in time."""
        if self._running is None or self._running.done():
            loop = asyncio.get_running_loop()
            self._running = loop.run_in_executor(self._pool, self._check)
        try:
            async with asyncio.timeout(self.SECONDS):
                return self._note(await asyncio.shield(self._running))
        except TimeoutError:
            return self._note(f"the database did not answer in {self.SECONDS:g} s")

    def _note(self, why: str) -> bool:
        """Keep why, and log a change of health once, not every scrape of a failing collector."""
        self.reason = why
        if why and not self._failing:
            log.warning("health check failing: %s", why)
        elif not why and self._failing:
            log.info("health check: the database answers again")
        self._failing = bool(why)
        return not why

    def _check(self) -> str:
        """Return why the database cannot be read, or "" when it can."""
        try:
            self.store.status.alive_until()
        # Whatever the driver raises (a lost server, a full pool, a file that is no database)
        # means unhealthy: the check answers /healthz, and must never turn a failure into a 500.
        except Exception as err:  # noqa: BLE001
            return redacted(_first_line(err))
        return ""

    def close(self) -> None:
        """Stop the check's thread, once no check runs."""
        self._pool.shutdown(wait=True)


HEALTH: web.AppKey[HealthCheck] = web.AppKey("health_check", HealthCheck)


def health_check(store: Store) -> Callable[[web.Application], AsyncIterator[None]]:
    """Return the cleanup context that keeps a HealthCheck of the store's database in the app."""

    async def keep(app: web.Application) -> AsyncIterator[None]:
        app[HEALTH] = HealthCheck(store)
        yield
        await asyncio.to_thread(app[HEALTH].close)

    return keep
