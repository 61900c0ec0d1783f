"""Fixtures of the fuzz suite: a collector per test, checked whole when the test ends."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.browser.conftest import hashes  # noqa: F401 -- the session's password hashes
from tests.fuzz.checks import full_reads
from tests.fuzz.rig import ErrorLog, Rig, assert_stored_exactly, restarted, running


@pytest.fixture
async def rig(
    tmp_path: Path,
    hashes: dict[str, str],  # noqa: F811
) -> AsyncIterator[Rig]:
    """A collector with its correlation loop; when the test ends it is checked whole."""
    with logged_errors() as errors:
        async with running(tmp_path / "shared", hashes, correlate=True) as built:
            yield built
            await settled(built)
    assert not errors.records, described(errors)


@pytest.fixture
async def quiet_rig(
    tmp_path: Path,
    hashes: dict[str, str],  # noqa: F811
) -> AsyncIterator[Rig]:
    """A collector without background loops: incidents opened by hand stay as staff leave them."""
    with logged_errors() as errors:
        async with running(tmp_path / "shared", hashes, correlate=False) as built:
            yield built
            await settled(built)
    assert not errors.records, described(errors)


async def settled(rig: Rig) -> None:
    """After the last example: the database is exact, and every read works, even restarted."""
    assert_stored_exactly(rig)
    await full_reads(rig)
    async with restarted(rig) as again:
        await full_reads(again)


def described(errors: ErrorLog) -> list[str]:
    """The distinct errors logged, one line each, with the exception that went with them."""
    lines = {
        f"{r.name}: {r.getMessage()} {'' if not r.exc_info else repr(r.exc_info[1])[:150]}"
        for r in errors.records
    }
    return sorted(lines)


@contextmanager
def logged_errors() -> Iterator[ErrorLog]:
    """Collect what is logged at ERROR meanwhile: a fuzzed input must never cause one."""
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
