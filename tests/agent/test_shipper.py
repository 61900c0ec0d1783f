"""The shipper against collectors older and newer than its agent: nothing stalls, nothing is lost
without a word.

The real shipper with a real outbox file talks over loopback to the real collector (its aiohttp
application on port 0 with a real SQLite store), or, where a collector of another version is
needed, to a small aiohttp server on loopback that answers the way such a collector does and
keeps the bodies it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.collectors import Collectors
from agent.outbox import LEGACY_IDENTITY, Outbox
from agent.shipper import BATCH_SIZE, Shipper
from collector.api import build_app
from collector.service import Collector
from collector.store import DEFAULT_RETENTION, Store
from probes.result import format_ts
from sitewatch.config.model import AgentCredential, ApiToken
from tests.agent.test_outbox import make_version_1_outbox
from tests.collector.test_api import example_config

ROOT = Path(__file__).resolve().parents[2]
AGENT, TOKEN, STAFF = "tesko-01", "tesko-secret", "staff-secret"
HEARTBEAT = {"version": "0.1.0", "clock": "2026-11-30T10:00:00Z", "outbox_depth": 0, "dropped": 0}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def result(ts: datetime | None = None, **change: object) -> dict[str, Any]:
    when = format_ts(ts or datetime.now(UTC) - timedelta(minutes=1))
    return {"target": "tesko-mpls", "kind": "icmp", "ts": when, "ok": True, "rtt_ms": 4.0,
            "loss": 0.0, "value": {}, "error_kind": None, "detail": ""} | change  # fmt: skip


@dataclass
class Rig:
    """A collector on loopback and an agent's session to it, counting the POSTs it makes."""

    url: str
    session: aiohttp.ClientSession
    posts: list[int]  # one entry per POST sent

    def shipper(self, outbox: Outbox, heartbeat: dict[str, Any] | None = None) -> Shipper:
        async def beat() -> dict[str, Any]:
            return dict(heartbeat or HEARTBEAT)

        return Shipper(self.session, Collectors((self.url,)), AGENT, outbox, beat)


@dataclass
class Real(Rig):
    """The real collector, its store, and the agent's session to it."""

    collector: Collector
    store: Store


async def _session(posts: list[int]) -> aiohttp.ClientSession:
    tracing = aiohttp.TraceConfig()

    async def counted(*_: object) -> None:
        posts.append(1)

    tracing.on_request_start.append(counted)
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {TOKEN}"}, trace_configs=[tracing]
    )


@pytest.fixture
async def real(tmp_path: Path) -> AsyncIterator[Real]:
    """The real collector, knowing agent tesko-01 at site tesko, and a viewer token."""
    config = example_config(
        (AgentCredential(AGENT, "tesko", sha(TOKEN)),), (ApiToken("screen", "viewer", sha(STAFF)),)
    )
    store = Store(tmp_path / "collector.db")
    collector = Collector(config, store)
    posts: list[int] = []
    try:
        server = TestServer(build_app(collector), host="127.0.0.1")
        async with server, await _session(posts) as session:
            yield Real(str(server.make_url("")).rstrip("/"), session, posts, collector, store)
    finally:
        store.close()


Answer = Callable[[dict[str, Any]], Awaitable[web.Response]]


@pytest.fixture
async def other_version() -> AsyncIterator[Callable[[Answer], Awaitable[tuple[Rig, list[Any]]]]]:
    """Start a loopback server that answers batches with `answer`; return it and its bodies."""
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(answer: Answer) -> tuple[Rig, list[Any]]:
        bodies: list[Any] = []

        async def results(request: web.Request) -> web.Response:
            raw = await request.read()
            body = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
            bodies.append(body)
            return await answer(body)

        app = web.Application()
        app.router.add_post("/api/v1/agent/results", results)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        posts: list[int] = []
        session = await _session(posts)
        sessions.append(session)
        return Rig(str(server.make_url("")).rstrip("/"), session, posts), bodies

    yield start
    for session in sessions:
        await session.close()
    for server in servers:
        await server.close()


def refused(message: str) -> web.Response:
    """An older collector's refusal of a whole batch: a 422 without an index."""
    return web.json_response({"error": {"code": "invalid", "message": message}}, status=422)


async def older_collector(body: dict[str, Any]) -> web.Response:
    """Answer as a collector from before outbox identities and lenient heartbeats does."""
    unknown = sorted(set(body) - {"agent", "results", "heartbeat"})
    if unknown:
        return refused(f"unknown field {unknown[0]!r}")
    extra = sorted(set(body.get("heartbeat") or {}) - {*HEARTBEAT, "host"})
    if extra:
        return refused(f"heartbeat: unknown field {extra[0]!r}")
    return web.json_response({"stored": len(body["results"]), "duplicates": 0})


