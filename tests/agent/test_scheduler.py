"""The scheduler on loopback: ticks kept, a slow probe delays nobody, plans swap live.

The probes are real (TCP to a closed port, ICMP on loopback, SNMP to a socket that never
answers); the scheduler's clock is fake, so every tick happens when the test moves time on and
each assertion is about which ticks probed what, never about how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import subprocess
import sys
import textwrap
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.scheduler import MAX_PHASE, Scheduler
from probes import ProbeResult
from probes import close as close_probes
from probes.plan import Plan, PlanTarget
from sitewatch.config.model import (
    IcmpProbe,
    InterfaceProbe,
    PathProbe,
    SnmpCredentials,
    SnmpProbe,
    TcpProbe,
)
from tests.probes.test_icmp import need_root

ROOT = Path(__file__).resolve().parents[2]


class FakeClock:
    """Monotonic time that moves only when the test says so: the scheduler's clock and sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        woken = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, woken))
        await woken

    def advance(self, seconds: float) -> None:
        """Move time on and wake every sleeper that is due."""
        self.now += seconds
        due = [(at, woken) for at, woken in self._sleepers if at <= self.now]
        self._sleepers = [sleeper for sleeper in self._sleepers if sleeper not in due]
        for _, woken in due:
            if not woken.done():
                woken.set_result(None)

    def next_wake(self) -> None:
        """Move time on to the earliest sleeper's wake-up."""
        self.advance(max(0.0, min(at for at, _ in self._sleepers) - self.now))


class Recorder:
    """The scheduler's sink: at what (fake) time each target's results came, and a wake-up."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.seen: dict[str, list[float]] = defaultdict(list)
        self.arrived = asyncio.Event()

    async def __call__(self, result: ProbeResult) -> None:
        self.seen[result.target].append(self.clock())
        self.arrived.set()

    async def wait_for(self, counts: dict[str, int], deadline: float = 10) -> None:
        """Wait until each named target has exactly that many results (a deadline, not a pace)."""
        async with asyncio.timeout(deadline):
            while any(len(self.seen[target]) != n for target, n in counts.items()):
                self.arrived.clear()
                await self.arrived.wait()


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


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel the scheduler and wait until it has stopped, as the agent does."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def no_phase() -> random.Random:
    """A random source whose phase is always zero: ticks fall on whole intervals."""
    rng = random.Random()
    rng.uniform = lambda a, b: a  # type: ignore[method-assign]
    return rng


def tcp(target_id: str, port: int, interval: float = 0.5) -> PlanTarget:
    return PlanTarget(target_id, "device", ("127.0.0.1",), TcpProbe(port), interval, 0.3)


def hung_snmp(port: int, timeout: float) -> PlanTarget:
    credentials = SnmpCredentials("2c", port, "public", None, None, None, None, None)
    spec = SnmpProbe("system", credentials, ())
    return PlanTarget("hung-printer", "device", ("127.0.0.1",), spec, 0.5, timeout)


async def test_a_hung_snmp_device_does_not_delay_the_others(
    silent_udp_port: int, clock: FakeClock, closing: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.scheduler")
    # Its timeout outlasts the test: the printer's one probe hangs through every tick.
    slow = hung_snmp(silent_udp_port, 60.0)
    ping = PlanTarget("lo-link", "link", ("127.0.0.1", "127.0.0.2"), IcmpProbe(count=1), 0.5, 0.3)
    recorder = Recorder(clock)
    plan = Plan("alpha", "v1", (slow, tcp("fast", 1), ping))
    scheduler = Scheduler(plan, recorder, clock=clock, sleep=clock.sleep, rng=no_phase())
    task = asyncio.create_task(scheduler.run())
    try:
        for tick in range(6):
            if tick:
                clock.advance(0.5)
            await recorder.wait_for({"fast": tick + 1, "lo-link": tick + 1})
        # Every tick probed the others at its own time, while the printer's probe hung.
        assert recorder.seen["fast"] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
        assert recorder.seen["lo-link"] == recorder.seen["fast"]
        assert recorder.seen["hung-printer"] == []
        skipped = [r for r in caplog.records if "hung-printer snmp is still running" in r.message]
        assert len(skipped) == 5  # never two probes of it at once
    finally:
        await stop(task)


async def test_the_first_tick_probes_at_once_and_later_ticks_keep_a_phase(
    clock: FakeClock, closing: None
) -> None:
    phase = random.Random(11).uniform(0, min(1.0 / 2, MAX_PHASE))
    assert phase > 0  # the seed gives a real shift, or the test would prove nothing
    recorder = Recorder(clock)
    plan = Plan("alpha", "v1", (tcp("fast", 1, interval=1.0),))
    scheduler = Scheduler(plan, recorder, clock=clock, sleep=clock.sleep, rng=random.Random(11))
    task = asyncio.create_task(scheduler.run())
    try:
        await recorder.wait_for({"fast": 1})
        for count in (2, 3):
            clock.next_wake()
            await recorder.wait_for({"fast": count})
        # A restarted agent probes the moment it has a plan: no phase before the first tick.
        assert recorder.seen["fast"] == [0.0, pytest.approx(1 + phase), pytest.approx(2 + phase)]
    finally:
        await stop(task)


async def test_a_new_plan_takes_over_without_a_restart(clock: FakeClock, closing: None) -> None:
    recorder = Recorder(clock)
    old = Plan("alpha", "v1", (tcp("old", 1),))
    scheduler = Scheduler(old, recorder, clock=clock, sleep=clock.sleep, rng=no_phase())
    task = asyncio.create_task(scheduler.run())
    try:
        await recorder.wait_for({"old": 1})
        clock.advance(0.5)
        await recorder.wait_for({"old": 2})
        scheduler.replace(Plan("alpha", "v2", (tcp("new", 1, interval=0.25),)))
        await recorder.wait_for({"new": 1})  # its first tick: now
        for count in range(2, 6):
            clock.advance(0.25)
            await recorder.wait_for({"new": count})
        assert recorder.seen["new"] == [0.5, 0.75, 1.0, 1.25, 1.5]
        assert recorder.seen["old"] == [0.0, 0.5]  # gone from the next tick on
    finally:
        await stop(task)


class Keeper(Recorder):
    """A recorder that keeps each result, for the tests that read what came back."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.results: dict[tuple[str, str], ProbeResult] = {}

    async def __call__(self, result: ProbeResult) -> None:
        self.results[result.target, result.kind] = result
        await super().__call__(result)


