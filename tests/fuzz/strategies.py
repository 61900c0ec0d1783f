"""What the fuzz suite sends: agents' batches and heartbeats, staff bodies, encodings, queries.

Each field has a *plausible* strategy, what a working agent or operator sends, including the
edges the contract allows (year 1, lone surrogates, NaN in a nested value), and a *wild* one
(any JSON). Most results are plausible with one to three fields spoiled, so that batches are
often accepted and go on to be stored and read back: a fuzzer that is always refused at the
door proves nothing about the pages behind it.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from hypothesis import example
from hypothesis import strategies as st

from probes.result import ERROR_KINDS

KINDS = ("icmp", "tcp", "http", "snmp", "sip", "host", "interface", "path")
Json = Any  # a decoded JSON document, NaN and huge numbers included
Test = TypeVar("Test", bound=Callable[..., Any])


def examples(cases: list[tuple[Any, ...]]) -> Callable[[Test], Test]:
    """Decorate a property with each of `cases` as an explicit example, tried before any draw."""

    def decorate(test: Test) -> Test:
        for case in cases:
            test = example(*case)(test)
        return test

    return decorate


# -- scalars -----------------------------------------------------------------------------------

HUGE_INTS = st.sampled_from([2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**20, 10**400, -(10**400),
                             10**3999, -1, 0])  # fmt: skip
NUMBERS = st.one_of(
    HUGE_INTS,
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-0.0, 1e308, 5e-324, float("nan"), float("inf"), -float("inf")]),
    st.booleans(),
)
NASTY_CHARS = st.characters(categories=["Cs", "Cc", "Cf", "Zl", "Zp", "Co", "Mn", "So", "Nd"])
LONG = st.builds(
    lambda piece, n: piece * n,
    st.sampled_from(["x", "é", "\ud800", "\x00", "<b>", "💥"]),
    st.sampled_from([199, 200, 201, 499, 500, 501, 4_000, 4_001, 70_000]),
)
TEXT = st.one_of(
    st.text(max_size=40),
    st.text(NASTY_CHARS, max_size=20),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "\u2028", "\u202eevil", "<script>x</script>",
                     " ",
                     "{{ 7*7 }}", "%s%n", "'; DROP TABLE results; --"]),
    LONG,
)  # fmt: skip
SCALARS = st.one_of(st.none(), NUMBERS, TEXT)
# Numbers a sloppy probe might report: mostly finite, some out of range, now and then NaN.
READINGS = st.one_of(st.integers(-10, 10**6), st.floats(-10, 1e6, allow_nan=False), NUMBERS)
WILD: st.SearchStrategy[Json] = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8) | TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)

# -- times -------------------------------------------------------------------------------------

OFFSETS = st.one_of(
    st.just(UTC),
    st.integers(-(24 * 60) + 1, 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m))),
)
ODD_TIMES = st.sampled_from([
    "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00-01:00",
    "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59+01:00", "9999-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.999999Z", "1900-01-01T00:00:00Z",
    "2026-W48-1T10:00:00Z", "2026-11-30T10:00:00+0200", "2026-11-30T10:00:00", "2026-11-30",
    "2026-11-30 10:00:00Z", "2026-11-30t10:00:00z", "2026-11-30T10:00:00.123456789Z",
    "2026-11-30T24:00:00Z", "2026-11-30T23:59:60Z", "2026-11-30T10:00:00+24:00",
    "2026-11-30T10:00Z", "20261130T100000Z", "\uff12\uff10\uff12\uff16-11-30T10:00:00Z",
    "2026-11-30T10:00:00+02",
    "2026-02-30T10:00:00Z", "", "Z", "now",
])  # fmt: skip


def stamp(moment: datetime, zone: timezone, style: int) -> str:
    """Write `moment` in `zone` the way one of several clients would."""
    local = moment.astimezone(zone) if zone is not UTC else moment
    text = local.isoformat(timespec=("seconds", "milliseconds", "microseconds")[style % 3])
    return text.replace("+00:00", "Z") if style % 2 else text


@st.composite
def recent_times(draw: st.DrawFn) -> str:
    """A time in the last two days (or just ahead of the clock), in any honest notation."""
    back = draw(st.floats(-400.0, 2 * 86_400.0, allow_nan=False))
    zone = draw(st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5))]))
    return stamp(datetime.now(UTC) - timedelta(seconds=back), zone, draw(st.integers(0, 5)))


# Any moment of years 1 to 9999, written in its own offset: some overflow when made UTC.
ANY_TIME = st.datetimes(
    min_value=datetime(1, 1, 1),  # noqa: DTZ001 -- hypothesis's bounds are naive; zones follow
    max_value=datetime(9999, 12, 31, 23, 59, 59),  # noqa: DTZ001
    timezones=OFFSETS,
).map(datetime.isoformat)
TIMES = st.one_of(recent_times(), recent_times(), recent_times(), ODD_TIMES, ANY_TIME)

# -- results -----------------------------------------------------------------------------------

SUPPLY = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(("index", "description", "level", "max", "percent", "state"), SCALARS),
)
PLAUSIBLE_VALUES: dict[str, st.SearchStrategy[Json]] = {
    "icmp": st.fixed_dictionaries(
        {"address": st.sampled_from(["10.99.2.1", "::1", "x"]), "sent": READINGS,
         "received": READINGS},
        optional={"rtt_min_ms": READINGS, "rtt_avg_ms": READINGS, "jitter_ms": READINGS},
    ),
    "tcp": st.fixed_dictionaries({"port": READINGS}),
    "http": st.fixed_dictionaries(
        {"status": READINGS, "url": TEXT}, optional={"cert_days_left": READINGS}
    ),
    "snmp": st.one_of(
        st.fixed_dictionaries(
            {"profile": st.just("printer"), "supplies": st.lists(SUPPLY, max_size=3) | WILD},
            optional={"printer_status": SCALARS, "device_status": SCALARS,
                      "alerts": st.lists(st.fixed_dictionaries(
                          {}, optional={"severity": SCALARS, "description": SCALARS}),
                          max_size=2) | WILD},
        ),
        st.fixed_dictionaries(
            {"profile": st.just("interface"), "uptime_s": READINGS,
             "interfaces": st.lists(st.dictionaries(
                st.sampled_from(["index", "descr", "admin", "oper", "in_errors", "name"]),
                SCALARS), max_size=3) | WILD},
        ),
    ),
    "sip": st.fixed_dictionaries(
        {"status": READINGS, "reason": TEXT}, optional={"user_agent": TEXT, "server": TEXT}
    ),
    "interface": st.fixed_dictionaries(
        {"oper": st.sampled_from(["up", "down", "lowerLayerDown", "testing"]) | SCALARS},
        optional={"ifindex": READINGS, "ifname": SCALARS, "admin": SCALARS,
                  "in_errors": READINGS, "out_octets": READINGS, "in_bps": READINGS,
                  "uptime_s": READINGS},
    ),
    "path": st.fixed_dictionaries(
        {"toward": st.sampled_from(["10.99.0.254", "x"]) | SCALARS, "ttl": READINGS},
        optional={"hop": SCALARS, "via": SCALARS},
    ),
    "host": st.fixed_dictionaries(
        {},
        optional={"cpu_percent": READINGS, "load": st.lists(READINGS, max_size=3) | WILD,
                  "memory_percent": READINGS, "disk_free_bytes": READINGS, "disk_path": TEXT,
                  "interfaces": st.dictionaries(TEXT, st.dictionaries(
                      st.sampled_from(["errors_in", "drops_out"]), READINGS), max_size=2) | WILD,
                  "uptime_s": READINGS},
    ),
}  # fmt: skip


def clean_values(kind: str) -> st.SearchStrategy[Json]:
    """The value a working probe of `kind` sends: small, finite, the right shape."""
    small = st.integers(0, 10_000) | st.floats(0, 10_000, allow_nan=False)
    return {
        "icmp": st.fixed_dictionaries({"address": st.just("10.99.2.1"), "sent": st.just(3),
                                       "received": st.integers(0, 3)}),
        "tcp": st.fixed_dictionaries({"port": st.integers(1, 65535)}),
        "http": st.fixed_dictionaries({"status": st.integers(100, 599), "url": st.just("http://x/")}),
        "snmp": st.fixed_dictionaries({"profile": st.just("printer"),
                                       "supplies": st.lists(st.fixed_dictionaries(
            {"index": st.just("1.1"), "description": st.text(max_size=10), "level": small,
             "max": small, "percent": st.none() | st.floats(0, 100), "state": st.sampled_from(
                 ["ok", "low", "empty", "unknown"])}), max_size=2),
            "printer_status": st.sampled_from(["idle", "printing", None]),
            "device_status": st.sampled_from(["running", "down", None]), "alerts": st.just([])}),
        "sip": st.fixed_dictionaries({"status": st.integers(100, 699), "reason": st.just("OK")}),
        "host": st.fixed_dictionaries({"cpu_percent": st.floats(0, 100), "uptime_s": small}),
        "interface": st.fixed_dictionaries({"ifindex": st.integers(1, 64), "ifname": st.just("up0"),
            "oper": st.sampled_from(["up", "down", "lowerLayerDown", "dormant", None]),
            "admin": st.sampled_from(["up", "down", None]), "in_errors": st.none() | small,
            "in_bps": st.none() | st.floats(0, 1e9)}),
        "path": st.fixed_dictionaries({"toward": st.just("10.99.0.254"), "ttl": st.integers(1, 3),
            "hop": st.sampled_from(["10.99.6.1", "10.99.7.1", None]),
            "via": st.none() | st.text(max_size=20)}),
    }[kind]  # fmt: skip


FIELDS = ("target", "kind", "ts", "ok", "rtt_ms", "loss", "value", "error_kind", "detail")


@st.composite
def results(draw: st.DrawFn, targets: tuple[str, ...], agent: str) -> Json:
    """One result about this site's targets: usually plausible, with a few fields spoiled."""
    kind = draw(st.sampled_from(KINDS))
    target = agent if kind == "host" and draw(st.booleans()) else draw(st.sampled_from(targets))
    ok = draw(st.booleans())
    plausible: dict[str, st.SearchStrategy[Json]] = {
        "target": st.just(target),
        "kind": st.just(kind),
        "ts": recent_times(),
        "ok": st.just(ok),
        "rtt_ms": st.none() | st.floats(0, 5_000, allow_nan=False) | st.integers(0, 5_000),
        "loss": st.none() | st.floats(0, 1) | st.sampled_from([0, 1]),
        "value": st.one_of(clean_values(kind), clean_values(kind), PLAUSIBLE_VALUES[kind]),
        "error_kind": st.none() if ok else st.sampled_from(ERROR_KINDS),
        "detail": st.just("") if ok else TEXT,
    }
    body = {name: draw(strategy) for name, strategy in plausible.items()}
    spoil(draw, body, spoilt(targets))
    return body


