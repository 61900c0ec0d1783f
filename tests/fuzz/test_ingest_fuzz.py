"""Fuzzing `POST /api/v1/agent/results`: batches, heartbeats, arbitrary JSON and bytes, encodings.

Whatever an agent sends: never a 5xx, every refusal is the JSON error body, a refused batch
stores nothing, an accepted one is stored exactly (the ledger), and afterwards every read staff
and Prometheus make still works and answers strict JSON.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from dataclasses import replace as dataclass_replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from probes.result import ProbeResult
from tests.fuzz.checks import Sent, account, full_reads, ingest, reads_after
from tests.fuzz.conftest import TIMEOUT, described, fuzz_settings, logged_errors
from tests.fuzz.rig import EXAMPLE, SITE_TARGETS, Databases, Rig, restarted, running
from tests.fuzz.strategies import (
    ENCODING_NAMES,
    ENCODINGS,
    KINDS,
    PLAUSIBLE_VALUES,
    RAW_BODIES,
    WILD,
    Json,
    batches,
    encode_json,
    examples,
    heartbeats,
    packed,
)

# A failing example may hold a 70,000-character string: print it anyway.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
    pytest.mark.timeout(TIMEOUT),
]
AGENTS = st.sampled_from([(agent.id, agent.site) for agent in EXAMPLE.agents])


def touched(body: Json, site: str) -> list[str]:
    """The inventory targets of this site that a body's results name."""
    items = body.get("results") if isinstance(body, dict) else None
    names = {
        item["result"].get("target")
        for item in items or []
        if isinstance(item, dict) and isinstance(item.get("result"), dict)
    }
    return [target for target in SITE_TARGETS[site] if target in names]


async def send(rig: Rig, site: str, body: Json | bytes, sent: Sent) -> bool:
    """Post one body; check the ledger and every read when it is accepted. Return accepted."""
    agent = sent.agent
    reply = await ingest(rig, agent, sent.data, sent.headers)
    event(f"answer {reply.status}")
    if reply.status != 200:
        # refused whole: nothing of it is stored
        assert rig.stored_seqs(agent) == rig.ledger.accepted.get(agent, Counter())
        return False
    account(rig, agent, json.loads(body) if isinstance(body, bytes) else body, reply)
    await reads_after(rig, sent, [site], touched(body, site))
    return True


def one(target: str, seq: int, **fields: Json) -> tuple[tuple[str, str], Json]:
    """A batch of tesko-01 with one result: an icmp success a minute ago, changed by `fields`."""
    ts = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    result = {"target": target, "kind": "icmp", "ts": ts, "ok": True} | fields
    return ("tesko-01", "tesko"), {"results": [{"seq": seq, "result": result}]}


# The defects issue 11 names: always tried first, whatever the generator draws after them.
KNOWN_BATCHES = [
    one("tesko-mpls", 900_001, ts="0001-01-01T00:00:00Z"),
    one("tesko-mpls", 900_002, ts="0001-01-01T00:00:00+01:00"),
    one("tesko-mpls", 900_003, ts="9999-12-31T23:59:59-01:00"),
    one("tesko-mpls", 900_004, rtt_ms=10**3999),
    one("tesko-mpls", 900_005, ok=False, error_kind="timeout", detail="\ud800"),
    one("tesko-mpls", 900_006, kind="\ud800"),
    one("tesko-mpls", 900_007, value={"address": "10.99.2.1", "sent": 3, "received": math.nan}),
    one("ts-prn-01", 900_008, kind="snmp", value={"supplies": [{}]}),
    one("ts-prn-01", 900_009, kind="snmp", value={"profile": "printer", "supplies": [{}]}),
    one("tesko-mpls", 900_010, ts="2026-W48-1T10:00:00Z"),
    one("tesko-mpls", 900_011, ok=False, error_kind="timeout", detail="no\x00reply"),  # issue 13
    one("tesko-mpls", 900_012, value={"address": "10.99.2.1\x00"}),  # JSON: stored, escaped
    # issue 13: a seq sent again with another time is a duplicate on PostgreSQL too
    one("tesko-mpls", 900_013),
    one("tesko-mpls", 900_013, ts=(datetime.now(UTC) - timedelta(minutes=2)).isoformat()),
]


@fuzz_settings(500)
@given(
    AGENTS.flatmap(lambda a: st.tuples(st.just(a), batches(SITE_TARGETS[a[1]], a[0]))),
    st.sampled_from([True, True, True, False]),
)
@examples([(batch, True) for batch in KNOWN_BATCHES])
async def test_fuzzed_batches_are_stored_exactly_and_every_read_survives(
    rig: Rig, sent: tuple[tuple[str, str], Json], ascii_only: bool
) -> None:
    (agent, site), body = sent
    await send(rig, site, body, Sent(agent, encode_json(body, ascii_only=ascii_only), {}))


HEARTBEAT = {"version": "0.1.0", "clock": "2026-11-30T10:00:00Z", "outbox_depth": 0, "dropped": 0}
KNOWN_HEARTBEATS = [
    HEARTBEAT | {"outbox_depth": 10**400},
    HEARTBEAT | {"outbox_depth": math.nan},
    HEARTBEAT | {"dropped": -math.inf},
    HEARTBEAT | {"version": "\ud800"},
    HEARTBEAT | {"host": {"target": "\ud800", "kind": "host", "ts": "x", "ok": True}},
    HEARTBEAT | {"clock": "0001-01-01T00:00:00+01:00"},
]


