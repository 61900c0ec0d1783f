"""Collector ingest in results/s on one core: the store and the HTTP path, beside a plain load.

Run with `make bench` or `.venv/bin/python -m bench.ingest_bench` (no root needed). 100 simulated
agents, spread over the sites of config/inventory.yaml and reporting only their own site's links
and devices, each send the same number of 500-result batches. Every case starts from a fresh
database in the temporary folder ($TMPDIR), and every case stores the very same rows. On SQLite:

- plain: `sqlite3` alone, the store's `results` table and indexes, WAL with synchronous=FULL
  as the store runs it (every commit fsynced, so an acknowledged batch survives a power cut),
  `executemany` of ready-made row tuples, one transaction per batch;
- normal: the same with synchronous=NORMAL, durable only at checkpoints, as the store ran until
  acknowledged batches had to be on disk: the difference to plain is what FULL costs;
- store: `Store.results.ingest` of the batches as (seq, ProbeResult) tuples;
- http: the real collector app (aiohttp, in this process, on 127.0.0.1) taking the batches as
  gzipped JSON posts from a client in a separate process, so that this process's CPU is the
  server's alone: authentication, gunzip, JSON, validation, the store and the state book.

On PostgreSQL (`--backends`, both by default), a server the bench starts itself with
tests/pg.py (Debian's postgresql, run as an unprivileged user in a temporary directory, fsync
and synchronous_commit off as for the tests), each case in a fresh database of it:

- pg-bare: psycopg alone, COPY of the ready-made row tuples into a bare `results`-shaped table,
  partitioned by day as the store's (the same day partitions and a DEFAULT one) but with no
  index or unique key, one transaction per batch: the fastest load PostgreSQL offers, shown for
  what the store's tables cost PostgreSQL itself;
- pg-plain: psycopg alone, COPY of the same row tuples into the store's own tables (migrated
  by the store, its day partitions made first, outside the timing): each row into `results`
  with its indexes and its key into `result_keys`, whose unique key keeps ingest idempotent,
  one transaction per batch. It is to PostgreSQL what `plain` is to SQLite (the driver alone,
  the store's tables and indexes), and "x plain" for the other cases counts from it;
- pg-store: `Store.results.ingest` on PostgreSQL (COPY into a temporary table, INSERT ...
  ON CONFLICT DO NOTHING from it, the agent's row, one transaction per batch);
- pg-http: the real collector app as in `http`, on that store.

This process is pinned to one CPU and the client to the others. PostgreSQL is started before
the pinning, so its server processes may run on any CPU, as a database server beside a
collector would. results/s is by wall time; CPU is user+system of this process, every thread
of it (the PostgreSQL server's is not counted); "x plain" is how many times slower than its
backend's plain load (plain, or pg-plain) the case is.

Measured on the 2-core machine (100 agents x 4 batches of 500, median of 3), with other work
running on it (load average 1 to 9), so the figures move by a third from run to run:
- before PostgreSQL (b402d71, load average 1): plain 26,010, normal 33,464, store 18,352,
  http 11,372 results/s (http 2.29x plain);
- PostgreSQL's ingest at store level, rounds of 200,000 rows (load average 6-9): a temporary
  table kept per connection (ON COMMIT DELETE ROWS) 15,160 and 15,328 results/s, one made per
  batch (ON COMMIT DROP) 14,109 and 12,712; then COPY straight into results under a savepoint
  16,372 / 13,984 / 25,334, the kept temporary table 12,716 / 11,020 / 18,762, executemany
  of the INSERT in pipeline mode 9,189 / 11,414 / 10,702. The store COPYs straight in, and
  takes the temporary table only for a batch holding a row stored already;
- with PostgreSQL (load average 3-5), two full runs: plain 42,085 / 46,177, store 45,018 /
  47,771, http 19,120 / 19,386; pg-copy 191,133 / 129,568, pg-index - / 68,838, pg-store
  49,324 / 42,686, pg-http 20,572 / 18,471 results/s (7-9x pg-copy, 3.7x pg-index). Between
  them, b402d71 again: http 18,815 and 18,250, so SQLite's figure is not worse. pg-http is
  at the 20,000 goal but far from 2x the bare COPY: its CPU (6.5-7 s of this process for
  200,000 results, against 0.5 s for the COPY) is mostly the wire's validation
  (probes/result.py `checked`, probes/values.py), and PostgreSQL's own processes share both
  CPUs with it and the client;
- orjson for the body and the stored value (9da1d55), on a nearly idle machine (load 0.1-1.7):
  plain 70,240, normal 68,240, store 61,193, http 29,956 (2.34x plain); pg-copy 188,690 /
  157,583, pg-index 79,614 / 80,474, pg-store 49,918 / 44,769, pg-http 40,959 / 29,560
  results/s (1.94x / 2.72x pg-index, 4.61x / 5.33x pg-copy). The collector's CPU (4.8-6.5 s
  for 200,000 results) is its own: py-spy samples decoding at ~30 % and the checks at ~43 %.
- on a nearly idle machine (load 0.4-2.5): pg-copy 249,289, pg-index 127,167, pg-store 75,264,
  pg-http 45,204 results/s (4.37 s of CPU). The bench ran its collector with Python's default
  garbage collector, where `sitewatch collector` freezes its start-up heap: the collector spent
  0.75-0.86 s of those 4.37 s in ~1,050 young, ~95 middle and 9 full collections. Run as
  `sitewatch collector` runs (collector.main.settle, which now also sets the collector's
  garbage collector thresholds): pg-http 55,082 results/s (3.62 s of CPU);
- the cases renamed: pg-copy became pg-bare, and pg-index (indexes on `results`, but no
  `result_keys`) gave way to pg-plain, the store's tables as they are. Next run: pg-bare
  244,472, pg-plain 91,107, pg-store 74,368, pg-http 55,080 results/s (3.59 s of CPU): 1.65x
  pg-plain, 4.44x pg-bare;
- then a body shorter than the value cap is no longer counted (it cannot hold more values than
  bytes), PostgreSQL's ingest dropped its savepoint (a resent batch is rolled back whole and
  stored the long way) and the pool's check of a connection that came back within a second:
  three round trips fewer per batch. PostgreSQL alone, three runs: pg-http 54,810 / 51,592
  (median of 5) / 57,088 results/s, 1.70x / 1.63x / 1.62x pg-plain (93,389 / 84,175 /
  92,531). The last with SQLite too (load 1.5): plain 82,948, normal 83,715, store 76,213,
  http 43,096 results/s (1.92x plain; 2.34x before); pg-bare 255,142, pg-store 78,822;
- with two-collector support (each batch's transaction also NOTIFYs the other collectors,
  collector.store.arrivals), PostgreSQL alone: pg-bare 242,061, pg-plain 79,339, pg-store
  73,576, pg-http 54,503 results/s (3.60 s of CPU): 1.46x pg-plain, 4.44x pg-bare.
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
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from collector.api import build_app
from collector.main import settle, tune_runtime
from collector.service import Collector
from collector.store import INSERT_RESULT, RESULT_COLUMNS, RESULTS_SCHEMA, Store, result_row
from collector.store.partitions import DAY, day_of, partition_name
from collector.store.results import KEY_COLUMNS
from probes.result import JsonValue, ProbeResult
from sitewatch.config.files import load_collector_config
from sitewatch.config.model import AgentCredential, CollectorConfig

if TYPE_CHECKING:
    from tests.pg import PostgresServer

ROOT = Path(__file__).resolve().parents[1]
MIN_RATE = 20_000.0  # results/s through the HTTP path
MAX_SLOWDOWN = 3.0  # times the plain insert (SQLite)
MAX_PG_SLOWDOWN = 2.0  # times the plain COPY (PostgreSQL)
BACKENDS = ("sqlite", "postgresql")
SQLITE_CASES = ("plain", "normal", "store", "http")
POSTGRES_CASES = ("pg-bare", "pg-plain", "pg-store", "pg-http")
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


def run_copy(url: str, rows: Sequence[list[tuple[Any, ...]]]) -> Figures:
    """COPY every batch into a bare, day-partitioned `results`, one transaction per batch."""
    import psycopg  # noqa: PLC0415 -- only the PostgreSQL cases need it

    days = sorted({day_of(row[4]) for batch in rows for row in batch})
    with psycopg.connect(url, autocommit=True) as conn:
        columns = ", ".join(f"{name} {kind}" for name, kind in POSTGRES_COLUMNS)
        conn.execute(f"CREATE TABLE results ({columns}) PARTITION BY RANGE (ts)")
        conn.execute("CREATE TABLE results_other PARTITION OF results DEFAULT")
        for day in days:
            conn.execute(
                f"CREATE TABLE {partition_name(day)} PARTITION OF results "
                f"FOR VALUES FROM ({day}) TO ({day + DAY})"
            )
        return measured(lambda: copy_batches(conn, {"results": RESULT_COLUMNS.split(", ")}, rows))


def run_plain_copy(url: str, rows: Sequence[list[tuple[Any, ...]]]) -> Figures:
    """COPY every batch into the store's own tables, one transaction per batch: each row into
    `results` (day-partitioned, with its indexes) and its key into `result_keys`, as the store
    does, with no collector around it. The schema and the day partitions are made first, by the
    store itself, outside the timing."""
    import psycopg  # noqa: PLC0415 -- only the PostgreSQL cases need it

    store = Store(url)
    try:
        store.results.partitions.ensure({day_of(row[4]) for batch in rows for row in batch})
    finally:
        store.close()
    tables = {"result_keys": list(KEY_COLUMNS), "results": RESULT_COLUMNS.split(", ")}
    with psycopg.connect(url, autocommit=True) as conn:
        return measured(lambda: copy_batches(conn, tables, rows))


def copy_batches(
    conn: Any, tables: dict[str, list[str]], rows: Sequence[list[tuple[Any, ...]]]
) -> int:
    """COPY each batch's rows into each of `tables` (its columns, taken from the row by name),
    one transaction per batch; return how many rows each table got."""
    names = RESULT_COLUMNS.split(", ")
    for batch in rows:
        with conn.transaction():
            for table, columns in tables.items():
                where = [names.index(column) for column in columns]
                statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
                with conn.cursor() as cursor, cursor.copy(statement) as copy:
                    for row in batch:
                        copy.write_row(row if len(where) == len(row) else [row[i] for i in where])
    return sum(len(batch) for batch in rows)


POSTGRES_COLUMNS = (
    ("source", "text NOT NULL"), ("seq", "bigint NOT NULL"), ("target", "text NOT NULL"),
    ("kind", "text NOT NULL"), ("ts", "double precision NOT NULL"), ("ok", "integer NOT NULL"),
    ("rtt_ms", "double precision"), ("loss", "double precision"), ("value", "text NOT NULL"),
    ("error_kind", "text"), ("detail", "text NOT NULL"),
    ("received", "double precision NOT NULL"), ("outbox", "text NOT NULL"),
)  # fmt: skip


def postgres_count(url: str) -> int:
    """Return how many results a PostgreSQL database holds."""
    import psycopg  # noqa: PLC0415

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM results").fetchone()
    return 0 if row is None else int(row[0])


def run_store(where: Path | str, arriving: Batches, received: float) -> Figures:
    store = Store(where)

    def ingest_all() -> int:
        return sum(
            store.results.ingest(source, items, received=received).stored
            for source, items in arriving
        )

    try:
        return measured(ingest_all)
    finally:
        store.close()


def run_http(where: Path | str, config: CollectorConfig, work: Workload, cpus: set[int]) -> Figures:
    store = Store(where)
    try:
        return asyncio.run(_serve_and_measure(Collector(config, store), work, cpus))
    finally:
        store.close()


async def _serve_and_measure(collector: Collector, work: Workload, cpus: set[int]) -> Figures:
    """Serve the collector app on 127.0.0.1 while the client process posts every batch."""
    await settle(collector)  # as `sitewatch collector` does before it serves
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


def same_rows(plain: Path | str, other: Path | str, *, received: bool) -> bool:
    """Whether two databases (SQLite files or PostgreSQL URLs) hold the same results.

    `received` aside when it differs (it is the time of arrival through HTTP).
    """
    columns = "*" if received else ", ".join(COLUMNS[:-1])
    query = f"SELECT {columns} FROM results ORDER BY source, seq"  # noqa: S608 -- fixed names
    return rows_digest(plain, query) == rows_digest(other, query)


def rows_digest(where: Path | str, query: str) -> str:
    """Return a digest of a query's rows, the same for the same values on either backend."""
    digest = hashlib.sha256()
    if isinstance(where, Path):
        db = sqlite3.connect(where)
        try:
            for line in db.execute(query):
                digest.update(repr(tuple(line)).encode())
        finally:
            db.close()
        return digest.hexdigest()
    import psycopg  # noqa: PLC0415

    with psycopg.connect(where) as conn, conn.cursor(name="digest") as cursor:
        cursor.execute(query)
        for line in cursor:
            digest.update(repr(tuple(line)).encode())
    return digest.hexdigest()


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
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="sqlite, postgresql, or both (a,b)"
    )
    args = parser.parse_args()
    backends = set(args.backends.split(","))
    if not backends or not backends <= set(BACKENDS):
        parser.error(f"--backends: {args.backends!r} is not sqlite, postgresql or both")
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
    server = start_server() if "postgresql" in backends else None  # before pinning: see above
    tune_runtime()  # every case runs in a process set as the collector's is
    try:
        server_cpus, client_cpus = pin()
        print(
            f"Collector ingest: {args.agents} agents x {args.batches} batches of "
            f"{args.batch_size} results, median of {args.runs} runs; this process on CPU "
            f"{','.join(map(str, sorted(server_cpus)))}, the HTTP client on "
            f"{','.join(map(str, sorted(client_cpus))) or 'the same CPU (only one)'}"
        )
        bench = Bench(args.runs, work, arriving, rows, received, config, client_cpus)
        with tempfile.TemporaryDirectory(prefix="sitewatch-ingest-bench-") as folder:
            runs: dict[str, list[Figures]] = {}
            if "sqlite" in backends:
                runs |= bench.sqlite(Path(folder))
            if server is not None:
                runs |= bench.postgres(server, Path(folder), compare="sqlite" in backends)
    finally:
        if server is not None:
            server.stop()
            server.remove()
    report(runs, work)


