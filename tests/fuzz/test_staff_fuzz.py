"""Fuzzing the staff API: incident actions, maintenance windows, and the read endpoints' queries.

Bodies come as plausible JSON with fields spoiled, as any JSON, or as raw bytes, under every
content encoding (gzip good and corrupt, deflate, br, zstd, unknown labels). Whatever arrives:
never a 5xx, every refusal is the JSON error body, and after an accepted note or window the
incident's page, the maintenance list and the pages around them still render.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from yarl import URL

from collector.topology import Cause
from tests.collector.test_api import OPERATOR, STAFF
from tests.fuzz.checks import answer, get, page, post_raw, reads_after
from tests.fuzz.conftest import TIMEOUT, fuzz_settings
from tests.fuzz.rig import EXAMPLE, SITE_TARGETS, Rig
from tests.fuzz.strategies import (
    ENCODING_NAMES,
    ODD_TIMES,
    RAW_BODIES,
    TEXT,
    TIMES,
    WILD,
    Json,
    chance,
    encode_json,
    examples,
    packed,
    recent_times,
    spoil,
)
from tests.fuzz.strategies import (
    ENCODINGS as ALL_ENCODINGS,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
    pytest.mark.timeout(TIMEOUT),
]

CAUSES = (
    Cause("link:tesko-mpls", "link", "P2", "tesko-mpls down", ("tesko",), 7,
          {"link": "tesko-mpls", "links": ["tesko-mpls"]}),
    Cause("site:willowvale", "site", "P1", "Willowvale down", ("willowvale",), 5,
          {"site": "willowvale"}),
    Cause("device:dm-prn-01", "device", "P3", "dm-prn-01 down", ("dutywa-main",), 0,
          {"device": "dm-prn-01", "site": "dutywa-main"}),
)  # fmt: skip
WEIRD_IDS = st.sampled_from(["0", "-1", "999999", "99999999999999999999", "²", "1.0", "%00",
                             "%ff", "1%20", "0x1", "1e3", "\u0661"])  # fmt: skip
ENCODINGS = st.sampled_from(["identity"] * 3) | st.sampled_from(["identity"] * 3) | ENCODING_NAMES
ENCODING_NAMES_LIST = list(ALL_ENCODINGS)
TOKENS = st.sampled_from([OPERATOR] * 7 + [STAFF])


def incident_ids(rig: Rig) -> list[int]:
    """The incidents there are, open ones first; when none is open, the causes open some."""
    if not rig.collector.incidents.open_incidents():
        rig.collector.incidents.reconcile(list(CAUSES), time.time())
    with rig.store.db.reading() as db:
        rows = db.execute("SELECT id FROM incidents ORDER BY status = 'resolved', id")
        return [row[0] for row in rows]


@st.composite
def action_bodies(draw: st.DrawFn, field: str) -> Json | bytes:
    """A body for an incident action: plausible, any JSON, or bytes."""
    choice = draw(st.sampled_from(["plausible"] * 6 + ["wild", "raw"]))
    if choice == "raw":
        return draw(RAW_BODIES)
    if choice == "wild":
        return draw(WILD)
    body: dict[str, Json] = {field: draw(NOTES)}
    spoil(draw, body, {field: TEXT}, one_in=4)
    return body


NOTES = st.sampled_from(["Linesman on site.", "ok", "Fibre cut at pole 7; Telkom ETA 2h.",
                         "Réseau rétabli — merci", "x" * 4_000])  # fmt: skip
ACTIONS = st.sampled_from(["acknowledge", "notes", "resolve"]).flatmap(
    lambda action: st.tuples(
        st.just(action), action_bodies("text" if action == "notes" else "note")
    )
)


# Which incident: the n-th of those there are (modulo), or an id that names none.
PICKS = st.integers(0, 9) | WEIRD_IDS


def picked(pick: int | str, known: list[str]) -> str:
    return known[pick % len(known)] if isinstance(pick, int) and known else str(pick)


KNOWN_ACTIONS = [
    (("notes", {"text": "\ud800"}), 0, "identity", OPERATOR, False),
    (("acknowledge", {"note": "a\udfffb"}), 1, "identity", OPERATOR, False),
    (("resolve", {"note": "\ud800"}), 2, "identity", OPERATOR, False),
    (("notes", {"text": "called\x00"}), 0, "identity", OPERATOR, False),  # PostgreSQL refuses NUL
    (("notes", {"text": "x" * 70_000}), 0, "identity", OPERATOR, False),
    *[(("notes", {"text": "ok"}), 0, name, OPERATOR, False) for name in ENCODING_NAMES_LIST],
    (("acknowledge", b""), 1, "gzip-bad-crc", OPERATOR, False),
]


@fuzz_settings(400)
@given(ACTIONS, PICKS, ENCODINGS, TOKENS, st.booleans())
@examples(KNOWN_ACTIONS)
async def test_incident_actions_with_fuzzed_bodies(  # noqa: PLR0917 -- drawn by hypothesis
    quiet_rig: Rig,
    action_body: tuple[str, Json | bytes],
    pick: int | str,
    encoding: str,
    token: str,
    raw_surrogates: bool,
) -> None:
    rig = quiet_rig
    action, body = action_body
    incident = picked(pick, [str(i) for i in incident_ids(rig)])
    plain = body if isinstance(body, bytes) else encode_json(body, ascii_only=not raw_surrogates)
    headers, wire = packed(encoding, plain)
    path = f"/api/v1/incidents/{incident}/{action}"
    reply = await post_raw(rig, path, wire, headers, token)
    event(f"{action} {reply.status}")
    if reply.status == 200:
        assert reply.json()["id"] == int(incident)

        async def replay(fresh: Rig) -> None:
            incident_ids(fresh)
            await post_raw(fresh, path, wire, headers, token)

        await reads_after(rig, replay, incidents=[int(incident)])


@st.composite
def windows(draw: st.DrawFn) -> Json | bytes:
    """A maintenance window as an operator would ask for one, often spoiled."""
    choice = draw(st.sampled_from(["plausible"] * 6 + ["wild", "raw"]))
    if choice == "raw":
        return draw(RAW_BODIES)
    if choice == "wild":
        return draw(WILD)
    scope = draw(st.sampled_from(["site", "link", "device"]))
    inventory = EXAMPLE.inventory
    ids = {
        "site": [site.id for site in inventory.sites],
        "link": [link.id for _, link in inventory.links()],
        "device": [device.id for _, device in inventory.devices()],
    }[scope]
    body: dict[str, Json] = {"scope": scope, "target": draw(st.sampled_from(ids)),
                             "reason": draw(st.sampled_from(["Fibre splice"]) | TEXT)}  # fmt: skip
    if chance(draw, 3):
        body["weekly"] = {
            "days": draw(
                st.lists(
                    st.sampled_from(["mon", "tue", "sat", "sun"]),
                    min_size=1,
                    max_size=3,
                    unique=True,
                )
                | WILD
            ),
            "start": draw(st.sampled_from(["02:00", "23:59", "24:00", "2:00", "02:00:00"])),
            "end": draw(st.sampled_from(["04:00", "00:00", "02:00", "99:99"])),
        }
    else:
        begin = datetime.now(UTC) + timedelta(hours=draw(st.integers(-48, 24 * 30)))
        length = timedelta(minutes=draw(st.integers(-60, 60 * 24 * 30) | st.integers(0, 10**6)))
        body["start"] = begin.isoformat().replace("+00:00", "Z")
        body["end"] = (begin + length).isoformat().replace("+00:00", "Z")
    spoil(draw, body, {"scope": TEXT, "target": TEXT, "reason": TEXT, "start": TIMES | ODD_TIMES,
                       "end": TIMES | ODD_TIMES, "weekly": WILD}, one_in=3)  # fmt: skip
    return body


TOMORROW = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
WINDOW = {
    "scope": "site",
    "target": "tesko",
    "reason": "Fibre splice",
    "start": TOMORROW.isoformat(),
    "end": (TOMORROW + timedelta(hours=4)).isoformat(),
}
KNOWN_WINDOWS = [
    (WINDOW | {"reason": "\ud800"}, "identity", OPERATOR, None),
    (WINDOW | {"reason": "splice\x00"}, "identity", OPERATOR, None),
    (WINDOW | {"target": "\ud800"}, "identity", OPERATOR, None),
    (WINDOW | {"start": "0001-01-01T00:00:00+01:00"}, "identity", OPERATOR, None),
    (WINDOW | {"end": "9999-12-31T23:59:59-01:00"}, "identity", OPERATOR, None),
    (WINDOW | {"start": None, "end": None, "weekly": {"days": ["mon"], "start": "02:00",
                                                      "end": "04:00"}}, "identity", OPERATOR, 0),
    *[(WINDOW, name, OPERATOR, 0) for name in ENCODING_NAMES_LIST],
]  # fmt: skip


@fuzz_settings(300)
@given(windows(), ENCODINGS, TOKENS, st.none() | PICKS)
@examples(KNOWN_WINDOWS)
async def test_maintenance_windows_with_fuzzed_bodies(
    quiet_rig: Rig, body: Json | bytes, encoding: str, token: str, delete: int | str | None
) -> None:
    rig = quiet_rig
    plain = body if isinstance(body, bytes) else encode_json(body)
    headers, wire = packed(encoding, plain)
    reply = await post_raw(rig, "/api/v1/maintenance", wire, headers, token)
    event(f"maintenance {reply.status}")
    if reply.status == 201:
        window = reply.json()
        site = _site_of(window["scope"], window["target"])

        async def replay(fresh: Rig) -> None:
            await post_raw(fresh, "/api/v1/maintenance", wire, headers, token)

        await reads_after(rig, replay, sites=[site])
    if delete is not None:
        victim = picked(delete, [str(w.id) for w in rig.collector.pipeline.windows])
        response = await rig.client.delete(
            f"/api/v1/maintenance/{victim}", headers={"Authorization": f"Bearer {token}"}
        )
        gone = await answer(f"DELETE /api/v1/maintenance/{victim}", response)
        event(f"delete {gone.status}")
        if rig.ledger.healthy:  # else an earlier input broke reads, and was reported
            assert (await get(rig, "/api/v1/maintenance")).status == 200
            await page(rig, "/")


def _site_of(scope: str, target: str) -> str:
    inventory = EXAMPLE.inventory
    if scope == "site":
        return target
    if scope == "link":
        return next(site.id for site, link in inventory.links() if link.id == target)
    return next(site.id for site, device in inventory.devices() if device.id == target)


EXAMPLE_TARGETS = {target for targets in SITE_TARGETS.values() for target in targets}
PARAM_TEXT = st.one_of(
    TEXT, ODD_TIMES, recent_times(), st.sampled_from(["", "1", "0", "100000", "100001", "-5",
                                                      "2026-11-01", "2026-13-01", "9999-12-31",
                                                      "0001-01-01", "all", "open", "csv", "json"]),
)  # fmt: skip
TARGETS = st.sampled_from(["tesko-mpls", "dm-prn-01", "willowvale-fibre", "hub", ""]) | TEXT
DAYS = st.dates(min_value=date(2026, 1, 1), max_value=date(2027, 12, 31)).map(date.isoformat)
LIMITS = st.integers(1, 20_000).map(str)
# Each parameter: what a dashboard or script sends, and what anyone might.
QUERIES = {
    "/api/v1/history": {"target": (st.sampled_from(sorted(EXAMPLE_TARGETS)), TARGETS),
                        "from": (recent_times(), PARAM_TEXT), "to": (recent_times(), PARAM_TEXT),
                        "limit": (LIMITS, PARAM_TEXT)},
    "/api/v1/incidents": {"status": (st.sampled_from(["open", "resolved", "all"]), PARAM_TEXT),
                          "from": (recent_times(), PARAM_TEXT), "to": (recent_times(), PARAM_TEXT),
                          "limit": (LIMITS, PARAM_TEXT)},
    "/api/v1/reports/sla": {"from": (DAYS, PARAM_TEXT), "to": (DAYS, PARAM_TEXT),
                            "format": (st.sampled_from(["json", "csv"]), PARAM_TEXT)},
}  # fmt: skip


def escaped(text: str) -> str:
    """Percent-encode any text, lone surrogates included (as the bytes Python would send)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def queries(draw: st.DrawFn) -> str:
    """A path with a query string: known parameters with fuzzed values, now and then junk."""
    path = draw(st.sampled_from(list(QUERIES)))
    params = QUERIES[path]
    pairs = [
        (name, draw(wild if chance(draw, 3) else plausible))
        for name, (plausible, wild) in params.items()
        if not chance(draw, 5)
    ]
    if chance(draw, 4):
        pairs.append((draw(st.sampled_from([*params, "x"]) | TEXT), draw(TEXT)))
    query = "&".join(f"{escaped(name)}={escaped(value)}" for name, value in pairs)
    if chance(draw, 6):
        query += draw(st.sampled_from(["&", "&&", "%", "%zz", "%ff%fe", "=", "a=%00", "%ED%A0%80"]))
    return f"{path}?{query}"


@fuzz_settings(400)
@given(queries())
@examples(
    [
        ("/api/v1/history?target=" + "x" * 10_000,),
        ("/api/v1/incidents?status=%ED%A0%80",),
        ("/api/v1/reports/sla?from=0001-01-01&to=9999-12-31",),
        ("/api/v1/history?target=tesko-mpls&from=0001-01-01T00:00:00%2B01:00",),
    ]
)
async def test_query_strings_of_the_read_endpoints(quiet_rig: Rig, target: str) -> None:
    response = await quiet_rig.client.get(URL(target, encoded=True), headers={
        "Authorization": f"Bearer {STAFF}"})  # fmt: skip
    reply = await answer(f"GET {target}", response)
    event(f"{target.partition('?')[0]} {reply.status}")
