"""Hostile or careless link evidence from an agent (issue 12): refused by name, or shown safely.

A site with a primary and a backup, its router, a printer and a phone, served by the real
collector app on a port of loopback (its pings aim at 127.0.0.x only), with its database a real
SQLite file. The agent's token posts results of the kinds `interface` and `path` that no probe
of ours would produce; each must be a 422 naming the field, never a 500; what is accepted must
still read back through the site's API, its page, /metrics and history; and evidence about a
link (`interface`, `path`) sent about a device must not move that device's status.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from collector.api import build_app
from collector.service import Collector
from collector.store import Store
from probes.result import ProbeResult
from sitewatch.config.files import load_collector_config
from sitewatch.passwords import hash_password
from tests.apps import served
from tests.browser.conftest import PASSWORDS, Dashboard
from tests.collector.test_poison import strict_json
from tests.deploy import deploy, free_port

AGENT, STAFF = "agent-secret", "staff-secret"
INVENTORY = """\
organisation: Test
timezone: Africa/Johannesburg
thresholds: {interval: 30s, timeout: 500ms, fail_after: 2, recover_after: 1}
sites:
  - id: wv
    name: Willowvale
    users: 5
    path: {toward: 127.0.0.254, ttl: 1}
    links:
      - {id: wv-mpls, kind: mpls, role: primary, to: hub, probe: [127.0.0.61],
         next_hop: [127.0.0.61], interface: {device: wv-rtr, ifname: up0}}
      - {id: wv-fibre, kind: fibre, role: backup, to: hub, probe: [127.0.0.71],
         next_hop: [127.0.0.71], interface: {device: wv-rtr, ifname: up1}}
    devices:
      - {id: wv-rtr, kind: router, address: 127.0.0.11, probes: [icmp, snmp]}
      - {id: wv-prn, kind: printer, address: 127.0.0.21, probes: [icmp]}
      - {id: wv-phone, kind: phone, address: 127.0.0.31, probes: [icmp]}
  - id: ed
    name: Elliotdale
    users: 3
    links:
      - {id: ed-mpls, kind: mpls, role: primary, to: hub, probe: [127.0.0.81]}
"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def desk_hash() -> str:
    return hash_password(PASSWORDS["desk"])


def write_configs(folder: Path, extra: str = "") -> None:
    """Write the test inventory and a collector.yaml for it (one agent, one viewer token)."""
    (folder / "inventory.yaml").write_text(INVENTORY)
    (folder / "collector.yaml").write_text(
        "listen: 127.0.0.1:8080\n"
        f"database: {folder / 'collector.db'}\n"
        "inventory: inventory.yaml\n"
        f"agents:\n  - {{id: wv-01, site: wv, token_sha256: {sha(AGENT)}}}\n"
        f"api_tokens:\n  - {{name: noc, role: viewer, token_sha256: {sha(STAFF)}}}\n" + extra
    )


@pytest.fixture
async def dashboard(tmp_path: Path, desk_hash: str) -> AsyncIterator[Dashboard]:
    write_configs(
        tmp_path, f"users:\n  - {{name: desk, role: operator, password_hash: '{desk_hash}'}}\n"
    )
    async with served(
        load_collector_config(tmp_path / "collector.yaml"), tmp_path / "collector.db"
    ) as (client, collector):
        yield Dashboard(client, collector)


