"""How fast /healthz answers while the collector is abused, beside the same figures at rest.

    .venv/bin/python -m bench.abuse_bench [--rounds 3] [--rows 60000]

A real `sitewatch collector` process on 127.0.0.1 (a free port), its database seeded with
`--rows` results of one link. A prober in a process of its own asks /healthz every 10 ms, first
with nothing else going on, then while, for `--rounds` rounds,
- three unauthenticated gzip bombs (4 MiB that inflate to 4 GiB) are posted at once, and
- eight viewers, each with a token of their own, read the whole history of that link at once
  (the per-token limit admits two reads per token, so all eight run).
One more authenticated bomb (a real agent token) measures how fast the inflated size is cut
off. Goal (issue 11): /healthz p99 under 100 ms under abuse; every bomb refused within 1 s.
Every byte goes to 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import secrets
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

from collector.store import Store
from probes.result import ProbeResult
from tests.deploy import free_port

SITEWATCH = str(Path(sys.executable).parent / "sitewatch")  # the console script of this venv
TARGET = "alpha-mpls"
GOAL_P99_MS, GOAL_BOMB_S = 100.0, 1.0
PROBE_EVERY = 0.01  # seconds between two health checks of the prober
INVENTORY = """\
organisation: Abuse Bench
timezone: Africa/Johannesburg
sites:
  - id: alpha
    name: Alpha
    users: 12
    links:
      - {id: alpha-mpls, kind: mpls, role: primary, to: hub, probe: [127.0.0.1], edge: 127.0.0.1}
"""


@dataclass(frozen=True, slots=True)
class Setup:
    url: str
    agent_token: str
    viewer_tokens: tuple[str, ...]


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def write_collector(folder: Path, port: int, viewers: int) -> Setup:
    """Write an inventory on loopback and a collector.yaml with one agent and `viewers` tokens."""
    (folder / "inventory.yaml").write_text(INVENTORY)
    agent = secrets.token_urlsafe(24)
    tokens = tuple(secrets.token_urlsafe(24) for _ in range(viewers))
    lines = [
        f"listen: 127.0.0.1:{port}",
        f"database: {folder / 'collector.db'}",
        "inventory: inventory.yaml",
        "agents:",
        f"  - {{id: alpha-01, site: alpha, token_sha256: {_sha(agent)}}}",
        "api_tokens:",
        *(
            f"  - {{name: viewer-{n}, role: viewer, token_sha256: {_sha(t)}}}"
            for n, t in enumerate(tokens)
        ),
    ]
    (folder / "collector.yaml").write_text("\n".join(lines) + "\n")
    return Setup(f"http://127.0.0.1:{port}", agent, tokens)


def seed(database: Path, rows: int) -> None:
    """Store `rows` results of TARGET spread over the last 20 hours, as an agent would have."""
    store = Store(database)
    try:
        start = datetime.now(UTC) - timedelta(hours=20)
        step = timedelta(hours=20) / rows
        items = [
            (n + 1, ProbeResult(TARGET, "icmp", start + n * step, ok=True, rtt_ms=12.5, loss=0.0))
            for n in range(rows)
        ]
        for first in range(0, rows, 10_000):
            store.results.ingest("alpha-01", items[first : first + 10_000], received=time.time())
    finally:
        store.close()


def make_bomb(inflated_gib: int = 4) -> bytes:
    """Return gzip of `inflated_gib` GiB of zeros (about 1 kB per MiB), with a valid trailer."""
    mib = bytes(1 << 20)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + 15)
    first = squeeze.compress(mib) + squeeze.flush(zlib.Z_FULL_FLUSH)
    block = squeeze.compress(mib) + squeeze.flush(zlib.Z_FULL_FLUSH)  # the same for every MiB
    count = inflated_gib * 1024
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(mib, crc)
    final = b"\x03\x00"  # an empty last block
    trailer = struct.pack("<II", crc, (count << 20) & 0xFFFFFFFF)
    return first + block * (count - 1) + final + trailer


# -- the prober: a process of its own, so that the attackers' work does not delay it ----------


def prober_main(url: str, pipe: Connection) -> None:
    """Ask /healthz every PROBE_EVERY seconds until told to stop; send back the latencies."""
    latencies = asyncio.run(_probe(url, pipe))
    pipe.send(latencies)


async def _probe(url: str, pipe: Connection) -> list[float]:
    latencies: list[float] = []
    async with aiohttp.ClientSession() as http:
        pipe.send("ready")
        for _ in range(100_000):  # bounded: about 20 minutes at most
            if pipe.poll():
                break
            began = time.perf_counter()
            async with http.get(f"{url}/healthz") as reply:
                await reply.read()
                if reply.status != 200:
                    latencies.append(float("inf"))
                    continue
            latencies.append((time.perf_counter() - began) * 1000)
            await asyncio.sleep(PROBE_EVERY)
    return latencies


async def probing(url: str, during: asyncio.Future[Any] | float) -> list[float]:
    """Run the prober process while `during` runs (or for that many seconds)."""
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    prober = spawn.Process(target=prober_main, args=(url, theirs), daemon=True)
    prober.start()
    theirs.close()
    try:
        if await asyncio.to_thread(ours.recv) != "ready":
            sys.exit("the prober did not start")
        if isinstance(during, float):
            await asyncio.sleep(during)
        else:
            await during
        ours.send("stop")
        latencies: list[float] = await asyncio.to_thread(ours.recv)
        return latencies
    finally:
        prober.join(timeout=10)
        if prober.is_alive():
            prober.kill()


# -- the attackers ----------------------------------------------------------------------------


async def bomb_once(url: str, bomb: bytes, token: str | None) -> tuple[int, float]:
    """Post `bomb` on a raw connection; return the status and the seconds until it came."""
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    began = time.perf_counter()
    writer.write(
        (
            "POST /api/v1/agent/results HTTP/1.1\r\nHost: bench\r\nContent-Encoding: gzip\r\n"
            f"Content-Type: application/json\r\n{auth}Content-Length: {len(bomb)}\r\n\r\n"
        ).encode()
    )

    async def send() -> None:
        for first in range(0, len(bomb), 256 * 1024):
            writer.write(bomb[first : first + 256 * 1024])
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        async with asyncio.timeout(60):
            status_line = await reader.readline()
        took = time.perf_counter() - began
    finally:
        sender.cancel()
        writer.close()
    parts = status_line.split()
    return (int(parts[1]) if len(parts) > 1 else 0), took


async def storm_once(
    http: aiohttp.ClientSession, url: str, token: str, rows: int
) -> tuple[int, int, float]:
    """Read TARGET's whole history; return the status, the bytes and the seconds it took."""
    began = time.perf_counter()
    path = f"{url}/api/v1/history?target={TARGET}&limit={rows}"
    async with http.get(path, headers={"Authorization": f"Bearer {token}"}) as reply:
        body = await reply.read()
        return reply.status, len(body), time.perf_counter() - began


