"""The SLA report and the sites API at 1,000 sites, on SQLite and on PostgreSQL.

Run with `make bench` or `.venv/bin/python -m bench.report_bench` (no root needed; as root the
PostgreSQL server runs as the unprivileged user tests/pg.py makes). The inventory is
bench/correlation_bench.py's: 1,000 sites (a tenth in chains, a fifth with a backup link), 50
devices each. Its status log holds a generated month and a day before it: every site and link
starts the day before up, then flaps about one and a half times a day (three changes), most
flaps a few minutes down or degraded, a few an hour or more; twenty sites spend an afternoon in
maintenance and the whole network half an hour unknown (a collector restart). Every down
stretch of more than 30 minutes is an incident with its events (opened, acknowledged,
resolved), its priority by the site's users and its due time by the SLA calendar.

On each backend (a SQLite file in $TMPDIR; a database on a PostgreSQL server this bench starts
through tests/pg.py, with fsync off, as the tests run it) the same rows are loaded in bulk, then
timed:

- report: `collector.report.build_report` for the last 30 whole local days, as
  `GET /api/v1/reports/sla` calls it, and the JSON the API sends (`report_json`);
- views: what `GET /api/v1/sites` builds besides availability, in process: every site's view
  from the latest correlation and its contract JSON (`site_json`), without availability;
- sites: `GET /api/v1/sites` through the real app on 127.0.0.1 (aiohttp client and server in
  this process, one request at a time): the endpoint always carries each site's and link's
  availability over 24h, 7d and 30d, both round the clock and in business hours; `first` is
  the first request alone, which makes whatever the API keeps between requests;
- afresh: the sites answer built once as the API built it before it kept anything between
  requests (every site's availability read and measured, every site turned into JSON); the
  API's answer is checked equal to it;
- peer: the bare SQL read of the status log rows the report needs (the month's rows, counted
  equal to the rows generated for it): the least any report read from this log can cost.

Figures are the median and 95th percentile of `--requests` runs after `--warm-up` unmeasured
ones (the report: of `--reports` runs), printed beside the issue's goals.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.correlation_bench import feed, generate
from collector.api import build_app
from collector.body import finite
from collector.clock import ManualClock
from collector.report import build_report, period_bounds, report_json
from collector.service import Collector
from collector.sla import WorkingCalendar
from collector.store import Store
from collector.views import availability_of, site_json
from sitewatch.config.files import load_collector_config
from sitewatch.config.model import (
    AgentCredential,
    ApiToken,
    CollectorConfig,
    Inventory,
    SlaTarget,
)
from tests import pg  # the test suite's own server, started and removed by this bench

ROOT = Path(__file__).resolve().parents[1]
REPORT_GOAL_S = 2.0
SITES_P95_GOAL_MS = 200.0
DAY = 86_400.0
TOKEN = "report-bench-viewer"  # noqa: S105 -- a throwaway bearer token for this run's viewer
INCIDENT_AFTER = 1_800.0  # a down stretch longer than this is an incident
SLA = {
    "P1": SlaTarget(timedelta(hours=4), 0.95),
    "P2": SlaTarget(timedelta(hours=8), 0.95),
    "P3": SlaTarget(timedelta(days=2), 0.8),
}

StatusRow = tuple[str, float, str, str | None]  # entity, ts, status, evidence


@dataclass(frozen=True, slots=True)
class Month:
    """The generated history: status log rows, incidents and their events."""

    status: list[StatusRow]
    incidents: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds of each timed run."""

    seconds: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p95(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[max(0, round(0.95 * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class Figures:
    """One backend's results."""

    backend: str
    loaded: float  # seconds to load the generated month
    peer: Timing
    report: Timing
    views: Timing
    afresh: float  # seconds to build the sites answer with nothing kept between requests
    sites: Timing
    first: float  # seconds of the first GET /api/v1/sites, before anything was cached
    sites_bytes: int


def inventory_of(sites: int, devices: int, rng: random.Random) -> Inventory:
    """correlation_bench's inventory, with an SLA target for every priority (the report's)."""
    return dataclasses.replace(generate(sites, devices, rng), sla=SLA)


def entities(inventory: Inventory) -> list[tuple[str, str]]:
    """Every site and link as (entity, its site's id), as the status log names them."""
    found = [(f"site:{site.id}", site.id) for site in inventory.sites]
    found += [(f"link:{link.id}", site.id) for site, link in inventory.links()]
    return found


def generate_month(inventory: Inventory, start: float, now: float, rng: random.Random) -> Month:
    """Return a status log of [start, now) with flaps, maintenance and a gap; and incidents."""
    calendar = WorkingCalendar(inventory.business_hours, inventory.timezone)
    users = {site.id: site.users for site in inventory.sites}
    maintained = {site.id for site in rng.sample(list(inventory.sites), 20)}
    gap = rng.uniform(start + DAY, now - DAY)
    status: list[StatusRow] = []
    incidents: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    for entity, site in entities(inventory):
        rows: list[tuple[float, str]] = [(start, "up")]
        ts = start
        while True:
            ts += rng.expovariate(1.5 / DAY)  # about one and a half flaps a day
            if ts >= now:
                break
            long = rng.random() < 0.02
            length = rng.expovariate(1 / 3_600) if long else rng.expovariate(1 / 180)
            bad = "degraded" if entity.startswith("link:") and rng.random() < 0.3 else "down"
            rows += [(ts, bad), (ts + length, "up")]
            if bad == "down" and length > INCIDENT_AFTER and ts + length < now:
                number = len(incidents) + 1
                incidents.append(
                    _incident(number, entity, site, users[site], opened=ts, resolved=ts + length)
                )
                events += _events(number, ts, ts + length)
            ts += length
        if site in maintained and entity.startswith("site:"):
            began = rng.uniform(start + DAY, now - DAY)
            rows += [(began, "maintenance"), (began + 4 * 3_600, "up")]
        rows += [(gap, "unknown"), (gap + 1_800, "up")]
        rows.sort()
        status += [(entity, at, said, None) for at, said in rows if at < now]
    with_due = []
    for row in incidents:
        priority, opened = row[2], row[8]
        with_due.append((*row, calendar.due_at(opened, SLA[priority])))
    return Month(status, with_due, events)


def _incident(
    number: int, entity: str, site: str, users: int, *, opened: float, resolved: float
) -> tuple[Any, ...]:
    """An incident row (its due time added later), resolved when its stretch ended."""
    kind, _, ident = entity.partition(":")
    priority = "P1" if users >= 30 else "P2" if kind == "site" or users >= 10 else "P3"
    return (
        number,
        entity,
        priority,
        "resolved",
        f"{ident} down",
        json.dumps({"kind": kind, "id": ident}),
        json.dumps([site]),
        users,
        opened,
        opened + 600,
        "analyst",
        resolved,
        None,
        int(number % 50 == 0),  # major
        0,
    )


def _events(incident: int, opened: float, resolved: float) -> list[tuple[Any, ...]]:
    return [
        (incident, opened, "opened", None, "{}"),
        (incident, opened + 600, "acknowledged", "analyst", "{}"),
        (incident, resolved, "resolved", None, "{}"),
    ]


INCIDENT_COLUMNS = (
    "id", "key", "priority", "status", "title", "cause", "sites", "affected_users", "opened_at",
    "acknowledged_at", "acknowledged_by", "resolved_at", "resolved_by", "major", "flaps",
    "due_at",
)  # fmt: skip


EVENT_COLUMNS = ("incident", "ts", "kind", "author", "detail")


def load(store: Store, month: Month) -> float:
    """Write the month in bulk (COPY on PostgreSQL); return the seconds it took."""
    began = time.perf_counter()
    with store.db.writing() as tx:
        tx.copy_rows("status_log", ("entity", "ts", "status", "evidence"), month.status)
        tx.copy_rows("incidents", INCIDENT_COLUMNS, month.incidents)
        tx.copy_rows(
            "incident_events", ("incident", "ts", "kind", "author", "detail"), month.events
        )
    with store.db.writing() as tx:  # the planner's figures, as autovacuum would have them
        tx.execute("ANALYZE")
    return time.perf_counter() - began


def timed(runs: int, warm_up: int, work: Callable[[], object]) -> Timing:
    for _ in range(warm_up):
        work()
    seconds = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - began)
    return Timing(seconds)


def bare_read(store: Store, start: float, end: float) -> int:
    """Read the status log rows of [start, end) and nothing else; return how many."""
    with store.db.reading() as db:
        rows = db.execute(
            "SELECT entity, ts, status FROM status_log WHERE ts >= ? AND ts < ?", (start, end)
        ).fetchall()
    return len(rows)


def bench_config(inventory: Inventory) -> CollectorConfig:
    """The example collector config with the generated inventory, its agents and one viewer."""
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    return dataclasses.replace(
        config,
        inventory=inventory,
        agents=tuple(
            AgentCredential(f"{site.id}-agent", site.id, hashlib.sha256(b"unused").hexdigest())
            for site in inventory.sites
        ),
        api_tokens=(ApiToken("bench", "viewer", hashlib.sha256(TOKEN.encode()).hexdigest()),),
        notify=(),
    )


def measure(
    backend: str, store: Store, config: CollectorConfig, month: Month, args: argparse.Namespace
) -> Figures:
    inventory = config.inventory
    loaded = load(store, month)
    now = time.time()
    today = datetime.fromtimestamp(now, UTC).date()
    start, end = period_bounds(today - timedelta(days=30), today - timedelta(days=1),
                               inventory.timezone)  # fmt: skip
    expected = sum(1 for row in month.status if start <= row[1] < end)
    counted = bare_read(store, start, end)
    if counted != expected:
        sys.exit(f"{backend}: the bare read found {counted} status rows, not {expected}")
    peer = timed(args.reports, 1, lambda: bare_read(store, start, end))
    report = timed(
        args.reports, 1, lambda: report_json(build_report(store, inventory, start, end, now))
    )
    built = build_report(store, inventory, start, end, now)
    covered = sum(s.always.counted + s.always.maintenance + s.always.unknown for s in built.sites)
    if abs(covered - len(inventory.sites) * (end - start)) > 1.0:
        sys.exit(f"{backend}: the report's site seconds add up to {covered:.0f}, not the period's")
    if built.opened != sum(1 for row in month.incidents if start <= row[8] < end):
        sys.exit(f"{backend}: the report counts {built.opened} incidents, not the month's")
    # the collector's clock, which its API answers by, stands still: answers can be compared
    collector = Collector(config, store, clock=ManualClock(now))
    collector.pipeline.warm_up()  # as `sitewatch collector` starts: its start marked in the log
    feed(collector.pipeline.book, inventory, now, random.Random(11))  # noqa: S311 -- seeded
    collector.pipeline.correlate(now)
    heartbeats = collector.heartbeats

    def views() -> None:
        [site_json(view, heartbeats.get(view.id)) for view in collector.views()]

    view_timing = timed(args.requests, args.warm_up, views)
    began = time.perf_counter()
    afresh = asyncio.run(uncached(collector, now))
    afresh_seconds = time.perf_counter() - began
    sites, first, size = asyncio.run(
        _sites_over_http(collector, afresh, args.requests, args.warm_up)
    )
    return Figures(backend, loaded, peer, report, view_timing, afresh_seconds, sites, first, size)


async def uncached(collector: Collector, now: float) -> Any:
    """The sites answer as the API built it before it kept anything between requests."""
    views = collector.views(now)
    calendar = collector.incidents.calendar
    shares = await availability_of(collector.store, calendar, views, now)
    body = [site_json(view, collector.heartbeats.get(view.id), shares) for view in views]
    return json.loads(json.dumps(finite(body), allow_nan=False))


def same(mine: Any, theirs: Any) -> bool:
    """Whether two answers are equal, floats to the last few bits (sums in another order)."""
    if isinstance(mine, float) and isinstance(theirs, float):
        return math.isclose(mine, theirs, rel_tol=1e-9)
    if isinstance(mine, dict) and isinstance(theirs, dict):
        return mine.keys() == theirs.keys() and all(same(mine[k], theirs[k]) for k in mine)
    if isinstance(mine, list) and isinstance(theirs, list):
        return len(mine) == len(theirs) and all(map(same, mine, theirs))
    return bool(mine == theirs)


async def _sites_over_http(
    collector: Collector, afresh: Any, requests: int, warm_up: int
) -> tuple[Timing, float, int]:
    """Serve the app on 127.0.0.1 and time `GET /api/v1/sites`, one request at a time; its
    answer must be `afresh`, the one built without keeping anything between requests."""
    runner = web.AppRunner(build_app(collector), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port: int = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}/api/v1/sites"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def get() -> bytes:
                async with session.get(url, headers=headers) as response:
                    body = await response.read()
                    if response.status != 200:
                        sys.exit(f"GET /api/v1/sites: {response.status} {body[:300]!r}")
                    return body

            began = time.perf_counter()
            body = await get()  # the first: whatever is cached between requests is made here
            first = time.perf_counter() - began
            for _ in range(warm_up):
                body = await get()
            answer = json.loads(body)
            if not any(site["availability"]["30d"] is not None for site in answer):
                sys.exit("GET /api/v1/sites gave no availability")
            if not same(answer, afresh):
                sys.exit("GET /api/v1/sites differs from the answer built afresh")
            seconds = []
            for _ in range(requests):
                began = time.perf_counter()
                body = await get()
                seconds.append(time.perf_counter() - began)
        return Timing(seconds), first, len(body)
    finally:
        await runner.cleanup()


@dataclass
class Backends:
    """Where each backend's store lives; a PostgreSQL server is stopped and removed at exit."""

    folder: Path
    server: Any = None  # tests.pg.PostgresServer

    def sqlite(self) -> Store:
        return Store(self.folder / "report-bench.db")

    def postgresql(self) -> Store:
        directory = pg.temporary_directory()
        try:
            self.server = pg.start_postgres(directory)
        except (pg.PostgresError, OSError):
            pg.remove_directory(directory)
            raise
        return Store(self.server.url(self.server.create_database("report_bench")))

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server.remove()


def stores(backends: Backends, wanted: list[str]) -> Iterator[tuple[str, Store]]:
    for name in wanted:
        store = getattr(backends, name)()
        try:
            yield name, store
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--devices", type=int, default=50, help="per site")
    parser.add_argument("--requests", type=int, default=50, help="timed GET /api/v1/sites")
    parser.add_argument("--warm-up", type=int, default=3, help="untimed requests first")
    parser.add_argument("--reports", type=int, default=5, help="timed reports")
    parser.add_argument(
        "--backend", action="append", choices=("sqlite", "postgresql"), help="default: both"
    )
    args = parser.parse_args()
    rng = random.Random(7)  # noqa: S311 -- seeded: the same inventory and month every run
    inventory = inventory_of(args.sites, args.devices, rng)
    config = bench_config(inventory)
    now = time.time()
    month = generate_month(inventory, now - 32 * DAY, now, rng)
    links = sum(len(site.links) for site in inventory.sites)
    print(
        f"Report bench: {len(inventory.sites)} sites, {links} links, "
        f"{sum(len(s.devices) for s in inventory.sites)} devices; {len(month.status):,} status "
        f"rows over 32 days, {len(month.incidents):,} incidents, {len(month.events):,} events"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="sitewatch-report-bench-") as folder:
        backends = Backends(Path(folder))
        try:
            for name, store in stores(backends, args.backend or ["sqlite", "postgresql"]):
                results.append(measure(name, store, config, month, args))
        finally:
            backends.close()
    print(f"median / p95 in ms; report of {args.reports} runs, the rest of {args.requests}")
    print(f"{'backend':10} {'load s':>7} {'peer':>13} {'report':>15} {'views':>13} "
          f"{'afresh':>6} {'GET sites':>15} {'first':>6} {'MB':>5}")  # fmt: skip
    for f in results:
        print(
            f"{f.backend:10} {f.loaded:7.1f} {_ms(f.peer):>13} {_ms(f.report):>15} "
            f"{_ms(f.views):>13} {f.afresh * 1000:6.0f} {_ms(f.sites):>15} {f.first * 1000:6.0f} "
            f"{f.sites_bytes / 1e6:5.1f}"
        )
    print(
        f"goal: report under {REPORT_GOAL_S:g} s, GET /api/v1/sites p95 under "
        f"{SITES_P95_GOAL_MS:g} ms; peer: the bare read of the report's status rows"
    )


def _ms(timing: Timing) -> str:
    return f"{timing.p50 * 1000:.0f} / {timing.p95 * 1000:.0f}"


if __name__ == "__main__":
    main()