def report(runs: dict[str, list[Figures]], work: Workload) -> None:
    """Print each case's medians, and how far the HTTP paths are from the goals."""
    medians = {
        case: Figures(
            work.total,
            statistics.median(f.wall for f in figures),
            statistics.median(f.cpu for f in figures),
        )
        for case, figures in runs.items()
    }
    print(f"{'case':8} {'results':>8} {'seconds':>8} {'results/s':>10} {'CPU s':>7} {'x plain':>8}")
    for case, mine in medians.items():
        plain = medians["pg-plain" if case.startswith("pg-") else "plain"].wall
        print(
            f"{case:8} {mine.results:8d} {mine.wall:8.3f} {mine.results / mine.wall:10.0f} "
            f"{mine.cpu:7.3f} {mine.wall / plain:8.2f}"
        )
    if "http" in medians:
        print(f"goal: http at least {MIN_RATE:,.0f} results/s and within {MAX_SLOWDOWN:g}x plain")
    if "pg-http" in medians:
        print(
            f"goal: pg-http at least {MIN_RATE:,.0f} results/s and within "
            f"{MAX_PG_SLOWDOWN:g}x pg-plain (it is "
            f"{medians['pg-http'].wall / medians['pg-bare'].wall:.2f}x pg-bare)"
        )