async def test_a_links_path_interface_and_bound_ping_run_and_carry_the_link_id(
    silent_udp_port: int, clock: FakeClock, closing: None
) -> None:
    need_root()  # the path probe and pings use raw ICMP sockets
    credentials = SnmpCredentials("2c", silent_udp_port, "public", None, None, None, None, None)
    hops = (("lo-link", ("127.0.0.9",)),)
    targets = (
        # the router's interface: the router's address is the target's address
        PlanTarget("lo-link", "link", ("127.0.0.1",), InterfaceProbe(credentials, "up0", None),
                   1.0, 0.3),
        # the path: toward is the target's address; loopback answers itself, whatever the TTL
        PlanTarget("lo-link", "link", ("127.0.0.1",), PathProbe("127.0.0.1", 1, hops), 1.0, 0.3),
        PlanTarget("lo-link", "link", ("127.0.0.1",),
                   IcmpProbe(count=1, source="127.0.0.1", via="lo"), 1.0, 0.3),
        PlanTarget("far-link", "link", ("127.0.0.1",),
                   IcmpProbe(count=1, source="192.0.2.44"), 1.0, 0.3),
    )  # fmt: skip
    keeper = Keeper(clock)
    scheduler = Scheduler(Plan("alpha", "v1", targets), keeper, clock=clock, sleep=clock.sleep)
    task = asyncio.create_task(scheduler.run())
    try:
        await keeper.wait_for({"lo-link": 3, "far-link": 1})
    finally:
        await stop(task)
    interface = keeper.results["lo-link", "interface"]
    assert (interface.ok, interface.error_kind, interface.value["oper"]) == (False, "timeout", None)
    found = keeper.results["lo-link", "path"]
    assert (found.ok, found.error_kind, found.value["hop"]) == (False, "unexpected", "127.0.0.1")
    assert keeper.results["lo-link", "icmp"].ok  # bound to loopback's address and interface
    foreign = keeper.results["far-link", "icmp"]
    assert (foreign.ok, foreign.detail) == (
        False,
        "127.0.0.1: source 192.0.2.44 is not an address of this host",
    )


IMPORT_PROBE = textwrap.dedent(
    """
    import asyncio, json, socket, sys, threading

    on_loop = {}

    def audit(event, args):
        if event == "import" and args[0] == "pysnmp":
            on_loop.setdefault(args[0], threading.current_thread() is threading.main_thread())

    sys.addaudithook(audit)

    from agent.scheduler import Scheduler
    from probes import close
    from probes.plan import Plan, PlanTarget
    from sitewatch.config.model import SnmpCredentials, SnmpProbe

    async def main():
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(("127.0.0.1", 0))
        credentials = SnmpCredentials(
            "2c", silent.getsockname()[1], "public", None, None, None, None, None
        )
        printer = PlanTarget(
            "printer", "device", ("127.0.0.1",), SnmpProbe("system", credentials, ()), 1.0, 0.2
        )
        done = asyncio.Event()

        async def sink(result):
            done.set()

        task = asyncio.create_task(Scheduler(Plan("alpha", "v1", (printer,)), sink).run())
        async with asyncio.timeout(60):
            await done.wait()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        close()
        silent.close()

    assert "probes.snmp" not in sys.modules
    asyncio.run(main())
    print(json.dumps(on_loop))
    """
)


def test_the_snmp_library_is_imported_off_the_event_loop() -> None:
    # A fresh interpreter: in this one another test may have imported pysnmp already.
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    on_loop = json.loads(done.stdout.strip().splitlines()[-1])
    # Imported on the loop, pysnmp stalled a freshly started agent's sweeps for seconds.
    assert on_loop == {"pysnmp": False}
