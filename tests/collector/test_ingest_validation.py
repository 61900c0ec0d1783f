"""What an agent posts is checked field by field: bad input is a 4xx naming the field, never
a 500, and nothing a page or `/metrics` could choke on later is stored.

The collector runs on a real aiohttp server on port 0 with a real SQLite file; bodies are sent
as raw JSON text, so numbers and escapes arrive exactly as a broken or hostile agent wrote them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agent.main import host_health
from agent.shipper import BATCH_SIZE
from collector.api import MAX_BATCH_VALUES, PARSE_OFF_LOOP, build_app
from collector.body import count_values
from collector.service import Collector
from collector.store import DEFAULT_RETENTION, Store
from collector.store.agents import last_heard
from probes.result import ProbeResult, format_ts
from probes.snmp import _supply
from sitewatch import __version__
from sitewatch.config.model import AgentCredential, ApiToken
from tests.collector.test_api import example_config

ROOT = Path(__file__).resolve().parents[2]
AGENT, TOKEN, STAFF = "tesko-01", "tesko-secret", "staff-secret"
COLLECTORS: dict[int, Collector] = {}  # the collector behind each test client


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], Store]]:
    """A collector with one agent, tesko-01, and a viewer token."""
    config = example_config(
        (AgentCredential(AGENT, "tesko", sha(TOKEN)),), (ApiToken("screen", "viewer", sha(STAFF)),)
    )
    store = Store(tmp_path / "collector.db")
    collector = Collector(config, store)
    async with TestClient(TestServer(build_app(collector))) as client:
        COLLECTORS[id(client)] = collector
        yield client, store
    COLLECTORS.pop(id(client), None)
    store.close()


def result(**change: object) -> dict[str, object]:
    return {"target": "tesko-mpls", "kind": "icmp", "ts": format_ts(datetime.now(UTC)),
            "ok": True, "rtt_ms": 12.5, "loss": 0.0, "value": {}} | change  # fmt: skip


def body(*results: dict[str, object], heartbeat: object = None) -> str:
    """The batch as JSON text; NaN and lone surrogates are written as the tokens they are."""
    batch: dict[str, object] = {
        "results": [{"seq": seq, "result": r} for seq, r in enumerate(results, start=1)]
    }
    if heartbeat is not None:
        batch["heartbeat"] = heartbeat
    return json.dumps(batch)


async def post(client: TestClient[Any, Any], text: str) -> tuple[int, Any]:
    response = await client.post(
        "/api/v1/agent/results",
        data=text.encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    return response.status, await response.json()


SURROGATE = "\ud800"
HUGE = "1" + "0" * 3999  # a 4000-digit number, as JSON text


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (body(result(rtt_ms=0)).replace('"rtt_ms": 0', f'"rtt_ms": {HUGE}'),
         "results[0].result.rtt_ms: must be between 0 and 3.6e+06"),
        (body(result(ts="0001-01-01T00:00:00+01:00")), "results[0].result.ts:"),
        (body(result(ts="9999-12-31T23:59:59-01:00")), "results[0].result.ts:"),
        (body(result(ts="2026-W47-7T10:00:00Z")), "is not an RFC 3339 time"),
        (body(result(ts="2026-11-22T10:00:00+0200")), "is not an RFC 3339 time"),
        (body(result(ts="2026-11-22T10:00:00")), "has no time zone offset"),
        (body(result(detail="x" + SURROGATE)), "results[0].result.detail: holds a lone surrogate"),
        (body(result(), result(kind=SURROGATE)), "results[1].result.kind: holds a lone surrogate"),
        (body(result(target=SURROGATE)), "results[0].result.target: holds a lone surrogate"),
        (body(result(value={"address": SURROGATE})), "results[0].result.value.address: holds"),
        (body(result(loss=2)), "results[0].result.loss: must be between 0 and 1"),
        (body(result(detail="x" * 501)), "results[0].result.detail: longer than 500"),
        (body(result(kind="snmp", target="tesko-prn-01",
                     value={"profile": "printer", "supplies": [{}]})),
         "results[0].result.value.supplies[0].index: is missing"),
    ],
)  # fmt: skip
async def test_bad_fields_are_a_422_naming_them(
    setup: tuple[TestClient[Any, Any], Store], text: str, field: str
) -> None:
    client, store = setup
    status, reply = await post(client, text)
    assert (status, reply["error"]["code"]) == (422, "invalid")
    assert field in reply["error"]["message"]
    assert store.results.sequences(AGENT) == []


@pytest.mark.parametrize(
    "text",
    [
        body(result(rtt_ms=0)).replace('"rtt_ms": 0', '"rtt_ms": NaN'),
        body(result(value={"rtt_avg_ms": 0})).replace('"rtt_avg_ms": 0', '"rtt_avg_ms": NaN'),
        body(result(value={"rtt_avg_ms": 0})).replace('"rtt_avg_ms": 0', '"rtt_avg_ms": Infinity'),
        body(result(), heartbeat={"outbox_depth": 0}).replace("0}", "-Infinity}"),
    ],
)
async def test_nan_and_infinity_are_refused_wherever_they_are(
    setup: tuple[TestClient[Any, Any], Store], text: str
) -> None:
    client, store = setup
    status, reply = await post(client, text)
    assert status in (400, 422)  # the body decoder may refuse the token before ingest sees it
    assert reply["error"]["message"]
    assert store.results.sequences(AGENT) == []


async def test_a_result_older_than_the_raw_retention_is_refused_with_the_limit(
    setup: tuple[TestClient[Any, Any], Store],
) -> None:
    client, store = setup
    old = datetime.now(UTC) - timedelta(seconds=DEFAULT_RETENTION + 3_600)
    status, reply = await post(client, body(result(), result(ts=format_ts(old))))
    assert status == 422
    message = reply["error"]["message"]
    assert message.startswith("results[1].result.ts: ")
    assert "older than the collector keeps raw results (nothing before " in message
    assert reply["error"]["index"] == 1
    assert store.results.sequences(AGENT) == []
    batch = [result(ts=format_ts(old)) if n % 3 == 1 else result() for n in range(10)]
    status, reply = await post(client, body(*batch, result(kind="telnet")))
    assert status == 422  # every refused result named in one reply, nothing partial stored
    assert [r["index"] for r in reply["error"]["refused"]] == [1, 4, 7, 10]
    assert all(
        "older than the collector keeps" in r["message"] for r in reply["error"]["refused"][:3]
    )
    assert reply["error"]["refused"][3]["message"].startswith(
        "results[10].result.kind: must be one"
    )
    assert reply["error"]["index"] == 1
    assert store.results.sequences(AGENT) == []
    year_one = await post(client, body(result(ts="0001-01-01T00:00:00Z")))
    assert year_one[0] == 422
    recent = datetime.now(UTC) - timedelta(seconds=DEFAULT_RETENTION - 3_600)
    assert (await post(client, body(result(ts=format_ts(recent)))))[0] == 200


@pytest.mark.parametrize(
    ("heartbeat", "field"),
    [
        ({"outbox_depth": int("9" * 400)}, "heartbeat.outbox_depth: must be a whole number"),
        ({"outbox_depth": -1}, "heartbeat.outbox_depth: must be a whole number"),
        ({"dropped": 2**63}, "heartbeat.dropped: must be a whole number"),
        ({"dropped": 1.5}, "heartbeat.dropped: must be a whole number"),
        ({"outbox_depth": True}, "heartbeat.outbox_depth: must be a whole number"),
        ({"version": "0.1" + SURROGATE}, "heartbeat.version: must be a string"),
        ({"version": "x" * 65}, "heartbeat.version: must be a version"),
        ({"version": 1}, "heartbeat.version: must be a string"),
        ({"clock": "2026-11-22T10:00:00+0200"}, "heartbeat.clock: '2026-11-22T10:00:00+0200'"),
        ({"clock": "0001-01-01T00:00:00+01:00"}, "heartbeat.clock: "),
        ({"host": {"kind": "host"}}, "heartbeat.host: target: must be a string"),
        ({"host": result(kind="icmp", target="localhost")}, "heartbeat.host.kind: must be host"),
        ({"host": result(kind="host", target="localhost", value={"cpu_percent": -5})},
         "heartbeat.host: value.cpu_percent: must be between 0 and 100"),
        ([], "heartbeat: must be an object"),
    ],
)  # fmt: skip
async def test_a_bad_heartbeat_is_dropped_naming_its_field_and_the_results_kept(
    setup: tuple[TestClient[Any, Any], Store], heartbeat: object, field: str
) -> None:
    """Version skew must not stall an agent: its results are stored, its heartbeat is not."""
    client, store = setup
    status, reply = await post(client, body(result(), heartbeat=heartbeat))
    assert status == 200, reply
    assert reply["stored"] == 1
    assert reply["heartbeat"]["refused"].startswith(field)
    assert store.results.sequences(AGENT) == [1]
    assert last_heard(store.db)[AGENT][1] in (None, {})  # nothing of the heartbeat is kept
    assert "tesko" not in COLLECTORS[id(client)].heartbeats
    response = await client.get("/api/v1/sites/tesko", headers={"Authorization": f"Bearer {STAFF}"})
    assert response.status == 200
    assert (await response.json()).get("agent") in (None, {"id": AGENT})
    metrics = await (await client.get("/metrics")).text()
    assert 'sitewatch_heartbeats_refused_total{agent="tesko-01"} 1.0' in metrics
    assert "sitewatch_agent_outbox_depth{" not in metrics


async def test_an_unknown_heartbeat_field_is_ignored_and_the_rest_kept(
    setup: tuple[TestClient[Any, Any], Store],
) -> None:
    """A newer agent's heartbeat field: dropped, named in the reply, counted; the rest kept."""
    client, store = setup
    heartbeat = {"version": "9.0.0", "outbox_depth": 3, "battery_percent": 80}
    status, reply = await post(client, body(result(), heartbeat=heartbeat))
    assert (status, reply) == (
        200,
        {"stored": 1, "duplicates": 0, "ignored": ["heartbeat.battery_percent"]},
    )
    assert last_heard(store.db)[AGENT][1] == {"version": "9.0.0", "outbox_depth": 3}
    metrics = await (await client.get("/metrics")).text()
    assert 'sitewatch_ingest_keys_ignored_total{agent="tesko-01"} 1.0' in metrics


