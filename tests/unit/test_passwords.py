"""Password hashes: salted, self-describing, and never matching when malformed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sitewatch.passwords import hash_password, is_password_hash, verify_password


def test_same_password_gets_different_salts() -> None:
    first, second = hash_password("desk-operator-pw"), hash_password("desk-operator-pw")
    assert first != second
    assert verify_password("desk-operator-pw", first)
    assert verify_password("desk-operator-pw", second)
    assert not verify_password("desk-operator-px", first)


@pytest.mark.parametrize(
    "stored",
    [
        "", "plaintext", "scrypt$", "scrypt$32768$8$1$c2FsdHNhbHQ$",
        "scrypt$3$8$1$c2FsdHNhbHQ$" + "A" * 43,  # N not a power of two
        "scrypt$1073741824$8$1$c2FsdHNhbHQ$" + "A" * 43,  # cost far beyond a login
        "scrypt$32768$8$1$!!!!$" + "A" * 43,
        "bcrypt$32768$8$1$c2FsdHNhbHQ$" + "A" * 43,
    ],
)  # fmt: skip
def test_malformed_hashes_are_refused(stored: str) -> None:
    assert not is_password_hash(stored)
    assert not verify_password("anything", stored)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_stored_text_never_raises(stored: str) -> None:
    assert verify_password("pw", stored) in (True, False)
