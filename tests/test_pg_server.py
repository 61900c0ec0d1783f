"""The PostgreSQL the test session starts for itself: real, unprivileged, one database per test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

import tests.lab.__main__ as lab_main
from collector.store import Store, schema
from tests import pg
from tests.conftest import EXAMPLE_INVENTORY
from tests.deploy import deploy

ROOT = Path(__file__).resolve().parents[1]

SEEN: dict[str, str] = {}  # test name -> the database it got, to compare two tests' databases


def _uid_of(pid: int) -> int:
    """Return the real uid of a process on this machine, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for process {pid}")


def test_server_answers_sql(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SELECT version()").fetchone()
    assert row is not None
    assert str(row[0]).startswith("PostgreSQL ")


@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_gets_a_distinct_empty_database(postgres_url: str, turn: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        conn.execute("CREATE TABLE left_behind (n integer)")  # the other test must not see it
    assert name is not None
    assert tables == (0,)
    SEEN[turn] = str(name[0])
    if len(SEEN) == 2:
        assert SEEN["first"] != SEEN["second"]


MIGRATED_SEEN: dict[str, str] = {}  # as SEEN, for the migrated databases


@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_gets_a_distinct_migrated_database(migrated_postgres_url: str, turn: str) -> None:
    """A copy of the session's template: nothing left to migrate, and another test's table
    (or a collector's rows) never in it."""
    store = Store(migrated_postgres_url)
    try:
        with store.db.reading() as conn:
            assert schema.version(conn) == len(schema.SCHEMA)
        assert schema.pending(store.db) == []
    finally:
        store.close()
    with psycopg.connect(migrated_postgres_url, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        left = conn.execute("SELECT to_regclass('left_behind')").fetchone()
        conn.execute("CREATE TABLE left_behind (n integer)")  # the other test must not see it
    assert name is not None
    assert left == (None,)
    MIGRATED_SEEN[turn] = str(name[0])
    if len(MIGRATED_SEEN) == 2:
        assert MIGRATED_SEEN["first"] != MIGRATED_SEEN["second"]


def _catalogue(url: str) -> list[tuple[object, ...]]:
    """Return a database's tables, columns, indexes and constraints, as one comparable list."""
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"
        ).fetchall()
        indexes = conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = 'public' ORDER BY 1, 2"
        ).fetchall()
        constraints = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
        ).fetchall()
        rows = conn.execute("SELECT * FROM sitewatch_schema").fetchall()
    return [*columns, *indexes, *constraints, *rows]


def test_a_migrated_copy_is_what_migrating_an_empty_database_makes(
    postgres_url: str, migrated_postgres_url: str
) -> None:
    """The collector's tests get copies of a template migrated once per session: the copy must
    be the very schema a collector makes of an empty database, or they would test another."""
    Store(postgres_url).close()  # migrates it
    made = _catalogue(postgres_url)
    assert any(row[:2] == ("results", "ts") for row in made)  # the catalogue reads something
    assert _catalogue(migrated_postgres_url) == made


def test_database_is_dropped_after_its_test(postgres_server: pg.PostgresServer) -> None:
    name = postgres_server.create_database("dropped_after")
    postgres_server.drop_database(name)
    with postgres_server.connect() as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert found is None


def test_server_runs_unprivileged_on_loopback(postgres_server: pg.PostgresServer) -> None:
    with postgres_server.connect() as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        listen = conn.execute("SHOW listen_addresses").fetchone()
        assert backend is not None
        assert isinstance(backend[0], int)
        # read while the connection is open: its backend process ends with it
        assert _uid_of(backend[0]) != 0
    assert _uid_of(postgres_server.process.pid) != 0
    assert listen == ("127.0.0.1",)
    if os.geteuid() == 0:
        assert postgres_server.account.name == pg.PG_USER


def test_password_role_needs_its_password(postgres_server: pg.PostgresServer) -> None:
    url = postgres_server.url("postgres", user=postgres_server.password_role)
    with psycopg.connect(url, password=postgres_server.password) as conn:
        who = conn.execute("SELECT current_user").fetchone()
    assert who == (postgres_server.password_role,)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(url, password="not-the-password", connect_timeout=5)  # noqa: S106
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(url, connect_timeout=5, passfile=os.devnull)


