"""Two collectors on one PostgreSQL database, each serving the real app with its loops.

An agent's batch posted to either reaches the leader's state book; the leader alone opens the
incident, once, and sends its notification, once; the follower shows it. When the leader
stops, the follower takes over from the database alone: the open incident keeps its clock,
its resolution is announced once, and nothing is opened twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from collector.api import build_app
from collector.service import Collector
from collector.store import Store
from probes.result import ProbeResult
from sitewatch.config.files import load_collector_config
from tests.apps import leading
from tests.receivers import WebhookReceiver

DEADLINE = 30.0  # seconds: takeover is due within ~6 s; passes run every second
STARTED = 300.0  # seconds before the test that the collectors count as started
AGENT, STAFF = "agent-token-" + "a" * 20, "staff-token-" + "s" * 20
INVENTORY = """\
organisation: Test Municipality
timezone: Africa/Johannesburg
thresholds: {interval: 1s, timeout: 300ms, fail_after: 2, recover_after: 1}
sites:
  - id: alpha
    name: Alpha Offices
    users: 12
    links:
      - {id: alpha-mpls, kind: mpls, role: primary, to: hub, probe: [127.0.0.1]}
    devices:
      - {id: alpha-prn, kind: printer, address: 127.0.0.21, probes: [icmp]}
"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Replica:
    collector: Collector
    client: TestClient[Any, Any]

    @property
    def leading(self) -> bool:
        return self.collector.election.leading


async def until(condition: Callable[[], bool], what: str) -> None:
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < DEADLINE, f"not within {DEADLINE:g} s: {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def replicas(
    tmp_path: Path, migrated_postgres_url: str
) -> AsyncIterator[tuple[list[Replica], AsyncExitStack, WebhookReceiver]]:
    """Two collectors on one database, each with its own store and address."""
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    with WebhookReceiver() as hooks:
        async with AsyncExitStack() as stack:
            made = []
            for port in (8081, 8082):
                path = tmp_path / f"collector-{port}.yaml"
                path.write_text(
                    f"listen: 127.0.0.1:{port}\n"
                    f"database: {migrated_postgres_url}\n"
                    "inventory: inventory.yaml\n"
                    f"agents:\n  - {{id: alpha-01, site: alpha, token_sha256: {sha(AGENT)}}}\n"
                    f"api_tokens:\n  - {{name: noc, role: viewer, token_sha256: {sha(STAFF)}}}\n"
                    "notify:\n"
                    f"  - {{kind: webhook, url: '{hooks.url('/hook')}', format: generic}}\n"
                )
                store = Store(migrated_postgres_url)
                stack.callback(store.close)
                collector = Collector(load_collector_config(path), store)
                # warmed up as if started minutes ago: past the hold a restart puts on
                # resolving the incidents it reads back (IncidentBook.load)
                await asyncio.to_thread(collector.pipeline.warm_up, time.time() - STARTED)
                client = TestClient(TestServer(build_app(collector, loops=True)))
                await stack.enter_async_context(client)
                made.append(Replica(collector, client))
            yield made, stack, hooks


class Agent:
    """Posts results as alpha's agent, each with a fresh sequence number and time."""

    def __init__(self) -> None:
        self.seq = 0

    async def post(self, replica: Replica, *, ok: bool, count: int = 3) -> None:
        results = []
        for _ in range(count):
            self.seq += 1
            when = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            result = {"target": "alpha-prn", "kind": "icmp", "ts": when, "ok": ok}
            results.append({"seq": self.seq, "result": result})
            await asyncio.sleep(0.002)  # distinct probe times, as an agent's rounds have
        link = {"target": "alpha-mpls", "kind": "icmp", "ts": when, "ok": True}
        self.seq += 1
        results.append({"seq": self.seq, "result": link})
        response = await replica.client.post(
            "/api/v1/agent/results",
            json={"agent": "alpha-01", "outbox": "c" * 32, "results": results},
            headers={"Authorization": f"Bearer {AGENT}"},
        )
        assert response.status == 200, await response.text()


def incident_rows(store: Store) -> list[tuple[Any, ...]]:
    with store.db.reading() as db:
        return db.execute(
            "SELECT id, key, status, opened_at, due_at FROM incidents ORDER BY id"
        ).fetchall()


