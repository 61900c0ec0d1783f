"""The sites API's caches give the answer the API gives without them, whatever has moved.

The availability cache against `availability.windows_availability` (the log read and measured
afresh) after every kind of write the log gets: live changes, a collector's gap and the rows
rebuilt for it, and time moving on; and `GET /api/v1/sites` of a real app against the site JSON
built afresh from the same views, after status changes the pipeline logs from real evidence, a
maintenance window staff add, and the clock moving on. On both backends.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from collector.api import build_app
from collector.availability import windows_availability
from collector.body import finite
from collector.clock import ManualClock
from collector.service import Collector
from collector.site_cache import AvailabilityCache, SiteFragments, entities_of
from collector.sla import WorkingCalendar
from collector.store import CENTRE, DatabaseSpec, Store
from collector.store.status import StatusChange
from collector.views import Availability, availability_of, site_json
from probes.result import ProbeResult
from sitewatch.config.files import load_collector_config
from sitewatch.config.model import ApiToken

ROOT = Path(__file__).resolve().parents[2]
STAFF = "staff-secret"
OPERATOR = "operator-secret"
START = 1_767_225_600.0  # 2026-01-01 00:00 UTC: a Thursday, a public holiday in South Africa
HOUR, DAY = 3_600.0, 86_400.0
ENTITIES = ("site:tesko", "link:tesko-mpls", "site:willowvale", "link:willowvale-mpls")


def assert_same(cached: Any, fresh: Any, where: str = "") -> None:
    """Assert two answers are equal, floats to the last few bits (sums in another order)."""
    if isinstance(fresh, float) and isinstance(cached, float):
        assert math.isclose(cached, fresh, rel_tol=1e-9), f"{where}: {cached} != {fresh}"
    elif isinstance(fresh, dict) and isinstance(cached, dict):
        assert cached.keys() == fresh.keys(), where
        for key in fresh:
            assert_same(cached[key], fresh[key], f"{where}.{key}")
    elif isinstance(fresh, list | tuple) and isinstance(cached, list | tuple):
        assert len(cached) == len(fresh), where
        for number, (mine, theirs) in enumerate(zip(cached, fresh, strict=True)):
            assert_same(mine, theirs, f"{where}[{number}]")
    else:
        assert cached == fresh, f"{where}: {cached!r} != {fresh!r}"


def calendar() -> WorkingCalendar:
    inventory = load_collector_config(ROOT / "config" / "collector.yaml").inventory
    return WorkingCalendar(inventory.business_hours, inventory.timezone)


def fresh(store: Store, now: float) -> Availability:
    return windows_availability(store, calendar(), ENTITIES, now)


def log(store: Store, at: float, **statuses: str) -> None:
    """Log changes as the pipeline does: `link__tesko_mpls="down"` for link:tesko-mpls."""
    changes = [
        StatusChange(name.replace("__", ":").replace("_", "-"), status, None)
        for name, status in statuses.items()
    ]
    store.status.log(changes, at)


def test_cached_availability_follows_every_write_and_time(store: Store) -> None:
    cache = AvailabilityCache(store, calendar())
    rng = random.Random(5)
    status_log = store.status
    status_log.mark_gap(ENTITIES, START - 41 * DAY)  # the collector's first start
    log(store, START - 40 * DAY, site__tesko="up", link__tesko_mpls="up")
    at = START - 39 * DAY
    while at < START:  # flaps over more than the longest window, some in working hours
        entity = rng.choice(["site__tesko", "site__willowvale", "link__willowvale_mpls"])
        log(store, at, **{entity: rng.choice(["down", "degraded", "up", "maintenance", "up"])})
        at += rng.uniform(0.2, 9) * HOUR
    now = START
    before = cache.windows(ENTITIES, now)
    assert_same(before, fresh(store, now))
    assert before["link:tesko-mpls"][0]["24h"] == 1.0

    log(store, now + 10, link__tesko_mpls="down")  # a live change: seen at the next answer
    now += 600
    after = cache.windows(ENTITIES, now)
    assert_same(after, fresh(store, now))
    assert after["link:tesko-mpls"][0]["24h"] == pytest.approx(1 - 590 / DAY)

    for step in (1.0, HOUR, 7 * HOUR, 2 * DAY, 31 * DAY):  # time moves on, nothing is logged
        now += step
        assert_same(cache.windows(ENTITIES, now), fresh(store, now))

    now += 3 * HOUR  # the collector was away: its restart logs the gap unknown, in the past
    status_log.mark_gap(ENTITIES, now)
    log(store, now, site__tesko="up", link__tesko_mpls="up")
    assert_same(cache.windows(ENTITIES, now + 60), fresh(store, now + 60))
    (gap,) = status_log.gaps(0.0)
    rebuilt = [("site:tesko", gap.start + HOUR, "down"), ("link:tesko-mpls", gap.start, "up")]
    status_log.replace(gap, rebuilt, now + 120)  # late results rebuild the gap's rows
    answer = cache.windows(ENTITIES, now + 180)
    assert_same(answer, fresh(store, now + 180))
    assert answer["site:tesko"][0]["24h"] is not None


def test_an_empty_log_and_a_first_row_after_it(store: Store) -> None:
    cache = AvailabilityCache(store, calendar())
    empty = cache.windows(ENTITIES, START)
    assert empty["site:tesko"] == ({"24h": None, "7d": None, "30d": None},) * 2
    store.status.mark_gap(ENTITIES, START)  # a first start: nothing was watched before
    log(store, START + 5, site__tesko="down")
    answer = cache.windows(ENTITIES, START + 65)
    assert answer["site:tesko"][0]["24h"] == 0.0  # the first row is seen: not stale
    assert_same(answer, fresh(store, START + 65))


def test_a_log_written_before_the_collector_marked_its_start(store: Store) -> None:
    """Without `alive_until` (no start marked) the cache looks for new rows on every answer."""
    cache = AvailabilityCache(store, calendar())
    log(store, START, site__tesko="up")
    assert cache.windows(ENTITIES, START + 60)["site:tesko"][0]["24h"] == 1.0
    log(store, START + 60, site__tesko="down")
    answer = cache.windows(ENTITIES, START + 120)
    assert answer["site:tesko"][0]["24h"] == 0.5
    assert_same(answer, fresh(store, START + 120))


def test_site_fragments_are_remade_when_what_they_show_changes(store: Store) -> None:
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    collector = Collector(config, store)
    views = collector.views(START)
    fragments = SiteFragments()
    shares: Availability = {e: ({"24h": 1.0}, {"24h": None}) for e in entities_of(views)}

    def expected(given: Availability) -> Any:
        return [site_json(view, None, given) for view in views]

    assert json.loads(fragments.text(views, {}, shares)) == expected(shares)
    assert fragments.text(views, {}, shares) == json.dumps(finite(expected(shares)))
    changed: Availability = {**shares, "link:tesko-mpls": ({"24h": 0.5}, {"24h": 0.25})}
    assert json.loads(fragments.text(views, {}, changed)) == expected(changed)
    views = [replace(view, status="down") if view.id == "tesko" else view for view in views]
    assert json.loads(fragments.text(views, {}, changed)) == expected(changed)


# -- the API -------------------------------------------------------------------------------


@pytest.fixture(params=["started", "not-started"])
async def served(
    request: pytest.FixtureRequest, database_spec: DatabaseSpec
) -> AsyncIterator[tuple[TestClient[Any, Any], Collector, ManualClock]]:
    """A collector's app on a fake clock: started as `sitewatch collector` starts it (its
    start marked in the log), or not, as tests and benches often build one."""
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    tokens = (
        ApiToken("screen", "viewer", _sha(STAFF)),
        ApiToken("desk", "operator", _sha(OPERATOR)),
    )
    config = replace(config, api_tokens=tokens)
    clock = ManualClock(START + 9 * HOUR + DAY)  # a working Friday morning
    store = Store(database_spec)
    collector = Collector(config, store, clock=clock)
    if request.param == "started":
        collector.pipeline.warm_up()
    try:
        async with TestClient(TestServer(build_app(collector))) as client:
            yield client, collector, clock
    finally:
        store.close()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def sites(client: TestClient[Any, Any]) -> Any:
    response = await client.get("/api/v1/sites", headers={"Authorization": f"Bearer {STAFF}"})
    assert response.status == 200
    return await response.json()


async def uncached(collector: Collector, now: float) -> Any:
    """The sites answer built afresh: every site's availability read and measured again."""
    views = collector.views(now)
    shares = await availability_of(collector.store, collector.incidents.calendar, views, now)
    body = [site_json(view, collector.heartbeats.get(view.id), shares) for view in views]
    return json.loads(json.dumps(finite(body)))


