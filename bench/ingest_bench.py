"""Collector ingest in results/s on one core: the store and the whole HTTP path, beside sqlite3.

Run with `make bench` or `.venv/bin/python -m bench.ingest_bench` (no root needed). 100 simulated
agents, spread over the sites of config/inventory.yaml and reporting only their own site's links
and devices, each send the same number of 500-result batches. Every case starts from a fresh
database in the temporary folder ($TMPDIR), and all four store the very same rows:

- plain: `sqlite3` alone, the store's `results` table and indexes, WAL with synchronous=FULL
  as the store runs it (every commit fsynced, so an acknowledged batch survives a power cut),
  `executemany` of ready-made row tuples, one transaction per batch;
- normal: the same with synchronous=NORMAL, durable only at checkpoints, as the store ran until
  acknowledged batches had to be on disk: the difference to plain is what FULL costs;
- store: `collector.store.Store.ingest` of the batches as (seq, ProbeResult) tuples;
- http: the real collector app (aiohttp, in this process, on 127.0.0.1) taking the batches as
  gzipped JSON posts from a client in a separate process, so that this process's CPU is the
  server's alone: authentication, gunzip, JSON, validation, the store and the state book.

This process is pinned to one CPU and the client to the others. results/s is by wall time; CPU
is user+system of this process, every thread of it; "x plain" is how many times slower than
plain the case is.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import multiprocessing
import os
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from collector.api import build_app
from collector.service import Collector
from collector.store import INSERT_RESULT, RESULTS_SCHEMA, Store, result_row
from probes.result import JsonValue, ProbeResult
from sitewatch.config.files import load_collector_config
from sitewatch.config.model import AgentCredential, CollectorConfig

ROOT = Path(__file__).resolve().parents[1]
MIN_RATE = 20_000.0  # results/s through the HTTP path
MAX_SLOWDOWN = 3.0  # times the plain insert
CLIENT_TIMEOUT = 600.0  # seconds for the client to build its bodies, and to post them all

COLUMNS = (
    "source", "seq", "target", "kind", "ts", "ok", "rtt_ms", "loss", "value", "error_kind",
    "detail", "received",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SimAgent:
    id: str
    site: str
    token: str
    targets: tuple[str, ...]  # its site's link and device ids


@dataclass(frozen=True, slots=True)
class Workload:
    agents: tuple[SimAgent, ...]
    batches: int  # per agent
    batch_size: int
    start: float  # the first result's probe time; the last is an hour later, in the past

    @property
    def per_agent(self) -> int:
        return self.batches * self.batch_size

    @property
    def total(self) -> int:
        return len(self.agents) * self.per_agent


@dataclass(frozen=True, slots=True)
class Figures:
    results: int
    wall: float
    cpu: float


Items = list[tuple[int, ProbeResult]]
Batches = list[tuple[str, Items]]  # (source, batch), in the order they arrive


def simulated_agents(config: CollectorConfig, count: int) -> tuple[SimAgent, ...]:
    """Spread `count` agents over the inventory's monitored sites, round robin."""
    sites = [s for s in config.inventory.sites if s.monitored and (s.links or s.devices)]
    agents = []
    for number in range(count):
        site = sites[number % len(sites)]
        targets = (*(link.id for link in site.links), *(d.id for d in site.devices))
        agents.append(SimAgent(f"bench-{number:03d}", site.id, f"token-{number:03d}", targets))
    return tuple(agents)


def result(agent: SimAgent, seq: int, when: float) -> ProbeResult:
    """Return a deterministic, realistic result: mostly pings, some TCP, a few failures."""
    target = agent.targets[seq % len(agent.targets)]
    ts = datetime.fromtimestamp(when, UTC)
    address = f"10.{100 + seq % 10}.0.{21 + seq % 13}"
    rtt = round(1.0 + (seq * 7919 % 5000) / 100, 3)
    shape = seq % 20
    if shape < 14:
        value: dict[str, JsonValue] = {
            "address": address, "sent": 3, "received": 3, "rtt_min_ms": round(rtt * 0.8, 3),
            "rtt_avg_ms": rtt, "rtt_max_ms": round(rtt * 1.3, 3), "jitter_ms": round(rtt / 9, 3),
        }  # fmt: skip
        return ProbeResult(target, "icmp", ts, ok=True, rtt_ms=rtt, loss=0.0, value=value)
    if shape < 16:
        return ProbeResult(
            target, "icmp", ts, ok=False, loss=1.0,
            value={"address": address, "sent": 3, "received": 0},
            error_kind="timeout", detail=f"{address}: no echo reply within 2 s",
        )  # fmt: skip
    if shape < 19:
        return ProbeResult(target, "tcp", ts, ok=True, rtt_ms=rtt, value={"port": 9100})
    return ProbeResult(
        target, "tcp", ts, ok=False, value={"port": 9100},
        error_kind="refused", detail=f"{address}:9100: connection refused",
    )  # fmt: skip