@fuzz_settings(300)
@given(AGENTS, heartbeats(), st.booleans())
@examples([(("tesko-01", "tesko"), heartbeat, False) for heartbeat in KNOWN_HEARTBEATS])
async def test_fuzzed_heartbeats_never_break_metrics_or_pages(
    rig: Rig, agent_site: tuple[str, str], heartbeat: Json, with_result: bool
) -> None:
    agent, site = agent_site
    body: dict[str, Any] = {"heartbeat": heartbeat, "results": []}
    if with_result:
        seq = rig.ledger.stored + 10_000  # a fresh one: the heartbeat rides on a real batch
        target = SITE_TARGETS[site][0]
        ts = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        body["results"] = [
            {
                "seq": seq,
                "result": {
                    "target": target,
                    "kind": "icmp",
                    "ok": True,
                    "ts": ts,
                },
            }
        ]
    await send(rig, site, body, Sent(agent, encode_json(body), {}))  # /metrics among the reads


@fuzz_settings(300)
@given(AGENTS, st.one_of(WILD, st.fixed_dictionaries({"results": WILD}), RAW_BODIES))
async def test_arbitrary_json_and_bytes_are_refused_cleanly(
    rig: Rig, agent_site: tuple[str, str], body: Json | bytes
) -> None:
    agent, site = agent_site
    data = body if isinstance(body, bytes) else encode_json(body)
    await send(rig, site, body, Sent(agent, data, {}))


@fuzz_settings(300)
@given(
    AGENTS.flatmap(lambda a: st.tuples(st.just(a), batches(SITE_TARGETS[a[1]], a[0]))),
    ENCODING_NAMES,
)
@examples([(one("tesko-mpls", 900_100 + n), name) for n, name in enumerate(ENCODINGS)])
async def test_content_encodings_of_a_batch(
    rig: Rig, sent: tuple[tuple[str, str], Json], encoding: str
) -> None:
    (agent, site), body = sent
    headers, data = packed(encoding, encode_json(body))
    await send(rig, site, body, Sent(agent, data, headers))


# -- what an older collector stored ------------------------------------------------------------

STORED_TEXT = st.text(max_size=30)  # SQLite cannot hold a lone surrogate as TEXT: none stored
STORED_VALUES = st.one_of(
    *PLAUSIBLE_VALUES.values(),
    st.fixed_dictionaries({"supplies": WILD}),
    st.dictionaries(st.text(max_size=8), WILD, max_size=4),  # surrogates survive inside JSON
)


@st.composite
def stored_results(draw: st.DrawFn) -> tuple[int, ProbeResult]:
    """A result as a collector that checked less might have stored it, with its seq."""
    kind = draw(st.sampled_from(KINDS) | STORED_TEXT)
    result = ProbeResult(
        target=draw(st.sampled_from(SITE_TARGETS["tesko"]) | st.just("tesko-01")),
        kind=kind,
        ts=draw(
            st.datetimes(
                min_value=datetime(1, 1, 2),  # noqa: DTZ001 -- hypothesis's bounds are naive
                max_value=datetime(9999, 12, 30),  # noqa: DTZ001
                timezones=st.just(UTC),
            )
            | st.just(datetime.now(UTC) - timedelta(minutes=1))
        ),
        ok=draw(st.booleans()),
        rtt_ms=draw(st.none() | st.floats(allow_nan=False)),
        loss=draw(st.none() | st.floats(allow_nan=False)),
        value=draw(STORED_VALUES),
        detail=draw(STORED_TEXT),
    )
    return draw(st.integers(1, 2**63 - 1)), result


def without_nul(result: ProbeResult) -> ProbeResult:
    """The result as PostgreSQL could have stored it: no NUL in its text columns."""
    return dataclass_replace(
        result,
        target=result.target.replace("\x00", "\ufffd"),
        kind=result.kind.replace("\x00", "\ufffd"),
        detail=result.detail.replace("\x00", "\ufffd"),
    )


@fuzz_settings(40)
@given(
    st.lists(stored_results(), min_size=1, max_size=4, unique_by=lambda item: item[0]),
    st.none() | heartbeats() | st.dictionaries(st.text(max_size=8), WILD, max_size=5),
)
async def test_what_an_older_collector_stored_is_read_without_a_500(
    databases: Databases,
    hashes: dict[str, str],
    items: list[tuple[int, ProbeResult]],
    heartbeat: Json,
) -> None:
    """Poison already in a database (from before the checks) shows as missing, never a 500.

    PostgreSQL's text never held a NUL (a collector before the check got an error, not a row),
    so there the text fields' NULs become U+FFFD; SQLite's may have stored them.
    """
    if databases.dialect == "postgresql":
        items = [(seq, without_nul(result)) for seq, result in items]
    with logged_errors() as errors:
        async with running(databases, "older", hashes, correlate=False, form_login=False) as rig:
            await asyncio.to_thread(
                rig.store.results.ingest,
                "tesko-01",
                items,
                heartbeat=heartbeat,
                received=time.time(),
            )
            async with restarted(rig, form_login=False) as again:
                await full_reads(again)
    assert not errors.records, described(errors)