def spoilt(targets: tuple[str, ...]) -> dict[str, st.SearchStrategy[Json]]:
    """What a broken or hostile agent might put in each field of a result."""
    return {
        "target": st.sampled_from(["willowvale-mpls", "tesko-01", "hub", *targets]) | TEXT,
        "kind": st.sampled_from([*KINDS, "ICMP", "ping", ""]) | TEXT,
        "ts": TIMES | ODD_TIMES | NUMBERS,
        "ok": st.sampled_from([0, 1, "true", None]),
        "rtt_ms": NUMBERS,
        "loss": NUMBERS,
        "value": st.one_of(*PLAUSIBLE_VALUES.values(), WILD),
        "error_kind": st.sampled_from([*ERROR_KINDS, "TIMEOUT", ""]) | TEXT,
        "detail": TEXT,
    }


# -- batches and heartbeats --------------------------------------------------------------------

SEQS = st.one_of(st.integers(1, 300), st.integers(1, 300), st.integers(1, 2**63 - 1), HUGE_INTS)


def chance(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in `one_in` draws; the shrinker makes it False.

    Hypothesis favours the ends of a range and small numbers, so the lucky band is in the middle.
    """
    return 500 <= draw(st.integers(0, 999)) < 500 + 1000 // one_in


def spoil(
    draw: st.DrawFn,
    body: dict[str, Json],
    wild: dict[str, st.SearchStrategy[Json]],
    one_in: int = 2,
) -> None:
    """Once in `one_in` bodies, replace, drop or add a few fields of a plausible `body`."""
    if not chance(draw, one_in):
        return
    names = [*wild, "+extra", "-missing"]
    for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)):
        if name == "+extra":
            body[draw(st.text(max_size=8))] = draw(WILD)
        elif name == "-missing":
            body.pop(draw(st.sampled_from(list(wild))), None)
        else:
            body[name] = draw(wild[name] | WILD)


@st.composite
def host_results(draw: st.DrawFn) -> Json:
    """The host probe's result, as a heartbeat carries it."""
    body = {"target": "localhost", "kind": "host", "ts": draw(recent_times()), "ok": True,
            "rtt_ms": None, "loss": None, "value": draw(clean_values("host")),
            "error_kind": None, "detail": ""}  # fmt: skip
    spoil(draw, body, {"target": TEXT, "kind": TEXT, "ts": TIMES, "ok": NUMBERS,
                       "value": PLAUSIBLE_VALUES["host"], "detail": TEXT})  # fmt: skip
    return body


HEARTBEAT_FIELDS: dict[str, st.SearchStrategy[Json]] = {
    "version": st.sampled_from(["0.1.0", "1.0.0rc1", ""]) | TEXT,
    "clock": TIMES | NUMBERS,
    "outbox_depth": NUMBERS,
    "dropped": NUMBERS,
    "host": host_results() | WILD,
}


@st.composite
def heartbeats(draw: st.DrawFn) -> Json:
    """A heartbeat as an agent sends it, with a few fields spoiled half the time."""
    body: dict[str, Json] = {
        "version": "0.1.0",
        "clock": draw(recent_times()),
        "outbox_depth": draw(st.integers(0, 100_000)),
        "dropped": draw(st.integers(0, 100)),
        "host": draw(st.none() | host_results()),
    }
    spoil(draw, body, HEARTBEAT_FIELDS)
    if chance(draw, 6):
        body[draw(st.sampled_from(["id", "agent", "site"]))] = draw(WILD)
    return body


# An outbox identity (issue 11: sequences unique per outbox, "legacy" when an old agent sends
# none): a few ids, so that the same seq arrives from several outboxes of one agent.
OUTBOX_IDS = ("0f1e2d3c4b5a69788796a5b4c3d2e1f0", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
OUTBOXES = st.sampled_from([None, None, *OUTBOX_IDS])


def outbox_of(body: Json) -> str:
    """The outbox a batch's seqs belong to, as the collector keys them."""
    outbox = body.get("outbox") if isinstance(body, dict) else None
    return outbox if isinstance(outbox, str) else "legacy"


@st.composite
def batches(draw: st.DrawFn, targets: tuple[str, ...], agent: str) -> Json:
    """An ingest body: results, maybe a heartbeat, maybe an agent field or an outbox id."""
    items = draw(st.lists(st.fixed_dictionaries({"seq": SEQS, "result": results(targets, agent)}),
                          max_size=4))  # fmt: skip
    body: dict[str, Json] = {"results": items}
    if chance(draw, 3):
        body["heartbeat"] = draw(heartbeats())
    if chance(draw, 8):
        body["agent"] = draw(st.sampled_from([agent, "tesko-01"]) | TEXT)
    outbox = draw(OUTBOXES)
    if outbox is not None:
        body["outbox"] = outbox
    if chance(draw, 10):
        body["outbox"] = draw(
            st.sampled_from(["legacy", "0F1E2D3C4B5A69788796A5B4C3D2E1F0"]) | WILD
        )
    return body


# -- bytes on the wire -------------------------------------------------------------------------


def encode_json(body: Json, *, ascii_only: bool = True) -> bytes:
    """JSON as Python writes it: NaN and Infinity as bare words, surrogates escaped.

    With `ascii_only` off, lone surrogates are written raw (surrogatepass), which is not UTF-8.
    """
    text = json.dumps(body, ensure_ascii=ascii_only)
    return text.encode("utf-8", "surrogatepass")


def _corrupt_gzip(data: bytes) -> bytes:
    packed = bytearray(gzip.compress(data))
    packed[-8] ^= 0xFF  # the CRC-32 of the trailer
    return bytes(packed)


# (the Content-Encoding header, or None, and how the body is packed under it)
ENCODINGS: dict[str, tuple[str | None, Any]] = {
    "identity": (None, lambda data: data),
    "identity-label": ("identity", lambda data: data),
    "gzip": ("gzip", gzip.compress),
    "x-gzip": ("x-gzip", gzip.compress),
    "gzip-bad-crc": ("gzip", _corrupt_gzip),
    "gzip-truncated": ("gzip", lambda data: gzip.compress(data)[:-5]),
    "gzip-header-then-garbage": ("gzip", lambda data: gzip.compress(b"")[:10] + b"garbage" + data),
    "gzip-twice-labelled-once": ("gzip", lambda data: gzip.compress(gzip.compress(data))),
    "gzip-gzip": ("gzip, gzip", lambda data: gzip.compress(gzip.compress(data))),
    "deflate": ("deflate", zlib.compress),
    "raw-deflate": ("deflate", lambda data: zlib.compress(data)[2:-4]),
    "deflate-label-on-gzip": ("deflate", gzip.compress),
    "gzip-label-on-plain": ("gzip", lambda data: data),
    "br": ("br", lambda data: data),
    "zstd": ("zstd", lambda data: data),
    "unknown": ("x-sitewatch", lambda data: data),
    "empty-label": ("", lambda data: data),
}
ENCODING_NAMES = st.sampled_from(list(ENCODINGS))


def packed(name: str, data: bytes) -> tuple[dict[str, str], bytes]:
    """Return the headers and body that send `data` under the encoding called `name`."""
    label, pack = ENCODINGS[name]
    return ({} if label is None else {"Content-Encoding": label}), pack(data)


RAW_BODIES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"{", b"[" * 5_000 + b"]" * 5_000, b'{"results": [' + b"1," * 3 + b"]}",
                     b"\xff\xfe{}", b'{"results": NaN}', b'{"a": 1' + b"0" * 5_000 + b"}",
                     b'{"a":"\xed\xa0\x80"}', b"\x00" * 64, b"null", b"1e999", b"-Infinity"]),
)  # fmt: skip
