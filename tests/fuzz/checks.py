"""The invariants every fuzzed request is held to, and the reads that follow accepted input.

- Never a 5xx.
- Every 4xx is the contract's `{"error": {"code", "message"}}`, as JSON.
- Every JSON answer is JSON a strict parser accepts: no NaN or Infinity, valid UTF-8.
- After accepted input, every read (API, /metrics, /healthz, the dashboard's pages) still works.

A read that fails after an accepted input is tried again on a fresh collector given only that
input (`alone`): the failure is then the input's own, which is what the shrinker should reduce.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import ClientResponse
from hypothesis import note
from prometheus_client.parser import text_string_to_metric_families

from tests.collector.test_api import STAFF, auth
from tests.fuzz.rig import Rig, agent_token, running
from tests.fuzz.strategies import outbox_of

WHOLE_RANGE = "from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z"


def _no_constant(word: str) -> Any:
    raise ValueError(f"{word} is not JSON")


def strict_json(data: bytes) -> Any:
    """Decode JSON as JSON.parse or jq would: UTF-8 only, no NaN or Infinity."""
    return json.loads(data.decode("utf-8"), parse_constant=_no_constant)


@dataclass(frozen=True, slots=True)
class Answer:
    """One response, read whole: what the checks and the ledger need."""

    what: str
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return strict_json(self.body)


async def answer(what: str, response: ClientResponse) -> Answer:
    """Read a response and hold it to the invariants every answer must keep."""
    body = await response.read()
    what = what if len(what) <= 160 else f"{what[:150]}...({len(what)} characters)"
    found = Answer(what, response.status, response.content_type, body)
    assert found.status < 500, f"{what}: {found.status} {body[:300]!r}"
    if found.status >= 400:
        assert found.content_type == "application/json", f"{what}: {found.status} {body[:200]!r}"
        error = found.json().get("error")
        assert isinstance(error, dict), f"{what}: {body[:200]!r}"
        assert isinstance(error.get("code"), str), f"{what}: {body[:200]!r}"
        assert isinstance(error.get("message"), str), f"{what}: {body[:200]!r}"
    elif found.content_type == "application/json":
        try:
            found.json()
        except ValueError as err:
            raise AssertionError(f"{what}: not strict JSON ({err}): {body[:300]!r}") from err
    return found


async def post_raw(rig: Rig, path: str, data: bytes, headers: dict[str, str], token: str) -> Answer:
    # a stream, not bytes: aiohttp warns about big bytes bodies, and warnings are errors here
    response = await rig.client.post(
        path, data=io.BytesIO(data), headers={**headers, **auth(token)}
    )
    return await answer(f"POST {path}", response)


async def ingest(
    rig: Rig, agent: str, data: bytes, headers: dict[str, str] | None = None
) -> Answer:
    """Post an ingest body as `agent`; a 2xx reply is checked against the ledger."""
    return await post_raw(rig, "/api/v1/agent/results", data, headers or {}, agent_token(agent))


def account(rig: Rig, agent: str, body: Any, reply: Answer) -> None:
    """Record an accepted batch in the ledger; the reply and the database must agree with it."""
    assert reply.status == 200, reply
    counts = reply.json()
    outbox = outbox_of(body)
    seqs = [item["seq"] for item in body.get("results", [])]
    fresh = rig.ledger.expect(agent, outbox, seqs)
    assert (counts["stored"], counts["duplicates"]) == (fresh, len(seqs) - fresh), counts
    rig.ledger.stored += fresh
    rig.ledger.batches += 1
    assert rig.stored_seqs(agent) == rig.ledger.accepted[agent], "stored != acknowledged"


async def get(rig: Rig, path: str, token: str | None = STAFF) -> Answer:
    headers = auth(token) if token is not None else {}
    return await answer(f"GET {path}", await rig.client.get(path, headers=headers))


async def page(rig: Rig, path: str) -> None:
    """A dashboard page, with the operator's session cookie: it must render."""
    response = await rig.client.get(path, allow_redirects=False)
    text = await response.text()
    assert response.status == 200, f"page {path}: {response.status} {text[:300]!r}"


