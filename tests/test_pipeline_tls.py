"""Agent and collector over HTTPS on loopback: a trusted CA lets results in, another CA does not."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
import trustme

from agent.outbox import Outbox
from agent.plan_cache import CACHE_NAME
from tests.deploy import Deployment, deploy, free_port
from tests.lab import wait_until
from tests.test_pipeline import loopback_inventory

AGENT = "alpha-agent"


def write_ca(ca: trustme.CA, path: Path) -> Path:
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    """A collector serving HTTPS with a certificate for 127.0.0.1 from a CA made for the test."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "collector.crt", tmp_path / "collector.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    listen = f"127.0.0.1:{free_port()}"
    return deploy(
        tmp_path,
        loopback_inventory(tmp_path),
        ["alpha"],
        listen,
        tls=(cert, key),
        ca_file=write_ca(ca, tmp_path / "ca.pem"),
    )


def trust(deployment: Deployment, site: str, ca_file: Path) -> None:
    """Point a site's agent at another CA file, as a wrong or stale ca_file would."""
    config = deployment.agent_config(site)
    text = re.sub(r"(?m)^ca_file: .*$", f"ca_file: {ca_file}", config.read_text())
    config.write_text(text)
    assert f"ca_file: {ca_file}\n" in config.read_text()


def test_an_agent_trusting_the_collectors_ca_ships_over_https(deployment: Deployment) -> None:
    assert deployment.url.startswith("https://127.0.0.1:")
    try:
        deployment.start_collector()
        deployment.start_agent("alpha")
        wait_until(
            lambda: (
                AGENT in {h["source"] for h in deployment.api("/api/v1/history?target=alpha-mpls")}
            ),
            30,
            "the agent's results for alpha-mpls stored through HTTPS",
        )
        assert deployment.site("alpha")["agent_alive"] is True
        assert "collector unreachable" not in deployment.log("agent-alpha")
    finally:
        deployment.stop_all()  # the collector first, so the agent's last flush may fail


def test_an_agent_trusting_another_ca_gets_nothing_in(
    deployment: Deployment, tmp_path: Path
) -> None:
    trust(deployment, "alpha", write_ca(trustme.CA(), tmp_path / "other-ca.pem"))
    try:
        deployment.start_collector()
        deployment.start_agent("alpha")
        # A fresh agent has no plan cached, so its first request, for the plan, meets the
        # certificate; it keeps retrying with backoff, saying so once.
        wait_until(
            lambda: "no plan yet" in deployment.log("agent-alpha"),
            30,
            "the agent failing to verify the certificate",
        )
        agent_log = deployment.log("agent-alpha")
        site = deployment.site("alpha")
        history = deployment.api("/api/v1/history?target=alpha-mpls")
    finally:
        deployment.stop_all()
    refusals = [line for line in agent_log.splitlines() if "no plan yet" in line]
    assert all("CERTIFICATE_VERIFY_FAILED" in line for line in refusals), agent_log
    assert not (deployment.state_dir("alpha") / CACHE_NAME).exists()  # no plan ever arrived
    assert site["agent_alive"] is False
    assert AGENT not in {h["source"] for h in history}
    assert len(deployment.stored_sequences(AGENT)) == 0


def test_an_agent_with_a_cached_plan_and_another_ca_keeps_its_results(
    deployment: Deployment, tmp_path: Path
) -> None:
    """The collector's certificate now comes from a CA the agent does not trust: it probes on
    from its cached plan, but its shipper cannot verify the collector and stores nothing there.
    """
    try:
        deployment.start_collector()
        deployment.start_agent("alpha")
        wait_until(lambda: len(deployment.stored_sequences(AGENT)) > 0, 30, "results over HTTPS")
        assert deployment.kill("agent-alpha", signal.SIGTERM) == 0
        before = len(deployment.stored_sequences(AGENT))
        trust(deployment, "alpha", write_ca(trustme.CA(), tmp_path / "other-ca.pem"))
        deployment.start_agent("alpha")
        wait_until(
            lambda: (
                "collector unreachable" in deployment.log("agent-alpha")
                and deployment.outbox_depth("alpha") > 0
            ),
            30,
            "the restarted agent probing while its shipper finds the collector unreachable",
        )
        assert deployment.kill("agent-alpha", signal.SIGTERM) == 0
        after = len(deployment.stored_sequences(AGENT))
    finally:
        deployment.stop_all()
    agent_log = deployment.log("agent-alpha")
    assert "starting from the cached plan" in agent_log
    (unreachable,) = [line for line in agent_log.splitlines() if "collector unreachable" in line]
    assert "CERTIFICATE_VERIFY_FAILED" in unreachable, agent_log
    assert after == before
    with Outbox(deployment.outbox("alpha")) as outbox:
        assert outbox.depth() > 0  # probed on, and kept what it could not ship
