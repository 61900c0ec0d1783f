"""The collector's time forms, byte for byte: each is read by something outside the collector.

The API and notification receivers parse the wire form, log readers grep the log form, mail
systems parse the Date header. Moving a helper into `collector.times` must not change any of them.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

from collector import times
from probes.result import parse_ts

T = 1_772_439_300.0  # 2026-03-02 08:15:00 UTC, a Monday


def test_wire_form_is_utc_with_z_and_microseconds_only_when_there_are_any() -> None:
    assert times.iso(T) == "2026-03-02T08:15:00Z"
    assert times.iso(T + 0.25) == "2026-03-02T08:15:00.250000Z"
    assert parse_ts(times.iso(T + 0.25)).timestamp() == T + 0.25  # an agent's parser reads it
    assert times.unix(times.iso(T + 0.25)) == T + 0.25


def test_wire_form_none_and_not_yet() -> None:
    assert times.iso_or_none(None) is None
    assert times.iso_or_none(T) == "2026-03-02T08:15:00Z"
    assert times.iso_since(0.0) is None
    assert times.iso_since(T) == "2026-03-02T08:15:00Z"


def test_log_form_is_to_the_second_with_its_offset() -> None:
    assert times.log_time(T + 0.75) == "2026-03-02T08:15:00+00:00"


def test_mail_date_is_rfc_5322_in_utc() -> None:
    assert times.mail_date(T + 0.25) == "Mon, 02 Mar 2026 08:15:00 +0000"
    assert parsedate_to_datetime(times.mail_date(T)).timestamp() == T
