"""A result's value is stored as text that reads back as the value, whichever encoder wrote it.

value_text takes orjson for the common value and the json module for the rest (non-ASCII text,
integers past 64 bits, keys that are not text); both must give the same value back.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from collector.store.results import value_text

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8"))
)
VALUES = st.dictionaries(
    st.text(st.characters(codec="utf-8")) | st.integers(),
    st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    ),
    max_size=6,
)


@given(value=VALUES)
def test_a_value_reads_back_as_the_json_module_wrote_it(value: dict[Any, Any]) -> None:
    text = value_text(value)
    assert text.isascii()
    expected = json.dumps(value, separators=(",", ":"))
    assert json.dumps(json.loads(text)) == json.dumps(json.loads(expected))


def test_the_common_value_is_compact_ascii() -> None:
    value = {"address": "10.101.0.22", "sent": 3, "rtt_avg_ms": 30.19, "ok": True, "x": None}
    assert value_text(value) == json.dumps(value, separators=(",", ":"))
    assert value_text({"name": "Tönerkartusche"}) == '{"name":"T\\u00f6nerkartusche"}'
    assert value_text({"octets": 2**70}) == '{"octets":1180591620717411303424}'
