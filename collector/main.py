"""`sitewatch collector --config FILE`: serve the app, with its background loops, until stopped.

The loops (the edge sweep, roll-ups, correlation, notification delivery, gap replay) live in
the app's cleanup context (`collector.api.background_loops`): this only warms the state up,
serves the app and waits for SIGTERM or SIGINT, or for a loop that ended by a bug (exit 1).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from collector.api import LOOP_ENDED, build_app
from collector.front import FrontRunner
from collector.service import Collector
from collector.store import Store, StoreError
from probes import close as close_probes
from sitewatch.config.files import load_collector_config

log = logging.getLogger("sitewatch.collector")


def run(config_path: Path) -> int:
    """Run the collector; return the exit status (1 for a database or address it cannot use)."""
    config = load_collector_config(config_path)  # a ConfigError is the command line's to print
    try:
        store = Store(config.database_spec)  # SQLite or PostgreSQL; migrated as it opens
    except StoreError as err:
        print(f"sitewatch collector: {err}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(_serve(Collector(config, store)))
    except OSError as err:
        print(f"sitewatch collector: cannot listen: {err}", file=sys.stderr)
        return 1
    finally:
        store.close()


SWITCH_INTERVAL = 0.001  # seconds a thread may hold the GIL while another waits for it
# Container objects allocated (less those freed) before the garbage collector's young pass,
# and young and middle passes before the next older one. Python's (700, 10, 10) suit a short
# script; a collector decodes ~10,000 objects per agent batch and keeps every batch in flight
# alive until it is stored: at 700, its start-up heap frozen, it ran ~1,060 young passes, ~95
# middle ones and 8 full ones (~19 ms each, the loop stopped for each) per 200,000 results,
# ~11 % of its CPU; at these, 7 young ones and no other (bench/ingest_bench.py). Garbage
# here is nearly all freed by reference counting; the collector only finds cycles, and
# finding them later costs memory, not correctness.
GC_THRESHOLDS = (50_000, 20, 20)


async def settle(collector: Collector) -> None:
    """Ready this process to serve for months: warm the state up, then tune the runtime."""
    await asyncio.to_thread(collector.pipeline.warm_up)
    tune_runtime()


def tune_runtime() -> None:
    """Set the GIL and the garbage collector for a server's heap, and freeze what is built.

    The benches call it too, so that what they measure is the process `sitewatch collector` runs.
    """
    # The event loop shares the GIL with the threads building large reads: with Python's
    # default of 5 ms it waits up to that long each time it wakes, many times per request.
    sys.setswitchinterval(SWITCH_INTERVAL)
    # What start-up made (modules, inventory, state) lives as long as the process: frozen, the
    # garbage collector's full passes no longer walk it, and a large read no longer stops the
    # event loop for a tenth of a second at a time (bench/abuse_bench.py).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _serve(collector: Collector) -> int:
    """Serve until a signal (0) or a background loop's end (1); the loops stop with the app."""
    config = collector.config
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await settle(collector)
    context = None
    if config.tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config.tls.cert, config.tls.key)
    app = build_app(collector, loops=True)
    runner = FrontRunner(app, access_log=None)
    await runner.setup()  # starts the loops
    try:
        site = web.TCPSite(runner, config.listen_host, config.listen_port, ssl_context=context)
        await site.start()
        scheme = "https" if context else "http"
        log.info("listening on %s://%s:%d", scheme, config.listen_host, config.listen_port)
        ended = app[LOOP_ENDED]
        await _first(stop.wait(), ended.wait())
        log.info("stopping")
    finally:
        await runner.cleanup()  # stops the loops, within LOOPS_STOP_SECONDS
        close_probes()
    return 1 if ended.is_set() else 0


async def _first(*waits: Coroutine[Any, Any, bool]) -> None:
    """Wait until the first of `waits` is done; cancel the others."""
    tasks = [asyncio.create_task(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
