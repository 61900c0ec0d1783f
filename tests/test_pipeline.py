"""Agent and collector as real processes on loopback: nothing lost, nothing counted twice."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest

from agent.outbox import Outbox
from tests.deploy import Deployment, deploy, free_port
from tests.lab import wait_until

DEVICES = 30


def loopback_inventory(folder: Path) -> Path:
    """One site on loopback: a link whose far end and edge are 127.0.0.1, thirty TCP probes."""
    devices = "\n".join(
        f"      - {{id: dev-{n:02d}, kind: server, address: 127.0.2.{n + 1}, "
        f"probes: [{{kind: tcp, port: {20000 + n}}}]}}"
        for n in range(DEVICES)
    )
    path = folder / "inventory.yaml"
    path.write_text(
        "organisation: Loopback\n"
        "timezone: Africa/Johannesburg\n"
        "thresholds: {interval: 1s, timeout: 300ms, fail_after: 2, recover_after: 1}\n"
        "sites:\n"
        "  - id: alpha\n"
        "    name: Alpha\n"
        "    users: 12\n"
        "    links:\n"
        "      - {id: alpha-mpls, kind: mpls, role: primary, to: hub, probe: [127.0.0.1],\n"
        "         edge: 127.0.0.1}\n"
        "    devices:\n" + devices + "\n"
    )
    return path


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    listen = f"127.0.0.1:{free_port()}"
    return deploy(tmp_path, loopback_inventory(tmp_path), ["alpha"], listen)


def test_the_site_comes_up_and_history_fills(deployment: Deployment) -> None:
    try:
        deployment.start_collector()
        deployment.start_agent("alpha")
        wait_until(
            lambda: {d["status"] for d in deployment.site("alpha")["devices"]} == {"down"},
            30,
            "the agent's TCP probes to closed ports turning every device down",
        )
        site = deployment.site("alpha")
        assert (site["status"], site["agent_alive"]) == ("up", True)
        history = deployment.api("/api/v1/history?target=alpha-mpls")
        assert {h["source"] for h in history} >= {"alpha-agent", "centre"}
    finally:
        deployment.stop_all()


def test_kill_9_at_random_moments_loses_and_doubles_nothing(deployment: Deployment) -> None:
    """Twelve kill -9s of either side while results flow; then every seq is stored once."""
    chance = random.Random(2026_11_23)  # fixed: a failure can be replayed
    agent_id = deployment.agent_id("alpha")
    try:
        deployment.start_collector()
        deployment.start_agent("alpha")
        for round_ in range(12):
            before = len(deployment.stored_sequences(agent_id))
            wait_until(
                lambda b=before: (
                    len(deployment.stored_sequences(agent_id)) > b + chance.randint(1, 60)
                ),  # type: ignore[misc]
                30,
                f"results flowing before kill {round_}",
            )
            victim = chance.choice(["collector", "agent-alpha"])
            deployment.kill(victim, signal.SIGKILL)
            if victim == "collector":
                deployment.start_collector()
            else:
                deployment.start_agent("alpha")
        settled = len(deployment.stored_sequences(agent_id))
        wait_until(  # both back at work, so SIGTERM finds the agent's handler installed
            lambda: len(deployment.stored_sequences(agent_id)) > settled,
            30,
            "results flowing after the last restart",
        )
        status = deployment.kill("agent-alpha", signal.SIGTERM)
        assert status == 0, deployment.log("agent-alpha")
    finally:
        deployment.stop_all()
    with Outbox(deployment.outbox("alpha")) as outbox:
        waiting = [entry.seq for entry in outbox.take(1_000_000)]
        assert outbox.dropped() == 0
        next_seq = outbox.put([{"probe": "after the test"}])[0]
    stored = deployment.stored_sequences(agent_id)
    assert len(stored) > 300
    assert sorted(stored + waiting) == list(range(1, next_seq))  # each exactly once, no gap