class Agent:
    """Posts results as the site's agent, each with a fresh sequence number and time."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client, self.seq = client, 0

    def result(self, target: str, kind: str, value: object, *, ok: bool = False) -> dict[str, Any]:
        self.seq += 1
        when = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        result = {"target": target, "kind": kind, "ts": when, "ok": ok, "value": value}
        return {"seq": self.seq, "result": result}

    async def post(self, *results: dict[str, Any]) -> tuple[int, Any]:
        response = await self.client.post(
            "/api/v1/agent/results",
            data=json.dumps({"results": list(results)}),
            headers={"Authorization": f"Bearer {AGENT}"},
        )
        return response.status, strict_json(await response.text())


PATH = {"toward": "127.0.0.254", "ttl": 1}
REFUSED = [
    ("oper-number", "interface", {"oper": 1}, "value.oper: must be one of up, down"),
    ("oper-list", "interface", {"oper": ["up"]}, "value.oper: must be one of up, down"),
    ("oper-huge", "interface", {"oper": "up" * 50_000}, "value.oper: must be one of up, down"),
    ("ifindex-negative", "interface", {"ifindex": -1}, "value.ifindex: must be between 0 and"),
    ("bps-text", "interface", {"in_bps": "fast"}, "value.in_bps: must be a number"),
    ("ttl-zero", "path", {**PATH, "ttl": 0}, "value.ttl: must be between 1 and 255"),
    ("ttl-9999", "path", {**PATH, "ttl": 9999}, "value.ttl: must be between 1 and 255"),
    ("ttl-missing", "path", {"toward": "127.0.0.254"}, "value.ttl: is missing"),
    ("toward-list", "path", {**PATH, "toward": ["x"]}, "value.toward: must be a string"),
    ("via-number", "path", {**PATH, "via": 5}, "value.via: must be a string"),
    ("hop-nested", "path", {**PATH, "hop": {"a": [1]}}, "value.hop: must be a string"),
    ("value-list", "path", [PATH], "value: must be an object"),
]


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
async def test_a_hostile_link_value_is_refused_naming_the_field(
    dashboard: Dashboard, kind: str, value: object, message: str
) -> None:
    agent = Agent(dashboard.client)
    status, body = await agent.post(agent.result("wv-mpls", "interface", {"oper": "up"}, ok=True),
                                    agent.result("wv-mpls", kind, value))  # fmt: skip
    assert status == 422, body
    assert [r["index"] for r in body["error"]["refused"]] == [1]  # the good one is not blamed
    assert body["error"]["refused"][0]["message"].startswith(f"results[1].result.{message}")


@pytest.mark.parametrize(
    ("target", "kind", "value"),
    [
        ("wv-prn", "interface", {"oper": "down"}),
        ("wv-phone", "path", {**PATH, "hop": "127.0.0.71", "via": "wv-fibre"}),
        ("wv-rtr", "interface", {"oper": "down", "ifname": "up0"}),
    ],
)
async def test_link_evidence_about_a_device_is_refused_and_moves_nothing(
    dashboard: Dashboard, target: str, kind: str, value: dict[str, Any]
) -> None:
    """An interface or path result is about a link: about a printer it is a confused agent.

    Accepted, three of them would turn the printer "degraded" (a failing service) with no
    plan ever asking for them.
    """
    agent = Agent(dashboard.client)
    ping = agent.result(target, "icmp", {"address": "127.0.0.21"}, ok=True)
    assert (await agent.post(ping))[0] == 200
    for _ in range(3):
        status, body = await agent.post(agent.result(target, kind, value))
        assert status == 422, body
        message = body["error"]["refused"][0]["message"]
        assert message == (
            f"results[0].result.kind: {kind} results are about a link, and {target!r} is a device"
        )
    staff = {"Authorization": f"Bearer {STAFF}"}
    site = strict_json(await (await dashboard.client.get("/api/v1/sites/wv", headers=staff)).text())
    assert {d["id"]: d["status"] for d in site["devices"]}[target] == "up"


ODD = [  # values of the right shape that no probe of ours sends, each a trap for a reader
    ("wv-mpls", "interface", {"oper": "up", "ifname": "é" * 2_000, "in_bps": 1e14}),
    ("wv-mpls", "interface", {"oper": "down", "ifname": "up0\n<script>alert(1)</script>"}),
    ("wv-fibre", "interface", {}),  # a router that said nothing: no evidence
    ("wv-mpls", "path", {**PATH, "hop": None, "via": None}),
    ("wv-fibre", "path", {**PATH, "hop": "127.0.0.61", "via": "wv-mpls"}),
    ("wv-mpls", "path", {**PATH, "hop": "<b>127.0.0.81</b>\u202e", "via": "ed-mpls"}),
]  # each link's newest word of each kind is the last of its kind here: what the page shows


async def test_odd_link_values_that_are_accepted_read_back_everywhere(
    dashboard: Dashboard,
) -> None:
    agent = Agent(dashboard.client)
    junk = {"oper": "up", "junk": {"deep": [[{"x": 1}]]}, "interfaces": [{"oper": "up"}] * 10_000}
    status, body = await agent.post(agent.result("wv-mpls", "interface", junk, ok=True))
    assert status == 200, body
    assert body["ignored"] == ["results[0].result.value.interfaces", "results[0].result.value.junk"]
    status, body = await agent.post(*(agent.result(*odd) for odd in ODD))
    assert status == 200, body

    client, staff = dashboard.client, {"Authorization": f"Bearer {STAFF}"}
    for path in (
        "/api/v1/sites",
        "/api/v1/sites/wv",
        *(f"/api/v1/history?target={t}&kind={k}" for t in ("wv-mpls", "wv-fibre")
          for k in ("interface", "path", "all", "icmp")),
    ):  # fmt: skip
        response = await client.get(path, headers=staff)
        text = await response.text()
        assert response.status == 200, (path, text)
        strict_json(text)
    bogus = await client.get("/api/v1/history?target=wv-mpls&kind=bogus", headers=staff)
    assert bogus.status == 400
    assert strict_json(await bogus.text())["error"]["code"] == "bad_kind"
    history = strict_json(
        await (await client.get("/api/v1/history?target=wv-mpls&kind=all", headers=staff)).text()
    )
    assert len(history) == 5  # the four odd ones about wv-mpls and the junk one, kept whole

    metrics = await client.get("/metrics")
    assert metrics.status == 200
    assert list(text_string_to_metric_families(await metrics.text()))

    assert await dashboard.login("desk", PASSWORDS["desk"]) == 303
    status, html = await dashboard.page("/sites/wv")
    assert status == 200, html[-2_000:]
    assert "<script>alert(1)</script>" not in html
    assert "<b>127.0.0.81</b>" not in html
    assert "&lt;script&gt;" in html
    assert "&lt;b&gt;127.0.0.81&lt;/b&gt;" in html
    site = strict_json(await (await client.get("/api/v1/sites/wv", headers=staff)).text())
    said = {(link["id"], e["source"]): e for link in site["links"] for e in link["evidence"]}
    assert said["wv-mpls", "interface"]["status"] == "up"  # one down is short of fail_after
    assert "up0\n<script>" in said["wv-mpls", "interface"]["detail"]  # kept as said, for JSON
    assert said["wv-fibre", "interface"]["status"] == "unknown"  # said nothing: no evidence
    assert (
        said["wv-fibre", "interface"]["detail"] == "the interface: the router did not say its state"
    )
    assert said["wv-mpls", "interface"]["detail"].endswith("</script> is down")  # no "admin None"
    assert said["wv-mpls", "path"]["status"] == "unknown"  # another site's link: names none here
    assert "traffic goes over it" not in said["wv-fibre", "path"]["detail"]  # the mpls answered


async def test_a_batch_of_thousands_of_link_results_is_stored_without_a_stall(
    dashboard: Dashboard,
) -> None:
    """5,000 path and interface results at once (the most a batch takes) go in whole."""
    agent = Agent(dashboard.client)
    results = [
        agent.result(
            ("wv-mpls", "wv-fibre")[i % 2],
            ("interface", "path")[i // 2 % 2],
            {"oper": "down"}
            if i // 2 % 2 == 0
            else {**PATH, "hop": "127.0.0.71", "via": "wv-fibre"},
        )
        for i in range(5_000)
    ]
    status, body = await agent.post(*results)
    assert status == 200, body
    assert body["stored"] == 5_000
    staff = {"Authorization": f"Bearer {STAFF}"}
    site = strict_json(await (await dashboard.client.get("/api/v1/sites/wv", headers=staff)).text())
    links = {link["id"]: link for link in site["links"]}
    assert links["wv-mpls"]["status"] == "down"  # its router says down, the path says backup


def test_a_real_collector_process_takes_hostile_link_results_and_keeps_serving(
    tmp_path: Path,
) -> None:
    """`sitewatch collector` as deployed, on loopback: refusals are 4xx, nothing is a traceback."""
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    running = deploy(tmp_path / "deployment", inventory, ["wv"], f"127.0.0.1:{free_port()}")
    try:
        running.start_collector()
        seq = iter(range(1, 1_000))

        def post(target: str, kind: str, value: object) -> int:
            when = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            body = {"seq": next(seq), "result": {"target": target, "kind": kind, "ts": when,
                                                 "ok": False, "value": value}}  # fmt: skip
            request = urllib.request.Request(  # noqa: S310 -- our own collector, on loopback
                f"{running.url}/api/v1/agent/results",
                data=json.dumps({"results": [body]}).encode(),
                headers={"Authorization": f"Bearer {running.agent_tokens['wv']}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    return int(response.status)
            except urllib.error.HTTPError as err:
                return err.code

        statuses = [post("wv-mpls", kind, value) for _, kind, value, _ in REFUSED]
        statuses += [post("wv-prn", "interface", {"oper": "down"})]
        assert statuses == [422] * (len(REFUSED) + 1)
        assert [post(*odd) for odd in ODD] == [200] * len(ODD)
        site = running.site("wv")
        assert {link["id"] for link in site["links"]} == {"wv-mpls", "wv-fibre"}
        for kind in ("interface", "path", "all"):
            assert running.api(f"/api/v1/history?target=wv-mpls&kind={kind}")
        assert running.healthy()
        assert "Traceback" not in running.log("collector")
    finally:
        running.stop_all()


async def test_link_evidence_about_a_device_stored_by_an_older_collector_moves_nothing(
    tmp_path: Path, desk_hash: str
) -> None:
    """Before ingest refused them, such results were stored; a restart replays what is stored."""
    write_configs(tmp_path)
    now = time.time()
    older = Store(tmp_path / "collector.db")
    results = [
        ProbeResult("wv-prn", "icmp", datetime.fromtimestamp(now - 60, UTC), ok=True),
        *(
            ProbeResult("wv-prn", "interface", datetime.fromtimestamp(now - 50 + i, UTC),
                        ok=False, value={"oper": "down"})
            for i in range(3)
        ),
    ]  # fmt: skip
    older.results.ingest("wv-01", list(enumerate(results, start=1)), received=now)
    older.close()
    store = Store(tmp_path / "collector.db")
    try:
        collector = Collector(load_collector_config(tmp_path / "collector.yaml"), store)
        collector.pipeline.warm_up(now)
        async with TestClient(TestServer(build_app(collector))) as client:
            response = await client.get(
                "/api/v1/sites/wv", headers={"Authorization": f"Bearer {STAFF}"}
            )
            site = strict_json(await response.text())
    finally:
        store.close()
    assert {d["id"]: d["status"] for d in site["devices"]}["wv-prn"] == "up"
