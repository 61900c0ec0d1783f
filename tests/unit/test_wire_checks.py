"""The wire's checks take a fast path for what is plainly valid; they refuse exactly as before.

probes/result.py and probes/values.py accept the common case (ASCII text within its limit, a
number of the right type within its bounds, an RFC 3339 time that fromisoformat reads) before
wording any refusal, for ingest's sake (bench/ingest_bench.py). These properties say what each
check accepts and how it words a refusal, whatever path it took, and that parse_ts's fast
reading equals the exact, field-by-field one.
"""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.result import RFC3339, ResultFormatError, _parse_exactly, parse_ts
from probes.values import (
    NONE,
    ValueShapeError,
    check_value,
    clean_text,
    items,
    number,
    record,
    text,
    whole,
)

ANY_VALUE = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None), max_size=12)
    | st.sampled_from(["\ud800", "a\x00b", "é" * 11, "x" * 11, ""])
    | st.lists(st.integers(), max_size=2)
)


def refusal(check: object, value: object) -> str | None:
    """Return the problem `check` words for `value`, or None if it accepts it."""
    assert callable(check)
    try:
        assert check(value) == NONE
    except ValueShapeError as err:
        return err.problem
    return None


@given(ANY_VALUE)
def test_text_accepts_short_encodable_strings_only(value: object) -> None:
    problem = refusal(text(10), value)
    if not isinstance(value, str):
        assert problem == "must be a string"
    elif len(value) > 10:
        assert problem == "longer than 10 characters"
    elif not clean_text(value):
        assert problem == "holds a lone surrogate (not valid Unicode text)"
    else:
        assert problem is None  # U+0000 in a value is JSON, escaped: it is taken


@given(ANY_VALUE)
def test_whole_accepts_integers_within_bounds_only(value: object) -> None:
    problem = refusal(whole(-5, 2**64), value)
    if isinstance(value, bool) or not isinstance(value, int):
        assert problem == "must be a whole number"
    elif not -5 <= value <= 2**64:
        assert problem == f"must be between -5 and {2**64}"
    else:
        assert problem is None


@given(ANY_VALUE)
def test_number_accepts_finite_numbers_within_bounds_only(value: object) -> None:
    problem = refusal(number(0, 100), value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        assert problem == "must be a number"
    elif isinstance(value, float) and not math.isfinite(value):
        assert problem == "must be a finite number"
    elif not 0 <= value <= 100:
        assert problem == "must be between 0 and 100"
    else:
        assert problem is None


def test_records_and_lists_name_the_path_and_what_they_drop() -> None:
    shape = record({"a": items(record({"b": whole(0, 9)}, required=("b",)))}, required=("a",))
    value: dict[str, object] = {"a": [{"b": 1, "x": 2}, {"b": 3, "y": 4}], "z": 5}
    assert shape(value) == (".z", ".a[0].x", ".a[1].y")
    assert value == {"a": [{"b": 1}, {"b": 3}]}
    with pytest.raises(ValueShapeError, match=r"^\.a\[1\]\.b: must be between 0 and 9$"):
        shape({"a": [{"b": 1}, {"b": 10}]})
    with pytest.raises(ValueShapeError, match=r"^\.a\[0\]\.b: is missing$"):
        shape({"a": [{}]})
    assert check_value("tcp", {"port": 22, "banner": "SSH"}) == ("value.banner",)


DIGITS = st.text("0123456789", min_size=2, max_size=2)
STAMPS = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, zone: f"{y}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{zone}",
    st.sampled_from(["0000", "0001", "1970", "2026", "9999"]),
    DIGITS,
    DIGITS,
    st.sampled_from(["T", "t"]),
    DIGITS,
    DIGITS,
    DIGITS,
    st.sampled_from(["", ".5", ".123456", ".1234567", ".999999999"]),
    st.sampled_from(["Z", "z", "+00:00", "-00:00", "+01:00", "-23:59", "+24:00", "+05:60"])
    | st.builds(lambda sign, h, m: f"{sign}{h}:{m}", st.sampled_from("+-"), DIGITS, DIGITS),
)


@given(STAMPS)
def test_parse_ts_reads_as_the_exact_reading(stamp: str) -> None:
    assert RFC3339.fullmatch(stamp) is not None
    try:
        expected = _parse_exactly(stamp, RFC3339.fullmatch(stamp))
    except ResultFormatError as err:
        with pytest.raises(ResultFormatError, match=re.escape(str(err))):
            parse_ts(stamp)
        return
    found = parse_ts(stamp)
    assert found == expected
    assert found.tzinfo is expected.tzinfo