def legacy_outbox(path: Path) -> Outbox:
    """Return an outbox made by an agent from before identities (schema 1), upgraded."""
    make_version_1_outbox(path)
    return Outbox(path)


# -- the real collector --------------------------------------------------------------------------


async def test_a_heartbeat_with_a_field_the_collector_does_not_know_still_ships(
    real: Real, tmp_path: Path
) -> None:
    with Outbox(tmp_path / "outbox.db") as outbox:
        outbox.put([result(), result()])
        shipper = real.shipper(outbox, HEARTBEAT | {"solar_volts": 12})
        assert await shipper.ship_once() == 2
        assert outbox.depth() == 0
    assert real.store.results.sequences(AGENT) == [1, 2]
    assert real.collector.heartbeats["tesko"].version == "0.1.0"  # the known fields are kept


async def test_an_unavailable_collector_is_left_for_the_next_in_the_list(
    real: Real, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first collector listed does not answer (a port that refuses connections): the
    batch waits in the outbox, and the next try goes to the second, which stores it."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        gone = f"http://127.0.0.1:{closed.getsockname()[1]}"
        collectors = Collectors((gone, real.url))
        with Outbox(tmp_path / "outbox.db") as outbox:
            outbox.put([result(), result()])
            shipper = Shipper(real.session, collectors, AGENT, outbox, beat_of(HEARTBEAT))
            with caplog.at_level(logging.WARNING, logger="agent.collectors"):
                assert await shipper.ship_once() is None
            assert outbox.depth() == 2
            assert collectors.current == real.url
            assert f"collector {gone} unavailable" in caplog.text
            assert await shipper.ship_once() == 2
            assert outbox.depth() == 0
    assert real.store.results.sequences(AGENT) == [1, 2]


def test_the_agent_backs_off_only_when_a_whole_round_of_collectors_failed() -> None:
    collectors = Collectors(("http://a", "http://b"))
    assert not collectors.untried
    collectors.answered("http://a", 0, "refused")
    assert (collectors.current, collectors.untried) == ("http://b", True)  # at once
    collectors.answered("http://b", 503)
    assert (collectors.current, collectors.untried) == ("http://a", False)  # back off
    collectors.answered("http://a", 0, "refused")
    assert (collectors.current, collectors.untried) == ("http://b", True)  # the next round
    collectors.answered("http://b", 200)
    assert not collectors.untried
    alone = Collectors(("http://a",))
    alone.answered("http://a", 0, "refused")
    assert not alone.untried  # one collector: every failure ends a round


async def test_a_dead_first_collector_costs_a_batch_no_backoff(real: Real, tmp_path: Path) -> None:
    """The shipper's run moves to the second collector at once, with no backoff between."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        gone = f"http://127.0.0.1:{closed.getsockname()[1]}"
        with Outbox(tmp_path / "outbox.db") as outbox:
            outbox.put([result(), result()])
            shipper = Shipper(
                real.session, Collectors((gone, real.url)), AGENT, outbox, beat_of(HEARTBEAT)
            )
            running = asyncio.create_task(shipper.run())
            try:
                async with asyncio.timeout(10):
                    while outbox.depth():
                        assert not running.done(), running  # the shipper died
                        await asyncio.sleep(0.01)  # polling the outbox, not synchronising
            finally:
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
    assert real.store.results.sequences(AGENT) == [1, 2]
    assert shipper.backoffs == 0


async def test_a_refusal_is_not_a_reason_to_try_another_collector(
    real: Real, tmp_path: Path
) -> None:
    """A 422 says the batch, not the collector, is at fault: every collector would say it."""
    collectors = Collectors((real.url, "http://127.0.0.1:9"))
    with Outbox(tmp_path / "outbox.db") as outbox:
        outbox.put([result(target="elsewhere")])
        shipper = Shipper(real.session, collectors, AGENT, outbox, beat_of(HEARTBEAT))
        await shipper.ship_once()
    assert collectors.current == real.url


def beat_of(heartbeat: dict[str, Any]) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def beat() -> dict[str, Any]:
        return dict(heartbeat)

    return beat


async def test_a_bad_heartbeat_is_refused_and_the_results_are_stored(
    real: Real, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 400-digit outbox_depth is never stored or shown, and costs the agent nothing else."""
    with Outbox(tmp_path / "outbox.db") as outbox:
        outbox.put([result()])
        shipper = real.shipper(outbox, HEARTBEAT | {"outbox_depth": int("9" * 400)})
        with caplog.at_level(logging.WARNING, logger="agent.shipper"):
            assert await shipper.ship_once() == 1
        assert outbox.depth() == 0
    assert real.store.results.sequences(AGENT) == [1]
    assert real.collector.heartbeats == {}
    assert "refused our heartbeat: heartbeat.outbox_depth: must be a whole number" in caplog.text
    async with real.session.get(f"{real.url}/metrics") as response:
        metrics = await response.text()
    assert 'sitewatch_heartbeats_refused_total{agent="tesko-01"} 1.0' in metrics
    assert "9" * 400 not in metrics


async def test_too_old_results_are_set_aside_together_in_one_round_trip(
    real: Real, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An agent back after more than the retention: three old results of ten cost one reply."""
    old = datetime.now(UTC) - timedelta(seconds=DEFAULT_RETENTION + 3_600)
    records = [result(old if n in (2, 5, 8) else None) for n in range(10)]
    with Outbox(tmp_path / "outbox.db") as outbox:
        seqs = outbox.put(records)
        shipper = real.shipper(outbox)
        with caplog.at_level(logging.WARNING, logger="agent.shipper"):
            assert await shipper.ship_once() == 3
        assert len(real.posts) == 1
        assert (shipper.set_aside, shipper.again) == (3, True)  # the rest goes without waiting
        lines = [r for r in caplog.records if r.name == "agent.shipper"]
        assert len(lines) == 1
        assert lines[0].levelno == logging.WARNING
        assert "refused 3 results for good (first, seq 3: results[2].result.ts: " in (
            lines[0].getMessage()
        )
        assert "older than the collector keeps raw results" in lines[0].getMessage()
        assert await shipper.ship_once() == 7
        assert len(real.posts) == 2
        assert outbox.depth() == 0
    assert real.store.results.sequences(AGENT) == [
        s for n, s in enumerate(seqs) if n not in (2, 5, 8)
    ]


def wide(n: int) -> dict[str, Any]:
    """A custom SNMP result reading 4,096 OIDs: ~8,200 JSON values, 30 of them over the cap."""
    values = {f"oid{i}": i for i in range(4_096)}
    return result(target="ts-prn-01", kind="snmp", value={"profile": "custom", "values": values},
                  detail=f"wide {n}")  # fmt: skip


async def test_a_batch_over_the_value_cap_is_halved_and_then_stored(
    real: Real, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """413 too_many_values: the same results go again at once, half as many per batch."""
    with Outbox(tmp_path / "outbox.db") as outbox:
        seqs = outbox.put([wide(n) for n in range(40)])
        shipper = real.shipper(outbox)
        with caplog.at_level(logging.WARNING, logger="agent.shipper"):
            assert await shipper.ship_once() == 0
        assert (shipper.batch_size, shipper.again, shipper.reachable) == (20, True, True)
        assert "refused a batch of 40 as too large (the body holds over " in caplog.text
        assert outbox.depth() == 40
        assert await shipper.ship_once() == 20
        assert await shipper.ship_once() == 20
        assert outbox.depth() == 0
        assert await shipper.ship_once() == 0  # caught up: full batches again
        assert shipper.batch_size == BATCH_SIZE
    assert real.store.results.sequences(AGENT) == seqs
    assert len(real.posts) == 3  # one refused, two stored


async def test_a_result_refused_as_too_large_on_its_own_is_set_aside(
    other_version: Callable[[Answer], Awaitable[tuple[Rig, list[Any]]]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Halved down to one result; that one still 413 is set aside, the others are stored."""

    async def picky(body: dict[str, Any]) -> web.Response:
        if any(r["result"]["detail"] == "huge" for r in body["results"]):
            error = {"code": "too_many_values", "message": "send smaller batches"}
            return web.json_response({"error": error}, status=413)
        return web.json_response({"stored": len(body["results"]), "duplicates": 0})

    rig, bodies = await other_version(picky)
    with Outbox(tmp_path / "outbox.db") as outbox:
        seqs = outbox.put([result(detail="huge" if n == 2 else "") for n in range(4)])
        shipper = rig.shipper(outbox)
        with caplog.at_level(logging.WARNING, logger="agent.shipper"):
            outcomes = [await shipper.ship_once() for _ in range(6)]
        assert outbox.depth() == 0
    # 4 refused; 2 stored; 2 refused; the third alone refused and set aside; the fourth stored.
    assert outcomes == [0, 2, 0, 1, 1, 0]
    sent = [[r["seq"] for r in body["results"]] for body in bodies]
    assert sent == [seqs, seqs[:2], seqs[2:], seqs[2:3], seqs[3:]]
    assert (shipper.set_aside, shipper.batch_size) == (1, BATCH_SIZE)
    assert f"refuses result seq {seqs[2]} on its own as too large" in caplog.text


async def test_a_value_key_the_collector_does_not_know_is_stored_without_it(
    real: Real, tmp_path: Path
) -> None:
    value = {"sent": 3, "received": 3, "rtt_avg_ms": 4.0, "hops": 7}
    with Outbox(tmp_path / "outbox.db") as outbox:
        outbox.put([result(value=value)])
        assert await real.shipper(outbox).ship_once() == 1
    async with real.session.get(
        f"{real.url}/api/v1/history?target=tesko-mpls",
        headers={"Authorization": f"Bearer {STAFF}"},
    ) as response:
        history = await response.json()
    assert [h["value"] for h in history] == [{"sent": 3, "received": 3, "rtt_avg_ms": 4.0}]
    async with real.session.get(f"{real.url}/metrics") as response:
        metrics = await response.text()
    assert 'sitewatch_ingest_keys_ignored_total{agent="tesko-01"} 1.0' in metrics


async def test_a_batch_already_being_stored_makes_the_second_wait(real: Real) -> None:
    """One batch per agent at a time: a second one gets 429 with Retry-After, not a worker."""
    intake = real.collector.intake
    assert intake.admit(AGENT)  # as if the agent's previous POST were still being stored
    try:
        async with real.session.post(
            f"{real.url}/api/v1/agent/results", json={"results": []}
        ) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "1"
            assert (await response.json())["error"]["code"] == "busy"
    finally:
        intake.leave(AGENT)
    async with real.session.post(
        f"{real.url}/api/v1/agent/results", json={"results": []}
    ) as response:
        assert response.status == 200
    assert intake.busy == set()


# -- collectors of another version ---------------------------------------------------------------


async def test_a_legacy_outbox_is_not_named_so_an_older_collector_takes_it(
    other_version: Callable[[Answer], Awaitable[tuple[Rig, list[Any]]]], tmp_path: Path
) -> None:
    rig, bodies = await other_version(older_collector)
    with legacy_outbox(tmp_path / "outbox.db") as outbox:
        assert outbox.identity == LEGACY_IDENTITY
        outbox.put([result()])
        assert await rig.shipper(outbox).ship_once() == 1
        assert outbox.depth() == 0
    assert "outbox" not in bodies[0]
    with Outbox(tmp_path / "fresh.db") as fresh:  # a new outbox names itself, as it must
        fresh.put([result()])
        await rig.shipper(fresh).ship_once()
    assert bodies[1]["outbox"] == fresh.identity != LEGACY_IDENTITY


async def test_a_batch_refused_whole_is_said_once_and_the_results_wait(
    other_version: Callable[[Answer], Awaitable[tuple[Rig, list[Any]]]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fresh outbox's identity before an older collector: back off, keep, say it once."""
    rig, _ = await other_version(older_collector)
    with Outbox(tmp_path / "outbox.db") as outbox:
        outbox.put([result(), result()])
        shipper = rig.shipper(outbox)
        with caplog.at_level(logging.DEBUG, logger="agent.shipper"):
            outcomes = [await shipper.ship_once() for _ in range(4)]
        # The first batch carries the heartbeat, suspected first; then the run loop backs off.
        assert outcomes == [0, None, None, None]
        assert outbox.depth() == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "unknown field 'outbox'" in errors[0].getMessage()
    assert shipper.reachable is not False  # a refusal is not an outage


async def test_an_older_collector_refusing_our_heartbeat_gets_results_without_it(
    other_version: Callable[[Answer], Awaitable[tuple[Rig, list[Any]]]], tmp_path: Path
) -> None:
    rig, bodies = await other_version(older_collector)
    with legacy_outbox(tmp_path / "outbox.db") as outbox:
        outbox.put([result(), result()])
        shipper = rig.shipper(outbox, HEARTBEAT | {"solar_volts": 12})
        assert await shipper.ship_once() == 0
        assert shipper.again
        assert await shipper.ship_once() == 2
        assert outbox.depth() == 0
    assert [body["heartbeat"] is not None for body in bodies] == [True, False]


async def test_a_busy_collector_is_waited_for_as_it_asks_not_as_an_outage(
    other_version: Callable[[Answer], Awaitable[tuple[Rig, list[Any]]]], tmp_path: Path
) -> None:
    async def busy(_: dict[str, Any]) -> web.Response:
        return web.json_response(
            {"error": {"code": "busy", "message": "a batch is being stored"}},
            status=429,
            headers={"Retry-After": "7"},
        )

    rig, _ = await other_version(busy)
    with Outbox(tmp_path / "outbox.db") as outbox:
        outbox.put([result()])
        shipper = rig.shipper(outbox)
        assert await shipper.ship_once() is None
        assert (shipper.retry_in, shipper.reachable) == (7.0, None)
        assert outbox.depth() == 1