async def incidents_seen(replica: Replica) -> list[dict[str, Any]]:
    response = await replica.client.get(
        "/api/v1/incidents", headers={"Authorization": f"Bearer {STAFF}"}
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    return list(body["incidents"] if isinstance(body, dict) else body)


async def test_a_batch_at_the_follower_makes_one_incident_and_a_takeover_keeps_it(
    replicas: tuple[list[Replica], AsyncExitStack, WebhookReceiver],
) -> None:
    made, _, hooks = replicas
    await until(lambda: any(r.leading for r in made), "one collector leads")
    leader = next(r for r in made if r.leading)
    follower = next(r for r in made if not r.leading)
    store = leader.collector.store
    agent = Agent()

    await until(
        lambda: follower.collector.election.leader == leader.collector.election.name,
        "the follower reads who leads",
    )
    for replica, role in ((leader, "leader"), (follower, "follower")):
        response = await replica.client.get("/healthz")
        said = await response.json()
        assert (said["role"], said["replica"]) == (role, replica.collector.election.name)
        assert said["leader"] == leader.collector.election.name
        metrics = await (await replica.client.get("/metrics")).text()
        name = replica.collector.election.name
        assert f'sitewatch_leader{{replica="{name}"}} {float(role == "leader")}' in metrics
        assert "sitewatch_leader_epoch 1.0" in metrics
    page = await (await follower.client.get("/login")).text()  # every page's footer
    assert f"Served by {html.escape(follower.collector.election.name)}" in page
    assert f"leader {html.escape(leader.collector.election.name)}" in page

    await agent.post(follower, ok=False)  # posted to the follower, correlated by the leader
    await until(
        lambda: [row[1:3] for row in incident_rows(store)] == [("device:alpha-prn", "open")],
        "the leader opens the printer's incident",
    )
    await until(lambda: len(hooks.received("/hook")) >= 1, "its notification is sent")
    await until(
        lambda: bool(follower.collector.incidents.open_incidents()),
        "the follower reads the leader's incident",
    )
    seen = await incidents_seen(follower)
    assert [(i["key"], i["status"]) for i in seen] == [("device:alpha-prn", "open")]
    assert follower.collector.arrivals.read == 0  # nothing was stored by the leader yet
    assert leader.collector.arrivals.read >= 4  # the follower's batch, read back
    [(incident_id, _, _, opened_at, due_at)] = incident_rows(store)

    await leader.client.close()  # the leader goes: its app's loops stop, its lock with them
    await until(lambda: follower.leading, "the follower takes over")
    await agent.post(follower, ok=False)  # the cause persists: nothing new is opened
    passes = follower.collector.pipeline.passes
    await until(lambda: follower.collector.pipeline.passes >= passes + 2, "two more passes")
    rows = incident_rows(store)
    assert rows == [(incident_id, "device:alpha-prn", "open", opened_at, due_at)]

    await agent.post(follower, ok=True)
    await until(
        lambda: [row[2] for row in incident_rows(store)] == ["resolved"],
        "the new leader resolves the incident",
    )
    await until(lambda: len(hooks.received("/hook")) >= 2, "the resolution is sent")
    events = [hook.body.get("event") for hook in hooks.received("/hook")]
    assert events.count("opened") == 1
    assert events.count("resolved") == 1


async def test_a_collector_starting_beside_a_leader_takes_each_agent_s_contact_as_it_is(
    tmp_path: Path, migrated_postgres_url: str
) -> None:
    """Alone, a starting collector counts every agent heard at its start (its own gap is no
    agent's silence). Beside a live leader there was no gap: alpha's agent, silent for five
    minutes, is silent in the starting follower's book too, as in the leader's. Else a
    takeover within the allowance would find it heard, and resolve the leader's incident."""
    path = tmp_path / "collector.yaml"
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    path.write_text(
        "listen: 127.0.0.1:8081\n"
        f"database: {migrated_postgres_url}\n"
        "inventory: inventory.yaml\n"
        f"agents:\n  - {{id: alpha-01, site: alpha, token_sha256: {sha(AGENT)}}}\n"
    )
    config = load_collector_config(path)
    now = time.time()
    ping = ProbeResult("alpha-prn", "icmp", datetime.fromtimestamp(now - 300, UTC), ok=True)
    first, second = Store(migrated_postgres_url), Store(migrated_postgres_url)
    try:
        first.results.ingest("alpha-01", [(1, ping)], received=now - 300.0)
        (alpha,) = config.inventory.sites
        leader = Collector(config, first)
        async with leading(leader):
            beside = Collector(config, second)
            await asyncio.to_thread(beside.pipeline.warm_up, now)
            assert not beside.pipeline.book.heard_lately(alpha, now)
        alone = Collector(config, second)  # the leader gone: nobody watched since
        await asyncio.to_thread(alone.pipeline.warm_up, now)
        assert alone.pipeline.book.heard_lately(alpha, now)
    finally:
        first.close()
        second.close()
