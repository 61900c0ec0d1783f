"""Two `sitewatch collector` processes on one PostgreSQL database, as an ICT team runs them:
the leader killed (-9) while it opens an incident, and the leader stopped (SIGSTOP) past its
lock, then resumed. Agents' batches are posted on loopback as an agent posts them; PagerDuty is
a webhook receiver on loopback that keeps every event with its dedup_key.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from collector.store import Store
from tests import pg
from tests.collector.test_two_collectors import INVENTORY  # one site, its printer
from tests.deploy import free_port
from tests.lab.lab import wait_until
from tests.receivers import Hook, WebhookReceiver

DEADLINE = 30.0  # seconds for anything awaited; takeover is due within ~6 s
AGENT = "agent-token-" + "a" * 20
ROUTING_KEY = "R0UT1NGKEY0123456789abcdef012345"


@dataclass
class Replica:
    name: str
    port: int
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sitewatch.cli", "collector", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.config.parent,
            )
        wait_until(lambda: self.health() is not None, DEADLINE, f"{self.name} answering")

    def health(self) -> dict[str, Any] | None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:  # noqa: S310 -- loopback
                return dict(json.loads(response.read()))
        except (OSError, urllib.error.URLError):
            return None

    def leads(self) -> bool:
        health = self.health()
        return health is not None and health["role"] == "leader"

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)
        if signum == signal.SIGKILL:
            self.process.wait(timeout=DEADLINE)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)  # a stopped process cannot take SIGTERM
        self.process.terminate()
        try:
            self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=DEADLINE)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


class Agent:
    """alpha's agent: numbered batches about its printer, posted to a collector; what is not
    acknowledged waits to be sent again, as in the agent's outbox."""

    def __init__(self) -> None:
        self.seq = 0
        self.waiting: list[dict[str, Any]] = []
        self.acked: set[int] = set()

    def post(self, replica: Replica, *, ok: bool, count: int = 2) -> None:
        answer = self.try_post(replica, ok=ok, count=count)
        assert answer.status == 200, answer

    def try_post(
        self, replica: Replica, *, ok: bool, count: int = 2, resend: bool = False
    ) -> Answer:
        """Post `count` new results (none with `resend`) after those still waiting."""
        for _ in range(0 if resend else count):
            self.seq += 1
            when = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            self.waiting.append(
                {"seq": self.seq, "result": {"target": "alpha-prn", "kind": "icmp", "ts": when,
                                              "ok": ok}}
            )  # fmt: skip
            time.sleep(0.002)  # distinct probe times, as an agent's rounds have
        body = json.dumps({"agent": "alpha-01", "outbox": "c" * 32, "results": self.waiting})
        request = urllib.request.Request(  # noqa: S310 -- loopback
            f"{replica.url}/api/v1/agent/results",
            data=body.encode(),
            headers={"Authorization": f"Bearer {AGENT}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 -- loopback
                answer = Answer(
                    response.status, dict(response.headers), json.loads(response.read())
                )
        except urllib.error.HTTPError as err:
            answer = Answer(err.code, dict(err.headers), json.loads(err.read()))
        if answer.status == 200:
            self.acked.update(item["seq"] for item in self.waiting)
            self.waiting = []
        return answer


@dataclass
class Pair:
    replicas: tuple[Replica, Replica]
    url: str  # the database
    hooks: WebhookReceiver

    def leader(self) -> Replica:
        leading = [r for r in self.replicas if r.process is not None and r.leads()]
        assert len(leading) == 1, [r.health() for r in self.replicas]
        return leading[0]

    def other(self, replica: Replica) -> Replica:
        return next(r for r in self.replicas if r is not replica)

    def incidents(self) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(
                "SELECT id, key, status, opened_at FROM incidents ORDER BY id"
            ).fetchall()

    def delivered(self) -> int:
        """How many notifications the database records as delivered."""
        with psycopg.connect(self.url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM notifications WHERE delivered_at IS NOT NULL"
            ).fetchone()
        return int(row[0]) if row else 0

    def events(self) -> list[Hook]:
        return self.hooks.received("/v2/enqueue")


@contextmanager
def running_pair(folder: Path, url: str) -> Iterator[Pair]:
    """Two collectors on the database at `url`, posting notifications to a receiver; one leads."""
    (folder / "inventory.yaml").write_text(INVENTORY)
    token_hash = hashlib.sha256(AGENT.encode()).hexdigest()
    with WebhookReceiver() as hooks:
        replicas = []
        for name in ("first", "second"):
            port = free_port()
            config = folder / f"{name}.yaml"
            config.write_text(
                f"listen: 127.0.0.1:{port}\n"
                f"database: {url}\n"
                "inventory: inventory.yaml\n"
                f"agents:\n  - {{id: alpha-01, site: alpha, token_sha256: {token_hash}}}\n"
                "notify:\n"
                f"  - {{kind: webhook, url: '{hooks.url('/v2/enqueue')}', format: pagerduty, "
                f"routing_key: {ROUTING_KEY}}}\n"
            )
            replicas.append(Replica(name, port, config, folder / f"{name}.log"))
        made = Pair((replicas[0], replicas[1]), url, hooks)
        try:
            for replica in made.replicas:
                replica.start()
            wait_until(lambda: sum(r.leads() for r in made.replicas) == 1, DEADLINE, "one leader")
            yield made
        finally:
            for replica in made.replicas:
                replica.stop()


@pytest.fixture
def pair(tmp_path: Path, migrated_postgres_url: str) -> Iterator[Pair]:
    with running_pair(tmp_path, migrated_postgres_url) as made:
        yield made


def one_open(pair: Pair) -> Callable[[], bool]:
    return lambda: [row[1:3] for row in pair.incidents()] == [("device:alpha-prn", "open")]


def test_a_leader_killed_while_it_opens_an_incident_leaves_one_incident_and_one_key(
    pair: Pair,
) -> None:
    leader = pair.leader()
    follower = pair.other(leader)
    agent = Agent()
    agent.post(leader, ok=False)  # the cause: the leader opens its incident within a second
    leader.signal(signal.SIGKILL)  # ... and dies as it does
    wait_until(follower.leads, DEADLINE, "the follower taking over")
    agent.post(follower, ok=False)  # the agent moved on to the collector that answers
    wait_until(one_open(pair), DEADLINE, "one open incident for the printer")
    wait_until(lambda: len(pair.events()) >= 1, DEADLINE, "its trigger sent")
    agent.post(follower, ok=False)
    wait_until(lambda: follower.health() is not None, DEADLINE, "the new leader answering")
    [(_, key, status, _)] = pair.incidents()  # still one: nothing opened twice
    assert (key, status) == ("device:alpha-prn", "open")
    triggers = [e.body for e in pair.events() if e.body["event_action"] == "trigger"]
    assert 1 <= len(triggers) <= 2  # once, or twice across the failover
    assert {t["dedup_key"] for t in triggers} == {key}


def test_a_leader_stopped_past_its_lock_writes_nothing_when_it_resumes(pair: Pair) -> None:
    stale = pair.leader()
    successor = pair.other(stale)
    agent = Agent()
    agent.post(stale, ok=False)
    wait_until(one_open(pair), DEADLINE, "the leader opening the printer's incident")
    wait_until(lambda: len(pair.events()) == 1, DEADLINE, "its trigger sent")
    # and recorded: stopped between the send and the record, it would leave the row to be
    # sent again once its lease ends (at most once more: the other test's case)
    wait_until(lambda: pair.delivered() == 1, DEADLINE, "its delivery recorded")

    stale.signal(signal.SIGSTOP)  # paused: its lock's session goes silent
    wait_until(successor.leads, DEADLINE, "the other collector taking over")
    agent.post(successor, ok=True)  # the printer answers again
    wait_until(
        lambda: [row[2] for row in pair.incidents()] == ["resolved"],
        DEADLINE,
        "the new leader resolving the incident",
    )
    wait_until(lambda: len(pair.events()) == 2, DEADLINE, "the resolve sent")

    stale.signal(signal.SIGCONT)  # it wakes believing it leads, its copy saying "open"
    wait_until(
        lambda: (h := stale.health()) is not None and h["role"] == "follower",
        DEADLINE,
        "the resumed collector finding it no longer leads",
    )
    agent.post(stale, ok=True)  # its passes run: a fenced write would be refused
    wait_until(lambda: "no longer leads" in stale.log.read_text(), DEADLINE, "it saying so")
    assert [row[1:3] for row in pair.incidents()] == [("device:alpha-prn", "resolved")]
    actions = [e.body["event_action"] for e in pair.events()]
    assert actions == ["trigger", "resolve"]


@pytest.fixture
def own_server() -> Iterator[pg.PostgresServer]:
    """A PostgreSQL server of this test's own, to restart without disturbing the others'."""
    server = pg.start_postgres(pg.temporary_directory())
    try:
        yield server
    finally:
        server.stop()
        server.remove()


def test_a_database_restart_costs_agents_a_wait_and_nothing_else(
    tmp_path: Path, own_server: pg.PostgresServer
) -> None:
    """`pg_ctl restart` under two collectors: while it is down, a batch is answered 503 with
    Retry-After (never 500) and stays with the agent; after it, the collectors reconnect by
    themselves, one leads again, and every batch acknowledged is stored."""
    url = own_server.url(own_server.create_database("restarted"))
    Store(url).close()  # migrated, as the first collector to start would
    with running_pair(tmp_path, url) as pair:
        agent = Agent()
        first, second = pair.replicas
        agent.post(first, ok=True)
        own_server.stop()
        refused = agent.try_post(second, ok=True)
        assert refused.status == 503, refused
        assert refused.headers.get("Retry-After")
        assert refused.body["error"]["code"] == "database_unavailable"
        own_server.restart()
        wait_until(lambda: agent.try_post(second, ok=True, resend=True).status == 200,
                   DEADLINE, "the collector taking the batch again")  # fmt: skip
        wait_until(lambda: sum(r.leads() for r in pair.replicas) == 1, DEADLINE, "a leader again")
        with psycopg.connect(url) as conn:
            stored = {row[0] for row in conn.execute("SELECT seq FROM results").fetchall()}
        assert stored == agent.acked  # everything acknowledged, and nothing else
