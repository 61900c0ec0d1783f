"""`sitewatch agent --config FILE`: probe the site, keep every result, ship them to the centre.

Four tasks under one TaskGroup: the plan keeper (fetch with ETag, cache, hand new plans to the
scheduler), the scheduler (probes → a queue), the writer (queue → outbox, in batches, each
committed before the shipper can see it) and the shipper (outbox → collector). SIGTERM stops
the probing first, writes what is queued, then gives the shipper a few seconds to empty the
outbox; whatever is left waits on disk for the next start.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from agent.collectors import Collectors
from agent.outbox import Outbox, OutboxError
from agent.plan_cache import PlanUnavailable, fetch, load_cached, save_cached
from agent.scheduler import Scheduler
from agent.shipper import HEARTBEAT_EVERY, Shipper
from probes import ProbeResult, host
from probes import close as close_probes
from probes.plan import Plan
from probes.result import format_ts, now
from probes.target import HostProbe, Target
from sitewatch import __version__
from sitewatch.config.files import load_agent_config
from sitewatch.config.model import AgentConfig

log = logging.getLogger("sitewatch.agent")
PLAN_EVERY = 60.0
PLAN_TIMEOUT = 10.0
FLUSH_DEADLINE = 5.0
OUTBOX_NAME = "outbox.sqlite"


def run(config_path: Path) -> int:
    """Run the agent; return the exit status (1 for a token or state directory it cannot use)."""
    config = load_agent_config(config_path)  # a ConfigError is the command line's to print
    try:
        token = config.token_file.read_text().strip()
    except OSError as err:
        print(f"{config.token_file}: cannot read the agent token: {err.strerror}", file=sys.stderr)
        return 1
    if not token:
        print(f"{config.token_file}: the agent token file is empty", file=sys.stderr)
        return 1
    try:
        make_state_dir(config.state_dir)
        outbox = Outbox(config.state_dir / OUTBOX_NAME)
    except (OSError, OutboxError) as err:
        print(f"sitewatch agent: {err}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(Agent(config, token, outbox).run())
    finally:
        outbox.close()


@dataclass
class Agent:
    config: AgentConfig
    token: str
    outbox: Outbox
    host: dict[str, Any] | None = None  # the latest host-health result

    async def run(self) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        context: ssl.SSLContext | bool = True
        if any(url.startswith("https://") for url in self.config.collectors):
            context = ssl.create_default_context(
                cafile=str(self.config.ca_file) if self.config.ca_file else None
            )
        async with collector_session(self.token, context) as session:
            base = Collectors(self.config.collectors)
            plan = await self._first_plan(session, base, stop)
            if plan is None:
                return 0  # stopped before any plan was known
            queue: asyncio.Queue[ProbeResult] = asyncio.Queue()
            shipper = Shipper(session, base, self.config.id, self.outbox, self._heartbeat)
            scheduler = Scheduler(plan, queue.put)
            try:
                async with asyncio.TaskGroup() as group:
                    probing = group.create_task(scheduler.run())
                    planning = group.create_task(self._keep_plan(session, base, scheduler))
                    watching = group.create_task(self._watch_host())
                    writing = group.create_task(_write(queue, self.outbox, shipper))
                    shipping = group.create_task(shipper.run())
                    await stop.wait()
                    log.info("stopping: no more probes; flushing the outbox")
                    for task in (probing, planning, watching):
                        task.cancel()
                    await queue.join()
                    writing.cancel()
                    shipping.cancel()
                await _flush(shipper, FLUSH_DEADLINE)
            finally:
                close_probes()
        waiting = await asyncio.to_thread(self.outbox.depth)
        log.info("stopped; %d results wait in the outbox", waiting)
        return 0

    async def _first_plan(
        self, session: aiohttp.ClientSession, base: Collectors, stop: asyncio.Event
    ) -> Plan | None:
        """Start from the cache if there is one, else wait for the collector to give a plan."""
        cached = await asyncio.to_thread(load_cached, self.config.state_dir)
        if cached is not None:
            log.info("starting from the cached plan %s (%d targets)", cached.version,
                     len(cached.targets))  # fmt: skip
            return cached
        delay, said = 1.0, ""
        while not stop.is_set():
            url = base.current
            try:
                plan = await fetch(session, url, None, PLAN_TIMEOUT)
            except PlanUnavailable as err:
                base.answered(url, err.status, str(err))
                if str(err) != said:  # the state change, not every retry
                    log.warning("no plan yet: %s; retrying", err)
                    said = str(err)
                if base.untried:
                    continue  # the next collector, at once
            else:
                base.answered(url, 200)
                if plan is not None:
                    await asyncio.to_thread(save_cached, self.config.state_dir, plan)
                    log.info("plan %s: %d targets", plan.version, len(plan.targets))
                    return plan
            try:
                async with asyncio.timeout(delay):
                    await stop.wait()
            except TimeoutError:
                delay = min(delay * 2, PLAN_EVERY)
        return None

    async def _keep_plan(
        self, session: aiohttp.ClientSession, base: Collectors, scheduler: Scheduler
    ) -> None:
        available = True
        while True:
            url = base.current
            try:
                plan = await fetch(session, url, scheduler.plan, PLAN_TIMEOUT)
            except PlanUnavailable as err:
                base.answered(url, err.status, str(err))
                if available:
                    log.warning("keeping plan %s: %s", scheduler.plan.version, err)
                available = False
                if base.untried:
                    continue  # the next collector, at once
            else:
                base.answered(url, 200)
                available = True
                if plan is not None:
                    await asyncio.to_thread(save_cached, self.config.state_dir, plan)
                    scheduler.replace(plan)
                    log.info("plan updated to %s: %d targets", plan.version, len(plan.targets))
            await asyncio.sleep(PLAN_EVERY)

    async def _watch_host(self) -> None:
        while True:
            self.host = await host_health(self.config.state_dir)
            await asyncio.sleep(HEARTBEAT_EVERY)

    async def _heartbeat(self) -> dict[str, Any]:
        """What the collector learns of this agent besides its results."""
        depth, dropped = await asyncio.to_thread(
            lambda: (self.outbox.depth(), self.outbox.dropped())
        )
        return {
            "version": __version__,
            "clock": format_ts(now()),
            "outbox_depth": depth,
            "dropped": dropped,
            "host": self.host,
        }


# The collector closes a connection idle for 15 s (collector.front.FrontLimits.keepalive). An
# agent that kept it as long would now and then send a batch just as the collector closes it.
COLLECTOR_KEEPALIVE = 15.0
KEEPALIVE = COLLECTOR_KEEPALIVE - 5.0


def collector_session(token: str, context: ssl.SSLContext | bool = True) -> aiohttp.ClientSession:
    """Return the agent's HTTP client for the collector: its token, pooled connections that are
    dropped before the collector would drop them, and a POST retried once on a closed one."""
    connector = aiohttp.TCPConnector(ssl=context, limit=4, keepalive_timeout=KEEPALIVE)
    headers = {"Authorization": f"Bearer {token}", "User-Agent": f"sitewatch-agent/{__version__}"}
    return aiohttp.ClientSession(
        connector=connector, headers=headers, middlewares=(retry_closed_connection,)
    )


async def retry_closed_connection(
    request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
) -> aiohttp.ClientResponse:
    """Send a POST again, at once and once, when the connection it went out on was closed.

    A pooled connection can be closed by the collector (its keep-alive ran out, it restarted)
    while the agent is writing a batch to it: that says nothing about whether the collector can
    be reached, so it must not count as a failed send and a backoff. aiohttp retries only the
    idempotent methods itself; ours are safe to repeat too, because ingest is keyed on (agent,
    outbox, seq). A collector that cannot be reached at all fails to connect, which is not
    retried here.
    """
    try:
        return await handler(request)
    except aiohttp.ClientConnectorError:
        raise
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as err:
        if request.method != "POST":
            raise  # aiohttp has retried the idempotent ones already
        log.debug("the collector closed the connection under a POST (%s): sending again", err)
        return await handler(request)


async def _write(queue: asyncio.Queue[ProbeResult], outbox: Outbox, shipper: Shipper) -> None:
    """Move results from the queue to the outbox in batches, then wake the shipper."""
    while True:
        batch = [await queue.get()]
        while not queue.empty() and len(batch) < 1000:
            batch.append(queue.get_nowait())
        try:
            await asyncio.to_thread(outbox.put, [result.to_json() for result in batch])
        except (OutboxError, ValueError, TypeError):
            log.exception("cannot write %d results to the outbox", len(batch))
        finally:
            for _ in batch:
                queue.task_done()
        shipper.wake()


async def _flush(shipper: Shipper, deadline: float) -> None:
    """Ship what the outbox holds until it is empty, a send fails, or the deadline passes."""
    try:
        async with asyncio.timeout(deadline):
            while await asyncio.to_thread(shipper.outbox.depth) > 0:
                if not await shipper.ship_once():
                    return
    except TimeoutError:
        pass


STATE_DIR_MODE = 0o700  # the outbox and the plan (SNMP credentials) are nobody else's


def make_state_dir(path: Path) -> None:
    """Create the state directory private to the agent, whatever the umask; keep an existing one's
    mode, which its owner may have set on purpose."""
    if not path.is_dir():
        path.mkdir(STATE_DIR_MODE, parents=True, exist_ok=True)
        path.chmod(STATE_DIR_MODE)  # the umask may have taken bits off, never added them


async def host_health(state_dir: Path) -> dict[str, Any]:
    """The host probe's result, as the heartbeat carries it."""
    result = await host.probe(Target("localhost", HostProbe(state_dir)), timeout=5)
    return dict(result.to_json())
