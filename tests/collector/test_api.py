"""The collector's API on a real SQLite file: what agents may post and what staff may read."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import weakref
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from collector.api import MAX_BODY, build_app
from collector.clock import ManualClock
from collector.service import Collector
from collector.store import DatabaseSpec, Store
from collector.topology import Cause
from sitewatch.config.files import load_collector_config
from sitewatch.config.model import AgentCredential, ApiToken, CollectorConfig

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {"tesko-01": "tesko-secret", "willowvale-01": "willowvale-secret"}
STAFF = "staff-secret"
OPERATOR = "operator-secret"
STORES: weakref.WeakKeyDictionary[TestClient[Any, Any], Store] = weakref.WeakKeyDictionary()
COLLECTORS: weakref.WeakKeyDictionary[TestClient[Any, Any], Collector] = weakref.WeakKeyDictionary()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def example_config(
    agents: tuple[AgentCredential, ...], api_tokens: tuple[ApiToken, ...]
) -> CollectorConfig:
    """Return the example collector.yaml with these agents and API tokens instead of its own."""
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    return replace(config, agents=agents, api_tokens=api_tokens)


@pytest.fixture
async def client(database_spec: DatabaseSpec) -> AsyncIterator[TestClient[Any, Any]]:
    config = example_config(
        tuple(AgentCredential(a, a.split("-")[0], sha(t)) for a, t in TOKENS.items()),
        (ApiToken("screen", "viewer", sha(STAFF)), ApiToken("desk", "operator", sha(OPERATOR))),
    )
    store = Store(database_spec)  # SQLite or PostgreSQL: the fixture runs on both
    collector = Collector(config, store)
    async with TestClient(TestServer(build_app(collector))) as test_client:
        STORES[test_client] = store
        COLLECTORS[test_client] = collector
        yield test_client
    store.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def record(target: str, seq: int, *, ts: datetime | None = None, ok: bool = True) -> dict[str, Any]:
    when = (ts or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    return {"seq": seq, "result": {"target": target, "kind": "icmp", "ts": when, "ok": ok}}


async def post(client: TestClient[Any, Any], agent: str, body: object) -> tuple[int, Any]:
    response = await client.post(
        "/api/v1/agent/results", data=json.dumps(body), headers=auth(TOKENS[agent])
    )
    return response.status, await response.json()


def stored(client: TestClient[Any, Any], agent: str) -> list[int]:
    return STORES[client].results.sequences(agent)


async def test_results_are_stored_once_however_often_they_are_sent(
    client: TestClient[Any, Any],
) -> None:
    batch = {"results": [record("tesko-mpls", seq) for seq in (1, 2, 3)]}
    assert await post(client, "tesko-01", batch) == (200, {"stored": 3, "duplicates": 0})
    assert await post(client, "tesko-01", batch) == (200, {"stored": 0, "duplicates": 3})
    assert stored(client, "tesko-01") == [1, 2, 3]


async def test_a_gzipped_batch_is_accepted(client: TestClient[Any, Any]) -> None:
    body = gzip.compress(json.dumps({"results": [record("tesko-mpls", 7)]}).encode())
    response = await client.post(
        "/api/v1/agent/results",
        data=body,
        headers={**auth(TOKENS["tesko-01"]), "Content-Encoding": "gzip"},
    )
    assert response.status == 200, await response.text()
    assert stored(client, "tesko-01") == [7]


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "unauthenticated"), (auth("not-a-token"), "unauthenticated")],
)
async def test_no_token_or_a_wrong_one_is_refused(
    client: TestClient[Any, Any], headers: dict[str, str], code: str
) -> None:
    response = await client.post(
        "/api/v1/agent/results", data=json.dumps({"results": []}), headers=headers
    )
    assert response.status == 401
    assert (await response.json())["error"]["code"] == code


async def test_an_agent_cannot_write_for_another_site(client: TestClient[Any, Any]) -> None:
    batch = {"results": [record("tesko-mpls", 1), record("willowvale-mpls", 2)]}
    status, body = await post(client, "tesko-01", batch)
    assert status == 422
    assert body["error"] == {
        "code": "invalid",
        "message": "results[1].result.target: 'willowvale-mpls' is not at this site",
        "index": 1,
        "refused": [
            {
                "index": 1,
                "message": "results[1].result.target: 'willowvale-mpls' is not at this site",
            }
        ],
    }
    assert stored(client, "tesko-01") == []  # nothing partial


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "the body must be a JSON object"),
        ({"results": {}}, "results: must be a list"),
        ({"results": [], "extra": 1}, "unknown field 'extra'"),
        ({"results": [{"seq": 0, "result": {}}]}, "results[0].seq: must be a positive"),
        ({"results": [{"seq": True, "result": {}}]}, "results[0].seq: must be a positive"),
        ({"results": [record("tesko-mpls", 1) | {"result": {"target": "tesko-mpls"}}]},
         "results[0].result.kind: must be a string"),
        ({"results": [record("tesko-mpls", 1), record("tesko-mpls", 1)]},
         "results[1].seq: 1 appears twice"),
        ({"results": [record("tesko-mpls", 1, ts=datetime.now(UTC) + timedelta(hours=1))]},
         "is in the future"),
        ({"agent": "willowvale-01", "results": []}, "agent: this token belongs to 'tesko-01'"),
    ],
)  # fmt: skip
async def test_malformed_batches_name_what_is_wrong(
    client: TestClient[Any, Any], body: object, message: str
) -> None:
    status, reply = await post(client, "tesko-01", body)
    assert status == 422
    assert message in reply["error"]["message"]
    assert stored(client, "tesko-01") == []


async def test_bad_json_and_an_oversize_body_are_4xx(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/api/v1/agent/results", data=b"{not json", headers=auth(TOKENS["tesko-01"])
    )
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "bad_json"
    response = await client.post(
        "/api/v1/agent/results",
        data=io.BytesIO(b" " * (MAX_BODY + 1)),
        headers=auth(TOKENS["tesko-01"]),
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "too_large"
    bomb = gzip.compress(b" " * (MAX_BODY + 1))  # small on the wire, too big unpacked
    response = await client.post(
        "/api/v1/agent/results",
        data=bomb,
        headers={**auth(TOKENS["tesko-01"]), "Content-Encoding": "gzip"},
    )
    assert response.status == 413


async def test_the_plan_has_an_etag(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/v1/agent/plan", headers=auth(TOKENS["willowvale-01"]))
    assert response.status == 200
    plan = await response.json()
    assert plan["site"] == "willowvale"
    etag = response.headers["ETag"]
    again = await client.get(
        "/api/v1/agent/plan", headers={**auth(TOKENS["willowvale-01"]), "If-None-Match": etag}
    )
    assert again.status == 304


async def test_staff_read_sites_and_history(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/v1/sites")
    assert response.status == 401
    response = await client.get("/api/v1/sites", headers=auth(TOKENS["tesko-01"]))
    assert response.status == 401  # an agent token is not a staff token
    heartbeat = {"version": "0.1.0", "clock": "2026-11-23T08:00:00Z", "outbox_depth": 4,
                 "dropped": 0, "host": None}  # fmt: skip
    await post(client, "tesko-01", {"results": [record("tesko-mpls", 1)], "heartbeat": heartbeat})
    sites = await (await client.get("/api/v1/sites", headers=auth(STAFF))).json()
    assert [s["id"] for s in sites][:2] == ["dutywa-main", "dutywa-park-homes"]
    tesko = await (await client.get("/api/v1/sites/tesko", headers=auth(STAFF))).json()
    assert set(tesko) >= {"id", "name", "status", "status_since", "users", "upstream", "links",
                          "devices", "availability"}  # fmt: skip
    assert tesko["status"] == "up"
    assert tesko["agent"] == {"id": "tesko-01", "version": "0.1.0", "clock": heartbeat["clock"],
                              "outbox_depth": 4, "dropped": 0}  # fmt: skip
    assert tesko["links"][0]["status"] == "up"
    history = await (
        await client.get("/api/v1/history?target=tesko-mpls", headers=auth(STAFF))
    ).json()
    assert [(h["ok"], h["source"]) for h in history] == [(True, "tesko-01")]
    missing = await client.get("/api/v1/sites/atlantis", headers=auth(STAFF))
    assert missing.status == 404
    bad = await client.get("/api/v1/history?target=tesko-mpls&from=yesterday", headers=auth(STAFF))
    assert bad.status == 400
    assert (await bad.json())["error"]["code"] == "bad_time"


async def test_unknown_paths_get_the_error_body(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/v1/nothing")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    health = await client.get("/healthz")
    assert (health.status, (await health.json())["status"]) == (200, "ok")


def collector_of(client: TestClient[Any, Any]) -> Collector:
    """Return the collector behind a test client (the app holds only its parts)."""
    return COLLECTORS[client]


async def call(
    client: TestClient[Any, Any], method: str, path: str, body: object = None, token: str = OPERATOR
) -> tuple[int, Any]:
    data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await client.request(method, path, data=data, headers=auth(token))
    if response.status == 204:
        return 204, None
    return response.status, await response.json()


CONTRACT = {
    "id", "key", "priority", "status", "title", "cause", "sites", "affected_users", "opened_at",
    "acknowledged_at", "resolved_at", "sla", "major", "notes",
}  # fmt: skip


async def test_incidents_through_the_api_with_roles(client: TestClient[Any, Any]) -> None:
    collector = collector_of(client)
    cause = Cause("link:tesko-mpls", "link", "P2", "tesko-mpls down", ("tesko",), 7,
                  {"link": "tesko-mpls", "links": ["tesko-mpls"]})  # fmt: skip
    collector.incidents.reconcile([cause], datetime.now(UTC).timestamp())
    status, listed = await call(client, "GET", "/api/v1/incidents", token=STAFF)
    assert status == 200
    (incident,) = listed
    assert set(incident) >= CONTRACT
    assert set(incident["sla"]) == {"due_at", "percent_used", "breached"}
    assert incident["cause"]["kind"] == "link"
    path = f"/api/v1/incidents/{incident['id']}"
    status, body = await call(client, "POST", f"{path}/acknowledge", {}, token=STAFF)
    assert (status, body["error"]["code"]) == (403, "forbidden")  # a viewer may only look
    status, body = await call(client, "POST", f"{path}/acknowledge", {})
    assert (status, body["status"], body["acknowledged_by"]) == (200, "acknowledged", "desk")
    status, body = await call(client, "POST", f"{path}/notes", {"text": "called Telkom"})
    assert [n["text"] for n in body["notes"]] == ["called Telkom"]
    status, body = await call(client, "POST", f"{path}/resolve", {"note": "fixed"})
    assert (status, body["status"], body["resolved_by"]) == (200, "resolved", "desk")
    status, body = await call(client, "GET", "/api/v1/incidents?status=open", token=STAFF)
    assert body == []
    status, body = await call(client, "GET", "/api/v1/incidents?status=resolved", token=STAFF)
    assert [i["id"] for i in body] == [incident["id"]]


@pytest.mark.parametrize(
    ("request_line", "body", "expected", "words"),
    [
        ("GET /api/v1/incidents?status=closed", None, 400, "status"),
        ("GET /api/v1/incidents?limit=0", None, 400, "limit"),
        ("GET /api/v1/incidents?from=yesterday", None, 400, "from"),
        ("GET /api/v1/incidents/12", None, 404, "no incident"),
        ("GET /api/v1/incidents/x", None, 404, "no incident"),
        ("GET /api/v1/incidents/²", None, 404, "no incident"),
        ("GET /api/v1/incidents?limit=²", None, 400, "limit"),
        ("GET /api/v1/incidents?from=0001-01-01T00:00:00%2B01:00", None, 400, "from"),
        ("GET /api/v1/incidents?to=9999-12-31T23:59:59-01:00", None, 400, "to"),
        ("GET /api/v1/reports/sla?from=2026-01-01&to=9999-12-31", None, 400, "9998"),
        ("POST /api/v1/incidents/1/notes", b"[" * 100_000, 400, "JSON"),
        ("POST /api/v1/incidents/1/notes", b'{"text": ' + b"9" * 5000 + b"}", 400, "JSON"),
        ("DELETE /api/v1/maintenance/²", None, 404, "no maintenance window"),
        ("POST /api/v1/incidents/1/notes", b"{not json", 400, "JSON"),
        ("POST /api/v1/incidents/1/notes", [1, 2], 422, "object"),
        ("POST /api/v1/incidents/1/notes", {"txt": "x"}, 422, "txt"),
        ("POST /api/v1/incidents/1/notes", {"text": 5}, 422, "text"),
        ("POST /api/v1/incidents/1/notes", {"text": "x" * 5000}, 422, "longer"),
        ("POST /api/v1/incidents/1/resolve", {}, 422, "note"),
        ("POST /api/v1/incidents/1/acknowledge", None, 404, "no incident"),
        ("POST /api/v1/maintenance", {"scope": "moon"}, 422, "scope"),
        ("POST /api/v1/maintenance", None, 400, "JSON"),
        ("DELETE /api/v1/maintenance/7", None, 404, "no maintenance window"),
    ],
)
async def test_bad_staff_requests_are_refused_clearly(
    client: TestClient[Any, Any], request_line: str, body: object, expected: int, words: str
) -> None:
    method, path = request_line.split(" ", 1)
    status, answer = await call(client, method, path, body)
    assert status == expected, answer
    assert words in answer["error"]["message"]


async def test_maintenance_windows_through_the_api(client: TestClient[Any, Any]) -> None:
    now = datetime.now(UTC)
    window = {
        "scope": "site",
        "target": "tesko",
        "start": now.isoformat(),
        "end": (now + timedelta(hours=2)).isoformat(),
        "reason": "re-cabling",
    }
    status, _ = await call(client, "POST", "/api/v1/maintenance", window, token=STAFF)
    assert status == 403
    status, created = await call(client, "POST", "/api/v1/maintenance", window)
    assert (status, created["active"], created["created_by"]) == (201, True, "desk")
    weekly = {"scope": "device", "target": "ts-prn-01", "reason": "weekly reboot",
              "weekly": {"days": ["sun"], "start": "02:00", "end": "03:00"}}  # fmt: skip
    status, second = await call(client, "POST", "/api/v1/maintenance", weekly)
    assert status == 201
    assert second["weekly"] == weekly["weekly"]
    status, listed = await call(client, "GET", "/api/v1/maintenance", token=STAFF)
    assert [w["id"] for w in listed] == [created["id"], second["id"]]
    assert ("site", "tesko") in collector_of(client).pipeline.maintained(now.timestamp() + 60)
    status, _ = await call(client, "DELETE", f"/api/v1/maintenance/{created['id']}")
    assert status == 204
    assert ("site", "tesko") not in collector_of(client).pipeline.maintained(now.timestamp() + 60)
    status, listed = await call(client, "GET", "/api/v1/maintenance", token=STAFF)
    assert [w["id"] for w in listed] == [second["id"]]


async def test_metrics_in_the_prometheus_format(client: TestClient[Any, Any]) -> None:
    collector = collector_of(client)
    cause = Cause("device:ts-prn-01", "device", "P3", "printer down", ("tesko",), 0, {})
    collector.incidents.reconcile([cause], datetime.now(UTC).timestamp())
    status, _ = await post(
        client, "tesko-01", {"agent": "tesko-01", "results": [record("tesko-mpls", 1)]}
    )
    assert status == 200
    response = await client.get("/metrics")  # open, like /healthz
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert families >= {
        "sitewatch_site_status",
        "sitewatch_link_status",
        "sitewatch_device_status",
        "sitewatch_incidents_open",
        "sitewatch_results_ingested_total",
        "sitewatch_agent_outbox_depth",
        "sitewatch_correlation_pass_seconds",
    }
    assert 'sitewatch_incidents_open{priority="P3"} 1.0' in text
    assert "sitewatch_results_ingested_total 1.0" in text
    assert 'sitewatch_site_status{site="dutywa-pound",status="unmonitored"} 1.0' in text


async def test_sites_carry_their_availability_from_the_status_log(
    client: TestClient[Any, Any],
) -> None:
    now = datetime.now(UTC).timestamp()
    with STORES[client].db.writing() as db:
        db.executemany(
            "INSERT INTO status_log (entity, ts, status) VALUES (?, ?, ?)",
            [
                ("site:tesko", now - 7200, "up"),
                ("site:tesko", now - 3600, "down"),
                ("site:tesko", now - 1800, "up"),
            ],
        )
    status, site = await call(client, "GET", "/api/v1/sites/tesko", token=STAFF)
    assert status == 200
    # two hours known, half an hour of it down; before that no evidence at all
    assert site["availability"]["24h"] == pytest.approx(0.75, abs=1e-3)
    assert site["availability"]["30d"] == pytest.approx(0.75, abs=1e-3)
    assert set(site["availability_business_hours"]) == {"24h", "7d", "30d"}
    link = next(x for x in site["links"] if x["id"] == "tesko-mpls")
    assert link["availability"] == {"24h": None, "7d": None, "30d": None}  # nothing logged
    status, sites = await call(client, "GET", "/api/v1/sites", token=STAFF)
    by_id = {s["id"]: s for s in sites}
    assert by_id["tesko"]["availability"]["7d"] == pytest.approx(0.75, abs=1e-3)
    assert by_id["willowvale"]["availability"] == {"24h": None, "7d": None, "30d": None}


async def test_the_sla_report_through_the_api(client: TestClient[Any, Any]) -> None:
    status, body = await call(
        client, "GET", "/api/v1/reports/sla?from=2026-11-01&to=2026-11-30", token=STAFF
    )
    assert status == 200
    assert {p["priority"] for p in body["priorities"]} == {"P1", "P2", "P3"}
    response = await client.get(
        "/api/v1/reports/sla?from=2026-11-01&to=2026-11-30&format=csv", headers=auth(STAFF)
    )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert (await response.text()).startswith("section,subject,metric,value")
    for query, words in [
        ("from=2026-11-31&to=2026-12-01", "from"),
        ("from=2026-11-02&to=2026-11-01", "before"),
        ("from=2026-11-01&to=2026-11-02&format=pdf", "format"),
        ("to=2026-11-02", "from"),
    ]:
        status, body = await call(client, "GET", f"/api/v1/reports/sla?{query}", token=STAFF)
        assert status == 400, query
        assert words in body["error"]["message"]


async def test_a_token_that_is_not_utf8_is_refused_not_a_crash(
    client: TestClient[Any, Any],
) -> None:
    for path in ("/api/v1/sites", "/api/v1/agent/plan"):
        response = await client.get(path, headers={"Authorization": "Bearer caf\udcff"})
        assert response.status == 401, path


async def test_the_incident_list_carries_notes_and_history_says_when_it_is_cut(
    client: TestClient[Any, Any],
) -> None:
    collector = collector_of(client)
    cause = Cause("device:ts-prn-01", "device", "P3", "printer down", ("tesko",), 0, {})
    collector.incidents.reconcile([cause], datetime.now(UTC).timestamp())
    (incident,) = collector.incidents.open_incidents()
    status, _ = await call(client, "POST", f"/api/v1/incidents/{incident.id}/notes", {"text": "a"})
    assert status == 200
    status, listed = await call(client, "GET", "/api/v1/incidents", token=STAFF)
    assert [n["text"] for n in listed[0]["notes"]] == ["a"]

    results = [record("tesko-mpls", seq) for seq in range(1, 6)]
    status, _ = await post(client, "tesko-01", {"agent": "tesko-01", "results": results})
    assert status == 200
    response = await client.get("/api/v1/history?target=tesko-mpls&limit=3", headers=auth(STAFF))
    assert len(await response.json()) == 3
    assert response.headers["X-SiteWatch-Truncated"] == "true"
    response = await client.get("/api/v1/history?target=tesko-mpls", headers=auth(STAFF))
    assert len(await response.json()) == 5
    assert "X-SiteWatch-Truncated" not in response.headers


async def test_the_api_answers_by_the_collectors_clock(tmp_path: Path) -> None:
    """Ingest's age limit and history's default day are the collector's clock's, not the
    machine's: a result of March 2025 is taken and read back by a collector whose time is then
    (the wall clock would refuse it as older than the raw retention)."""
    then = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    config = example_config(
        tuple(AgentCredential(a, a.split("-")[0], sha(t)) for a, t in TOKENS.items()),
        (ApiToken("screen", "viewer", sha(STAFF)),),
    )
    store = Store(tmp_path / "collector.db")
    collector = Collector(config, store, clock=ManualClock(then.timestamp()))
    try:
        async with TestClient(TestServer(build_app(collector))) as test_client:
            batch = {"results": [record("tesko-mpls", 1, ts=then - timedelta(minutes=5))]}
            assert await post(test_client, "tesko-01", batch) == (
                200,
                {"stored": 1, "duplicates": 0},
            )
            response = await test_client.get(
                "/api/v1/history?target=tesko-mpls", headers=auth(STAFF)
            )
            assert response.status == 200
            assert [row["ts"] for row in await response.json()] == ["2025-03-03T08:55:00Z"]
    finally:
        store.close()
