"""Fixtures shared by the test suite: the lab municipality, the rule for skipping it, a busy
core, a real PostgreSQL server with a fresh database per test, and a collector store on each
backend.

`store` and `database_spec` are parametrised over both backends, so every test that takes one
runs twice (ids `sqlite` and `postgresql`). PostgreSQL is the session's real server
(`migrated_postgres_url`: a fresh database per test, the schema in it); it is skipped
where the server cannot start, and fails the test under CI=true, never skipped there.

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
CHECKOUT = Path(__file__).resolve().parents[1]
# The processes tests start (`python -m sitewatch.cli collector`, agents in the lab) run this
# checkout's code: a worktree that shares another checkout's virtualenv would otherwise run the
# code the virtualenv's editable install points at, while its own tests run in-process.
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH", "")])
)


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
MIGRATED_TEMPLATE = "sitewatch_migrated"


@pytest.fixture
def postgres_url(postgres_server: pg.PostgresServer) -> Iterator[str]:
    """A fresh, empty database of its own for one test, as a URL; dropped after the test.

    Empty, for what must see a database nobody set up: the schema's migrations, a refusal of
    another program's tables, `sitewatch migrate`'s copy into a new database.
    """
    yield from _fresh(postgres_server, None)


@pytest.fixture(scope="session")
def migrated_template(postgres_server: pg.PostgresServer) -> str:
    """A database holding the collector's schema and nothing else, to copy from; made once.

    The migrations run here once per session instead of in every test's database.
    """
    name = postgres_server.create_database(MIGRATED_TEMPLATE)
    Store(DatabaseSpec(url=postgres_server.url(name))).close()  # migrates it, leaves nobody in
    return name


@pytest.fixture
def migrated_postgres_url(
    postgres_server: pg.PostgresServer, migrated_template: str
) -> Iterator[str]:
    """A fresh database of its own for one test, its schema as a new collector leaves it.

    For tests of what a collector does with its database, not of how the schema gets there
    (those take `postgres_url`); a copy of `migrated_template`, dropped after the test.
    """
    yield from _fresh(postgres_server, migrated_template)


def _fresh(server: pg.PostgresServer, template: str | None) -> Iterator[str]:
    name = server.create_database(f"test_{next(_DATABASE_NUMBERS)}", template=template)
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


BACKENDS = ("sqlite", "postgresql")  # the collector's databases; a test's id names its own


def spec_for(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseSpec:
    """Return a fresh database of the backend the test is parametrised with, for a collector.

    SQLite: a file not made yet. PostgreSQL: a copy of the session's migrated template, which
    a Store opens as it would a database it had just migrated (its migrations are proven on
    empty databases: `postgres_url`). Asked for only here, so a SQLite test never starts the
    server.
    """
    if request.param == "sqlite":
        return DatabaseSpec(path=tmp_path / "collector.db")
    url: str = request.getfixturevalue("migrated_postgres_url")
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
