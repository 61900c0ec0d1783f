"""The shape of each probe kind's `value`: one registry, beside the modules that fill it.

A result's `value` is kind-specific detail (an ICMP probe's min/avg/max, a printer's supplies,
a host's disk). The collector stores it as JSON and its pages read it back, so a value that no
probe would produce (a printer supply `{}`, a NaN, a lone surrogate that SQLite cannot encode, a
4,000-digit integer) must be refused at the door, not found by a page later. Each kind's shape
here follows what its module returns (`probes/icmp.py` `summarise`, `probes/snmp.py` `_printer`
and friends and `interface_probe`, `probes/path.py` `judge`, `probes/host.py` `read_health`,
...). Keys a probe may leave out are optional.
Errors name the path: `value.supplies[0].state: is missing`.

A key this collector does not know is dropped from the value, not refused: agents are upgraded
at other times than the collector, and a newer probe that reports one more reading (a printer
supply's colour) must not cost the whole result. The known keys are still checked, and each
check returns the paths it dropped so ingest can count them and say so once.

    check_value("snmp", {"profile": "printer", "supplies": [{}]})
    -> ValueShapeError("value.supplies[0].index: is missing")
    check_value("tcp", {"port": 22, "banner": "SSH-2.0"})
    -> ("value.banner",), and the value is now {"port": 22}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

MAX_TEXT = 2_000  # characters of any one string inside a value
MAX_ITEMS = 4_096  # entries of a list or object inside a value (snmp.MAX_ROWS rows a column)
MAX_WHOLE = 2**64 - 1  # SNMP Counter64 is the largest integer a probe reports
MAX_NUMBER = 1e15  # any finite reading a probe makes is far below this
MAX_OCTETS = 65_535  # the longest SNMP OctetString or UDP datagram a device can send us
OID_TEXT = 1_500  # an OID suffix: at most 128 sub-identifiers of up to 10 digits, dotted

Dropped = tuple[str, ...]  # paths of unknown keys taken out of a value, `.supplies[0].colour`
NONE: Dropped = ()
# Raises ValueShapeError for a value of the wrong shape; returns the unknown keys it dropped.
Check = Callable[[object], Dropped]


class ValueShapeError(ValueError):
    """A value does not have the shape its probe kind produces; the message names the path.

    The path is built on the way out, each container adding its part, so a value of the right
    shape (nearly all of them) costs no string building.
    """

    def __init__(self, problem: str, path: str = "") -> None:
        super().__init__(f"{path}: {problem}")
        self.problem, self.path = problem, path

    def within(self, part: str) -> ValueShapeError:
        """Return this error seen from the container that holds the value at `part`."""
        return ValueShapeError(self.problem, part + self.path)


NUL = "\x00"
# PostgreSQL text cannot hold U+0000 (SQLite can): a text column's field refuses it at the door,
# on both backends alike, so a collector moved to PostgreSQL never meets a row it cannot store.
# A value's strings may hold it (stored as JSON, escaped); whoever quotes one into a text column
# replaces it (collector/evidence.py's result_detail).
HOLDS_NUL = "holds the NUL character (U+0000)"


def clean_text(text: str) -> bool:
    """Return whether `text` can be stored and sent: no lone surrogates (not encodable UTF-8)."""
    if text.isascii():  # the common case, without encoding a copy
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def quoted(text: str) -> str:
    """Return `text` quoted for an error message, a lone surrogate as an escape."""
    return repr(text) if clean_text(text) else ascii(text)


def text(limit: int = MAX_TEXT) -> Check:
    """A string of at most `limit` characters, encodable as UTF-8."""

    def check(value: object) -> Dropped:
        if type(value) is str and value.isascii() and len(value) <= limit:
            return NONE  # nearly every string: ASCII text is clean, and no error to word
        if not isinstance(value, str):
            raise ValueShapeError("must be a string")
        if len(value) > limit:
            raise ValueShapeError(f"longer than {limit} characters")
        if not clean_text(value):
            raise ValueShapeError("holds a lone surrogate (not valid Unicode text)")
        return NONE  # U+0000 is taken: a printer may send it, and JSON stores it escaped

    return check


def whole(lower: int, upper: int) -> Check:
    """A whole number in [lower, upper] (JSON true/false are not numbers)."""

    def check(value: object) -> Dropped:
        if type(value) is int and lower <= value <= upper:
            return NONE  # the common case, decided before wording any refusal
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueShapeError("must be a whole number")
        if not lower <= value <= upper:
            raise ValueShapeError(f"must be between {lower} and {upper}")
        return NONE

    return check


def number(lower: float = -MAX_NUMBER, upper: float = MAX_NUMBER) -> Check:
    """A finite number in [lower, upper]; an int of any length compares exactly, no float()."""

    def check(value: object) -> Dropped:
        if (type(value) is float or type(value) is int) and lower <= value <= upper:
            return NONE  # finite bounds: NaN and infinities fail this and are worded below
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueShapeError("must be a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueShapeError("must be a finite number")
        if not lower <= value <= upper:
            raise ValueShapeError(f"must be between {lower:g} and {upper:g}")
        return NONE

    return check


def words(*allowed: str) -> Check:
    """One of a few fixed strings."""

    def check(value: object) -> Dropped:
        if value not in allowed:
            raise ValueShapeError(f"must be one of {', '.join(allowed)}")
        return NONE

    return check


def nullable(inner: Check) -> Check:
    """`inner`, or null."""

    def check(value: object) -> Dropped:
        return NONE if value is None else inner(value)

    return check


def either(first: Check, second: Check) -> Check:
    """Whatever `first` or `second` accepts; the error is `second`'s."""

    def check(value: object) -> Dropped:
        try:
            return first(value)
        except ValueShapeError:
            return second(value)

    return check


