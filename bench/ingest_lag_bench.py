"""Event-loop lag while one agent posts a large batch: 1,000 printer results, ~2 MiB inflated
(5,000 would pass the 250,000-value cap and be refused before decoding).

    .venv/bin/python bench/ingest_lag_bench.py

A task sleeping 1 ms at a time on the collector's loop measures the worst lag during each
POST, with the batch parsed on the loop (as before the review of issue 11) and off it (as now:
over PARSE_OFF_LOOP bytes, decoded with a per-object hook so the C decoder lets the GIL go).
The collector's real application on loopback, a real SQLite file, the real switch interval.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import secrets
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from collector import api
from collector.main import tune_runtime
from collector.service import Collector
from collector.store import Store
from sitewatch.config.files import load_collector_config
from sitewatch.config.model import AgentCredential

ROOT = Path(__file__).resolve().parents[1]
RESULTS, ROUNDS = 1_000, 3
SUPPLY = {"index": "1.1", "description": "Black Toner Cartridge", "level": 30, "max": 100,
          "percent": 30.0, "state": "ok"}  # fmt: skip
VALUE = {"profile": "printer", "printer_status": "idle", "device_status": "running",
         "alerts": [{"severity": "warning", "description": "Toner low " * 10}] * 2,
         "supplies": [SUPPLY] * 12}  # fmt: skip


async def run(off_loop: bool) -> list[float]:
    """Return the worst loop lag of each round, in seconds."""
    api.PARSE_OFF_LOOP = 256 * 1024 if off_loop else 1 << 62
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    token = secrets.token_hex(8)
    agent = AgentCredential("tesko-01", "tesko", hashlib.sha256(token.encode()).hexdigest())
    config = replace(config, agents=(agent,))
    worst: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "collector.db")
        server = TestServer(api.build_app(Collector(config, store)), host="127.0.0.1")
        async with server, aiohttp.ClientSession() as session:
            ts = (datetime.now(UTC) - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
            for round_ in range(ROUNDS):
                results = [
                    {"seq": round_ * RESULTS + n + 1, "result": {
                        "target": "ts-prn-01", "kind": "snmp", "ts": ts, "ok": True,
                        "value": VALUE}}
                    for n in range(RESULTS)
                ]  # fmt: skip
                raw = json.dumps({"results": results}).encode()
                lag = [0.0]
                done = asyncio.Event()

                async def watch(lag: list[float] = lag, done: asyncio.Event = done) -> None:
                    while not done.is_set():
                        start = time.perf_counter()
                        await asyncio.sleep(0.001)
                        lag[0] = max(lag[0], time.perf_counter() - start - 0.001)

                watcher = asyncio.create_task(watch())
                async with session.post(
                    server.make_url("/api/v1/agent/results"),
                    data=gzip.compress(raw, 6),
                    headers={"Authorization": f"Bearer {token}", "Content-Encoding": "gzip"},
                ) as response:
                    assert response.status == 200, await response.text()
                done.set()
                await watcher
                worst.append(lag[0])
        store.close()
    print(f"inflated batch: {len(raw) / 2**20:.1f} MiB, {RESULTS} printer results")
    return worst


def main() -> None:
    tune_runtime()  # as the collector runs
    for off_loop in (False, True):
        worst = asyncio.run(run(off_loop))
        shown = ", ".join(f"{lag * 1000:.0f}" for lag in worst)
        print(f"parsed {'off' if off_loop else 'on'} the loop: worst loop lag per POST {shown} ms")


if __name__ == "__main__":
    main()