def start_server() -> PostgresServer:
    """Start a throwaway PostgreSQL server (tests/pg.py), or exit saying why it cannot."""
    from tests import pg  # noqa: PLC0415 -- the SQLite cases need no PostgreSQL

    directory = pg.temporary_directory()
    try:
        return pg.start_postgres(directory)
    except (pg.PostgresError, OSError) as err:
        pg.remove_directory(directory)
        sys.exit(f"cannot start PostgreSQL for the bench: {err} (or run --backends sqlite)")


@dataclass(frozen=True, slots=True)
class Bench:
    """One bench's workload, in each form a case takes it."""

    runs: int
    work: Workload
    arriving: Batches
    rows: list[list[tuple[Any, ...]]]
    received: float
    config: CollectorConfig
    client_cpus: set[int]

    def sqlite(self, folder: Path) -> dict[str, list[Figures]]:
        runs: dict[str, list[Figures]] = {case: [] for case in SQLITE_CASES}
        for number in range(self.runs):
            files = {case: folder / f"{case}-{number}.db" for case in runs}
            runs["plain"].append(run_plain(files["plain"], self.rows))
            runs["normal"].append(run_plain(files["normal"], self.rows, "NORMAL"))
            runs["store"].append(run_store(files["store"], self.arriving, self.received))
            runs["http"].append(run_http(files["http"], self.config, self.work, self.client_cpus))
        check_counts(runs, self.work)
        last = self.runs - 1
        plain_db = folder / f"plain-{last}.db"
        if not same_rows(plain_db, folder / f"store-{last}.db", received=True):
            sys.exit("the store's rows differ from the plain insert's")
        if not same_rows(plain_db, folder / f"http-{last}.db", received=False):
            sys.exit("the rows stored through HTTP differ from the plain insert's")
        return runs

    def postgres(
        self, server: PostgresServer, folder: Path, *, compare: bool
    ) -> dict[str, list[Figures]]:
        """Run the PostgreSQL cases; check their rows against each other and SQLite's plain
        insert (when it ran, in `folder`)."""
        runs: dict[str, list[Figures]] = {case: [] for case in POSTGRES_CASES}
        urls: dict[str, str] = {}
        for number in range(self.runs):
            for case in runs:
                name = f"bench_{case.replace('-', '_')}_{number}"
                if case in urls:
                    server.drop_database(urls[case].rsplit("/", 1)[1])
                urls[case] = server.url(server.create_database(name))
            runs["pg-bare"].append(run_copy(urls["pg-bare"], self.rows))
            runs["pg-plain"].append(run_plain_copy(urls["pg-plain"], self.rows))
            runs["pg-store"].append(run_store(urls["pg-store"], self.arriving, self.received))
            runs["pg-http"].append(
                run_http(urls["pg-http"], self.config, self.work, self.client_cpus)
            )
        check_counts(runs, self.work)
        for case, url in urls.items():
            if (found := postgres_count(url)) != self.work.total:
                sys.exit(f"{case}: the database holds {found} results, not {self.work.total}")
        if not same_rows(urls["pg-plain"], urls["pg-bare"], received=True):
            sys.exit("the bare table's rows differ from the plain COPY's")
        if not same_rows(urls["pg-plain"], urls["pg-store"], received=True):
            sys.exit("the PostgreSQL store's rows differ from the plain COPY's")
        if not same_rows(urls["pg-plain"], urls["pg-http"], received=False):
            sys.exit("the rows stored through HTTP in PostgreSQL differ from the plain COPY's")
        if compare and not same_rows(
            folder / f"plain-{self.runs - 1}.db", urls["pg-plain"], received=True
        ):
            sys.exit("PostgreSQL's rows differ from SQLite's")
        return runs


def check_counts(runs: dict[str, list[Figures]], work: Workload) -> None:
    """Exit unless every run of every case stored every result."""
    for case, figures in runs.items():
        if any(f.results != work.total for f in figures):
            sys.exit(f"{case}: stored {[f.results for f in figures]} results, not {work.total}")


if __name__ == "__main__":
    main()
