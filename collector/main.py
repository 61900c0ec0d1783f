"""`sitewatch collector --config FILE`: serve the API and run the centre's loops until stopped."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
import sys
from pathlib import Path

from aiohttp import web

from collector.api import build_app
from collector.front import FrontRunner
from collector.service import Collector
from collector.store import Store, StoreError
from probes import close as close_probes
from sitewatch.config.files import load_collector_config

log = logging.getLogger("sitewatch.collector")


def run(config_path: Path) -> int:
    """Run the collector; return the exit status (1 for a database or address it cannot use)."""
    config = load_collector_config(config_path)  # a ConfigError is the command line's to print
    if config.database.startswith(("postgresql://", "postgres://")):
        print(
            f"{config_path}: database: PostgreSQL is not supported by this version yet; "
            "give a SQLite file path",
            file=sys.stderr,
        )
        return 1
    database = Path(config.database)
    if not database.is_absolute():
        database = config.source.parent / database
    try:
        store = Store(database)
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


async def _serve(collector: Collector) -> int:
    config = collector.config
    # The event loop shares the GIL with the threads building large reads: with Python's
    # default of 5 ms it waits up to that long each time it wakes, many times per request.
    sys.setswitchinterval(SWITCH_INTERVAL)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await asyncio.to_thread(collector.warm_up)
    # What start-up made (modules, inventory, state) lives as long as the process: frozen, the
    # garbage collector's full passes no longer walk it, and a large read no longer stops the
    # event loop for a tenth of a second at a time (bench/abuse_bench.py).
    gc.freeze()
    context = None
    if config.tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config.tls.cert, config.tls.key)
    runner = FrontRunner(build_app(collector), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.listen_host, config.listen_port, ssl_context=context)
        await site.start()
        scheme = "https" if context else "http"
        log.info("listening on %s://%s:%d", scheme, config.listen_host, config.listen_port)
        async with asyncio.TaskGroup() as group:
            group.create_task(collector.central_probes(stop))
            group.create_task(collector.housekeeping(stop))
            group.create_task(collector.correlation_loop(stop))
            group.create_task(collector.deliver_notifications(stop))
            group.create_task(collector.replay_gaps(stop))
            await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
        close_probes()
    return 0
