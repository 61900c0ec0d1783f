"""The probe result record and its JSON wire form, spoken by agent and collector alike.

A probe never raises for an expected failure: a printer that does not answer is a result with
`ok=False` and an `error_kind` saying how it failed. `from_json` is the collector's gate for
results arriving from agents, so it checks every field and names the first bad one. Unknown keys
inside a known kind's `value` are dropped (`checked` says which): a newer agent's extra reading
must not cost the result; an unknown kind or field is still refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal, TypedDict, cast, get_args

from probes.values import (
    HOLDS_NUL,
    KINDS,
    NUL,
    Dropped,
    ValueShapeError,
    check_value,
    clean_text,
    quoted,
)

ErrorKind = Literal[
    "timeout",  # no answer within the timeout
    "unreachable",  # no route, host or network unreachable, blackholed
    "refused",  # the host answered that nothing listens there
    "auth",  # wrong community, credentials or certificate
    "protocol",  # an answer arrived but was malformed or not what the protocol allows
    "permission",  # this host may not send the probe (e.g. no raw-socket capability)
    "resolve",  # the name does not resolve
    "threshold",  # an answer arrived but a value is outside its limits
    "unexpected",  # an answer arrived but not the one asked for (HTTP status, body text)
    "tls",  # the TLS handshake failed or the certificate did not verify
]
ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]

MAX_DETAIL = 500  # characters; a detail is a line for humans, not a dump
MAX_RTT_MS = 3_600_000  # an hour: no answer that late is a round trip
# RFC 3339 `date-time`, ASCII digits only (Python's \d and fromisoformat take more: week
# dates, `+0200`, Arabic-Indic digits); the fraction may be longer than datetime keeps.
_DATE, _TIME = r"[0-9]{4}-[0-9]{2}-[0-9]{2}", r"[0-9]{2}:[0-9]{2}:[0-9]{2}"
RFC3339 = re.compile(
    rf"(?P<date>{_DATE})[Tt](?P<time>{_TIME})(?:\.(?P<fraction>[0-9]{{1,9}}))?"
    r"(?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<hh>[0-9]{2}):(?P<mm>[0-9]{2}))"
)
LOCAL_TIME = re.compile(rf"{_DATE}(?:[Tt]{_TIME}(?:\.[0-9]+)?)?")  # a time but no offset


class ResultJson(TypedDict):
    """The JSON object of one result on the wire."""

    target: str
    kind: str
    ts: str
    ok: bool
    rtt_ms: float | None
    loss: float | None
    value: dict[str, JsonValue]
    error_kind: str | None
    detail: str


FIELDS = frozenset(ResultJson.__annotations__)


class ResultFormatError(ValueError):
    """A result on the wire is malformed; the message names the field."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe of one target found at one moment."""

    target: str  # the inventory id of the device or link, or the address probed
    kind: str  # icmp, tcp, http, snmp, sip, host, interface or path
    ts: datetime  # when the probe started, UTC
    ok: bool
    rtt_ms: float | None = None
    loss: float | None = None  # share of packets lost, 0..1, for probes that send several
    value: dict[str, JsonValue] = field(default_factory=dict)  # kind-specific details
    error_kind: ErrorKind | None = None
    detail: str = ""

    def to_json(self) -> ResultJson:
        """Return the wire form; times are RFC 3339 UTC."""
        return {
            "target": self.target,
            "kind": self.kind,
            "ts": format_ts(self.ts),
            "ok": self.ok,
            "rtt_ms": self.rtt_ms,
            "loss": self.loss,
            "value": self.value,
            "error_kind": self.error_kind,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: object) -> ProbeResult:
        """Return the result in a decoded JSON object, or raise ResultFormatError."""
        return cls.checked(data)[0]

    @classmethod
    def checked(cls, data: object) -> tuple[ProbeResult, Dropped]:
        """Return the result and the unknown value keys dropped from `data` (in place)."""
        if not isinstance(data, dict):
            raise ResultFormatError("a result must be a JSON object")
        if not data.keys() <= FIELDS:
            unknown = sorted(set(data) - FIELDS)
            raise ResultFormatError(f"unknown field {quoted(str(unknown[0]))}")
        target = _text(data, "target", limit=200, empty=False)
        kind = _text(data, "kind", limit=20, empty=False)
        if kind not in KINDS:
            raise ResultFormatError(f"kind: must be one of {', '.join(KINDS)}")
        ok = data.get("ok")
        if not isinstance(ok, bool):
            raise ResultFormatError("ok: must be true or false")
        error_kind = data.get("error_kind")
        if error_kind is not None and error_kind not in ERROR_KINDS:
            raise ResultFormatError(f"error_kind: must be one of {', '.join(ERROR_KINDS)}")
        value = data.get("value", {})
        try:
            dropped = check_value(kind, value)
        except ValueShapeError as err:
            raise ResultFormatError(str(err)) from err
        result = cls(
            target=target,
            kind=kind,
            ts=parse_ts(_text(data, "ts", limit=40, empty=False)),
            ok=ok,
            rtt_ms=_number(data, "rtt_ms", upper=MAX_RTT_MS),
            loss=_number(data, "loss", upper=1),
            value=cast("dict[str, JsonValue]", value),
            error_kind=cast("ErrorKind | None", error_kind),
            detail=_text(data, "detail", limit=MAX_DETAIL, empty=True),
        )
        return result, dropped


