"""U+0000 is refused at the door, on both backends: a 4xx naming the field, never a 500.

PostgreSQL's text columns cannot hold the NUL character (psycopg raises DataError at the
insert); SQLite's can. So every text the collector stores as a text column (a result's target,
kind, detail, error_kind, the batch's outbox, a staff note, a maintenance reason, a dashboard
form's fields) refuses it before anything is stored, whichever backend is behind it: an agent
moved from SQLite to PostgreSQL meets the same answer. Strings inside a result's value are
stored as JSON, where U+0000 is the escape `\\u0000`: those are taken and read back, and a
link's evidence, quoting them into the status log's text column, shows U+FFFD instead.

A real aiohttp server on port 0, on a SQLite file and on the session's PostgreSQL server.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from collector.body import unstorable_text
from collector.evidence import result_detail
from collector.service import Collector
from collector.store import DatabaseSpec
from collector.topology import Cause
from probes.result import ProbeResult, ResultFormatError, format_ts, short
from sitewatch.config.files import load_collector_config
from sitewatch.config.model import AgentCredential, ApiToken
from sitewatch.passwords import hash_password
from tests.apps import served
from tests.browser.conftest import PASSWORDS, csrf_of, write_config
from tests.collector.test_api import example_config

AGENT, TOKEN, OPERATOR = "tesko-01", "tesko-secret", "operator-secret"
NUL = "\x00"
HELD = "holds the NUL character (U+0000)"
FAR = 4e9  # the end of every history read: after any result of these tests


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Front:
    """A test client of the collector's app, and the collector behind it."""

    def __init__(self, client: TestClient[Any, Any], collector: Collector) -> None:
        self.client, self.collector = client, collector

    async def post(self, path: str, raw: bytes, token: str) -> tuple[int, Any]:
        response = await self.client.post(
            path,
            data=raw,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        return response.status, await response.json()

    def open_incident(self) -> int:
        cause = Cause("device:ts-prn-01", "device", "P3", "printer down", ("tesko",), 0, {})
        self.collector.incidents.reconcile([cause], datetime.now(UTC).timestamp())
        (incident,) = self.collector.incidents.open_incidents()
        return incident.id


@pytest.fixture
async def front(database_spec: DatabaseSpec) -> AsyncIterator[Front]:
    """A collector with one agent, tesko-01, and an operator token, on each backend."""
    config = example_config(
        (AgentCredential(AGENT, "tesko", sha(TOKEN)),),
        (ApiToken("desk", "operator", sha(OPERATOR)),),
    )
    async with served(config, database_spec) as (client, collector):
        yield Front(client, collector)


def result(**change: object) -> dict[str, object]:
    return {"target": "tesko-mpls", "kind": "icmp", "ts": format_ts(datetime.now(UTC)),
            "ok": True, "rtt_ms": 12.5, "loss": 0.0, "value": {}} | change  # fmt: skip


def batch(*results: dict[str, object], start: int = 1, **top: object) -> bytes:
    items = [{"seq": seq, "result": r} for seq, r in enumerate(results, start=start)]
    return json.dumps({"results": items, **top}).encode()


async def ingest(front: Front, raw: bytes) -> tuple[int, Any]:
    return await front.post("/api/v1/agent/results", raw, TOKEN)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (result(detail="no reply" + NUL), f"results[1].result.detail: {HELD}"),
        (result(target="tesko-mpls" + NUL), f"results[1].result.target: {HELD}"),
        (result(kind="icmp" + NUL), f"results[1].result.kind: {HELD}"),
        (result(ok=False, error_kind="timeout" + NUL), "results[1].result.error_kind: must be"),
    ],
)
async def test_a_batch_with_nul_in_a_text_field_is_refused_whole(
    front: Front, bad: dict[str, object], message: str
) -> None:
    status, reply = await ingest(front, batch(result(detail="stored before")))
    assert (status, reply["stored"]) == (200, 1)
    status, reply = await ingest(front, batch(result(detail="fine"), bad, start=2))
    assert (status, reply["error"]["code"]) == (422, "invalid")
    assert reply["error"]["message"].startswith(message)
    assert [r["index"] for r in reply["error"]["refused"]] == [1]
    store = front.collector.store
    assert store.results.sequences(AGENT) == [1]  # nothing of the refused batch, not even seq 2
    (kept,) = store.results.history("tesko-mpls", 0, FAR)
    assert kept.result.detail == "stored before"  # what was taken before still reads back


async def test_an_outbox_with_nul_is_refused(front: Front) -> None:
    status, reply = await ingest(front, batch(result(), outbox="0" * 31 + NUL))
    assert (status, reply["error"]["code"]) == (422, "invalid")
    assert reply["error"]["message"].startswith("outbox:")
    assert front.collector.store.results.sequences(AGENT) == []


async def test_nul_inside_a_value_is_json_and_is_stored(front: Front) -> None:
    """A value's strings go in as JSON text, where U+0000 is an escape: nothing to refuse."""
    value = {"address": "10.0.0.1" + NUL, "sent": 3, "received": 3}
    status, reply = await ingest(front, batch(result(value=value)))
    assert (status, reply["stored"]) == (200, 1)
    (kept,) = front.collector.store.results.history("tesko-mpls", 0, FAR)
    assert kept.result.value == value
    # ... and the line a link's evidence quotes it in (the status log's text column) has none
    assert result_detail(kept.result) == "10.0.0.1\ufffd: 12.5 ms"


