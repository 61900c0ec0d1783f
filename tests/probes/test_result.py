"""The result record's wire form: round trips, and a clear error for each bad field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.result import (
    ERROR_KINDS,
    JsonValue,
    ProbeResult,
    ResultFormatError,
    format_ts,
    parse_ts,
)

# A value each kind produces: probes.values refuses what no probe of the kind would send.
VALUES = {
    "icmp": st.fixed_dictionaries(
        {"address": st.text(max_size=20), "sent": st.integers(0, 10)},
        optional={"rtt_avg_ms": st.floats(0, 60_000), "jitter_ms": st.floats(0, 100)},
    ),
    "tcp": st.fixed_dictionaries({"port": st.integers(0, 65_535)}),
    "http": st.fixed_dictionaries({"status": st.integers(100, 599), "url": st.text(max_size=30)}),
    "snmp": st.just({}),
    "sip": st.fixed_dictionaries({"status": st.integers(100, 699), "reason": st.text(max_size=9)}),
    "host": st.fixed_dictionaries({"cpu_percent": st.floats(0, 100)}),
}
# Text a text column takes: PostgreSQL refuses U+0000, so the wire does (issue 13).
STORABLE = st.characters(exclude_characters="\x00")
KIND_AND_VALUE = st.sampled_from(sorted(VALUES)).flatmap(
    lambda kind: st.tuples(st.just(kind), VALUES[kind])
)
RESULTS = KIND_AND_VALUE.flatmap(
    lambda kind_value: st.builds(
        ProbeResult,
        target=st.text(STORABLE, min_size=1, max_size=50),
        kind=st.just(kind_value[0]),
        value=st.just(kind_value[1]),
        ts=st.datetimes(  # hypothesis takes naive bounds and adds the zone itself
            min_value=datetime(2000, 1, 1),  # noqa: DTZ001
            max_value=datetime(2100, 1, 1),  # noqa: DTZ001
            timezones=st.just(UTC),
        ),
        ok=st.booleans(),
        rtt_ms=st.none() | st.floats(min_value=0, max_value=60_000),
        loss=st.none() | st.floats(min_value=0, max_value=1),
        error_kind=st.none() | st.sampled_from(ERROR_KINDS),
        detail=st.text(STORABLE, max_size=100),
    )
)


@given(RESULTS)
def test_json_round_trip(result: ProbeResult) -> None:
    assert ProbeResult.from_json(result.to_json()) == result


def test_times_are_rfc3339_utc_with_z() -> None:
    ts = datetime(2026, 11, 22, 14, 0, 5, 123000, tzinfo=UTC)
    assert format_ts(ts) == "2026-11-22T14:00:05.123000Z"
    assert parse_ts("2026-11-22T16:00:05.123+02:00") == ts


GOOD = ProbeResult("cc-prn-01", "icmp", datetime(2026, 1, 1, tzinfo=UTC), ok=True).to_json()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ok": "yes"}, "ok: must be true or false"),
        ({"ts": "yesterday"}, "ts: 'yesterday' is not an RFC 3339 time"),
        ({"ts": "2026-01-01T00:00:00"}, "ts: '2026-01-01T00:00:00' has no time zone offset"),
        ({"target": ""}, "target: must not be empty"),
        ({"rtt_ms": -1}, "rtt_ms: must be between 0 and 3.6e+06"),
        ({"loss": 1.5}, "loss: must be between 0 and 1"),
        ({"loss": float("nan")}, "loss: must be a number or null"),
        ({"error_kind": "gremlins"}, "error_kind: must be one of"),
        ({"value": [1]}, "value: must be an object"),
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"detail": "x" * 501}, "detail: longer than 500 characters"),
    ],
)
def test_bad_fields_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(ResultFormatError, match="^" + message.replace("(", r"\(").replace(
        ")", r"\)").replace("+", r"\+").replace(".", r"\.")):  # fmt: skip
        ProbeResult.from_json({**GOOD, **change})


@given(st.dictionaries(st.sampled_from(list(GOOD)), st.none() | st.integers() | st.text()))
def test_random_objects_parse_or_raise_result_format_error(change: dict[str, object]) -> None:
    try:
        ProbeResult.from_json({**GOOD, **change})
    except ResultFormatError as err:
        assert str(err)


@pytest.mark.parametrize(
    "text",
    [
        "2026-W47-7T10:00:00Z",  # an ISO week date
        "2026-11-22T10:00:00+0200",  # an offset without its colon
        "2026-11-22 10:00:00Z",  # a space for the T
        "20261122T100000Z",  # ISO basic format
        "2026-11-22T10:00Z",  # no seconds
        "٢٠٢٦-11-22T10:00:00Z",  # Arabic-Indic digits
        "2026-11-22T10:00:00.Z",  # a point without a fraction
    ],
)
def test_only_rfc3339_times_are_accepted(text: str) -> None:
    with pytest.raises(ResultFormatError, match="is not an RFC 3339 time"):
        parse_ts(text)


def test_a_time_without_an_offset_says_so() -> None:
    with pytest.raises(ResultFormatError, match="has no time zone offset"):
        parse_ts("2026-11-22T10:00:00.5")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-22t10:00:00z", datetime(2026, 11, 22, 10, tzinfo=UTC)),
        ("2026-11-22T10:00:00-05:30", datetime(2026, 11, 22, 15, 30, tzinfo=UTC)),
        ("2026-11-22T10:00:00.123456789Z", datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ],
)
def test_rfc3339_spellings_parse(text: str, expected: datetime) -> None:
    assert parse_ts(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
        "2026-02-30T00:00:00Z",
        "2026-11-22T24:00:00Z",
        "2026-11-22T10:00:00+24:00",
    ],
)
def test_times_that_cannot_be_held_are_a_format_error_not_an_overflow(text: str) -> None:
    with pytest.raises(ResultFormatError, match="out of range or not a real time"):
        parse_ts(text)


SURROGATE = "\ud800"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rtt_ms": 10**4000}, "rtt_ms: must be between 0 and 3.6e+06"),
        ({"rtt_ms": float("inf")}, "rtt_ms: must be a number or null"),
        ({"rtt_ms": 3_600_001}, "rtt_ms: must be between 0 and 3.6e+06"),
        ({"loss": -(10**400)}, "loss: must be between 0 and 1"),
        ({"detail": "bad " + SURROGATE}, "detail: holds a lone surrogate"),
        ({"kind": SURROGATE}, "kind: holds a lone surrogate"),
        ({"target": SURROGATE}, "target: holds a lone surrogate"),
        ({"error_kind": SURROGATE}, "error_kind: must be one of"),
        ({"kind": "telnet"}, "kind: must be one of icmp, tcp, http, snmp, sip, host"),
        ({"value": {"address": SURROGATE}}, "value.address: holds a lone surrogate"),
        ({"value": {"sent": float("nan")}}, "value.sent: must be a whole number"),
        ({"value": {"rtt_avg_ms": float("nan")}}, "value.rtt_avg_ms: must be a finite number"),
        ({"value": {"rtt_avg_ms": 10**400}}, "value.rtt_avg_ms: must be between"),
        ({SURROGATE: 1}, r"unknown field '\ud800'"),
    ],
)
def test_numbers_and_text_that_would_poison_a_reader_are_refused(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(ResultFormatError) as caught:
        ProbeResult.from_json({**GOOD, **change})
    assert str(caught.value).startswith(message)
    str(caught.value).encode()  # the message itself can be sent


SUPPLY = {"index": "1.1", "description": "Black Toner", "level": 30, "max": 100, "percent": 30.0,
          "state": "ok"}  # fmt: skip
PRINTER = {"profile": "printer", "printer_status": "idle", "device_status": "running",
           "alerts": [], "supplies": [SUPPLY]}  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("snmp", PRINTER | {"supplies": [{}]}, "value.supplies[0].index: is missing"),
        ("snmp", PRINTER | {"supplies": [SUPPLY | {"state": "fine"}]},
         "value.supplies[0].state: must be one of"),
        ("snmp", PRINTER | {"supplies": {"black": 1}}, "value.supplies: must be a list"),
        ("snmp", PRINTER | {"profile": "toaster"}, "value.profile: must be one of"),
        ("snmp", {"profile": "custom", "values": {"toner": [1]}}, "value.values.toner: must be"),
        ("snmp", {"profile": "interface", "interfaces": [{"oper": "up"}]},
         "value.interfaces[0].index: is missing"),
        ("host", {"cpu_percent": 101}, "value.cpu_percent: must be between 0 and 100"),
        ("host", {"interfaces": {"eth0": {"errors_in": -1}}},
         "value.interfaces.eth0.errors_in: must be between 0"),
        ("tcp", {"port": 70_000}, "value.port: must be between 0 and 65535"),
        ("http", {"status": "200"}, "value.status: must be a whole number"),
        ("sip", {"reason": "x" * 65_536}, "value.reason: longer than 65535 characters"),
    ],
)  # fmt: skip
def test_each_kind_has_the_value_its_probe_produces(kind: str, value: object, message: str) -> None:
    assert ProbeResult.from_json({**GOOD, "kind": kind, "value": {}}).value == {}
    with pytest.raises(ResultFormatError) as caught:
        ProbeResult.from_json({**GOOD, "kind": kind, "value": value})
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("kind", "value", "kept", "dropped"),
    [
        ("icmp", {"sent": 3, "colour": 1}, {"sent": 3}, ("value.colour",)),
        ("icmp", {"sent": 3, SURROGATE: 1}, {"sent": 3}, (r"value.'\ud800'",)),
        ("snmp", {"supplies": []}, {}, ("value.supplies",)),
        ("snmp", PRINTER | {"supplies": [SUPPLY | {"colour": "cyan"}], "tray": 2}, PRINTER,
         ("value.tray", "value.supplies[0].colour")),
        ("host", {"interfaces": {"eth0": {"errors_in": 1, "crc": 2}}},
         {"interfaces": {"eth0": {"errors_in": 1}}}, ("value.interfaces.eth0.crc",)),
    ],
)  # fmt: skip
def test_unknown_value_keys_are_dropped_and_named(
    kind: str, value: dict[str, object], kept: object, dropped: tuple[str, ...]
) -> None:
    """A newer agent's extra reading costs only that reading, never the result."""
    result, left_out = ProbeResult.checked({**GOOD, "kind": kind, "value": value})
    assert (result.value, left_out) == (kept, dropped)


