"""Agent footprint: RSS and CPU with 500 targets at a 30 s interval, beside an idle Python.

Run as root (the agent pings through raw sockets): `make bench` or
`.venv/bin/python -m bench.agent_bench`; `--interval 5 --seconds 20` for a quick look. The real
`sitewatch collector` and `sitewatch agent` run as subprocesses on loopback, configured as
tests/deploy.py writes a deployment. The inventory has one site: a link pinging 127.0.0.1 and
devices on 127.0.1.1 onwards, most of them pinged (3 echoes each; every 127.x address answers)
and 100 probed over TCP on a port nothing listens on (refused at once). The peer is a Python
process that imports the libraries the agent uses (aiohttp, pysnmp, icmplib, psutil) and
sleeps; it starts with the agent and is measured over the same window.

After warm-up (the collector has stored two rounds of the agent's results) both processes are
watched for the window: RSS is sampled every second and the highest sample printed (MB = 10^6
bytes); CPU is the user+system time each used in the window, as percent of one core.
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.deploy import Deployment, deploy
from tests.lab import LabError, wait_until

SITE = "bench"
MAX_RSS_MB = 60.0
MAX_CPU_PERCENT = 1.0
PEER_IMPORTS = "import aiohttp, pysnmp.hlapi.v3arch.asyncio, icmplib, psutil"
WARM_UP_ROUNDS = 2


@dataclass(frozen=True, slots=True)
class Footprint:
    rss_mb: float  # the highest sample in the window
    cpu_percent: float  # of one core, over the window


def free_tcp_port() -> int:
    """Return a port nothing listens on, on any address."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 -- checks the port is free on every address
        port: int = sock.getsockname()[1]
        return port


def inventory(folder: Path, targets: int, tcp: int, interval: float, closed_port: int) -> Path:
    """Write a one-site inventory on loopback with `targets` plan targets, `tcp` of them TCP."""
    devices = []
    for number in range(targets - 1):  # the link is the first target
        address = f"127.0.{1 + number // 250}.{1 + number % 250}"
        probe = f"{{kind: tcp, port: {closed_port}}}" if number < tcp else "icmp"
        devices.append(
            f"      - {{id: dev-{number:03d}, kind: server, address: {address}, probes: [{probe}]}}"
        )
    path = folder / "inventory.yaml"
    path.write_text(
        "organisation: Agent benchmark\n"
        "timezone: UTC\n"
        f"thresholds: {{interval: {interval:g}s, timeout: 2s}}\n"
        "sites:\n"
        f"  - id: {SITE}\n"
        "    name: Benchmark site\n"
        "    users: 10\n"
        "    links:\n"
        f"      - {{id: {SITE}-mpls, kind: mpls, role: primary, to: hub, probe: [127.0.0.1],\n"
        "         edge: 127.0.0.1}\n"
        "    devices:\n" + "\n".join(devices) + "\n"
    )
    return path


def stored(deployment: Deployment, agent: str) -> dict[str, tuple[int, int]]:
    """Return, per probe kind, how many of the agent's results the collector holds and how many
    of them are ok."""
    try:
        db = sqlite3.connect(deployment.database, timeout=5)
        try:
            rows = db.execute(
                "SELECT kind, count(*), sum(ok) FROM results WHERE source = ? GROUP BY kind",
                (agent,),
            ).fetchall()
        finally:
            db.close()
    except sqlite3.OperationalError:  # not created yet, or busy: ask again
        return {}
    return {kind: (count, ok) for kind, count, ok in rows}


def total(counts: dict[str, tuple[int, int]]) -> int:
    return sum(count for count, _ in counts.values())


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def watch(processes: dict[str, psutil.Process], seconds: float) -> dict[str, Footprint]:
    """Sample each process's RSS every second for `seconds`; return its peak RSS and CPU share."""
    peak = {name: p.memory_info().rss for name, p in processes.items()}
    before = {name: cpu_seconds(p) for name, p in processes.items()}
    begin = time.monotonic()
    while (left := begin + seconds - time.monotonic()) > 0:
        time.sleep(min(1.0, left))  # the sampling period, not a synchronisation
        for name, process in processes.items():
            peak[name] = max(peak[name], process.memory_info().rss)
    elapsed = time.monotonic() - begin
    return {
        name: Footprint(peak[name] / 1e6, (cpu_seconds(process) - before[name]) / elapsed * 100)
        for name, process in processes.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=500, help="plan targets, the link too")
    parser.add_argument("--tcp", type=int, default=100, help="targets probed over TCP")
    parser.add_argument("--interval", type=float, default=30.0, help="probe interval, seconds")
    parser.add_argument("--seconds", type=float, help="measured window (default: 3 intervals)")
    args = parser.parse_args()
    window = 3 * args.interval if args.seconds is None else args.seconds
    if os.geteuid() != 0:
        sys.exit("run as root: the agent pings through raw ICMP sockets")
    if not (0 <= args.tcp < args.targets <= 1 + 250 * 250 and args.interval >= 3):
        sys.exit("--tcp must be below --targets (at most 62,501) and --interval at least 3")
    pings = args.targets - args.tcp
    print(
        f"Agent footprint: {args.targets} targets ({pings} pinged incl. the link, {args.tcp} TCP "
        f"to a closed port) every {args.interval:g} s; a {window:g} s window after warm-up"
    )
    warm_up = WARM_UP_ROUNDS * args.interval + 60
    with tempfile.TemporaryDirectory(prefix="sitewatch-agent-bench-") as name:
        folder = Path(name)
        path = inventory(folder, args.targets, args.tcp, args.interval, free_tcp_port())
        deployment = deploy(folder, path, [SITE], f"127.0.0.1:{free_tcp_port()}")
        agent_id = deployment.agent_id(SITE)
        peer = None
        try:
            deployment.start_collector()
            agent = deployment.start_agent(SITE)
            sleep = f"time.sleep({warm_up + window + 60:g})"
            peer = subprocess.Popen([sys.executable, "-c", f"{PEER_IMPORTS}; import time; {sleep}"])

            rounds_of_results: int = WARM_UP_ROUNDS * args.targets

            def warmed_up() -> bool:
                if agent.poll() is not None:
                    sys.exit(f"the agent exited:\n{deployment.log(f'agent-{SITE}')[-3000:]}")
                return total(stored(deployment, agent_id)) >= rounds_of_results

            try:
                wait_until(warmed_up, warm_up, f"{WARM_UP_ROUNDS} rounds of the agent's results")
            except LabError as err:
                sys.exit(f"{err}\n{deployment.log(f'agent-{SITE}')[-3000:]}")
            before = stored(deployment, agent_id)
            processes = {
                "idle python": psutil.Process(peer.pid),
                "agent": psutil.Process(agent.pid),
            }
            figures = watch(processes, window)
            after = stored(deployment, agent_id)
        finally:
            if peer is not None:
                peer.terminate()
                peer.wait(timeout=10)
            deployment.stop_all()
    print(f"{'process':12} {'RSS MB':>7} {'CPU % of one core':>18}")
    for label, mine in figures.items():
        print(f"{label:12} {mine.rss_mb:7.1f} {mine.cpu_percent:18.2f}")
    shipped = ", ".join(
        f"{kind} {count - before.get(kind, (0, 0))[0]} ({ok - before.get(kind, (0, 0))[1]} ok)"
        for kind, (count, ok) in sorted(after.items())
    )
    print(f"results the collector stored from the agent in the window: {shipped}")
    print(f"goal: agent under {MAX_RSS_MB:g} MB RSS and under {MAX_CPU_PERCENT:g}% of one core")


if __name__ == "__main__":
    main()