@pytest.mark.parametrize(
    ("action", "field"), [("notes", "text"), ("acknowledge", "note"), ("resolve", "note")]
)
async def test_a_staff_note_with_nul_is_422_naming_the_field(
    front: Front, action: str, field: str
) -> None:
    incident = front.open_incident()
    path = f"/api/v1/incidents/{incident}/{action}"
    status, reply = await front.post(path, json.dumps({field: "called" + NUL}).encode(), OPERATOR)
    assert (status, reply["error"]["code"]) == (422, "invalid")
    assert reply["error"]["message"] == f"{field}: {HELD}"
    # the same body in UTF-16 carries no `\u0000` escape, only zero bytes: still refused
    raw = json.dumps({field: "called" + NUL}, ensure_ascii=False).encode("utf-16")
    status, reply = await front.post(path, raw, OPERATOR)
    assert (status, reply["error"]["message"]) == (422, f"{field}: {HELD}")
    status, reply = await front.post(path, json.dumps({field: "called"}).encode(), OPERATOR)
    assert status == 200, reply  # the incident was left as it was: the action is still to do


async def test_a_maintenance_reason_with_nul_is_422(front: Front) -> None:
    window = {"scope": "site", "target": "tesko", "reason": "works" + NUL,
              "weekly": {"days": ["mon"], "start": "01:00", "end": "02:00"}}  # fmt: skip
    status, reply = await front.post("/api/v1/maintenance", json.dumps(window).encode(), OPERATOR)
    assert (status, reply["error"]["message"]) == (422, f"reason: {HELD}")
    assert front.collector.store.maintenance.windows() == []


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"text": "a"}, None),
        ({"text": "a" + NUL}, "text"),
        ({"a": [{"b": ["x", NUL]}]}, "a[0].b[1]"),
        ({"a": {"b" + NUL: 1}}, "a (a key)"),
        ({"a": "\\u0000"}, None),  # an escaped backslash before u0000: the walk finds nothing
    ],
)
def test_unstorable_text_names_where_nul_is(value: dict[str, Any], where: str | None) -> None:
    problem = unstorable_text(json.dumps(value).encode(), value)
    assert problem == (None if where is None else f"{where}: {HELD}")


def test_a_probe_detail_never_carries_nul() -> None:
    """An agent's own detail (a device's banner) has U+0000 replaced, so it is never refused."""
    line = short("SIP/2.0 200 O" + NUL + "K")
    assert line == "SIP/2.0 200 O\ufffdK"
    checked = ProbeResult.from_json(result(detail=line))
    assert checked.detail == line
    with pytest.raises(ResultFormatError, match=r"detail: holds the NUL character \(U\+0000\)"):
        ProbeResult.from_json(result(detail="O" + NUL))


# -- the dashboard's forms ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def hashes() -> dict[str, str]:
    return {name: hash_password(password) for name, password in PASSWORDS.items()}


@pytest.fixture
async def dashboard(
    tmp_path: Path, hashes: dict[str, str], database_spec: DatabaseSpec
) -> AsyncIterator[Front]:
    config = load_collector_config(write_config(tmp_path, hashes))
    async with served(config, database_spec) as (client, collector):
        yield Front(client, collector)


async def _login_form(front: Front, name: str) -> tuple[int, str]:
    page = await front.client.get("/login")
    data = {"csrf": csrf_of(await page.text()), "name": name, "password": PASSWORDS["desk"]}
    response = await front.client.post("/login", data=data, allow_redirects=False)
    return response.status, await response.text()


async def test_a_dashboard_note_with_nul_is_refused_and_a_clean_one_taken(
    dashboard: Front,
) -> None:
    assert (await _login_form(dashboard, "desk"))[0] == 303
    cause = Cause("link:alpha-mpls", "link", "P1", "alpha down", ("alpha",), 15, {})
    dashboard.collector.incidents.reconcile([cause], datetime.now(UTC).timestamp())
    (incident,) = dashboard.collector.incidents.open_incidents()
    base = f"/incidents/{incident.id}"
    token = csrf_of(await (await dashboard.client.get(base)).text())
    response = await dashboard.client.post(
        f"{base}/notes", data={"csrf": token, "text": "called" + NUL}, allow_redirects=False
    )
    assert response.status == 422
    assert f"The text {HELD}." in await response.text()
    response = await dashboard.client.post(
        f"{base}/notes", data={"csrf": token, "text": "called Telkom"}, allow_redirects=False
    )
    assert response.status == 303
    notes = [e.detail.get("text") for e in dashboard.collector.incidents.timeline(incident.id)]
    assert notes.count("called Telkom") == 1
    assert not any(NUL in str(text) for text in notes)


async def test_a_login_name_with_nul_is_refused(dashboard: Front) -> None:
    status, html = await _login_form(dashboard, "desk" + NUL)
    assert status == 422
    assert f"The name {HELD}." in html