async def test_the_real_agents_heartbeat_passes_and_is_shown(
    setup: tuple[TestClient[Any, Any], Store], tmp_path: Path
) -> None:
    client, _ = setup
    heartbeat = {  # as agent.main's _heartbeat builds it, with the real host probe's reading
        "version": __version__,
        "clock": format_ts(datetime.now(UTC)),
        "outbox_depth": 2**63 - 1,
        "dropped": 0,
        "host": await host_health(tmp_path),
    }
    status, reply = await post(client, body(result(), heartbeat=heartbeat))
    assert (status, reply) == (200, {"stored": 1, "duplicates": 0})
    response = await client.get("/api/v1/sites/tesko", headers={"Authorization": f"Bearer {STAFF}"})
    agent = (await response.json())["agent"]
    assert agent == {"id": AGENT, "version": __version__, "clock": heartbeat["clock"],
                     "outbox_depth": 2**63 - 1, "dropped": 0}  # fmt: skip
    kept = COLLECTORS[id(client)].heartbeats["tesko"]  # a typed record, not a dict
    assert (kept.agent, kept.host and kept.host.kind) == (AGENT, "host")
    metrics = await (await client.get("/metrics")).text()
    assert 'sitewatch_agent_outbox_depth{agent="tesko-01",site="tesko"} 9.223372036854776e+18' in (
        metrics
    )