async def centre(collector: Collector, clock: ManualClock, ok: dict[str, bool]) -> None:
    """The centre pings the links' edges three times, then a correlation pass logs the news."""
    for _ in range(3):
        clock.advance(30)
        results = [
            ProbeResult(link, "icmp", _utc(clock.now()), ok=up, rtt_ms=5.0 if up else None)
            for link, up in ok.items()
        ]
        await collector.pipeline.observe(CENTRE, results)
    now = clock.now()
    correlation, changed = collector.pipeline.correlate(now)
    await asyncio.to_thread(collector.pipeline.record, correlation, changed, now)


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def by_id(answer: Any) -> dict[str, Any]:
    return {site["id"]: site for site in answer}


def link_of(site: Any, link: str) -> Any:
    return next(x for x in site["links"] if x["id"] == link)


async def test_the_sites_answer_is_the_one_built_afresh_after_each_change(
    served: tuple[TestClient[Any, Any], Collector, ManualClock],
) -> None:
    client, collector, clock = served
    links = {link.id for _, link in collector.config.inventory.links() if link.edge is not None}
    await centre(collector, clock, dict.fromkeys(links, True))
    clock.advance(HOUR)
    first = await sites(client)
    assert_same(first, await uncached(collector, clock.now()))
    assert link_of(by_id(first)["tesko"], "tesko-mpls")["availability"]["24h"] == 1.0

    # a status change from evidence: the link's edge stops answering; seen at the next answer
    await centre(collector, clock, {**dict.fromkeys(links, True), "tesko-mpls": False})
    clock.advance(600)
    cut = await sites(client)
    assert_same(cut, await uncached(collector, clock.now()))
    assert link_of(by_id(cut)["tesko"], "tesko-mpls")["availability"]["24h"] < 1.0

    # time moves on: the outage weighs more in the 24h window, no write needed to see it
    clock.advance(HOUR)
    later = await sites(client)
    assert_same(later, await uncached(collector, clock.now()))
    before = link_of(by_id(cut)["tesko"], "tesko-mpls")["availability"]["24h"]
    assert link_of(by_id(later)["tesko"], "tesko-mpls")["availability"]["24h"] < before

    # staff put a site in maintenance: the pass after it logs the site's new status
    now = clock.now()
    window = {
        "scope": "site",
        "target": "willowvale",
        "start": _utc(now).isoformat(),
        "end": _utc(now + 2 * HOUR).isoformat(),
        "reason": "re-cabling",
    }
    response = await client.post(
        "/api/v1/maintenance", json=window, headers={"Authorization": f"Bearer {OPERATOR}"}
    )
    assert response.status == 201, await response.text()
    await centre(collector, clock, dict.fromkeys(links, True))
    clock.advance(HOUR)
    planned = await sites(client)
    assert_same(planned, await uncached(collector, clock.now()))
    assert by_id(planned)["willowvale"]["status"] == "maintenance"


@pytest.mark.parametrize("zone", ["Africa/Johannesburg", "Europe/London", "Pacific/Kiritimati"])
def test_the_calendar_counts_the_same_around_new_year_when_asked_in_a_row(zone: str) -> None:
    """The calendar remembers the last local year's span (the cache's load asks about every
    row): asked in a row around new year, it counts what a calendar asked once counts."""
    hours = load_collector_config(ROOT / "config" / "collector.yaml").inventory.business_hours
    shared = WorkingCalendar(hours, zone)
    rng = random.Random(3)
    new_year = datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    instants = sorted(new_year + rng.uniform(-3, 3) * DAY for _ in range(300))
    instants += [new_year - 14 * HOUR, new_year + 14 * HOUR, new_year - 400 * DAY]
    for start, end in itertools.pairwise(instants):
        low, high = min(start, end), max(start, end) + rng.uniform(0, 40) * DAY
        assert shared.between(low, high) == WorkingCalendar(hours, zone).between(low, high)
