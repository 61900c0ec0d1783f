"""The fuzz suite's sizes and fixtures: a collector per test, checked whole when it ends.

Every property runs on both backends (ids `sqlite` and `postgresql`): the collector's database
is a SQLite file, or a database of its own on the session's PostgreSQL server (skipped where
that cannot start, failed under CI=true, as in tests/collector).

Sizes: by default (CI) a few thousand cases in all, derandomised: the same cases on every
machine, so CI never fails on a case it did not fail on before. `make fuzz` sets
SITEWATCH_FUZZ_SCALE=20: twenty times the examples, randomised, so each run explores anew.
The profile is applied per property (`fuzz_settings`), never loaded globally, so the other
property tests of the suite keep their own settings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

from tests import pg
from tests.browser.conftest import hashes  # noqa: F401 -- the session's password hashes
from tests.conftest import BACKENDS
from tests.fuzz.checks import full_reads
from tests.fuzz.rig import Databases, ErrorLog, Rig, assert_stored_exactly, restarted, running

SCALE = max(1, int(os.environ.get("SITEWATCH_FUZZ_SCALE", "1") or "1"))
settings.register_profile(
    "sitewatch-fuzz",
    deadline=None,
    derandomize=SCALE == 1,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one collector per test, on purpose
        HealthCheck.too_slow,  # every example is a few HTTP round trips
        HealthCheck.data_too_large,  # long strings and big batches are the point
        HealthCheck.filter_too_much,
    ],
)


# Seconds one property may take, shrinking a failure included: a fresh collector per shrink
# step (see checks.alone) makes shrinking slow, and a timeout would lose the minimal example.
TIMEOUT = 600 * SCALE


def fuzz_settings(examples: int) -> settings:
    """Return the settings of a property that runs `examples` cases in CI.

    The collector's database outlives an example, so a read that fails after an accepted input
    is checked again on a fresh collector given only that input (`checks.alone`): what the
    shrinker then reduces is the example's own fault, not the history before it.
    """
    return settings(settings.get_profile("sitewatch-fuzz"), max_examples=examples * SCALE)


# At CI size PostgreSQL runs a fifth of each property's generated examples (all the explicit
# ones): the whole of them on both backends doubled the suite's time. `make fuzz` runs it all.
POSTGRES_SHARE = 1 if SCALE > 1 else 5

# Bugs of the collector on PostgreSQL the fuzzer finds and its owner has yet to fix: the test's
# postgresql case is expected to fail (not strict: passing once fixed is no failure).
# Remove an entry when its bug is fixed.
POSTGRES_BUGS: dict[str, str] = {}  # none open


@pytest.fixture(params=BACKENDS)
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    """Where the test's collectors keep their data: SQLite files, or PostgreSQL databases.

    The server and its template are asked for only here, so a SQLite test never starts it.
    """
    if request.param == "sqlite":
        yield Databases(tmp_path)
        return
    server: pg.PostgresServer = request.getfixturevalue("postgres_server")
    bug = POSTGRES_BUGS.get(request.function.__name__)
    if bug is not None:
        request.applymarker(pytest.mark.xfail(reason=bug, strict=False))
    # migrated_template: the session's (tests/conftest.py), shared with the collector's tests
    made = Databases(tmp_path, server, request.getfixturevalue("migrated_template"))
    try:
        with postgres_settings(request.function, POSTGRES_SHARE, known_bug=bug is not None):
            yield made
    finally:
        made.close()


@contextmanager
def postgres_settings(test: Any, share: int, *, known_bug: bool) -> Iterator[None]:
    """Run a property with 1/`share` of its generated examples while this lasts, and, for a
    known bug, stop at its first failure unshrunk (shrinking it took minutes, at every run).

    Hypothesis reads a test's settings from this attribute on every call (6.x), so one backend
    can run fewer than the other without a second copy of each test.
    """
    if share == 1 and not known_bug:
        yield
        return
    full: settings = test._hypothesis_internal_use_settings
    changed = settings(full, max_examples=max(1, full.max_examples // share))
    if known_bug:
        changed = settings(
            changed,
            phases=[Phase.explicit, Phase.reuse, Phase.generate],
            report_multiple_bugs=False,
        )
    test._hypothesis_internal_use_settings = changed
    try:
        yield
    finally:
        test._hypothesis_internal_use_settings = full


@pytest.fixture
async def rig(
    databases: Databases,
    hashes: dict[str, str],  # noqa: F811
) -> AsyncIterator[Rig]:
    """A collector with its correlation loop; when the test ends it is checked whole."""
    with logged_errors() as errors:
        async with running(databases, "shared", hashes, correlate=True) as built:
            yield built
            await settled(built)
    assert not errors.records, described(errors)


@pytest.fixture
async def quiet_rig(
    databases: Databases,
    hashes: dict[str, str],  # noqa: F811
) -> AsyncIterator[Rig]:
    """A collector without background loops: incidents opened by hand stay as staff leave them."""
    with logged_errors() as errors:
        async with running(databases, "shared", hashes, correlate=False) as built:
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
