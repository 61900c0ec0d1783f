"""Collector gaps rebuilt from the results agents replay late, checked through availability."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from collector import api, history, service
from collector.api import build_app
from collector.availability import Durations, availability
from collector.maintenance import Window
from collector.pipeline import Pipeline
from collector.service import Collector
from collector.store import CENTRE, Store, status
from probes.result import JsonValue, ProbeResult, format_ts
from sitewatch.config.files import load_collector_config, load_inventory
from sitewatch.config.model import ApiToken
from tests.apps import leading

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = load_inventory(ROOT / "config" / "inventory.yaml")
CONFIG = load_collector_config(ROOT / "config" / "collector.yaml")
AGENTS = {agent.id: agent.site for agent in CONFIG.agents}
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC).timestamp()  # the collector went away
END = START + 3_600.0  # and came back an hour later
HOUR = (START, END)


def probe(ts: float, *, ok: bool = True) -> ProbeResult:
    """Return a ping of Tesko's link at `ts`."""
    return ProbeResult(
        "tesko-mpls",
        "icmp",
        datetime.fromtimestamp(ts, UTC),
        ok=ok,
        rtt_ms=5.0 if ok else None,
        loss=0.0 if ok else 1.0,
        error_kind=None if ok else "timeout",
    )


def pings(first: float, last: float, *, ok: bool = True) -> list[ProbeResult]:
    """Return the pings of every 30 s from `first` to `last`, both included."""
    return [probe(first + 30.0 * n, ok=ok) for n in range(int((last - first) // 30) + 1)]


def ingest(store: Store, source: str, results: list[ProbeResult], received: float) -> None:
    first = len(store.results.sequences(source))
    store.results.ingest(source, list(enumerate(results, start=first)), received=received)


def correlate_at(pipeline: Pipeline, now: float) -> None:
    """Run the collector's correlation pass at `now`, as its loop would, writes included."""
    pipeline.record(*pipeline.correlate(now), now)


def live_until_the_gap(store: Store) -> None:
    """Run a collector on Tesko's pings (agent and centre) for ten minutes, then stop at START."""
    pipeline = Collector(CONFIG, store).pipeline
    pipeline.warm_up(now=START - 600.0)
    for result in pings(START - 600.0, START - 30.0):
        ts = result.ts.timestamp()
        ingest(store, "tesko-01", [result], ts)
        ingest(store, CENTRE, [result], ts)
        pipeline.book.observe("agent", result)
        pipeline.book.observe("centre", result)
        pipeline.book.heard_from("tesko-01", ts, ts)
        correlate_at(pipeline, ts)
    correlate_at(pipeline, START)  # last noted alive at START


def restart(store: Store, backlog: list[ProbeResult], received: float = END + 60.0) -> None:
    """Start a collector at END, then let Tesko's agent replay its backlog a minute later."""
    pipeline = Collector(CONFIG, store).pipeline
    pipeline.warm_up(now=END)
    correlate_at(pipeline, END)  # the first live pass
    if backlog:
        ingest(store, "tesko-01", backlog, received)
        for result in backlog:
            pipeline.book.observe("agent", result)
        pipeline.book.heard_from("tesko-01", received, backlog[-1].ts.timestamp())
    correlate_at(pipeline, received)


def rebuild_due(store: Store, now: float) -> list[history.Gap]:
    return history.rebuild_due(store, INVENTORY, AGENTS, [], now)


def tesko(store: Store, start: float = START, end: float = END) -> Durations:
    return availability(store, "site:tesko", start, end).always


def live_rows(store: Store) -> list[tuple[str, float, str]]:
    with store.db.reading() as db:
        return list(
            db.execute("SELECT entity, ts, status FROM status_log WHERE gap IS NULL ORDER BY rowid")
        )


def test_a_gap_is_unknown_until_replayed_results_show_the_link_up(store: Store) -> None:
    live_until_the_gap(store)
    restart(store, pings(START, END - 30.0))
    assert tesko(store) == Durations(unknown=3_600.0)
    after = tesko(store, END, END + 600.0)
    live = live_rows(store)

    [gap] = rebuild_due(store, END + 120.0)

    assert (gap.start, gap.end) == HOUR
    assert tesko(store) == Durations(up=3_600.0)
    assert availability(store, "link:tesko-mpls", *HOUR).always == Durations(up=3_600.0)
    assert tesko(store, START - 600.0, START) == Durations(up=600.0)  # before: as it was
    assert tesko(store, END, END + 600.0) == after  # after the gap: the live log's, untouched
    assert live_rows(store) == live
    assert store.status.gaps(0.0)[0].rebuilt_at == END + 120.0 - history.RECEIPT_SLACK
    assert rebuild_due(store, END + 1_000.0) == []  # nothing new: nothing to do


def test_a_replay_of_the_link_failing_from_inside_makes_the_gap_down(store: Store) -> None:
    live_until_the_gap(store)
    restart(store, pings(START, START + 570.0) + pings(START + 600.0, END - 30.0, ok=False))

    assert len(rebuild_due(store, END + 120.0)) == 1

    # down at the third failure in a row; a site whose agent probes is no path to the hub
    assert tesko(store) == Durations(up=660.0, down=2_940.0)
    assert availability(store, "link:tesko-mpls", *HOUR).always == Durations(up=660.0, down=2_940.0)
    # the other sites had no evidence before the gap nor in it: unknown, as they were
    assert availability(store, "site:willowvale", *HOUR).always == Durations(unknown=3_600.0)
    assert availability(store, "site:dutywa-pound", *HOUR).always == Durations(unmonitored=3_600.0)


def router_and_path(ts: float) -> list[ProbeResult]:
    """Return what Willowvale's agent says of its two links at `ts`: its router's interfaces
    are up, and its path probe sees traffic leave over the primary."""
    when = datetime.fromtimestamp(ts, UTC)
    said = []
    for link, ifname in (("willowvale-mpls", "up0"), ("willowvale-fibre", "up1")):
        oper: dict[str, JsonValue] = {"ifindex": 2, "ifname": ifname, "oper": "up", "admin": "up"}
        said.append(ProbeResult(link, "interface", when, ok=True, value=oper))
        hop: dict[str, JsonValue] = {"via": "willowvale-mpls", "hop": "10.99.6.1", "ttl": 1}
        said.append(ProbeResult(link, "path", when, ok=True, rtt_ms=1.0, value=hop))
    return said


def test_a_replay_reads_what_the_router_and_the_path_probe_saw(store: Store) -> None:
    """The links of a site with a backup are path-bound by its router's ifOperStatus and the
    path probe, both carried in a result's value; a replay that did not read values rebuilt
    them (and the site) as unknown."""
    backlog = [r for n in range(-20, 120) for r in router_and_path(START + 30.0 * n)]
    ingest(store, "willowvale-01", backlog, received=END + 60.0)

    rows = history.rebuild(store, INVENTORY, AGENTS, [], start=START, end=END)

    willowvale = [row for row in rows if "willowvale" in row[0]]
    assert {(entity, status) for entity, ts, status in willowvale if ts == START} == {
        ("link:willowvale-mpls", "up"),
        ("link:willowvale-fibre", "up"),
        ("site:willowvale", "up"),
    }
    assert [row for row in willowvale if row[2] != "up"] == []


def test_the_centre_s_last_look_counts_into_the_gap_while_it_is_news(store: Store) -> None:
    """A backup link watched by the centre's edge ping and a router that cannot be read: its
    last look before the gap vouches for the link for the silence allowance (90 s at 30 s),
    as an agent's word counts live, then the link is unknown."""
    edges = [
        ProbeResult(link, "icmp", datetime.fromtimestamp(START + 30.0 * n, UTC), ok=True)
        for n in range(-20, 0)
        for link in ("willowvale-mpls", "willowvale-fibre")
    ]
    ingest(store, CENTRE, edges, received=START - 1.0)
    unread: dict[str, JsonValue] = {"ifindex": None, "ifname": "up1", "oper": None, "admin": None}
    backlog = []
    for n in range(-20, 120):
        said = [
            r for r in router_and_path(START + 30.0 * n) if r.kind == "path" or "mpls" in r.target
        ]
        fibre = ProbeResult("willowvale-fibre", "interface", said[0].ts, ok=False, value=unread)
        backlog += [*said, fibre]
    ingest(store, "willowvale-01", backlog, received=END + 60.0)

    rows = history.rebuild(store, INVENTORY, AGENTS, [], start=START, end=END)

    seen = [
        (ts - START, status) for entity, ts, status in rows if entity == "link:willowvale-fibre"
    ]
    assert seen[0] == (0.0, "up")  # the centre's look of 30 s before, still news
    [(went, status)] = seen[1:]
    assert status == "unknown"
    assert 60.0 <= went <= 90.0  # once that look is 90 s old, within one interval
    mpls = [status for entity, _, status in rows if entity == "link:willowvale-mpls"]
    assert mpls == ["up"]  # its router and the path probe kept saying so


def test_a_gap_without_late_results_stays_unknown(store: Store) -> None:
    live_until_the_gap(store)
    restart(store, [])

    assert rebuild_due(store, END + 600.0) == []

    assert tesko(store) == Durations(unknown=3_600.0)
    assert store.status.gaps(0.0) == [history.Gap(1, START, END, None)]


def test_a_second_batch_of_late_results_rebuilds_the_gap_again(store: Store) -> None:
    live_until_the_gap(store)
    restart(store, pings(START, START + 1_770.0))  # the first half of the backlog

    assert len(rebuild_due(store, END + 120.0)) == 1
    # the agent counts as silent once unheard for 90 s, seen at the next 30 s step
    assert tesko(store) == Durations(up=1_890.0, unknown=1_710.0)

    ingest(store, "tesko-01", pings(START + 1_800.0, END - 30.0), END + 300.0)
    assert rebuild_due(store, END + 240.0) == [history.Gap(1, START, END, END + 60.0)]
    assert tesko(store) == Durations(up=3_600.0)
    with store.db.reading() as db:  # the first rebuild's rows were replaced, not piled up
        rows = db.execute(
            "SELECT ts, status FROM status_log WHERE entity = ? AND gap IS NOT NULL",
            ("site:tesko",),
        )
        assert rows.fetchall() == [(START, "up")]


def test_maintenance_during_the_gap_is_replayed_to_the_second(store: Store) -> None:
    live_until_the_gap(store)
    restart(store, pings(START, END - 30.0))
    window = Window(1, "site", "tesko", START + 1_000.0, START + 2_000.0, None, "UPS", "ops", 0.0)

    found = history.rebuild_due(store, INVENTORY, AGENTS, [window], END + 120.0)

    assert len(found) == 1
    assert tesko(store) == Durations(up=2_600.0, maintenance=1_000.0)


def test_results_are_read_in_chunks_in_probe_order(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    live_until_the_gap(store)
    restart(store, pings(START, START + 570.0) + pings(START + 600.0, END - 30.0, ok=False))
    whole = history.rebuild(store, INVENTORY, AGENTS, [], start=START, end=END)
    monkeypatch.setattr(status, "READ_CHUNK", 3)  # the agent's and the centre's share timestamps

    assert history.rebuild(store, INVENTORY, AGENTS, [], start=START, end=END) == whole
    assert ("site:tesko", START + 660.0, "down") in whole
    assert all(START <= ts < END for _, ts, _ in whole)


def test_the_collector_records_its_gap_when_it_restarts(store: Store) -> None:
    first = Collector(CONFIG, store).pipeline
    first.warm_up(now=1_000.0)  # a new database: no gap yet
    correlate_at(first, 1_010.0)
    assert store.status.gaps(0.0) == []

    Collector(CONFIG, store).pipeline.warm_up(now=5_000.0)
    [gap] = store.status.gaps(0.0)
    assert (gap.start, gap.end, gap.rebuilt_at) == (1_010.0, 5_000.0, None)
    store.status.replace(gap, [("site:tesko", 1_010.0, "up")], rebuilt_at=5_100.0)

    # died before its first pass: the next start reports the same gap, longer
    Collector(CONFIG, store).pipeline.warm_up(now=6_000.0)
    assert store.status.gaps(0.0) == [history.Gap(gap.id, 1_010.0, 6_000.0, None)]
    with store.db.reading() as db:  # the rows rebuilt for the shorter gap would hold too long
        rebuilt = db.execute("SELECT count(*) FROM status_log WHERE gap IS NOT NULL")
        assert rebuilt.fetchone() == (0,)


async def test_replay_gaps_rebuilds_soon_after_start_in_a_thread(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = Collector(CONFIG, store)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    calls: list[tuple[object, ...]] = []

    def rebuild(*args: object) -> list[history.Gap]:
        calls.append(args)
        loop.call_soon_threadsafe(stop.set)
        return [history.Gap(1, START, END, None)]

    monkeypatch.setattr(service, "REPLAY_FIRST", 0.0)
    monkeypatch.setattr(history, "rebuild_due", rebuild)
    async with asyncio.timeout(5), leading(collector):
        await collector.replay_gaps(stop)

    [(db, inventory, agents, windows, _)] = calls
    assert (db, inventory, agents, windows) == (store, CONFIG.inventory, AGENTS, ())


# -- a row is (source, outbox, seq): a reinstalled agent numbers from 1 again ----------------

OUTBOXES = ("a" * 32, "b" * 32)


def two_outboxes(store: Store, first: float) -> None:
    """Store three pings from each of two outboxes of one agent, numbered 1-3 in both."""
    for outbox in OUTBOXES:
        numbered = [(n, probe(first + n)) for n in (1, 2, 3)]
        store.results.ingest("tesko-01", numbered, received=first + 10, outbox=outbox)


def test_replayed_results_read_in_chunks_keep_both_outboxes(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_outboxes(store, START)
    monkeypatch.setattr(status, "READ_CHUNK", 1)  # each chunk ends between the two outboxes' rows
    read = [result.ts.timestamp() for _, result in store.status.results(START, END)]
    assert read == [START + 1, START + 1, START + 2, START + 2, START + 3, START + 3]


async def test_the_history_api_pages_through_both_outboxes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "staff-secret"  # noqa: S105 -- a test token
    config = replace(
        CONFIG,
        api_tokens=(ApiToken("screen", "viewer", hashlib.sha256(token.encode()).hexdigest()),),
    )
    first = time.time() - 600
    store = Store(tmp_path / "collector.db")
    try:
        two_outboxes(store, first)
        monkeypatch.setattr(api, "HISTORY_PAGE", 1)  # a page ends between the outboxes' rows
        async with TestClient(TestServer(build_app(Collector(config, store)))) as client:
            since = format_ts(datetime.fromtimestamp(first, UTC))
            response = await client.get(
                f"/api/v1/history?target=tesko-mpls&from={since}",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status == 200, await response.text()
            rows = await response.json()
    finally:
        store.close()
    assert len(rows) == 6
