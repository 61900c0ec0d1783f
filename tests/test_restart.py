"""Truth after a restart: the newest evidence, incidents held until recovery, reinstalled agents.

The incident rule is checked on the real IncidentBook with a fake clock; the rest through real
`sitewatch` processes on loopback (tests/deploy.py), as a user would run them.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import sqlite3
import stat
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.plan_cache import CACHE_NAME
from collector.pipeline import Pipeline
from collector.service import Collector
from collector.store import Store
from probes.result import ProbeResult
from sitewatch.config.files import load_collector_config
from tests.deploy import Deployment, deploy, free_port
from tests.lab import wait_until
from tests.results import probe_result

ROOT = Path(__file__).resolve().parents[1]
PHONE = "alpha-phone"


# -- never resolved without positive evidence (the real IncidentBook, a fake clock) -----------


def open_keys(pipeline: Pipeline) -> set[str]:
    return {incident.key for incident in pipeline.incidents.open_incidents()}


def test_an_open_incident_stays_open_until_its_device_is_seen_recovered(tmp_path: Path) -> None:
    """A phone's P3 survives a restart with no fresh result of it, then resolves on successes.

    Before: once the start-up hold ran out, no cause for the phone (its state unknown, nothing
    probed since) read as "the cause cleared" and the incident was resolved.
    """
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    agent, phone, start = "dutywa-main-01", "dm-phone-01", 1_800_000_000.0
    store = Store(tmp_path / "collector.db")
    try:
        first = Collector(config, store).pipeline  # its state book and passes, run by hand
        first.warm_up(now=start)
        for n in range(4):  # fail_after is 3 in the example inventory
            ts = start + 30.0 * n
            first.book.observe("agent", probe_result(phone, ts, ok=False))
            first.book.heard_from(agent, ts, ts)
            first.record(*first.correlate(ts), ts)
        assert f"device:{phone}" in open_keys(first)

        restart = start + 7_200.0  # two hours later: nothing of the phone in the last hour
        second = Collector(config, store).pipeline
        second.warm_up(now=restart)
        for step in range(61):  # five minutes: far past the start-up hold of 120 s
            now = restart + 5.0 * step
            second.book.observe("agent", probe_result("dutywa-main-mpls", now, ok=True))
            second.book.heard_from(agent, now, now)
            second.record(*second.correlate(now), now)
            assert f"device:{phone}" in open_keys(second), f"resolved {now - restart:g}s after"

        now = restart + 310.0
        second.book.observe("agent", probe_result(phone, now, ok=True))  # up, but on one success
        second.book.heard_from(agent, now, now)
        second.record(*second.correlate(now), now)
        assert f"device:{phone}" in open_keys(second)  # recover_after is 2

        now += 30.0
        second.book.observe("agent", probe_result(phone, now, ok=True))
        second.book.heard_from(agent, now, now)
        second.record(*second.correlate(now), now)
        assert f"device:{phone}" not in open_keys(second)
        (resolved,) = second.incidents.find("resolved", 0.0, now + 1, 10)
        timeline = second.incidents.timeline(resolved.id)
        assert timeline[-1].kind == "resolved"
        assert timeline[-1].detail["reason"] == "the cause cleared"
    finally:
        store.close()


# -- real processes --------------------------------------------------------------------------


def inventory(folder: Path) -> Path:
    """One site on loopback: its link's edge is 127.0.0.1, a phone and a printer."""
    path = folder / "inventory.yaml"
    path.write_text(
        "organisation: Loopback\n"
        "timezone: Africa/Johannesburg\n"
        "thresholds: {interval: 1s, timeout: 300ms, fail_after: 2, recover_after: 2}\n"
        "sites:\n"
        "  - id: alpha\n"
        "    name: Alpha\n"
        "    users: 12\n"
        "    links:\n"
        "      - {id: alpha-mpls, kind: mpls, role: primary, to: hub, probe: [127.0.0.1],\n"
        "         edge: 127.0.0.1}\n"
        "    devices:\n"
        f"      - {{id: {PHONE}, kind: phone, address: 127.0.3.1, probes: [icmp]}}\n"
        "      - {id: alpha-prn, kind: printer, address: 127.0.3.2, probes: [icmp]}\n"
    )
    return path


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    running = deploy(tmp_path, inventory(tmp_path), ["alpha"], f"127.0.0.1:{free_port()}")
    try:
        yield running
    finally:
        running.stop_all()


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the block (and the processes it starts) under `mask`."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def post_results(
    deployment: Deployment, results: list[tuple[int, ProbeResult]], outbox: str | None = None
) -> dict[str, Any]:
    """Post a batch as the site's agent would; return the collector's reply."""
    body: dict[str, Any] = {
        "agent": deployment.agent_id("alpha"),
        "results": [{"seq": seq, "result": result.to_json()} for seq, result in results],
    }
    if outbox is not None:
        body["outbox"] = outbox
    request = urllib.request.Request(  # noqa: S310 -- our own collector on loopback
        f"{deployment.url}/api/v1/agent/results",
        data=gzip.compress(json.dumps(body).encode()),
        headers={
            "Authorization": f"Bearer {deployment.agent_tokens['alpha']}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        reply: dict[str, Any] = json.load(response)
        return reply


def metrics(deployment: Deployment) -> str:
    with urllib.request.urlopen(f"{deployment.url}/metrics", timeout=5) as response:  # noqa: S310
        return str(response.read().decode())


def stored_outboxes(deployment: Deployment, source: str) -> dict[str, list[int]]:
    """Return the sequence numbers stored from a source, by outbox identity."""
    with closing(sqlite3.connect(deployment.database)) as db:
        rows = db.execute(
            "SELECT outbox, seq FROM results WHERE source = ? ORDER BY outbox, seq", (source,)
        ).fetchall()
    found: dict[str, list[int]] = {}
    for outbox, seq in rows:
        found.setdefault(outbox, []).append(seq)
    return found


def modes(folder: Path, prefix: str) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir() if p.name.startswith(prefix)}


def test_a_reinstalled_agent_is_stored_not_dropped_and_files_are_private(
    deployment: Deployment,
) -> None:
    """Wipe the agent's state directory: its results, numbered from 1 again, are all stored.

    Started under a umask of 0, the database, the plan cache and the outbox still come out
    private (the plan holds SNMP credentials).
    """
    agent = deployment.agent_id("alpha")
    with umask(0o000):
        deployment.start_collector()
        deployment.start_agent("alpha")
    wait_until(lambda: sum(map(len, stored_outboxes(deployment, agent).values())) >= 20, 60,
               "the agent's first results stored")  # fmt: skip
    state = deployment.state_dir("alpha")
    assert modes(deployment.folder, "collector.db") == {
        "collector.db": 0o640, "collector.db-wal": 0o640, "collector.db-shm": 0o640,
    }  # fmt: skip
    assert modes(state, CACHE_NAME) == {CACHE_NAME: 0o600}
    assert modes(state, "outbox") == {
        "outbox.sqlite": 0o600, "outbox.sqlite-wal": 0o600, "outbox.sqlite-shm": 0o600,
    }  # fmt: skip
    assert deployment.kill("agent-alpha", signal.SIGTERM) == 0, deployment.log("agent-alpha")
    (first,) = stored_outboxes(deployment, agent)

    shutil.rmtree(state)  # a reinstall, a new disk
    with umask(0o000):
        deployment.start_agent("alpha")

    def reinstalled_results() -> list[int]:
        return [s for o, seqs in stored_outboxes(deployment, agent).items() if o != first
                for s in seqs]  # fmt: skip

    wait_until(lambda: len(reinstalled_results()) >= 20, 60, "the reinstalled agent's results")
    assert reinstalled_results()[:3] == [1, 2, 3]  # numbered from 1 again, and stored
    assert stat.S_IMODE(state.stat().st_mode) == 0o700  # made by the agent, private
    assert f'sitewatch_ingest_duplicates_total{{agent="{agent}"}}' not in metrics(deployment)


def test_an_agent_without_an_outbox_id_keeps_working_and_duplicates_are_shown(
    deployment: Deployment,
) -> None:
    deployment.start_collector()
    now = time.time()
    batch = [(n, probe_result("alpha-mpls", now - 10 + n, ok=True)) for n in range(1, 6)]
    assert post_results(deployment, batch) == {"stored": 5, "duplicates": 0}
    assert post_results(deployment, batch) == {"stored": 0, "duplicates": 5}
    assert post_results(deployment, batch[:2]) == {"stored": 0, "duplicates": 2}
    assert post_results(deployment, batch, "ab" * 16) == {"stored": 5, "duplicates": 0}
    agent = deployment.agent_id("alpha")
    assert f'sitewatch_ingest_duplicates_total{{agent="{agent}"}} 7.0' in metrics(deployment)
    warnings = [line for line in deployment.log("collector").splitlines() if "duplicates" in line]
    assert len(warnings) == 1, warnings  # once, not for every batch of duplicates
    assert set(stored_outboxes(deployment, agent)) == {"legacy", "ab" * 16}


def busy_hour(deployment: Deployment, now: float) -> None:
    """Fill the database with a busy hour: the phone answered, then 110,000 other results."""
    store = Store(deployment.database)
    try:
        early = [probe_result(PHONE, now - 3_500.0 + n, ok=True) for n in range(10)]
        busy = [
            probe_result("alpha-prn", now - 3_400.0 + n * 0.025, ok=True) for n in range(110_000)
        ]
        store.results.ingest(
            deployment.agent_id("alpha"),
            list(enumerate([*early, *busy], start=1)),
            received=now,
            outbox="f" * 32,
        )
    finally:
        store.close()


def centre_pings(deployment: Deployment) -> int:
    """Return how many pings of the link's edge the collector has stored from the centre."""
    with closing(sqlite3.connect(deployment.database)) as db:
        (count,) = db.execute("SELECT count(*) FROM results WHERE source = 'centre'").fetchone()
    return int(count)


def phone_status(deployment: Deployment) -> str:
    devices = {d["id"]: d for d in deployment.site("alpha")["devices"]}
    return str(devices[PHONE]["status"])


def open_incidents(deployment: Deployment) -> set[str]:
    return {incident["key"] for incident in deployment.api("/api/v1/incidents?status=open")}


def test_after_a_restart_a_dead_phone_reads_down_and_its_incident_waits_for_recovery(
    deployment: Deployment,
) -> None:
    """The phone's newest results are failures, behind more than 100,000 of the last hour.

    Before: the collector rebuilt its state from the oldest 100,000, read the phone up, and
    resolved its incident "the cause cleared" once its start-up hold ran out.
    """
    deployment.start_collector()
    seq = iter(range(1, 1_000_000))

    def report(target: str, *, ok: bool) -> None:
        post_results(deployment, [(next(seq), probe_result(target, time.time(), ok=ok))], "e" * 32)

    for _ in range(3):
        report(PHONE, ok=False)
    wait_until(lambda: f"device:{PHONE}" in open_incidents(deployment), 30, "the phone's P3")
    assert deployment.kill("collector", signal.SIGTERM) == 0, deployment.log("collector")

    busy_hour(deployment, time.time())
    deployment.start_collector()
    report("alpha-mpls", ok=True)  # the agent is heard
    assert phone_status(deployment) == "down"

    # The start-up hold lasts the agents' silence allowance (30 s) and an interval: watch the
    # incident for longer than that, the agent heard all along and the phone still silent.
    # Paced by the collector's own sweeps of the link's edge, one a second.
    deadline = time.monotonic() + 40.0
    while time.monotonic() < deadline:
        report("alpha-mpls", ok=True)
        assert f"device:{PHONE}" in open_incidents(deployment)
        assert phone_status(deployment) == "down"
        swept = centre_pings(deployment)
        wait_until(lambda n=swept: centre_pings(deployment) > n, 10, "the centre's next sweep")  # type: ignore[misc]
    report(PHONE, ok=True)
    assert phone_status(deployment) == "down"  # one success is not a recovery
    assert f"device:{PHONE}" in open_incidents(deployment)
    report(PHONE, ok=True)
    wait_until(lambda: f"device:{PHONE}" not in open_incidents(deployment), 30,
               "the phone's incident resolved on its recovery")  # fmt: skip
