"""A database written by an older, trusting collector: every page and endpoint still answers.

Older versions stored what agents sent: a heartbeat whose `outbox_depth` has 400 digits, a
version with a lone surrogate, NaN inside a value, a printer reading whose supplies are `[{}]`,
a result dated year 1, and (through staff notes) lone surrogates in the incident timeline. Here
a real SQLite file is filled with exactly that, the collector starts on it as it does in
production (warm-up included), and every reader must answer 200 with JSON a strict parser takes
and Prometheus text the Prometheus parser takes: bad stored values show as missing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from collector.api import build_app
from collector.service import Collector
from collector.store import LEGACY_OUTBOX, Store
from probes.result import JsonValue, ProbeResult
from sitewatch.config.files import load_collector_config
from sitewatch.passwords import hash_password
from tests.browser.conftest import PASSWORDS, Dashboard, write_config

STAFF = "staff-secret"
SURROGATE = "\ud800"
PASSWORD = PASSWORDS["desk"]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def desk_hash() -> str:
    return hash_password(PASSWORD)


def strict_json(text: str) -> Any:
    """Parse JSON as JSON.parse and jq do: NaN and Infinity are not JSON."""

    def refuse(token: str) -> Any:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def poison(store: Store, now: float) -> int:
    """Store what older versions accepted; return the id of an incident with a poisoned note."""
    recent = datetime.fromtimestamp(now - 60, UTC)
    supplies: list[JsonValue] = [{}, {"percent": float("nan"), "state": "on fire"}, "junk"]
    results = [
        ProbeResult("alpha-prn", "snmp", recent, ok=True, value={"profile": "printer",
                    "supplies": supplies, "printer_status": SURROGATE}),
        ProbeResult("alpha-mpls", "icmp", recent, ok=True, rtt_ms=float("inf"), loss=float("nan"),
                    value={"rtt_avg_ms": float("nan"), "address": SURROGATE, SURROGATE: 1e400}),
        ProbeResult("alpha-mpls", "icmp", datetime(1, 1, 1, tzinfo=UTC), ok=False),
        ProbeResult("alpha-mpls", "icmp", recent, ok=True, rtt_ms=-5, loss=7),
    ]  # fmt: skip
    store.results.ingest("alpha-01", list(enumerate(results, start=1)), received=now)
    heartbeats: dict[str, dict[str, Any]] = {
        "alpha-01": {"version": "0.1.0", "outbox_depth": int("9" * 400)},
        "evil-01": {"version": "0.1" + SURROGATE, "dropped": float("nan"),
                    "host": {"value": {"cpu_percent": float("inf")}}},
    }  # fmt: skip
    for agent, heartbeat in heartbeats.items():
        store.results.ingest(agent, [], heartbeat=heartbeat, received=now)
    with store.db.writing() as db:
        (incident,) = db.execute(
            "INSERT INTO incidents (key, priority, status, title, cause, sites, affected_users, "
            "opened_at, resolved_at, due_at) VALUES ('link:alpha-mpls', 'P1', 'resolved', "
            '\'Alpha MPLS down\', \'{"kind": "link", "link": "alpha-mpls"}\', \'["alpha"]\', '
            "12, ?, ?, ?) RETURNING id",
            (now - 600, now - 300, now + 3_600),
        ).fetchone()
        for kind, detail in (
            ("opened", '{"priority": "P1", "title": "Alpha MPLS down \\ud800"}'),
            ("note", '{"text": "cable cut \\udfff by the roadworks"}'),
            ("resolved", '{"reason": "\\ud800", "duration_s": 300}'),
        ):
            db.execute(
                "INSERT INTO incident_events (incident, ts, kind, author, detail) "
                "VALUES (?, ?, ?, 'desk', ?)",
                (incident, now - 500, kind, detail),
            )
    return int(incident)


@pytest.fixture
async def poisoned(tmp_path: Path, desk_hash: str) -> AsyncIterator[tuple[Dashboard, int]]:
    async with serving(tmp_path, desk_hash, poison) as served:
        yield served


@asynccontextmanager
async def serving(
    tmp_path: Path, desk_hash: str, fill: Callable[[Store, float], int]
) -> AsyncIterator[tuple[Dashboard, int]]:
    """Fill a database as an older collector would, then serve it as this one, warmed up."""
    extra = (
        "agents:\n"
        f"  - {{id: alpha-01, site: alpha, token_sha256: {sha('a')}}}\n"
        f"  - {{id: evil-01, site: evil, token_sha256: {sha('e')}}}\n"
        "api_tokens:\n"
        f"  - {{name: noc, role: viewer, token_sha256: {sha(STAFF)}}}\n"
    )
    config = load_collector_config(
        write_config(tmp_path, {"desk": desk_hash, "screen": desk_hash}, extra)
    )
    now = time.time()
    first = Store(tmp_path / "collector.db")
    incident = fill(first, now)
    first.close()
    store = Store(tmp_path / "collector.db")  # a restart on the poisoned file
    collector = Collector(config, store)
    collector.pipeline.warm_up(now)  # as collector.main does before it serves: must not raise
    app = build_app(collector)
    try:
        async with TestClient(TestServer(app)) as client:
            yield Dashboard(client, collector), incident
    finally:
        store.close()


async def test_a_poisoned_database_breaks_no_reader(poisoned: tuple[Dashboard, int]) -> None:
    dashboard, incident = poisoned
    client = dashboard.client
    staff = {"Authorization": f"Bearer {STAFF}"}
    year_one = "from=0001-01-01T00:00:00Z"
    for path in (
        "/api/v1/sites",
        "/api/v1/sites/alpha",
        "/api/v1/sites/evil",
        f"/api/v1/history?target=alpha-mpls&{year_one}",
        f"/api/v1/history?target=alpha-prn&{year_one}",
        f"/api/v1/incidents/{incident}",
        "/api/v1/incidents?status=all",
    ):
        response = await client.get(path, headers=staff)
        text = await response.text()
        assert response.status == 200, (path, text)
        strict_json(text)

    sites = strict_json(await (await client.get("/api/v1/sites", headers=staff)).text())
    assert {s["id"]: s["agent"] for s in sites if s["id"] in ("alpha", "evil")} == {
        "alpha": None,  # its stored heartbeat was bad: as if it had sent none
        "evil": None,
    }
    history = strict_json(
        await (
            await client.get(f"/api/v1/history?target=alpha-mpls&{year_one}", headers=staff)
        ).text()
    )
    assert history[0]["ts"] == "0001-01-01T00:00:00Z"
    assert [(h["rtt_ms"], h["loss"]) for h in history[1:]] == [(None, None), (None, None)]
    assert {h["value"].get("rtt_avg_ms", "absent") for h in history[1:]} <= {None, "absent"}
    assert "\ufffd" in json.dumps(history, ensure_ascii=False)  # surrogates replaced, kept

    metrics = await client.get("/metrics")
    assert metrics.status == 200
    families = {f.name for f in text_string_to_metric_families(await metrics.text())}
    assert "sitewatch_agent_outbox_depth" in families

    assert await dashboard.login("desk", PASSWORD) == 303
    for path in ("/", "/sites/alpha?hours=1", "/sites/evil", "/incidents?status=all",
                 f"/incidents/{incident}"):  # fmt: skip
        status, html = await dashboard.page(path)
        assert status == 200, (path, html[-2_000:])
    _, site = await dashboard.page("/sites/alpha?hours=1")
    assert site.count('<li class="supply state-unknown">') == 2  # [{}] and the NaN one
    assert "supply</span>" in site
    _, page = await dashboard.page(f"/incidents/{incident}")
    assert "cable cut ? by the roadworks" in page


async def test_a_bad_stored_heartbeat_is_skipped_and_logged(
    poisoned: tuple[Dashboard, int], caplog: pytest.LogCaptureFixture
) -> None:
    dashboard, _ = poisoned
    collector = dashboard.collector
    assert collector.heartbeats == {}
    with caplog.at_level("WARNING", logger="collector.heartbeat"):
        collector.pipeline.warm_up()
    assert collector.heartbeats == {}
    assert "ignoring the stored heartbeat of agent alpha-01: heartbeat.outbox_depth" in caplog.text
    assert "ignoring the stored heartbeat of agent evil-01: heartbeat.version" in caplog.text


DEEP = 950  # older collectors took a value nested this deep; reading it recursed past the limit


def deep(store: Store, now: float) -> int:
    """Store printer and link results whose values are nested DEEP levels, as SQL rows."""
    nested = "[" * DEEP + "]" * DEEP
    values = {
        "alpha-prn": ("snmp", '{"profile": "printer", "supplies": ' + nested + "}"),
        "alpha-mpls": ("icmp", '{"rtt_avg_ms": 4.0, "samples": ' + nested + "}"),
    }
    with store.db.writing() as db:
        for seq, (target, (kind, value)) in enumerate(values.items(), start=1):
            db.execute(
                "INSERT INTO results VALUES ('alpha-01', ?, ?, ?, ?, 1, 4.0, 0.0, ?, NULL, '',"
                " ?, ?)",
                (seq, target, kind, now - 60, value, now - 60, LEGACY_OUTBOX),
            )
    return 0


async def test_a_value_nested_950_deep_shows_as_missing(tmp_path: Path, desk_hash: str) -> None:
    async with serving(tmp_path, desk_hash, deep) as (dashboard, _):
        staff = {"Authorization": f"Bearer {STAFF}"}
        for target in ("alpha-prn", "alpha-mpls"):
            response = await dashboard.client.get(f"/api/v1/history?target={target}", headers=staff)
            assert response.status == 200, await response.text()
            (row,) = strict_json(await response.text())
            assert (row["ok"], row["rtt_ms"], row["value"]) == (True, 4.0, {})
        response = await dashboard.client.get("/api/v1/sites/alpha", headers=staff)
        assert response.status == 200, await response.text()
        site = strict_json(await response.text())
        assert "alpha-prn" in {device["id"] for device in site["devices"]}
        assert await dashboard.login("desk", PASSWORD) == 303
        status, html = await dashboard.page("/sites/alpha?hours=1")
        assert status == 200, html[-2_000:]
