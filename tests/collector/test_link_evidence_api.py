"""What staff read about a link's evidence over the API: each source's word and any conflict.

A link's status rests on evidence of several kinds (the centre's ping of its edge, the router's
interface, the path probe, the agent's pings); `GET /api/v1/sites/{id}` lists every source, and
history serves a link's pings unless another kind is asked for.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from collector.evidence import EvidenceView
from collector.state import LinkView, SiteView
from collector.views import site_json
from probes.result import JsonValue, ProbeResult, format_ts
from tests.collector.test_api import STAFF, STORES, auth, client, collector_of, post

__all__ = ["client"]  # the fixture, shared with the API's other tests

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def at(second: float) -> float:
    return (T0 + timedelta(seconds=second)).timestamp()


WILLOWVALE_MPLS = LinkView(
    "willowvale-mpls",
    "mpls",
    "primary",
    "down",
    at(30),
    "centre",
    (
        EvidenceView(
            "centre-ping", "path-bound", "down", at(30), at(90), "10.99.6.2: cannot send", True
        ),
        EvidenceView(
            "far-end-ping", "reachability", "up", at(0), at(91), "10.99.6.1: 3.2 ms", False
        ),
        EvidenceView("path", "path-bound", "unknown", 0.0, 0.0, "", False),
    ),
    "seen by centre: down; agent: reachable (via backup)",
)


def willowvale(*links: LinkView) -> SiteView:
    return SiteView("willowvale", "Willowvale", "degraded", at(30), 5, ("hub",), True, links, ())


async def test_a_link_lists_every_source_and_the_conflict(client: TestClient[Any, Any]) -> None:
    body = site_json(willowvale(WILLOWVALE_MPLS), collector_of(client).heartbeats.get("willowvale"))
    (link,) = body["links"]
    assert {k: link[k] for k in ("id", "kind", "role", "status", "vantage")} == {
        "id": "willowvale-mpls",
        "kind": "mpls",
        "role": "primary",
        "status": "down",
        "vantage": "centre",
    }
    assert link["conflict"] == "seen by centre: down; agent: reachable (via backup)"
    assert link["evidence"] == [
        {
            "source": "centre-ping",
            "kind": "path-bound",
            "status": "down",
            "since": "2026-11-23T08:00:30Z",
            "probed": "2026-11-23T08:01:30Z",
            "detail": "10.99.6.2: cannot send",
            "counted": True,
        },
        {
            "source": "far-end-ping",
            "kind": "reachability",
            "status": "up",
            "since": "2026-11-23T08:00:00Z",
            "probed": "2026-11-23T08:01:31Z",
            "detail": "10.99.6.1: 3.2 ms",
            "counted": False,
        },
        {  # a source that has said nothing yet: no times, not counted
            "source": "path",
            "kind": "path-bound",
            "status": "unknown",
            "since": None,
            "probed": None,
            "detail": "",
            "counted": False,
        },
    ]


async def test_every_link_of_every_site_carries_evidence_and_conflict(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get("/api/v1/sites", headers=auth(STAFF))
    assert response.status == 200
    links = [link for site in await response.json() for link in site["links"]]
    assert links
    for link in links:
        assert set(link) >= {"id", "kind", "role", "status", "vantage", "evidence", "conflict"}
        assert isinstance(link["evidence"], list)
        assert link["conflict"] is None or isinstance(link["conflict"], str)
    response = await client.get("/api/v1/sites/willowvale", headers=auth(STAFF))
    body = await response.json()
    assert [link["id"] for link in body["links"]] == ["willowvale-mpls", "willowvale-fibre"]


def stored_readings(client: TestClient[Any, Any], now: datetime) -> None:
    """Store a minute of Willowvale's primary: its pings, interface and path readings; a
    printer's ping and SNMP reading."""
    readings = []
    for second in range(0, 60, 10):
        ts = now - timedelta(seconds=60 - second)
        readings += [
            ProbeResult("willowvale-mpls", "icmp", ts, True, rtt_ms=3.0, loss=0.0),
            ProbeResult("willowvale-mpls", "interface", ts, True, value={"oper": "up"}),
            ProbeResult("willowvale-mpls", "path", ts, False, value={"via": "willowvale-fibre"}),
        ]
    readings += [
        ProbeResult("wv-prn-01", "icmp", now - timedelta(seconds=5), True, rtt_ms=1.0),
        ProbeResult("wv-prn-01", "snmp", now - timedelta(seconds=4), True),
    ]
    STORES[client].results.ingest(
        "willowvale-01", list(enumerate(readings, start=1)), received=now.timestamp()
    )


