"""How the collector writes a time: the one module for it, so the API never has two forms.

The wire form is RFC 3339 in UTC with a `Z` and the microseconds Python keeps, exactly as
`probes.result.format_ts` writes a result's time ("2026-03-02T08:15:00Z",
"2026-03-02T08:15:00.250000Z"); agents and the API share it. Inside the collector times are
Unix seconds (floats); the helpers here turn those into the wire form, the log's form and the
dashboard's local form.

Three forms on purpose, each kept byte for byte because something outside reads it:

- `iso`: the wire form ("2026-03-02T08:15:00Z", microseconds when there are any). The API,
  incident JSON, notification payloads (PagerDuty's `timestamp` included) and report JSON.
- `log_time`: to the second with "+00:00" ("2026-03-02T08:15:00+00:00"). Log lines only; it is
  not the wire form, and a log line's time must not change form under grep and log parsers.
- `mail_date`: RFC 5322 ("Mon, 02 Mar 2026 08:15:00 +0000"), the only form a mail's Date header
  may take.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from zoneinfo import ZoneInfo

from probes.result import format_ts

__all__ = [
    "format_ts",
    "iso",
    "iso_or_none",
    "iso_since",
    "local_time",
    "log_time",
    "mail_date",
    "unix",
]


def iso(ts: float) -> str:
    """Return a Unix time in the wire form."""
    return format_ts(datetime.fromtimestamp(ts, UTC))


def iso_or_none(ts: float | None) -> str | None:
    """Return a Unix time in the wire form; None (JSON null) for none."""
    return None if ts is None else iso(ts)


def iso_since(ts: float) -> str | None:
    """Return when a status began in the wire form; None while it has none (the book's 0.0)."""
    return iso(ts) if ts > 0 else None


def log_time(ts: float) -> str:
    """Return a Unix time as the log writes it: to the second, with its offset."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def mail_date(ts: float) -> str:
    """Return a Unix time as a mail's Date header writes it (RFC 5322, in UTC)."""
    return format_datetime(datetime.fromtimestamp(ts, UTC))


def local_time(value: str | float | None, tz: ZoneInfo) -> str:
    """Return a wire-form time or Unix time as local date and time for people; "—" for none."""
    if value is None or value == "":
        return "—"
    when = (
        datetime.fromtimestamp(value, tz)
        if isinstance(value, int | float)
        else datetime.fromisoformat(value).astimezone(tz)
    )
    return when.strftime("%Y-%m-%d %H:%M:%S %Z")


def unix(value: str) -> float:
    """Return the Unix time of a wire-form time (one the collector wrote)."""
    return datetime.fromisoformat(value).timestamp()
