"""The result record's wire form: round trips, and a clear error for each bad field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.result import ERROR_KINDS, ProbeResult, ResultFormatError, format_ts, parse_ts

RESULTS = st.builds(
    ProbeResult,
    target=st.text(min_size=1, max_size=50),
    kind=st.sampled_from(["icmp", "tcp", "http", "snmp", "sip", "host"]),
    ts=st.datetimes(  # hypothesis takes naive bounds and adds the zone itself
        min_value=datetime(2000, 1, 1),  # noqa: DTZ001
        max_value=datetime(2100, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    ok=st.booleans(),
    rtt_ms=st.none() | st.floats(min_value=0, max_value=60_000),
    loss=st.none() | st.floats(min_value=0, max_value=1),
    value=st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10), max_size=4),
    error_kind=st.none() | st.sampled_from(ERROR_KINDS),
    detail=st.text(max_size=100),
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
