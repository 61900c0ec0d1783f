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
from collector.service import Collector
from collector.store import Store
from sitewatch.config.files import load_collector_config
from sitewatch.config.model import AgentCredential, ApiToken

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {"tesko-01": "tesko-secret", "willowvale-01": "willowvale-secret"}
STAFF = "staff-secret"
STORES: weakref.WeakKeyDictionary[TestClient[Any, Any], Store] = weakref.WeakKeyDictionary()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    config = replace(
        config,
        agents=tuple(AgentCredential(a, a.split("-")[0], sha(t)) for a, t in TOKENS.items()),
        api_tokens=(ApiToken("screen", "viewer", sha(STAFF)),),
    )
    store = Store(tmp_path / "collector.db")
    collector = Collector(config, store)
    async with TestClient(TestServer(build_app(collector))) as test_client:
        STORES[test_client] = store
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
    return STORES[client].sequences(agent)


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
         "results[0].result:"),
        ({"results": [record("tesko-mpls", 1), record("tesko-mpls", 1)]},
         "results[1].seq: 1 appears twice"),
        ({"results": [record("tesko-mpls", 1, ts=datetime.now(UTC) + timedelta(hours=1))]},
         "is in the future"),
        ({"agent": "willowvale-01", "results": []}, "agent: this token belongs to 'tesko-01'"),
        ({"results": [], "heartbeat": 3}, "heartbeat: must be an object"),
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
