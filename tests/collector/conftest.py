"""Fixtures of the collector's tests: a store on each backend, SQLite and PostgreSQL.

`store` and `database_spec` are parametrised over both backends, so every test that takes one
runs twice (ids `sqlite` and `postgresql`). PostgreSQL is the session's real server
(`postgres_url` in tests/conftest.py: a fresh database per test); it is skipped where the
server cannot start, and fails the test under CI=true, never skipped there.

Tests of what only SQLite has (its file's mode, WAL, PRAGMAs, raw sqlite3 access) take
`sqlite_store` or `sqlite_spec` instead, and run once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.store import DatabaseSpec, Store

BACKENDS = ("sqlite", "postgresql")


def spec_for(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseSpec:
    """Return a fresh, empty database of the backend the test is parametrised with.

    PostgreSQL's database is asked for only here, so a SQLite test never starts the server.
    """
    if request.param == "sqlite":
        return DatabaseSpec(path=tmp_path / "collector.db")
    url: str = request.getfixturevalue("postgres_url")
    return DatabaseSpec(url=url)


@pytest.fixture(params=BACKENDS)
def database_spec(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseSpec:
    """Where a test's collector database is: a file in its folder, or its own PostgreSQL
    database; for tests that build a Collector, an app or a Store of their own from it."""
    return spec_for(request, tmp_path)


@pytest.fixture
def database_url(database_spec: DatabaseSpec) -> str:
    """The same database as the text a collector.yaml's `database:` holds (a path or a URL)."""
    return str(database_spec)


@pytest.fixture
def sqlite_spec(tmp_path: Path) -> DatabaseSpec:
    """A SQLite file in the test's folder, for tests of what only SQLite has."""
    return DatabaseSpec(path=tmp_path / "collector.db")


def opened(spec: DatabaseSpec) -> Iterator[Store]:
    """Yield a Store on `spec`, closed afterwards whatever the test did."""
    store = Store(spec)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def store(database_spec: DatabaseSpec) -> Iterator[Store]:
    """A fresh collector database on each backend, closed afterwards."""
    yield from opened(database_spec)


@pytest.fixture
def sqlite_store(sqlite_spec: DatabaseSpec) -> Iterator[Store]:
    """A fresh collector database in a SQLite file, for tests of what only SQLite has."""
    yield from opened(sqlite_spec)
