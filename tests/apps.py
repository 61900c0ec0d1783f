"""The collector's real app served on loopback by aiohttp's test server, for API and page tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from collector.api import build_app
from collector.service import Collector
from collector.store import DatabaseSpec, Store
from sitewatch.config.model import CollectorConfig


@asynccontextmanager
async def served(
    config: CollectorConfig, where: DatabaseSpec | Path
) -> AsyncIterator[tuple[TestClient[Any, Any], Collector]]:
    """Open the store at `where`, serve a Collector of `config` on it; close both after."""
    store = Store(where)
    try:
        collector = Collector(config, store)
        async with TestClient(TestServer(build_app(collector))) as client:
            yield client, collector
    finally:
        store.close()


@asynccontextmanager
async def leading(collector: Collector) -> AsyncIterator[Collector]:
    """Run the collector's election until it leads (at once on SQLite), for tests that drive
    its loops by hand; stop it after. A collector alone on its database leads within a round.
    """
    stop = asyncio.Event()
    election = asyncio.create_task(collector.election.run(stop))
    try:
        async with asyncio.timeout(LEAD_DEADLINE):
            await collector.election.elected.wait()
        yield collector
    finally:
        stop.set()
        await election


LEAD_DEADLINE = 30.0  # seconds for a collector alone on its database to lead