def batches(work: Workload) -> Batches:
    """Every agent's batches, round by round, as they arrive at a collector."""
    spacing = 3_600.0 / work.per_agent
    out: Batches = []
    for round_ in range(work.batches):
        for agent in work.agents:
            first = round_ * work.batch_size + 1
            seqs = range(first, first + work.batch_size)
            out.append((agent.id, [(s, result(agent, s, work.start + s * spacing)) for s in seqs]))
    return out


def measured(work: Callable[[], int]) -> Figures:
    """Run `work`, which returns how many results it stored; time it and this process's CPU."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    begin = time.perf_counter()
    stored = work()
    wall = time.perf_counter() - begin
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Figures(stored, wall, cpu)


def run_plain(
    path: Path, rows: Sequence[list[tuple[Any, ...]]], synchronous: str = "FULL"
) -> Figures:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(RESULTS_SCHEMA)

        def insert_all() -> int:
            for batch in rows:
                db.execute("BEGIN")
                db.executemany(INSERT_RESULT, batch)
                db.execute("COMMIT")
            return sum(len(batch) for batch in rows)

        return measured(insert_all)
    finally:
        db.close()


def run_store(path: Path, arriving: Batches, received: float) -> Figures:
    store = Store(path)

    def ingest_all() -> int:
        return sum(store.ingest(source, items, None, received).stored for source, items in arriving)

    try:
        return measured(ingest_all)
    finally:
        store.close()


def run_http(path: Path, config: CollectorConfig, work: Workload, cpus: set[int]) -> Figures:
    store = Store(path)
    try:
        return asyncio.run(_serve_and_measure(Collector(config, store), work, cpus))
    finally:
        store.close()


async def _serve_and_measure(collector: Collector, work: Workload, cpus: set[int]) -> Figures:
    """Serve the collector app on 127.0.0.1 while the client process posts every batch."""
    runner = web.AppRunner(build_app(collector), access_log=None)
    await runner.setup()
    spawn = multiprocessing.get_context("spawn")
    ours, theirs = spawn.Pipe()
    client = None
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port: int = runner.addresses[0][1]
        client = spawn.Process(target=client_main, args=(theirs, port, work, cpus), daemon=True)
        client.start()
        theirs.close()  # so that a client that dies is an EOFError here, not a hang
        if await _receive(ours) != "ready":
            sys.exit("the client process did not start")
        before = resource.getrusage(resource.RUSAGE_SELF)
        begin = time.perf_counter()
        ours.send("go")
        stored = await _receive(ours)
        wall = time.perf_counter() - begin
        after = resource.getrusage(resource.RUSAGE_SELF)
        if not isinstance(stored, int):
            sys.exit(f"the client failed: {stored}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return Figures(stored, wall, cpu)
    finally:
        if client is not None:
            client.join(timeout=10)
            if client.is_alive():
                client.kill()
        ours.close()
        await runner.cleanup()


async def _receive(connection: Connection) -> object:
    """Wait, off the event loop, for the client's next message."""
    if not await asyncio.to_thread(connection.poll, CLIENT_TIMEOUT):
        sys.exit(f"the client process said nothing for {CLIENT_TIMEOUT:g}s")
    try:
        return connection.recv()
    except EOFError:
        sys.exit("the client process died; its traceback is above")


def client_main(connection: Connection, port: int, work: Workload, cpus: set[int]) -> None:
    """In the client process: build every gzipped body, then post them all when told to."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    bodies: dict[str, list[bytes]] = {agent.id: [] for agent in work.agents}
    for source, items in batches(work):
        body = {
            "agent": source,
            "results": [{"seq": seq, "result": found.to_json()} for seq, found in items],
            "heartbeat": None,
        }
        encoded = json.dumps(body, separators=(",", ":")).encode()
        bodies[source].append(gzip.compress(encoded, 6))
    connection.send("ready")
    connection.recv()
    try:
        stored = asyncio.run(_post_all(f"http://127.0.0.1:{port}", work.agents, bodies))
    except (aiohttp.ClientError, TimeoutError, OSError, RuntimeError) as err:
        connection.send(f"{type(err).__name__}: {err}")
    else:
        connection.send(stored)
    connection.close()


async def _post_all(base: str, agents: Sequence[SimAgent], bodies: dict[str, list[bytes]]) -> int:
    """Post each agent's batches one after another, all agents at once; return those stored."""
    connector = aiohttp.TCPConnector(limit=len(agents))
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def agent_posts(agent: SimAgent) -> int:
            headers = {
                "Authorization": f"Bearer {agent.token}",
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
            }
            stored = 0
            for body in bodies[agent.id]:
                url = f"{base}/api/v1/agent/results"
                async with session.post(url, data=body, headers=headers) as response:
                    reply = await response.json()
                    if response.status != 200:
                        raise RuntimeError(f"{agent.id}: {response.status} {reply}")
                    stored += int(reply["stored"])
            return stored

        async with asyncio.timeout(CLIENT_TIMEOUT):
            counts = await asyncio.gather(*(agent_posts(agent) for agent in agents))
    return sum(counts)


