"""The database layer: one SQL text for both dialects, literals kept as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.store.database import StoreError, open_database, postgres_sql


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