def failed(
    target: str,
    kind: str,
    started: datetime,
    error_kind: ErrorKind,
    detail: str,
    *,
    value: dict[str, JsonValue] | None = None,
) -> ProbeResult:
    """Return the result of a probe that found its target wanting, its detail on one line."""
    return ProbeResult(
        target,
        kind,
        started,
        ok=False,
        value=value or {},
        error_kind=error_kind,
        detail=short(detail),
    )


def now() -> datetime:
    """Return the current time in UTC; probes stamp their start with it."""
    return datetime.now(UTC)


def format_ts(ts: datetime) -> str:
    """Return `ts` as RFC 3339 in UTC with a Z, to the microsecond."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_ts(text: str) -> datetime:
    """Return the UTC time in an RFC 3339 string, or raise ResultFormatError saying why not.

    Only `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`: a time without an offset is refused,
    and so is one that leaves the years datetime can hold once moved to UTC (year 1 at +01:00).
    """
    found = RFC3339.fullmatch(text)
    if found is not None:
        try:  # the common case: fromisoformat reads every RFC 3339 time, and fast
            parsed = datetime.fromisoformat(text)
            return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            pass  # worded below, by the exact reading
    return _parse_exactly(text, found)


def _parse_exactly(text: str, found: re.Match[str] | None) -> datetime:
    """Return what parse_ts returns, field by field; raise ResultFormatError worded for `text`.

    The reference reading: parse_ts takes fromisoformat's answer where it has one (it equals
    this, tests/probes/test_result.py checks so), and this for the wording of a refusal.
    """
    shown = quoted(text)
    if found is None:
        if LOCAL_TIME.fullmatch(text) is not None:
            raise ResultFormatError(f"ts: {shown} has no time zone offset")
        raise ResultFormatError(f"ts: {shown} is not an RFC 3339 time")
    try:
        if found["utc"]:
            zone = UTC
        else:
            offset = timedelta(hours=int(found["hh"]), minutes=int(found["mm"]))
            zone = timezone(-offset if found["sign"] == "-" else offset)
        fraction = (found["fraction"] or "").ljust(6, "0")[:6]
        local = datetime.fromisoformat(f"{found['date']}T{found['time']}.{fraction}")
        return local.replace(tzinfo=zone).astimezone(UTC)
    except (ValueError, OverflowError) as err:  # month 13, offset +24:00, year 1 at +01:00
        raise ResultFormatError(f"ts: {shown} is out of range or not a real time ({err})") from err


def short(text: str) -> str:
    """Return `text` on one line and cut to the length a detail may have.

    A NUL (a device's banner or reason phrase may hold one) becomes U+FFFD: the collector
    refuses a detail holding it, and a result must not be lost for one odd byte.
    """
    line = " ".join(text.replace(NUL, "\ufffd").split())
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 1] + "…"


def _text(data: Mapping[str, object], key: str, *, limit: int, empty: bool) -> str:
    value = data.get(key, "" if empty else None)
    if (
        isinstance(value, str)  # the common case first, decided before wording any refusal
        and (value or empty)
        and len(value) <= limit
        and value.isascii()
        and NUL not in value
    ):
        return value
    if not isinstance(value, str):
        raise ResultFormatError(f"{key}: must be a string")
    if not value and not empty:
        raise ResultFormatError(f"{key}: must not be empty")
    if len(value) > limit:
        raise ResultFormatError(f"{key}: longer than {limit} characters")
    if not clean_text(value):
        raise ResultFormatError(f"{key}: holds a lone surrogate (not valid Unicode text)")
    if NUL in value:  # a text column: a value's strings go in as JSON, where it is escaped
        raise ResultFormatError(f"{key}: {HOLDS_NUL}")
    return value


def _number(data: Mapping[str, object], key: str, *, upper: float) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if type(value) is float and 0 <= value <= upper:
        return value  # the common case; NaN and infinities fail it and are worded below
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResultFormatError(f"{key}: must be a number or null")
    if isinstance(value, float) and not math.isfinite(value):
        raise ResultFormatError(f"{key}: must be a number or null")
    if not 0 <= value <= upper:  # an int of any length compares exactly, without float()
        raise ResultFormatError(f"{key}: must be between 0 and {upper:g}")
    return float(value)
