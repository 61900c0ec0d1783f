"""The scheduler on loopback: intervals kept, a slow probe delays nobody, plans swap live."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import pairwise

import pytest

from agent.scheduler import Scheduler
from probes import ProbeResult
from probes import close as close_probes
from probes.plan import Plan, PlanTarget
from sitewatch.config.model import IcmpProbe, SnmpCredentials, SnmpProbe, TcpProbe


@pytest.fixture
def silent_udp_port() -> Iterator[int]:
    """A UDP socket that reads nothing and answers nothing: an SNMP device that hangs."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
async def closing() -> AsyncIterator[None]:
    yield
    close_probes()


def tcp(target_id: str, port: int, interval: float = 0.5) -> PlanTarget:
    return PlanTarget(target_id, "device", ("127.0.0.1",), TcpProbe(port), interval, 0.3)


class Recorder:
    """The scheduler's sink: when each target's results arrived, and a wake-up for waiters."""

    def __init__(self) -> None:
        self.seen: dict[str, list[float]] = defaultdict(list)
        self.arrived = asyncio.Event()

    async def __call__(self, result: ProbeResult) -> None:
        self.seen[result.target].append(time.monotonic())
        self.arrived.set()

    async def wait_for(self, condition: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.arrived.clear()
                await self.arrived.wait()


async def test_a_hung_snmp_device_does_not_delay_the_others(
    silent_udp_port: int, closing: None
) -> None:
    credentials = SnmpCredentials("2c", silent_udp_port, "public", None, None, None, None, None)
    slow = PlanTarget(
        "hung-printer", "device", ("127.0.0.1",), SnmpProbe("system", credentials, ()), 0.5, 2.0
    )
    ping = PlanTarget("lo-link", "link", ("127.0.0.1", "127.0.0.2"), IcmpProbe(count=1), 0.5, 0.3)
    recorder = Recorder()
    scheduler = Scheduler(Plan("alpha", "v1", (slow, tcp("fast", 1), ping)), recorder)
    task = asyncio.create_task(scheduler.run())
    try:
        await recorder.wait_for(lambda: len(recorder.seen["fast"]) >= 6, 10)
        assert len(recorder.seen["lo-link"]) >= 5  # the sweep kept its pace as well
        assert len(recorder.seen["hung-printer"]) <= 2  # 2 s each, and never two at once
        gaps = [b - a for a, b in pairwise(recorder.seen["fast"])]
        assert max(gaps) < 0.9, gaps
    finally:
        task.cancel()


async def test_a_new_plan_takes_over_without_a_restart(closing: None) -> None:
    recorder = Recorder()
    scheduler = Scheduler(Plan("alpha", "v1", (tcp("old", 1),)), recorder)
    task = asyncio.create_task(scheduler.run())
    try:
        await recorder.wait_for(lambda: len(recorder.seen["old"]) >= 2, 5)
        scheduler.replace(Plan("alpha", "v2", (tcp("new", 1, interval=0.25),)))
        await recorder.wait_for(lambda: len(recorder.seen["new"]) >= 4, 5)
        stopped = len(recorder.seen["old"])
        await recorder.wait_for(lambda: len(recorder.seen["new"]) >= 8, 5)
        assert len(recorder.seen["old"]) <= stopped + 1  # at most one tick already under way
    finally:
        task.cancel()
