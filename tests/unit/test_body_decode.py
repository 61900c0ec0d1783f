"""decode_json reads every body exactly as the json module does, orjson's fast path included.

orjson reads an integer past 64 bits as a float, and refuses what the json module reads (1e400,
lone surrogates); body.py leaves those bodies to the json module. These tests hold the two to
the same objects, types and order, and the same refusals.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.body import BodyError, count_values, decode_json

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: 64-bit edges and 40-digit integers alike
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


def typed(value: Any) -> str:
    """Return `value` as text telling 1 from 1.0, -0.0 from 0 and a 20-digit int from a float."""
    return json.dumps(value, ensure_ascii=True)


@given(value=VALUES, spaced=st.booleans(), ascii_only=st.booleans())
def test_any_json_decodes_to_what_the_json_module_makes(
    value: Any, spaced: bool, ascii_only: bool
) -> None:
    raw = json.dumps(value, indent=1 if spaced else None, ensure_ascii=ascii_only)
    body = raw.encode("utf-8", "surrogatepass")  # a lone surrogate as the bytes a client may send
    assert typed(decode_json(body)) == typed(json.loads(body))


# A JSON number as any client may spell it: up to 25 digits each side, an exponent or not.
NUMBER_TEXT = st.from_regex(
    r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)


@given(numbers=st.lists(NUMBER_TEXT, min_size=1, max_size=8))
def test_numbers_in_any_spelling_decode_as_the_json_module_reads_them(numbers: list[str]) -> None:
    body = f"[{','.join(numbers)}]".encode()  # 1e400 too: json reads infinity, orjson refuses
    assert typed(decode_json(body)) == typed(json.loads(body))


@pytest.mark.parametrize(
    "raw",
    [
        b"18446744073709551616",  # 2**64: orjson makes it a float
        b"-9223372036854775809",
        b'{"seq": 123456789012345678901234567890}',
        b"[1e400]",  # orjson refuses it; json reads infinity (a check refuses it later)
        b'["\\ud800"]',  # a lone surrogate: json reads it, the checks word the refusal
        b'{"a": 1, "a": 2}',
        b"\xef\xbb\xbf[1]",  # a UTF-8 byte order mark
    ],
)
def test_what_orjson_reads_otherwise_is_read_by_the_json_module(raw: bytes) -> None:
    assert typed(decode_json(raw)) == typed(json.loads(raw))


@pytest.mark.parametrize("raw", [b"{", b"[1,]", b"\xff", b"", b'{"a" 1}', b"1 2", b"[01]"])
def test_malformed_json_is_refused_in_the_json_modules_words(raw: bytes) -> None:
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)) as expected:
        json.loads(raw)
    with pytest.raises(BodyError) as refused:
        decode_json(raw)
    assert (refused.value.code, refused.value.message) == (
        "bad_json",
        f"the body is not JSON: {expected.value}",
    )


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(constant: str) -> None:
    with pytest.raises(BodyError, match=f"{constant} is not a JSON number"):
        decode_json(f'{{"rtt_ms": {constant}}}'.encode())


@given(
    marks=st.text(alphabet=",:[{0 ", min_size=0, max_size=40),
    cap=st.integers(min_value=1, max_value=45),
)
def test_the_value_cap_refuses_exactly_what_the_count_finds_over_it(marks: str, cap: int) -> None:
    """A body shorter than the cap is not counted (it cannot hold more values than bytes + 1):
    the refusal must be the same as if every body were counted."""
    body = marks.encode()
    try:
        decode_json(body, max_values=cap)
    except BodyError as err:
        refused = err.code == "too_many_values"
    else:
        refused = False
    assert refused == (count_values(body, cap) > cap)
