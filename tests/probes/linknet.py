"""A small two-link site in network namespaces, for the probes that tell links apart.

    site ──up0 (primary, 10.231.6.0/24)──┐
         ──up1 (backup,  10.231.7.0/24)──┴─ hub ──c0 (10.231.0.0/24)── core (10.231.0.254)

The site routes by default over the primary (metric 10), else the backup (metric 20): taking
up0 down re-routes it over the backup, as a router's failover does. The hub forwards on its
three veths only (per-interface forwarding, never a global switch), so an echo sent from the
site toward the core with TTL 1 dies at the hub end of the link in use, which answers "time
exceeded" from 10.231.6.1 or 10.231.7.1. The site also holds a router address, 10.231.5.1,
where a real net-snmp snmpd can answer IF-MIB for the site's interfaces.

Every namespace carries a unique prefix and is removed by `down()`, which the fixtures call
even when a test fails; a namespace dies with every interface and process route inside it.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from probes.result import ProbeResult
from probes.target import Target

PRIMARY = ("willowvale-mpls", "up0", "s0", "10.231.6.2", "10.231.6.1")  # link, site/hub if, ips
BACKUP = ("willowvale-fibre", "up1", "s1", "10.231.7.2", "10.231.7.1")
CORE = "10.231.0.254"
ROUTER = "10.231.5.1"
IF_TABLE_CACHE = "1.3.6.1.4.1.8072.1.5.3.1.2.1.3.6.1.2.1.2.2"  # nsCacheTimeout of ifTable

# Runs inside a namespace: each step in turn, in one process (so the interface probe's memory
# of earlier readings carries over), and prints the probes' results in their wire form. A step
# is a Target to probe, ("run", argv) to change something, ("together", [Target, ...]) to
# probe several at once, as the agent's tick does, or ("until", Target, key, value, seconds)
# to probe until the value's `key` reads `value` (the last result is kept).
RUNNER = textwrap.dedent(
    """
    import asyncio, base64, json, pickle, subprocess, sys, time
    import probes

    async def once(target, timeout):
        return await probes.PROBES[target.spec.kind](target, timeout=timeout)

    async def main(steps, timeout, gap):
        results = []
        try:
            for step in steps:
                if isinstance(step, tuple) and step[0] == "run":
                    subprocess.run(step[1], check=True)
                    continue
                if results and gap:
                    await asyncio.sleep(gap)  # time for a counter's rate to have a denominator
                if isinstance(step, tuple) and step[0] == "together":
                    results += await asyncio.gather(*(once(t, timeout) for t in step[1]))
                    continue
                if isinstance(step, tuple):
                    _, target, key, value, seconds = step
                    deadline = time.monotonic() + seconds
                    result = await once(target, timeout)
                    while result.value.get(key) != value and time.monotonic() < deadline:
                        await asyncio.sleep(0.1)  # polling a condition with a deadline
                        result = await once(target, timeout)
                else:
                    result = await once(step, timeout)
                results.append(result)
            return results
        finally:
            probes.close()

    steps = pickle.loads(base64.b64decode(sys.argv[1]))
    results = asyncio.run(main(steps, float(sys.argv[2]), float(sys.argv[3])))
    print(json.dumps([r.to_json() for r in results]))
    """
)
NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
Step = (
    Target
    | tuple[str, list[str]]
    | tuple[str, list[Target]]
    | tuple[str, Target, str, object, float]
)


class NetError(RuntimeError):
    """The test network could not be built or changed."""


def need_namespaces(*tools: str) -> None:
    """Skip unless this host can build namespaces (root, iproute2, `tools`); CI fails instead."""
    problem = "needs root" if os.geteuid() != 0 else ""
    for tool in ("ip", *tools):
        if not problem and shutil.which(tool) is None and not Path(tool).exists():
            problem = f"needs {tool}"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}, and CI must run this test")
        pytest.skip(problem)


def run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; raise NetError with its stderr when it fails and `check` is set."""
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=60)
    if check and done.returncode != 0:
        raise NetError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise NetError(f"{what} did not happen within {timeout:g}s")
        time.sleep(0.05)  # polling interval of a condition wait, not a synchronisation sleep