def items(inner: Check, limit: int = MAX_ITEMS) -> Check:
    """A list of at most `limit` entries, each as `inner` says."""

    def check(value: object) -> Dropped:
        if not isinstance(value, list):
            raise ValueShapeError("must be a list")
        if len(value) > limit:
            raise ValueShapeError(f"more than {limit} entries")
        dropped: list[str] = []
        for index, entry in enumerate(value):
            try:
                inside = inner(entry)
            except ValueShapeError as err:
                raise err.within(f"[{index}]") from None
            if inside:  # the path is worded only for a drop or an error, not per entry
                dropped += _within(f"[{index}]", inside)
        return tuple(dropped)

    return check


def _within(where: str, inside: Dropped) -> Dropped:
    """Return the paths dropped inside the entry at `where`, seen from its container."""
    return tuple(f"{where}{path}" for path in inside)


def record(fields: Mapping[str, Check], required: tuple[str, ...] = ()) -> Check:
    """An object with these keys, `required` among them; others are dropped from it, in place."""

    known = fields.keys()

    def check(value: object) -> Dropped:
        if not isinstance(value, dict):
            raise ValueShapeError("must be an object")
        dropped: list[str] = []
        if not value.keys() <= known:
            extra = value.keys() - known
            dropped += (f".{printable_key(key)}" for key in sorted(extra, key=str))
            for key in extra:
                del value[key]
        for key in required:
            if key not in value:
                raise ValueShapeError("is missing", f".{key}")
        for key, entry in value.items():
            try:
                inside = fields[key](entry)
            except ValueShapeError as err:
                raise err.within(f".{key}") from None
            if inside:
                dropped += _within(f".{key}", inside)
        return tuple(dropped)

    return check


def mapping(inner: Check, limit: int = MAX_ITEMS, key_limit: int = 200) -> Check:
    """An object keyed by names the device chose (interfaces, custom OIDs), each as `inner`."""
    key_check = text(key_limit)

    def check(value: object) -> Dropped:
        if not isinstance(value, dict):
            raise ValueShapeError("must be an object")
        if len(value) > limit:
            raise ValueShapeError(f"more than {limit} entries")
        dropped: list[str] = []
        for key, entry in value.items():
            try:
                key_check(key)
            except ValueShapeError as err:
                raise ValueShapeError(f"a key {err.problem}") from None
            try:
                inside = inner(entry)
            except ValueShapeError as err:
                raise err.within(f".{key}") from None
            if inside:
                dropped += _within(f".{key}", inside)
        return tuple(dropped)

    return check


RTT = number(0, 3_600_000)  # milliseconds, as ProbeResult.rtt_ms
PERCENT = number(0, 100)
COUNT = whole(0, 2**63 - 1)
STATUS = whole(0, 999)  # HTTP and SIP status codes
SNMP_VALUE = nullable(either(whole(-MAX_WHOLE, MAX_WHOLE), text(MAX_OCTETS)))  # snmp._plain's

ICMP = record(
    {
        "address": text(100),
        "sent": COUNT,
        "received": COUNT,
        "rtt_min_ms": RTT,
        "rtt_avg_ms": RTT,
        "rtt_max_ms": RTT,
        "jitter_ms": RTT,
        "source": text(100),  # a bound ping's way out: the address it was sent from
        "via": text(100),  # ... or the interface it left by
    }
)
TCP = record({"port": whole(0, 65_535)})
HTTP = record({"status": STATUS, "url": text(8_192), "cert_days_left": number()})
SIP = record({"status": STATUS, "reason": text(MAX_OCTETS), "user_agent": text(), "server": text()})