def test_sweep_removes_a_killed_sessions_server() -> None:
    """A cluster whose owner died is stopped and removed; a live owner's is left alone."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(gone.stdout)
    base = pg.temporary_directory()
    base.chmod(0o711)  # a stand-in for the system's temporary directory: passable to PG_USER
    try:
        abandoned = pg.start_postgres(base / f"{pg.TEMP_PREFIX}abandoned", owner_pid=dead_pid)
        kept = base / f"{pg.TEMP_PREFIX}kept"
        kept.mkdir()
        (kept / pg.OWNER_FILE).write_text(f"{os.getpid()}\n")
        swept = pg.sweep_stale(base)
        assert swept == [abandoned.directory]
        assert not abandoned.directory.exists()
        assert abandoned.process.wait(timeout=30) is not None  # the server is gone too
        assert kept.exists()
    finally:
        pg.remove_directory(base)


def test_missing_postgresql_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pg, "DEBIAN_ROOT", tmp_path / "no-postgresql")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pg.PostgresError, match="PostgreSQL is not installed: no initdb"):
        pg.find_binaries()


def test_newest_installed_version_is_chosen() -> None:
    binaries = pg.find_binaries()
    installed = [
        int(bindir.parent.name)
        for bindir in pg.DEBIAN_ROOT.glob("*/bin")
        if bindir.parent.name.isdigit() and (bindir / "postgres").exists()
    ]
    if not installed:  # not Debian's layout: found on PATH instead
        assert binaries.version == "unknown"
        return
    assert binaries.version == str(max(installed))
    assert binaries.bindir == pg.DEBIAN_ROOT / str(max(installed)) / "bin"


# `make run DB=postgres`: the server it brings up and the URL it gives the collector. The lab
# itself is not built here (the lab tests do that, one lab per machine at a time).


def _cluster_identity(server: pg.PostgresServer) -> int:
    with server.connect() as conn:
        row = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
    assert row is not None
    assert isinstance(row[0], int)
    return row[0]


def test_run_keeps_its_cluster_and_makes_a_fresh_database() -> None:
    base = pg.temporary_directory()
    base.chmod(0o711)  # like /var/tmp: passable to PG_USER
    try:
        first = lab_main.start_database(base / "cluster")
        identity = _cluster_identity(first)
        with psycopg.connect(first.url(lab_main.RUN_DATABASE), autocommit=True) as conn:
            conn.execute("CREATE TABLE from_the_last_run (n integer)")
        # Not stopped, as when a run is killed: the next run must stop it and start its own.
        second = lab_main.start_database(base / "cluster")
        try:
            assert first.process.wait(timeout=30) is not None
            assert second.directory == first.directory
            assert _cluster_identity(second) == identity  # the same cluster, not a new initdb
            with psycopg.connect(second.url(lab_main.RUN_DATABASE)) as conn:
                tables = conn.execute(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
                ).fetchone()
            assert tables == (0,)
        finally:
            second.stop()
        assert second.process.returncode is not None
    finally:
        pg.remove_directory(base)


def test_run_refuses_a_cluster_directory_someone_else_made(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = tmp_path / "cluster"
    link.symlink_to(elsewhere)
    with pytest.raises(pg.PostgresError, match="symbolic link"):
        pg.start_postgres(link)


def test_run_gives_the_collector_the_postgresql_url(tmp_path: Path) -> None:
    deployment = deploy(tmp_path, EXAMPLE_INVENTORY, ["willowvale"], "127.0.0.1:8080")
    before = yaml.safe_load(deployment.collector_config.read_text())
    url = "postgresql://postgres@127.0.0.1:5999/sitewatch"
    lab_main.use_database(deployment.collector_config, url)
    after = yaml.safe_load(deployment.collector_config.read_text())
    assert before["database"] == str(deployment.database)
    assert after == {**before, "database": url}


def test_run_help_and_make_offer_postgres() -> None:
    helped = subprocess.run(
        [sys.executable, "-m", "tests.lab", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert "--db {sqlite,postgres}" in helped.stdout
    assert "kept between runs" in " ".join(helped.stdout.split())
    planned = subprocess.run(
        ["make", "-n", "run", "DB=postgres"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert "-m tests.lab run --inventory config/inventory.yaml --db postgres" in planned.stdout