async def test_a_large_batch_is_parsed_in_a_thread_with_the_same_answers(
    setup: tuple[TestClient[Any, Any], Store],
) -> None:
    """Over PARSE_OFF_LOOP the body is decoded and checked off the loop: same 200, 400, 422."""
    client, store = setup
    printer = {"profile": "printer", "supplies": [], "alerts": [], "printer_status": "x" * 100}
    batch = [result(target="ts-prn-01", kind="snmp", value=printer) for _ in range(1_200)]
    text = body(*batch)
    assert len(text) > PARSE_OFF_LOOP
    assert (await post(client, text))[0] == 200
    assert len(store.results.sequences(AGENT)) == 1_200
    status, reply = await post(client, text[:-1])
    assert (status, reply["error"]["code"]) == (400, "bad_json")
    old = format_ts(datetime.now(UTC) - timedelta(seconds=DEFAULT_RETENTION + 60))
    status, reply = await post(client, body(*batch[:-1], result(ts=old)))
    assert (status, [r["index"] for r in reply["error"]["refused"]]) == (422, [1_199])


def printer_value() -> dict[str, Any]:
    """The largest value a real probe sends: an office MFP's 16 supplies and 5 alerts."""
    names = ["Black Toner Cartridge HP 508X CF360X", "Cyan Toner", "Magenta Toner",
             "Yellow Toner", "Black Drum", "Cyan Drum", "Magenta Drum", "Yellow Drum",
             "Waste Toner Box", "Fuser Kit 220V", "Transfer Belt", "Transfer Roller",
             "Staple Cartridge K3", "Booklet Staples", "Document Feeder Kit",
             "Tray 2 Roller Kit"]  # fmt: skip
    supplies = [
        _supply(f"1.{n}", name, 100 if n % 3 else -2, 37 if n % 3 else -3)
        for n, name in enumerate(names, start=1)
    ]
    alert = {"severity": "warning", "description": "Cyan toner low, order a new one (CF361X)"}
    return {"profile": "printer", "supplies": supplies, "printer_status": "idle",
            "device_status": "running", "alerts": [alert] * 5}  # fmt: skip


