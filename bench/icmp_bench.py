"""ICMP sweep of 1000 live and 1000 dead addresses: SiteWatch's engine beside fping.

Run as root: `make bench` or `.venv/bin/python -m bench.icmp_bench`. The benchmark builds one
network namespace of its own: 10.97.0.0/22 answers on every address (a `local` route), and
10.97.4.0/22 is routed into the namespace and blackholed there, so its requests vanish without
an error, as with a dead host. The root namespace gets a blackhole for exactly 10.97.0.0/21 and
nothing else; all of it is removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from probes import icmp
from probes.target import Target
from sitewatch.config.model import IcmpProbe

BENCH_RANGE = ipaddress.IPv4Network("10.97.0.0/21")
LIVE = ipaddress.IPv4Network("10.97.0.0/22")
DEAD = ipaddress.IPv4Network("10.97.4.0/22")
HUB_SIDE, SITE_SIDE = "10.97.7.253", "10.97.7.254"
TIMEOUT = 1.0


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def check_range_is_free() -> None:
    """Refuse to run if the benchmark's range holds the resolver or one of our addresses."""
    taken = []
    with open("/etc/resolv.conf") as resolv:  # noqa: PTH123
        for line in resolv:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                taken.append(parts[1].split("%")[0])
    shown = subprocess.run(["ip", "-o", "addr"], check=True, capture_output=True, text=True)
    taken += [line.split()[3].split("/")[0] for line in shown.stdout.splitlines()]
    for address in taken:
        try:
            if ipaddress.ip_address(address) in BENCH_RANGE:
                sys.exit(f"{address} is in {BENCH_RANGE}: pick another benchmark range")
        except ValueError:
            continue


@contextmanager
def bench_namespace() -> Iterator[None]:
    """Build the namespace and routes, and tear them down whatever happens."""
    name = f"swbench{os.getpid() % 100000}"
    veth = f"swb{os.getpid() % 100000}"
    try:
        ip("netns", "add", name)
        ip("link", "add", veth, "type", "veth", "peer", "name", "up0", "netns", name)
        ip("addr", "add", f"{HUB_SIDE}/30", "dev", veth)
        ip("link", "set", veth, "up")
        ip("route", "add", "blackhole", str(BENCH_RANGE))
        ip("route", "add", str(LIVE), "via", SITE_SIDE)
        ip("route", "add", str(DEAD), "via", SITE_SIDE)
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "addr", "add", f"{SITE_SIDE}/30", "dev", "up0")
        ip("-n", name, "link", "set", "up0", "up")
        ip("-n", name, "route", "add", "local", str(LIVE), "dev", "lo")
        ip("-n", name, "route", "add", "blackhole", str(DEAD))
        subprocess.run(
            ["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True
        )
        yield
    finally:
        subprocess.run(["ip", "link", "del", veth], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        for prefix in (LIVE, DEAD, BENCH_RANGE):
            subprocess.run(["ip", "route", "del", str(prefix)], capture_output=True, check=False)


def addresses(network: ipaddress.IPv4Network, count: int) -> list[str]:
    return [str(host) for _, host in zip(range(count), network.hosts(), strict=False)]


def run_fping(hosts: list[str]) -> tuple[float, float, int]:
    """Return wall seconds, CPU seconds and hosts answering for one fping sweep."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    begin = time.perf_counter()
    done = subprocess.run(
        ["fping", "-c1", f"-t{int(TIMEOUT * 1000)}", "-i0", "-q", *hosts],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - begin
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    answered = sum(1 for line in done.stderr.splitlines() if "1/1/0%" in line)
    return wall, cpu, answered


def run_ours(hosts: list[str]) -> tuple[float, float, int]:
    """Return wall seconds, CPU seconds and hosts answering for one SiteWatch sweep."""
    targets = [Target(host, IcmpProbe(count=1)) for host in hosts]

    async def sweep() -> int:
        results = await icmp.sweep(targets, timeout=TIMEOUT)
        return sum(result.ok for result in results)

    runner = asyncio.Runner()
    with runner:
        runner.run(sweep())  # open the sockets outside the measurement
        usage = resource.getrusage(resource.RUSAGE_SELF)
        begin = time.perf_counter()
        answered = runner.run(sweep())
        wall = time.perf_counter() - begin
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    return wall, cpu, answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("fping"):
        sys.exit("run as root with fping installed (make bench does both)")
    check_range_is_free()
    print(f"ICMP sweep, {args.hosts} hosts, timeout {TIMEOUT:g} s, median of {args.runs} runs")
    print(f"{'case':6} {'tool':10} {'answered':>8} {'wall s':>8} {'CPU s':>8} "
          f"{'wall xfping':>11} {'CPU xfping':>10}")  # fmt: skip
    with bench_namespace():
        for case, network, goal in (("live", LIVE, 3.0), ("dead", DEAD, 1.1)):
            hosts = addresses(network, args.hosts)
            figures = {}
            for tool, runner in (("fping", run_fping), ("sitewatch", run_ours)):
                runs = [runner(hosts) for _ in range(args.runs)]
                figures[tool] = (
                    statistics.median(r[0] for r in runs),
                    statistics.median(r[1] for r in runs),
                    runs[-1][2],
                )
            peer_wall, peer_cpu, _ = figures["fping"]
            for tool, (wall, cpu, answered) in figures.items():
                print(f"{case:6} {tool:10} {answered:8d} {wall:8.3f} {cpu:8.3f} "
                      f"{wall / peer_wall:11.2f} {cpu / max(peer_cpu, 1e-3):10.2f}")  # fmt: skip
            print(f"{'':6} goal: wall within {goal}x fping, CPU within 4x")


if __name__ == "__main__":
    main()
