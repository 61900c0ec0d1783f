"""The database layer: one SQL text for both dialects, literals kept as written."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from collector.store import MIGRATIONS, Store, database
from collector.store.database import (
    DatabaseUnavailable,
    Returned,
    StoreError,
    open_database,
    postgres_sql,
)
from tests.pg import PostgresServer


def test_positional_marks_become_psycopgs_and_a_literal_colon_stays() -> None:
    sql = "SELECT 'site:tesko', x FROM t WHERE a = ? AND b LIKE ? AND c::text = ?"
    assert postgres_sql(sql) == (
        "SELECT 'site:tesko', x FROM t WHERE a = %s AND b LIKE %s AND c::text = %s"
    )
    assert postgres_sql("SELECT a % ? FROM t") == "SELECT a %% %s FROM t"


def test_named_marks_become_psycopgs_and_casts_stay() -> None:
    sql = "SELECT floor(ts / :step)::bigint FROM t WHERE a = :start"
    assert postgres_sql(sql, named=True) == (
        "SELECT floor(ts / %(step)s)::bigint FROM t WHERE a = %(start)s"
    )


def test_postgres_reads_literals_as_written(postgres_url: str) -> None:
    """A statement without parameters is sent as it is; one with them keeps its literals."""
    db = open_database(postgres_url)
    try:
        with db.reading() as conn:
            assert conn.execute("SELECT '50%', 'link:a-b'").fetchone() == ("50%", "link:a-b")
            assert conn.execute("SELECT 'link:a-b', ? || '%'", ("x",)).fetchone() == (
                "link:a-b",
                "x%",
            )
            named = conn.execute("SELECT :word::text", {"word": "w"}).fetchone()
            assert named == ("w",)
    finally:
        db.close()


def test_a_url_with_a_password_is_refused_without_printing_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="password") as refused:
        open_database("postgresql://sitewatch:s3cret@127.0.0.1:1/sitewatch")
    assert "s3cret" not in str(refused.value)


def test_sqlite_readers_are_not_the_writer(tmp_path: Path) -> None:
    """A read runs while a write transaction is open: reports never wait behind ingest."""
    db = open_database(tmp_path / "c.db")
    try:
        with db.writing() as tx:
            tx.execute("CREATE TABLE t (a INTEGER)")
        db.start_wal(migrated=False)
        with db.writing() as tx:
            tx.execute("INSERT INTO t VALUES (1)")
            with db.reading() as conn:  # the writer's lock is held: a read must not need it
                assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
        with db.reading() as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
    finally:
        db.close()


def test_a_full_sqlite_disk_is_unavailable_with_its_own_words(tmp_path: Path) -> None:
    """SQLite rolls back by itself on a full disk; the error says so, not 'cannot rollback'."""
    db = open_database(tmp_path / "c.db")
    try:
        with db.writing() as tx:
            tx.execute("CREATE TABLE t (a TEXT)")
        with db.maintaining() as conn:
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(DatabaseUnavailable, match="full"), db.writing() as tx:
            tx.executemany("INSERT INTO t VALUES (?)", [("x" * 4096,)] * 50)
        with db.reading() as conn:  # what was there stays readable
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    finally:
        db.close()


def test_postgres_refusing_connections_is_unavailable_then_recovers(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """A server that drops and refuses connections: a clear DatabaseUnavailable, not a
    driver's error; once it takes connections again, the same Database works."""
    name = postgres_url.rsplit("/", 1)[1]
    db = open_database(postgres_url)
    admin = postgres_server.connect()
    try:
        with db.reading() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        with pytest.raises(DatabaseUnavailable), db.reading() as conn:
            conn.execute("SELECT 1")
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        deadline = time.monotonic() + 30
        while True:  # the pool reconnects in the background: wait for it, with a deadline
            try:
                with db.reading() as conn:
                    assert conn.execute("SELECT 1").fetchone() == (1,)
                break
            except DatabaseUnavailable:
                assert time.monotonic() < deadline, "the pool never reconnected"
    finally:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()
        db.close()


def test_a_connection_back_a_moment_ago_is_lent_unchecked_and_an_older_one_is_checked(
    postgres_server: PostgresServer, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool's check: a round trip that finds a dropped connection, skipped for one that
    came back to the pool within RECHECK_AFTER (it worked a moment ago)."""
    import psycopg  # noqa: PLC0415 -- PostgreSQL only

    name = postgres_url.rsplit("/", 1)[1]
    returned = Returned()
    admin = postgres_server.connect()
    conn = psycopg.connect(postgres_url, autocommit=True)
    try:
        returned.check(conn)  # never noted: checked, and alive
        returned.note(conn)
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        returned.check(conn)  # back a moment ago: lent without a round trip
        monkeypatch.setattr(database, "RECHECK_AFTER", 0.0)
        with pytest.raises(psycopg.OperationalError):
            returned.check(conn)  # checked: the server dropped it
    finally:
        conn.close()
        admin.close()


def test_another_tools_schema_version_table_is_not_taken_for_ours(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """Flyway's old default table, with a version of its own: refused, and left as it was."""
    with postgres_server.connect(postgres_url.rsplit("/", 1)[1]) as other:
        other.execute("CREATE TABLE schema_version (version text, description text)")
        other.execute("INSERT INTO schema_version VALUES ('3', 'init')")
    with pytest.raises(StoreError, match="something else"):
        Store(postgres_url)
    with postgres_server.connect(postgres_url.rsplit("/", 1)[1]) as other:
        assert other.execute("SELECT version FROM schema_version").fetchall() == [("3",)]
        assert other.execute("SELECT to_regclass('sitewatch_schema')").fetchone() == (None,)


def test_a_version_without_our_tables_is_refused(tmp_path: Path) -> None:
    """Other programs set SQLite's user_version too: a version alone is not SiteWatch's."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE notes (a TEXT)")
        other.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    other.close()
    with pytest.raises(StoreError, match="not SiteWatch"):
        Store(path)
    with pytest.raises(StoreError, match="not SiteWatch"):
        Store(path, readonly=True)