async def test_a_flat_list_of_8_million_numbers_is_413_before_it_is_decoded(
    setup: tuple[TestClient[Any, Any], Store],
) -> None:
    """16 KiB of gzip, 16 MiB of `0,0,...`: decoded, it held the GIL (and the loop) 0.35 s."""
    client, store = setup
    raw = b'{"results":[' + b"0," * (8 * 1024 * 1024 - 11) + b"0]}"
    response = await client.post(
        "/api/v1/agent/results",
        data=gzip.compress(raw, 9),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Encoding": "gzip"},
    )
    error = (await response.json())["error"]
    assert (response.status, error["code"]) == (413, "too_many_values")  # 422 once decoded
    assert "send smaller batches" in error["message"]
    assert store.results.sequences(AGENT) == []


async def test_the_agents_largest_batch_of_its_largest_results_is_well_under_the_value_cap(
    setup: tuple[TestClient[Any, Any], Store],
) -> None:
    """500 printer results and a heartbeat: the batch the shipper sends, with room to spare."""
    client, store = setup
    printer = ProbeResult("ts-prn-01", "snmp", datetime.now(UTC), ok=True, rtt_ms=4.2,
                          value=printer_value()).to_json()  # fmt: skip
    batch = [{**printer} for _ in range(BATCH_SIZE)]
    text = body(*batch, heartbeat={"version": __version__, "outbox_depth": 1, "dropped": 0})
    assert count_values(text.encode(), MAX_BATCH_VALUES) < MAX_BATCH_VALUES * 0.6
    response = await client.post(
        "/api/v1/agent/results",
        data=gzip.compress(text.encode()),  # as the shipper sends it
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Encoding": "gzip"},
    )
    assert (response.status, (await response.json())["stored"]) == (200, BATCH_SIZE)
    assert len(store.results.sequences(AGENT)) == BATCH_SIZE