@dataclass
class Abuse:
    bombs: list[tuple[int, float]]
    storms: list[tuple[int, int, float]]


async def abuse(setup: Setup, bomb: bytes, rounds: int, rows: int) -> Abuse:
    """Three bombs and eight history reads at once, `rounds` times."""
    done = Abuse([], [])
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for _ in range(rounds):
            bombs = [bomb_once(setup.url, bomb, None) for _ in range(3)]
            storms = [storm_once(http, setup.url, token, rows) for token in setup.viewer_tokens]
            async with asyncio.TaskGroup() as group:
                bomb_tasks = [group.create_task(b) for b in bombs]
                storm_tasks = [group.create_task(s) for s in storms]
            done.bombs += [task.result() for task in bomb_tasks]
            done.storms += [task.result() for task in storm_tasks]
    return done


# -- running it -------------------------------------------------------------------------------


def start_collector(folder: Path, url: str) -> subprocess.Popen[bytes]:
    log = (folder / "collector.log").open("wb")
    process = subprocess.Popen(
        [SITEWATCH, "collector", "--config", str(folder / "collector.yaml")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the collector stopped: {(folder / 'collector.log').read_text()[-2000:]}")
        try:
            import urllib.request  # noqa: PLC0415 -- only for the wait

            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as reply:  # noqa: S310
                if reply.status == 200:
                    return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit("the collector did not answer /healthz within 30 s")


def figures(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{statistics.median(ordered):8.1f} {p99:8.1f} {ordered[-1]:8.1f} {len(ordered):6d}"


async def main_async(rounds: int, rows: int) -> int:
    folder = Path(tempfile.mkdtemp(prefix="sitewatch-abuse-"))
    setup = write_collector(folder, free_port(), viewers=8)
    print(f"seeding {rows} results of {TARGET} ...", flush=True)
    await asyncio.to_thread(seed, folder / "collector.db", rows)
    print("making the bomb ...", flush=True)
    bomb = await asyncio.to_thread(make_bomb)
    print(f"bomb: {len(bomb) / 2**20:.1f} MiB of gzip, 4 GiB inflated", flush=True)
    collector = start_collector(folder, setup.url)
    try:
        rest = await probing(setup.url, 3.0)
        attack = asyncio.ensure_future(abuse(setup, bomb, rounds, rows))
        under = await probing(setup.url, attack)
        result = attack.result()
        status, took = await bomb_once(setup.url, bomb, setup.agent_token)
    finally:
        collector.terminate()
        collector.wait(timeout=20)
    print()
    print(f"/healthz latency (ms)        {'p50':>8} {'p99':>8} {'max':>8} {'n':>6}")
    print(f"  at rest                    {figures(rest)}")
    print(f"  3 bombs + 8 storms, x{rounds}     {figures(under)}")
    p99 = sorted(under)[min(len(under) - 1, int(len(under) * 0.99))]
    print(f"  goal: p99 < {GOAL_P99_MS:.0f} ms: {'met' if p99 < GOAL_P99_MS else 'NOT MET'}")
    bomb_statuses = sorted({s for s, _ in result.bombs})
    slowest = max(t for _, t in result.bombs)
    print(
        f"unauthenticated bombs: {len(result.bombs)}, answered {bomb_statuses}, "
        f"slowest {slowest * 1000:.0f} ms (goal < {GOAL_BOMB_S:.0f} s: "
        f"{'met' if slowest < GOAL_BOMB_S else 'NOT MET'})"
    )
    print(f"bomb with an agent token: answered {status} in {took * 1000:.0f} ms")
    storm_statuses = sorted({s for s, _, _ in result.storms})
    sizes = [b for _, b, _ in result.storms]
    times = [t for _, _, t in result.storms]
    print(
        f"history reads: {len(result.storms)} of {rows} rows, answered {storm_statuses}, "
        f"{statistics.median(sizes) / 2**20:.1f} MiB each, "
        f"median {statistics.median(times):.2f} s, slowest {max(times):.2f} s"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=60_000)
    args = parser.parse_args()
    return asyncio.run(main_async(args.rounds, args.rows))


if __name__ == "__main__":
    sys.exit(main())