async def reads(
    rig: Rig, sites: Iterable[str] = (), targets: Iterable[str] = (), incidents: Iterable[int] = ()
) -> None:
    """Every read staff and Prometheus make, with the sites, targets and incidents touched."""
    assert (await get(rig, "/api/v1/sites")).status == 200
    assert (await get(rig, "/healthz", None)).status == 200
    metrics = await rig.client.get("/metrics")
    text = await metrics.text()
    assert metrics.status == 200, f"/metrics: {metrics.status} {text[:300]!r}"
    assert list(text_string_to_metric_families(text)), "/metrics: nothing parsed"
    assert (await get(rig, "/api/v1/incidents?status=all")).status == 200
    assert (await get(rig, "/api/v1/maintenance")).status == 200
    await page(rig, "/")
    await page(rig, "/incidents?status=all")
    for site in sorted(set(sites)):
        assert (await get(rig, f"/api/v1/sites/{quote(site)}")).status == 200
        await page(rig, f"/sites/{quote(site)}")
    for target in sorted(set(targets)):
        assert (await get(rig, f"/api/v1/history?target={quote(target)}")).status == 200
        history = await get(rig, f"/api/v1/history?target={quote(target)}&{WHOLE_RANGE}")
        assert history.status == 200
    for incident in sorted(set(incidents)):
        assert (await get(rig, f"/api/v1/incidents/{incident}")).status == 200
        await page(rig, f"/incidents/{incident}")


async def full_reads(rig: Rig) -> None:
    """Every read of every site, link, device and incident, and the reports."""
    sites = [site.id for site in rig.config.inventory.sites]
    targets = [t for site in sites for t in rig.site_targets(site)]
    ids = _incident_ids(rig)
    await reads(rig, sites, targets, ids)
    await page(rig, "/reports")
    today = datetime.now(UTC).date()  # fuzzed results are dated around now: the year to today
    period = f"from={today - timedelta(days=365)}&to={today}"
    report = await get(rig, f"/api/v1/reports/sla?{period}")
    assert report.status == 200


def _incident_ids(rig: Rig) -> list[int]:
    with rig.store.db.reading() as db:
        return [row[0] for row in db.execute("SELECT id FROM incidents ORDER BY id")]


Replay = Callable[[Rig], Awaitable[object]]  # sends one input again, to another collector


@dataclass(frozen=True, slots=True)
class Sent:
    """One ingest request as it went on the wire, to send again to a fresh collector."""

    agent: str
    data: bytes
    headers: dict[str, str]

    async def __call__(self, rig: Rig) -> Answer:
        return await ingest(rig, self.agent, self.data, self.headers)


async def reads_after(
    rig: Rig,
    replay: Replay,
    sites: Iterable[str] = (),
    targets: Iterable[str] = (),
    incidents: Iterable[int] = (),
) -> None:
    """The reads after an accepted input; a failure is confirmed on a fresh collector."""
    sites, targets, incidents = list(sites), list(targets), list(incidents)
    try:
        await reads(rig, sites, targets, incidents)
    except AssertionError as shared:
        note(f"on the shared collector: {shared}")
        was_healthy, rig.ledger.healthy = rig.ledger.healthy, False
        await alone(rig, replay, sites, targets, incidents)  # raises when the input is at fault
        if was_healthy:
            raise  # the accumulated state and this input together break a read: that counts too
        # An earlier input broke reads here already, and this one alone does not.


async def alone(
    rig: Rig, replay: Replay, sites: list[str], targets: list[str], incidents: list[int]
) -> None:
    """Send only this input to a new collector, then read: fails when the input is at fault."""
    rig.ledger.fresh += 1
    name = f"alone-{rig.ledger.fresh}"
    async with running(rig.databases, name, rig.hashes, correlate=False, form_login=False) as fresh:
        await replay(fresh)
        now = time.time()
        correlation, _ = fresh.collector.pipeline.correlate(now)
        fresh.collector.incidents.reconcile(correlation.causes, now)
        known = set(await asyncio.to_thread(_incident_ids, fresh))
        await reads(fresh, sites, targets, [i for i in incidents if i in known])