def test_unknown_keys_do_not_hide_bad_known_ones() -> None:
    with pytest.raises(ResultFormatError, match=r"^value\.sent: must be between 0 and"):
        ProbeResult.checked({**GOOD, "value": {"sent": -1, "colour": 1}})


def test_a_whole_printer_reading_passes() -> None:
    assert ProbeResult.from_json({**GOOD, "kind": "snmp", "value": PRINTER}).value == PRINTER


def test_real_probe_builders_pass_the_gate() -> None:
    from probes import icmp, snmp  # noqa: PLC0415 -- snmp's import is heavy; only here
    from tests.probes.conftest import check_result  # noqa: PLC0415

    started = datetime(2026, 11, 22, tzinfo=UTC)
    echoes = [icmp.Echo(1.25), icmp.Echo(None, "timeout", "no reply")]
    check_result(icmp.summarise("cc-mpls", started, echoes, "10.0.0.1"))
    check_result(icmp.summarise("cc-mpls", started, [], "10.0.0.1"))
    supplies = [
        snmp._supply("1.1", "Black", 100, 30),
        snmp._supply("1.2", None, None, -3),
        snmp._supply("1.3", b"\x00".decode(), 0, "odd"),
    ]
    alerts: list[JsonValue] = [{"severity": "critical", "description": ""}]
    value: dict[str, JsonValue] = {
        "profile": "printer",
        "supplies": supplies,
        "printer_status": None,
        "device_status": None,
        "alerts": alerts,
    }
    check_result(ProbeResult("cc-prn-01", "snmp", started, ok=True, value=value))