SUPPLY = record(
    {
        "index": text(OID_TEXT),
        "description": text(MAX_OCTETS),
        "level": SNMP_VALUE,
        "max": SNMP_VALUE,
        "percent": nullable(number()),
        "state": words("other", "unknown", "some_remaining", "empty", "low", "ok"),
    },
    required=("index", "description", "percent", "state"),
)
IF_COLUMNS = (
    "descr",
    "admin",
    "oper",
    "name",
    "in_octets",
    "out_octets",
    "in_discards",
    "in_errors",
    "out_discards",
    "out_errors",
)  # fmt: skip -- snmp._interface's
ALERT = record(
    {"severity": text(MAX_OCTETS), "description": text(MAX_OCTETS)}, required=("severity",)
)
SNMP_PROFILES: dict[str, Check] = {
    "printer": record(
        {
            "profile": words("printer"),
            "supplies": items(SUPPLY),
            "printer_status": nullable(text(100)),
            "device_status": nullable(text(100)),
            "alerts": items(ALERT),
        }
    ),
    "interface": record(
        {
            "profile": words("interface"),
            "uptime_s": nullable(number(0)),
            "interfaces": items(
                record(
                    {
                        "index": either(whole(0, MAX_WHOLE), text(OID_TEXT)),
                        **dict.fromkeys(IF_COLUMNS, SNMP_VALUE),
                    },
                    required=("index",),
                )
            ),
        }
    ),
    "system": record(
        {
            "profile": words("system"),
            "descr": SNMP_VALUE,
            "object_id": SNMP_VALUE,
            "uptime_s": nullable(number(0)),
            "name": SNMP_VALUE,
        }
    ),
    "custom": record({"profile": words("custom"), "values": mapping(SNMP_VALUE)}),
}


def _snmp(value: object) -> Dropped:
    """An SNMP value follows its profile; a failed read has no profile and no values.

    A profile this collector does not know is refused, not dropped: without it nothing in the
    value can be read.
    """
    if not isinstance(value, dict):
        raise ValueShapeError("must be an object")
    if "profile" not in value:
        return _FAILED_READ(value)
    profile = value["profile"]
    shape = SNMP_PROFILES.get(profile) if isinstance(profile, str) else None
    if shape is None:
        raise ValueShapeError(f"must be one of {', '.join(SNMP_PROFILES)}", ".profile")
    return shape(value)


_FAILED_READ = record({})


HOST = record(
    {
        "cpu_percent": PERCENT,
        "cpu_count": whole(1, 1_000_000),
        "load": items(number(0), 3),
        "memory_percent": PERCENT,
        "memory_available_bytes": COUNT,
        "disk_path": text(4_096),
        "disk_percent": PERCENT,
        "disk_free_bytes": COUNT,
        "interfaces": mapping(
            record(dict.fromkeys(("errors_in", "errors_out", "drops_in", "drops_out"), COUNT))
        ),
        "uptime_s": number(),  # negative when the clock was set back since boot
    }
)

IF_STATE = nullable(
    words("up", "down", "testing", "unknown", "dormant", "notPresent", "lowerLayerDown")
)  # fmt: skip -- snmp.IF_STATES
INTERFACE = record(
    {
        "ifindex": nullable(whole(0, 2**31 - 1)),  # InterfaceIndex: 1..2147483647
        "ifname": nullable(text(MAX_OCTETS)),
        "oper": IF_STATE,
        "admin": IF_STATE,
        **dict.fromkeys(
            ("in_errors", "out_errors", "in_discards", "out_discards", "in_octets", "out_octets"),
            nullable(whole(0, MAX_WHOLE)),
        ),
        "in_bps": nullable(number(0)),
        "out_bps": nullable(number(0)),
        "uptime_s": nullable(number(0)),
    }
)  # snmp.interface_probe's
PATH = record(
    {
        "toward": text(100),
        "ttl": whole(1, 255),
        "hop": nullable(text(100)),  # the address that answered
        "via": nullable(text(200)),  # the link id whose next hop it is
    },
    required=("toward", "ttl"),
)  # path.judge's

VALUES: dict[str, Check] = {
    "icmp": ICMP,
    "tcp": TCP,
    "http": HTTP,
    "snmp": _snmp,
    "sip": SIP,
    "host": HOST,
    "interface": INTERFACE,
    "path": PATH,
}
KINDS: tuple[str, ...] = tuple(VALUES)


def check_value(kind: str, value: object) -> Dropped:
    """Raise ValueShapeError unless `value` has the shape that probes of `kind` produce.

    Return the paths of the unknown keys dropped from it (`value.supplies[0].colour`); a kind
    this collector does not know is refused, since nothing of its value could be read.
    """
    shape = VALUES.get(kind)
    if shape is None:
        raise ValueShapeError(f"must be one of {', '.join(KINDS)}", "kind")
    try:
        dropped = shape(value)
    except ValueShapeError as err:
        raise err.within("value") from None
    return tuple(f"value{path}" for path in dropped) if dropped else NONE


MAX_SHOWN_KEY = 60  # characters of an unknown key shown in a path; the key may be any length


def printable_key(key: object) -> str:
    """Return an unknown key as it can go into a log line or a reply: short, valid text."""
    text = str(key)
    if len(text) > MAX_SHOWN_KEY:
        text = text[: MAX_SHOWN_KEY - 1] + "…"
    return text if clean_text(text) else ascii(text)
