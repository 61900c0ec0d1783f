"""Fixtures shared by the test suite: the lab municipality, the rule for skipping it, a busy
core, a real PostgreSQL server with a fresh database per test, and a collector store on each
backend.

`store` and `database_spec` are parametrised over both backends, so every test that takes one
runs twice (ids `sqlite` and `postgresql`). PostgreSQL is the session's real server
(`postgres_url`: a fresh database per test); it is skipped where the server cannot start, and
fails the test under CI=true, never skipped there.

Tests of what only SQLite has (its file's mode, WAL, PRAGMAs, raw sqlite3 access) take
`sqlite_store` or `sqlite_spec` instead, and run once.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.store import DatabaseSpec, Store
from tests import pg
from tests.lab import Lab, can_build, sweep_stale

EXAMPLE_INVENTORY = Path(__file__).resolve().parents[1] / "config" / "inventory.yaml"


def require_lab() -> None:
    """Skip when this machine cannot build the lab; under CI, fail instead."""
    problem = can_build()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; CI must run the lab tests")
        pytest.skip(problem)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """The example municipality, built once per test module and always torn down."""
    require_lab()
    sweep_stale()  # a lab left by a killed run would hold our addresses
    built = Lab(EXAMPLE_INVENTORY)
    built.up()
    try:
        yield built
    finally:
        built.down()


@pytest.fixture
def whole_lab(lab: Lab) -> Iterator[Lab]:
    """The lab, with every cut link and removed device restored after the test."""
    try:
        yield lab
    finally:
        lab.restore_all()


@pytest.fixture(scope="module")
def busy_core() -> Iterator[int]:
    """Keep one core busy with another process for a module's tests; yield its pid.

    As on a small collector VM doing a backup: what the tests prove must hold while the
    collector, the agents and the lab's responders share what is left of the machine.
    """
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield spinner.pid
    finally:
        spinner.kill()
        spinner.wait(timeout=10)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pg.PostgresServer]:
    """A real PostgreSQL server for the whole session, stopped and removed at its end.

    Skipped when PostgreSQL cannot start here; under CI, failed instead, like the lab.
    """
    pg.sweep_stale()  # clusters of sessions that were killed before their teardown
    directory = pg.temporary_directory()
    try:
        server = pg.start_postgres(directory)
    except (pg.PostgresError, OSError) as err:
        pg.remove_directory(directory)
        if os.environ.get("CI"):
            pytest.fail(f"{err}; CI must run the PostgreSQL tests")
        pytest.skip(str(err))
    try:
        yield server
    finally:
        server.stop()
        server.remove()


_DATABASE_NUMBERS = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server: pg.PostgresServer) -> Iterator[str]:
    """A fresh, empty database of its own for one test, as a URL; dropped after the test."""
    name = postgres_server.create_database(f"test_{next(_DATABASE_NUMBERS)}")
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


BACKENDS = ("sqlite", "postgresql")  # the collector's databases; a test's id names its own


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