class LinkNet:
    """The namespaces site, hub and core; `down()` removes them and what runs in them."""

    def __init__(self, workdir: Path) -> None:
        self.prefix = f"swlp{secrets.token_hex(3)}"
        self.site, self.hub, self.core = (f"{self.prefix}-{n}" for n in ("site", "hub", "core"))
        self.workdir = workdir
        self.made: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def up(self) -> None:
        """Build the namespaces, veths, addresses, forwarding and routes."""
        for namespace in (self.site, self.hub, self.core):
            run(["ip", "netns", "add", namespace])
            self.made.append(namespace)
            self.ip(namespace, "link", "set", "lo", "up")
        for _, site_if, hub_if, site_ip, hub_ip in (PRIMARY, BACKUP):
            self._veth((self.site, site_if, site_ip), (self.hub, hub_if, hub_ip))
        self._veth((self.hub, "c0", "10.231.0.1"), (self.core, "h0", CORE))
        for interface in ("s0", "s1", "c0"):
            self.sysctl(self.hub, f"net.ipv4.conf.{interface}.forwarding=1")
        self.sysctl(self.hub, "net.ipv4.icmp_ratelimit=0")  # every echo gets its answer
        self.ip(self.core, "route", "add", "default", "via", "10.231.0.1")
        self.ip(self.site, "addr", "add", f"{ROUTER}/32", "dev", "lo")
        self.route_primary()
        self.ip(self.site, "route", "add", "default", "via", BACKUP[4], "metric", "20")

    def _veth(self, one: tuple[str, str, str], other: tuple[str, str, str]) -> None:
        """Join two namespaces by a veth; each end is (namespace, interface, address)."""
        self.ip(one[0], "link", "add", one[1], "type", "veth", "peer", "name", other[1],
                "netns", other[0])  # fmt: skip
        for namespace, interface, address in (one, other):
            self.ip(namespace, "addr", "add", f"{address}/24", "dev", interface)
            self.ip(namespace, "link", "set", interface, "up")

    def route_primary(self) -> None:
        self.ip(self.site, "route", "replace", "default", "via", PRIMARY[4], "metric", "10")

    def cut_primary(self) -> None:
        """Take the site's primary interface down: its routes go, traffic takes the backup."""
        self.ip(self.site, "link", "set", PRIMARY[1], "down")

    def restore_primary(self) -> None:
        self.ip(self.site, "link", "set", PRIMARY[1], "up")
        self.route_primary()

    @staticmethod
    def ip(namespace: str, *args: str) -> str:
        return run(["ip", "-n", namespace, *args]).stdout

    @staticmethod
    def sysctl(namespace: str, setting: str) -> None:
        run(["ip", "netns", "exec", namespace, "sysctl", "-qw", setting])

    def probe(
        self,
        steps: Sequence[Step],
        timeout: float = 1.0,
        gap: float = 0.0,
        *,
        unprivileged: bool = False,
    ) -> list[ProbeResult]:
        """Run the probes in the site's namespace, one after another in one process.

        `gap` seconds pass between two probes; `unprivileged` runs them as nobody, with the
        kernel's datagram ICMP. Each result passes the collector's gate on the way back.
        """
        packed = base64.b64encode(pickle.dumps(list(steps))).decode()
        runner = [sys.executable, "-c", RUNNER, packed, str(timeout), str(gap)]
        if unprivileged:
            self.sysctl(self.site, "net.ipv4.ping_group_range=0 2147483647")
            runner = [*NOBODY, *runner]
        done = run(["ip", "netns", "exec", self.site, *runner])
        return [ProbeResult.from_json(entry) for entry in json.loads(done.stdout)]

    def start_snmpd(self) -> None:
        """Start net-snmp's snmpd in the site, answering `public` on the router address.

        A read-write community, reachable only on the namespace's own loopback, lets the test
        lower the ifTable cache (`nsCacheTimeout`, 3 s by default) so a cut shows in a second.
        """
        config = self.workdir / "snmpd.conf"
        config.write_text(
            f"agentAddress udp:{ROUTER}:161,udp:127.0.0.1:161\n"
            "rocommunity public\n"
            f"rwcommunity {self.prefix} 127.0.0.1\n"
        )
        log = (self.workdir / "snmpd.log").open("wb")
        command = ["/usr/sbin/snmpd", "-f", "-Lo", "-C", "-c", str(config), "-I", "-smux"]
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.site, *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SNMP_PERSISTENT_DIR": str(self.workdir), "MIBS": ""},
        )
        log.close()
        self.processes.append(process)
        wait_for(self._snmpd_answers, 20, "snmpd answering in the site namespace")

    def _snmpd_answers(self) -> bool:
        done = self.snmp("snmpget", "public", ROUTER, "1.3.6.1.2.1.1.3.0", check=False)
        return done.returncode == 0 and bool(done.stdout.strip())

    def snmp(
        self, tool: str, community: str, address: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [tool, "-v2c", "-c", community, "-r0", "-t0.5", "-Oqv", address, *args]
        return run(["ip", "netns", "exec", self.site, *argv], check=check)

    def lower_if_cache(self, seconds: int = 1) -> None:
        """Make snmpd re-read the interfaces every `seconds` (through its loopback, read-write)."""
        self.snmp("snmpset", self.prefix, "127.0.0.1", IF_TABLE_CACHE, "i", str(seconds))
        shown = self.snmp("snmpget", self.prefix, "127.0.0.1", IF_TABLE_CACHE).stdout.strip()
        if shown != str(seconds):
            raise NetError(f"snmpd kept its ifTable cache at {shown}, not {seconds}")

    def down(self) -> None:
        """Stop what runs here and remove the namespaces; safe to call twice."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        self.processes.clear()
        for namespace in reversed(self.made):
            run(["ip", "netns", "del", namespace], check=False)
        self.made.clear()