async def history(client: TestClient[Any, Any], query: str) -> tuple[int, Any]:
    response = await client.get(f"/api/v1/history?{query}", headers=auth(STAFF))
    return response.status, await response.json()


async def test_a_links_history_is_its_pings_unless_another_kind_is_asked_for(
    client: TestClient[Any, Any],
) -> None:
    stored_readings(client, datetime.now(UTC))
    status, rows = await history(client, "target=willowvale-mpls")
    assert status == 200
    assert [row["kind"] for row in rows] == ["icmp"] * 6  # what a round-trip chart draws
    assert all(row["rtt_ms"] == 3.0 for row in rows)
    status, rows = await history(client, "target=willowvale-mpls&kind=path")
    assert [(row["kind"], row["ok"], row["value"]) for row in rows] == [
        ("path", False, {"via": "willowvale-fibre"})
    ] * 6
    status, rows = await history(client, "target=willowvale-mpls&kind=interface&limit=2")
    assert [row["kind"] for row in rows] == ["interface"] * 2
    status, rows = await history(client, "target=willowvale-mpls&kind=all")
    assert sorted({row["kind"] for row in rows}) == ["icmp", "interface", "path"]
    assert len(rows) == 18
    # a device's history is every kind, as it was
    status, rows = await history(client, "target=wv-prn-01")
    assert [row["kind"] for row in rows] == ["icmp", "snmp"]


async def test_a_kind_history_does_not_know_is_refused_by_name(
    client: TestClient[Any, Any],
) -> None:
    status, body = await history(client, "target=willowvale-mpls&kind=telepathy")
    assert status == 400
    assert body["error"]["code"] == "bad_kind"
    assert "kind: 'telepathy' is not all or one of " in body["error"]["message"]
    assert "icmp" in body["error"]["message"]


async def test_a_router_that_sees_the_primary_down_outweighs_a_ping_that_answers(
    client: TestClient[Any, Any],
) -> None:
    """Willowvale's agent posts its router's view of the MPLS interface (down) and its ping
    of the MPLS far end (answering over the fibre): the API says down, and why."""
    now = datetime.now(UTC)
    down: dict[str, JsonValue] = {"ifindex": 2, "ifname": "up0", "oper": "down", "admin": "up"}
    results = []
    for n in range(3):
        ts = now - timedelta(seconds=30 - 10 * n)
        results += [
            ProbeResult("willowvale-mpls", "interface", ts, False, value=down,
                        error_kind="unexpected", detail="up0 (ifIndex 2) is down, admin up"),
            ProbeResult("willowvale-mpls", "icmp", ts, True, rtt_ms=9.0, loss=0.0),
        ]  # fmt: skip
    batch = {"results": [{"seq": n, "result": r.to_json()} for n, r in enumerate(results, 1)]}
    status, reply = await post(client, "willowvale-01", batch)
    assert (status, reply["stored"]) == (200, 6)

    response = await client.get("/api/v1/sites/willowvale", headers=auth(STAFF))
    mpls = (await response.json())["links"][0]
    assert (mpls["id"], mpls["status"]) == ("willowvale-mpls", "down")
    sources = {e["source"]: e for e in mpls["evidence"]}
    assert {k: sources["interface"][k] for k in ("kind", "status", "counted", "detail")} == {
        "kind": "path-bound",
        "status": "down",
        "counted": True,
        "detail": "up0 (ifIndex 2) is down, admin up",
    }
    assert {k: sources["far-end-ping"][k] for k in ("kind", "status", "counted")} == {
        "kind": "reachability",
        "status": "up",
        "counted": False,
    }
    assert sources["interface"]["probed"] == format_ts(results[-2].ts)
    assert mpls["conflict"] is not None
    assert "router: down" in mpls["conflict"]
    assert "reachable" in mpls["conflict"]