def same_rows(plain: Path, other: Path, *, received: bool) -> bool:
    """Whether two databases hold the same results (`received` aside when it differs)."""
    columns = "*" if received else ", ".join(COLUMNS[:-1])
    found = []
    for path in (plain, other):
        db = sqlite3.connect(path)
        try:
            digest = hashlib.sha256()
            for line in db.execute(f"SELECT {columns} FROM results ORDER BY source, seq"):  # noqa: S608
                digest.update(repr(line).encode())
            found.append(digest.hexdigest())
        finally:
            db.close()
    return found[0] == found[1]


def bench_config(agents: Sequence[SimAgent]) -> CollectorConfig:
    """The example collector config with the simulated agents as its only agents."""
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    return replace(
        config,
        agents=tuple(
            AgentCredential(a.id, a.site, hashlib.sha256(a.token.encode()).hexdigest())
            for a in agents
        ),
        api_tokens=(),
    )


def pin() -> tuple[set[int], set[int]]:
    """Pin this process to one CPU; return it and the CPUs left for the client."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return set(available), set()
    server = {available[0]}
    os.sched_setaffinity(0, server)
    return server, set(available[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--batches", type=int, default=4, help="batches per agent")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    agents = simulated_agents(config, args.agents)
    config = bench_config(agents)
    work = Workload(agents, args.batches, args.batch_size, time.time() - 7_200)
    received = time.time()
    arriving = batches(work)
    rows = [
        [result_row(source, seq, found, received) for seq, found in items]
        for source, items in arriving
    ]
    server_cpus, client_cpus = pin()
    print(
        f"Collector ingest: {args.agents} agents x {args.batches} batches of {args.batch_size} "
        f"results, median of {args.runs} runs; this process on CPU "
        f"{','.join(map(str, sorted(server_cpus)))}, the HTTP client on "
        f"{','.join(map(str, sorted(client_cpus))) or 'the same CPU (only one)'}"
    )
    print(f"{'case':6} {'results':>8} {'seconds':>8} {'results/s':>10} {'CPU s':>7} {'x plain':>8}")
    with tempfile.TemporaryDirectory(prefix="sitewatch-ingest-bench-") as folder:
        runs: dict[str, list[Figures]] = {"plain": [], "normal": [], "store": [], "http": []}
        for number in range(args.runs):
            files = {case: Path(folder, f"{case}-{number}.db") for case in runs}
            runs["plain"].append(run_plain(files["plain"], rows))
            runs["normal"].append(run_plain(files["normal"], rows, "NORMAL"))
            runs["store"].append(run_store(files["store"], arriving, received))
            runs["http"].append(run_http(files["http"], config, work, client_cpus))
        for figures in runs.values():
            if any(f.results != work.total for f in figures):
                sys.exit(f"stored {[f.results for f in figures]} results, not {work.total}")
        last = args.runs - 1
        plain_db = Path(folder, f"plain-{last}.db")
        if not same_rows(plain_db, Path(folder, f"store-{last}.db"), received=True):
            sys.exit("the store's rows differ from the plain insert's")
        if not same_rows(plain_db, Path(folder, f"http-{last}.db"), received=False):
            sys.exit("the rows stored through HTTP differ from the plain insert's")
    medians = {
        case: Figures(
            work.total,
            statistics.median(f.wall for f in figures),
            statistics.median(f.cpu for f in figures),
        )
        for case, figures in runs.items()
    }
    plain_wall = medians["plain"].wall
    for case, mine in medians.items():
        print(
            f"{case:6} {mine.results:8d} {mine.wall:8.3f} {mine.results / mine.wall:10.0f} "
            f"{mine.cpu:7.3f} {mine.wall / plain_wall:8.2f}"
        )
    print(f"goal: http at least {MIN_RATE:,.0f} results/s and within {MAX_SLOWDOWN:g}x plain")


if __name__ == "__main__":
    main()
