"""`sitewatch migrate`: the schema's migrations shown and applied, and the copy of a SQLite
collector into PostgreSQL: every table, resumable, counted, never into someone else's data.

Real SQLite files, the session's real PostgreSQL server (tests/pg.py), the real command line.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from collector import migrate
from collector.store import Store
from collector.store.database import DatabaseSpec, open_database
from collector.store.schema import SCHEMA
from tests.results import probe_result

ROOT = Path(__file__).resolve().parents[1]
SITEWATCH = [sys.executable, "-m", "sitewatch.cli"]
DAY = 86_400
# Four days ago at 20:26 UTC: results over three days from there, within retention (so in day
# partitions of their own) and in the past (so the report counts the incidents opened then).
START = float(int(time.time()) // DAY * DAY - 4 * DAY + 73_600)
WILD = 4_102_444_800.0  # 2100-01-01: a clock gone wrong


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SITEWATCH, *args], capture_output=True, text=True, check=False, cwd=ROOT, timeout=120
    )


def populated(path: Path, results: int = 700) -> Path:
    """Return a SQLite collector database with rows in every table the copy knows.

    Results, rollups, agents and sequences through the real Store; the tables other modules
    own by raw INSERTs, as their rows sit in a collector's file.
    """
    store = Store(path)
    try:
        for batch in range(0, results, 100):
            items = [
                (
                    n + 1,
                    probe_result(f"edge-{n % 7}", START + n * (3 * DAY / results), ok=n % 5 != 0),
                )
                for n in range(batch, min(batch + 100, results))
            ]
            store.results.ingest(
                "main-01", items, heartbeat={"version": "1"}, received=START, outbox="box-a"
            )
        store.results.ingest(
            "centre", [(1, probe_result("edge-0", START + 5, ok=True))], received=START + 6
        )
        store.results.next_sequence("centre", 10)
        assert store.results.roll_up(START + 300) > 0  # the first bucket's raw rows become a rollup
    finally:
        store.close()
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "INSERT INTO results VALUES ('main-01', 1, 'edge-0', 'icmp', ?, 1, 1.0, 0.0, '{}', "
            "NULL, '', ?, 'box-b')",
            (WILD, START),
        )
        db.execute("INSERT INTO collector VALUES (?)", (START + 3 * DAY,))
        db.execute('INSERT INTO gaps (id, start, "end", rebuilt_at) VALUES (4, ?, ?, NULL)',
                   (START + DAY, START + DAY + 600))  # fmt: skip
        db.executemany(
            "INSERT INTO status_log (entity, ts, status, gap, evidence) VALUES (?,?,?,?,?)",
            [("site:main", START + n * 60, ("up", "down")[n % 2], 4 if n == 3 else None,
              None if n == 3 else f"edge-{n} said so") for n in range(9)],
        )  # fmt: skip
        for incident in (3, 7):
            db.execute(
                "INSERT INTO incidents (id, key, priority, status, title, cause, sites, "
                "affected_users, opened_at, due_at, resolved_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (incident, f"site:s{incident}", "P2", "resolved" if incident == 3 else "open",
                 f"Site {incident} down", '{"kind": "site"}', '["main"]', 12, START,
                 START + 3600, START + 60 if incident == 3 else None),
            )  # fmt: skip
            db.execute(
                "INSERT INTO incident_events VALUES (?, ?, 'opened', NULL, '{}')",
                (incident, START),
            )
            db.execute(
                "INSERT INTO notifications (id, incident, channel, event, payload, created, "
                "next_attempt) VALUES (?, ?, 'webhook:x', 'opened', '{}', ?, ?)",
                (incident * 10, incident, START, START),
            )
        db.execute(
            'INSERT INTO maintenance (id, scope, target, start, "end", reason, created_by, '
            "created_at) VALUES (5, 'site', 'main', ?, ?, 'new switch', 'ops', ?)",
            (START, START + 3600, START),
        )
        db.execute(
            "INSERT INTO sessions VALUES ('ab' || hex(randomblob(31)), 'desk', 'operator', "
            "'csrf', ?, ?)",
            (START, START),
        )
    return path


def sqlite_counts(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as db:
        return {
            table.name: db.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]  # noqa: S608
            for table in migrate.TABLES
        }


def pg_scalar(url: str, sql: str) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
        assert row is not None
        return row[0]


# -- the copy -------------------------------------------------------------------------------


def test_every_table_of_the_schema_is_copied(tmp_path: Path) -> None:
    """A table a later migration adds must be listed in collector.migrate.TABLES too, or be
    left out on purpose (NOT_COPIED)."""
    store = Store(tmp_path / "empty.db")
    store.close()
    with closing(sqlite3.connect(tmp_path / "empty.db")) as db:
        tables = {
            row[0]
            for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not row[0].startswith("sqlite_")
        }
    assert tables == {table.name for table in migrate.TABLES} | set(migrate.NOT_COPIED)


def test_the_copy_holds_every_row_and_the_collector_carries_on(
    tmp_path: Path, postgres_url: str
) -> None:
    source = populated(tmp_path / "collector.db")
    expected = sqlite_counts(source)
    assert all(expected.values()), expected  # a row in every table, or the test proves less

    counts = migrate.copy_database(source, DatabaseSpec(url=postgres_url), chunk_rows=128)

    assert {c.table: (c.source, c.target) for c in counts} == {
        name: (rows, rows) for name, rows in expected.items()
    }
    partitions = pg_scalar(
        postgres_url,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'results'::regclass "
        "AND inhrelid::regclass::text LIKE 'results_2%'",
    )
    assert partitions == 4  # three days from a late start
    # The wild timestamp goes where ingest would put it: the DEFAULT partition, no table of its own.
    assert pg_scalar(postgres_url, "SELECT ts FROM ONLY results_other") == WILD
    # Rows arrive as they were: a float, a NULL, JSON text, a quoted column.
    for check in (
        "SELECT sum(rtt_ms) + sum(ts) + count(error_kind) FROM results",
        "SELECT string_agg(value || detail || outbox, ',' ORDER BY source, outbox, seq) "
        "FROM results",
        "SELECT sum(count) + sum(rtt_avg) + sum(rtt_count) FROM rollups",
    ):
        with closing(sqlite3.connect(source)) as db:
            (expected_value,) = db.execute(
                check.replace("string_agg", "group_concat").replace(
                    " ORDER BY source, outbox, seq", ""
                )
            ).fetchone()
        assert pg_scalar(postgres_url, check) == expected_value, check
    assert pg_scalar(postgres_url, "SELECT count(*) FROM status_log WHERE gap = 4") == 1
    assert pg_scalar(postgres_url, 'SELECT "end" FROM maintenance WHERE id = 5') == START + 3600

    # The collector opens the copy as its own, and its next ids follow the copied ones.
    store = Store(postgres_url)
    try:
        with store.db.writing() as tx:
            (incident,) = tx.execute(
                "INSERT INTO incidents (key, priority, status, title, cause, sites, "
                "affected_users, opened_at, due_at) VALUES (?, 'P1', 'open', 't', "
                "'{}', '[]', 1, ?, ?) RETURNING id",
                ("site:new", START, START),
            ).fetchone()
            (notification,) = tx.execute(
                "INSERT INTO notifications (incident, channel, event, payload, created, "
                "next_attempt) VALUES (?, 'c', 'opened', '{}', 0, 0) RETURNING id",
                (incident,),
            ).fetchone()
        assert (incident, notification) == (8, 71)
        copied = store.results.history("edge-1", START, START + 3 * DAY)  # reads the partitions
        assert copied
        # A copied result an agent sends again is a duplicate, as it was in the SQLite file.
        first = copied[0]
        again = store.results.ingest(
            first.source, [(first.seq, first.result)], received=START, outbox=first.outbox
        )
        assert (again.stored, again.duplicates) == (0, 1)
    finally:
        store.close()


def test_an_interrupted_copy_resumes_without_duplicates(tmp_path: Path, postgres_url: str) -> None:
    source = populated(tmp_path / "collector.db")
    target = DatabaseSpec(url=postgres_url)
    with pytest.raises(migrate.Interrupted):
        migrate.copy_database(source, target, chunk_rows=100, stop_after_chunks=5)
    # Half-way: some results copied, the tables after them not yet.
    part = pg_scalar(postgres_url, "SELECT count(*) FROM results")
    assert isinstance(part, int)
    assert 0 < part < sqlite_counts(source)["results"]
    assert pg_scalar(postgres_url, "SELECT count(*) FROM incidents") == 0
    with pytest.raises(migrate.Interrupted):  # and once more, from where it stopped
        migrate.copy_database(source, target, chunk_rows=100, stop_after_chunks=2)

    result = run("migrate", "--from", str(source), "--to", postgres_url)

    assert result.returncode == 0, result.stderr
    assert "copied: every table holds as many rows as its source" in result.stdout
    rows = sqlite_counts(source)["results"]
    assert f"results {rows} {rows}" in [
        " ".join(line.split()) for line in result.stdout.splitlines()
    ]
    identities = pg_scalar(
        postgres_url,
        "SELECT count(*) FROM (SELECT source, outbox, seq FROM results "
        "GROUP BY 1, 2, 3 HAVING count(*) > 1) AS twice",
    )
    assert identities == 0
    copied = {
        name: pg_scalar(postgres_url, f"SELECT count(*) FROM {name}")  # noqa: S608
        for name in sqlite_counts(source)
    }
    assert copied == sqlite_counts(source)
    # Run again over a finished copy: nothing to do, the counts still agree.
    again = run("migrate", "--from", str(source), "--to", postgres_url)
    assert again.returncode == 0, again.stderr


def test_a_copy_whose_counts_differ_fails(tmp_path: Path, postgres_url: str) -> None:
    source = populated(tmp_path / "collector.db", results=200)
    migrate.copy_database(source, DatabaseSpec(url=postgres_url))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("DELETE FROM status_log WHERE ts = %s", (START,))

    result = run("migrate", "--from", str(source), "--to", postgres_url)

    assert result.returncode == 1
    assert "status_log 9 != 8" in result.stderr
    assert "DIFFERS" in result.stdout


def test_a_target_holding_other_data_is_refused(tmp_path: Path, postgres_url: str) -> None:
    other = populated(tmp_path / "other.db", results=100)
    migrate.copy_database(other, DatabaseSpec(url=postgres_url))
    source = populated(tmp_path / "collector.db", results=100)

    result = run("migrate", "--from", str(source), "--to", postgres_url)

    assert result.returncode == 1
    assert f"holds a copy of {other.resolve()}, not of {source.resolve()}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_target_a_collector_already_used_is_refused(tmp_path: Path, postgres_url: str) -> None:
    store = Store(postgres_url)
    store.results.ingest("main-01", [(1, probe_result("edge-0", START, ok=True))], received=START)
    store.close()
    source = populated(tmp_path / "collector.db", results=100)

    result = run("migrate", "--from", str(source), "--to", postgres_url)

    assert result.returncode == 1
    assert "already holds SiteWatch data (1 rows in agents)" in result.stderr
    assert pg_scalar(postgres_url, "SELECT count(*) FROM results") == 1


def test_a_source_on_an_older_schema_is_refused(tmp_path: Path, postgres_url: str) -> None:
    source = tmp_path / "old.db"
    with closing(sqlite3.connect(source)) as db:
        for statement in SCHEMA[0].sqlite.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("PRAGMA user_version = 1")

    result = run("migrate", "--from", str(source), "--to", postgres_url)

    assert result.returncode == 1
    assert (
        f"schema version 1, this SiteWatch copies version {len(SCHEMA)}: start the collector "
        "once on it to upgrade, or run sitewatch migrate --apply"
    ) in result.stderr
    with closing(sqlite3.connect(source)) as db:  # opened read-only: left as it was
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1


def test_the_copy_reads_its_password_from_the_password_file(
    tmp_path: Path, postgres_server: object, postgres_url: str
) -> None:
    from tests.pg import PostgresServer  # noqa: PLC0415 -- typed here only

    assert isinstance(postgres_server, PostgresServer)
    name = postgres_url.rsplit("/", 1)[1]
    with postgres_server.connect(name) as conn:
        conn.execute(f"GRANT ALL ON SCHEMA public TO {postgres_server.password_role}")
    url = postgres_server.url(name, user=postgres_server.password_role)
    source = populated(tmp_path / "collector.db", results=100)
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-it\n")

    refused = run("migrate", "--from", str(source), "--to", url, "--password-file", str(wrong))

    assert refused.returncode == 1
    assert "password authentication failed" in refused.stderr
    assert "Traceback" not in refused.stderr
    right = tmp_path / "db.password"
    right.write_text(postgres_server.password + "\n")
    copied = run("migrate", "--from", str(source), "--to", url, "--password-file", str(right))
    assert copied.returncode == 0, copied.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["migrate"], "give --config FILE, or --from FILE.db with --to URL"),
        (["migrate", "--from", "x.db"], "--from needs the PostgreSQL database"),
        (["migrate", "--from", "x.db", "--to", "y.db"], "give a postgresql:// URL"),
        (["migrate", "--config", "c.yaml", "--to", "postgresql://h/d"],
         "--to and --password-file go with --from"),
        (["migrate", "--from", "x.db", "--config", "c.yaml", "--apply"],
         "--apply goes with --config alone"),
    ],
)  # fmt: skip
def test_bad_arguments_are_one_line_and_exit_2(args: list[str], expected: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_missing_source_is_named(tmp_path: Path, postgres_url: str) -> None:
    result = run("migrate", "--from", str(tmp_path / "none.db"), "--to", postgres_url)
    assert result.returncode == 1
    assert f"{tmp_path / 'none.db'}: no such SQLite database" in result.stderr


def test_a_second_copy_into_the_same_database_is_refused_while_the_first_runs(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two copies at once would both append the chunks after the same last key: status_log,
    which has no unique key, would hold rows twice for good. The second is refused unwritten."""
    source = populated(tmp_path / "collector.db")
    mid_copy = threading.Event()
    release = threading.Event()
    outcome: list[list[migrate.Count] | BaseException] = []

    def hold(table: str, rows: int) -> None:  # the first copy, after its first chunk committed
        if not mid_copy.is_set():
            mid_copy.set()
            assert release.wait(timeout=60), "the test never let the first copy go on"

    def first() -> None:
        try:
            outcome.append(
                migrate.copy_database(
                    source, DatabaseSpec(url=postgres_url), chunk_rows=100, progress=hold
                )
            )
        except BaseException as err:  # noqa: BLE001 -- handed to the test's thread, which fails with it
            outcome.append(err)

    worker = threading.Thread(target=first)
    worker.start()
    try:
        assert mid_copy.wait(timeout=60), "the first copy never copied a chunk"
        progress = "SELECT name, last_key, done FROM migration_progress ORDER BY name"
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            before = conn.execute(progress).fetchall()
            rows_before = conn.execute("SELECT count(*) FROM agents").fetchone()

        second = run("migrate", "--from", str(source), "--to", postgres_url)

        assert second.returncode == 1
        assert second.stderr == (
            f"sitewatch migrate: {postgres_url}: another sitewatch migrate is copying into "
            "this database\n"
        )
        with psycopg.connect(postgres_url, autocommit=True) as conn:  # nothing written
            assert conn.execute(progress).fetchall() == before
            assert conn.execute("SELECT count(*) FROM agents").fetchone() == rows_before
    finally:
        release.set()
        worker.join(timeout=120)
    (counts,) = outcome
    assert not isinstance(counts, BaseException), counts
    assert {count.table: count.target for count in counts} == sqlite_counts(source)
    # The lock went with the first copy: a later run finds the copy finished and agrees.
    again = run("migrate", "--from", str(source), "--to", postgres_url)
    assert again.returncode == 0, again.stderr


def test_a_file_of_another_program_is_refused_before_the_target_is_touched(
    tmp_path: Path, postgres_url: str
) -> None:
    """Another program's SQLite file may claim this schema's user_version: its tables say."""
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE t (x)")
        db.execute(f"PRAGMA user_version = {len(SCHEMA)}")

    result = run("migrate", "--from", str(other), "--to", postgres_url)

    assert result.returncode == 1
    assert result.stderr == (
        f"sitewatch migrate: {other}: not a SiteWatch database (no table agents)\n"
    )
    tables = "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
    assert pg_scalar(postgres_url, tables) == 0  # not prepared, not named as that file's copy
    source = populated(tmp_path / "collector.db", results=100)
    right = run("migrate", "--from", str(source), "--to", postgres_url)
    assert right.returncode == 0, right.stderr


def test_a_source_lacking_a_column_the_copy_reads_is_refused(
    tmp_path: Path, postgres_url: str
) -> None:
    source = populated(tmp_path / "collector.db", results=100)
    with closing(sqlite3.connect(source)) as db:
        db.execute("ALTER TABLE sessions DROP COLUMN csrf")

    result = run("migrate", "--from", str(source), "--to", postgres_url)

    assert result.returncode == 1
    assert result.stderr == (
        f"sitewatch migrate: {source}: not a SiteWatch database "
        "(table sessions has no column csrf)\n"
    )
    tables = "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
    assert pg_scalar(postgres_url, tables) == 0


# -- the schema's migrations ------------------------------------------------------------------


def collector_config(tmp_path: Path, database: str) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(
        (ROOT / "config" / "collector.yaml")
        .read_text()
        .replace("database: /var/lib/sitewatch/collector.db", f"database: {database}")
        .replace("inventory: inventory.yaml", f"inventory: {ROOT / 'config' / 'inventory.yaml'}")
    )
    return path


def older_sqlite(path: Path, version: int) -> Path:
    """Return a SQLite database at schema `version`, as an older SiteWatch left it."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        for number, migration in enumerate(SCHEMA[:version], start=1):
            for statement in migration.sqlite.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
    return path


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_migrate_shows_then_applies_what_is_pending(
    tmp_path: Path, request: pytest.FixtureRequest, dialect: str
) -> None:
    newest = len(SCHEMA)
    if dialect == "sqlite":
        database = str(older_sqlite(tmp_path / "collector.db", newest - 1))
    else:
        database = request.getfixturevalue("postgres_url")
    config = collector_config(tmp_path, database)

    shown = run("migrate", "--config", str(config))

    assert shown.returncode == 0, shown.stderr
    first = newest if dialect == "sqlite" else 1
    assert f"{database}: schema version {first - 1}; this SiteWatch's is {newest}" in shown.stdout
    assert f"  {newest:>3}  {SCHEMA[-1].about}" in shown.stdout
    assert f"  {first:>3}  {SCHEMA[first - 1].about}" in shown.stdout
    assert "--apply" in shown.stdout
    db = open_database(database, readonly=True)
    try:
        with db.reading() as conn:  # showing changed nothing
            from collector.store.schema import version  # noqa: PLC0415

            assert version(conn) == first - 1
    finally:
        db.close()

    applied = run("migrate", "--config", str(config), "--apply")

    assert applied.returncode == 0, applied.stderr
    assert f"now at schema version {newest}" in applied.stdout
    again = run("migrate", "--config", str(config))
    assert again.returncode == 0
    assert "no migrations pending" in again.stdout


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_migrate_refuses_a_newer_database(
    tmp_path: Path, request: pytest.FixtureRequest, dialect: str
) -> None:
    if dialect == "sqlite":
        database = str(tmp_path / "collector.db")
        Store(database).close()
        with closing(sqlite3.connect(database)) as db:
            db.execute(f"PRAGMA user_version = {len(SCHEMA) + 1}")
    else:
        database = request.getfixturevalue("postgres_url")
        Store(database).close()
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("UPDATE sitewatch_schema SET version = version + 1")
    config = collector_config(tmp_path, database)

    for args in (["--config", str(config)], ["--config", str(config), "--apply"]):
        result = run("migrate", *args)
        assert result.returncode == 1, result.stdout
        assert (
            f"schema version {len(SCHEMA) + 1} is newer than this SiteWatch knows" in result.stderr
        )
        assert "Traceback" not in result.stderr


def test_migrate_on_a_sqlite_file_not_made_yet(tmp_path: Path) -> None:
    config = collector_config(tmp_path, str(tmp_path / "later.db"))
    result = run("migrate", "--config", str(config))
    assert result.returncode == 0
    assert "no database yet" in result.stdout
    assert not (tmp_path / "later.db").exists()


def test_migrate_on_a_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "collector.db"
    junk.write_bytes(b"not a database, only some text that is long enough" * 100)
    config = collector_config(tmp_path, str(junk))
    for args in (["--config", str(config)], ["--config", str(config), "--apply"]):
        result = run("migrate", *args)
        assert result.returncode == 1, result.stdout
        assert result.stderr.startswith("sitewatch migrate: ")
        assert "not a database" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_password_in_the_target_url_is_refused(tmp_path: Path, postgres_url: str) -> None:
    source = populated(tmp_path / "collector.db", results=100)
    with_password = postgres_url.replace("@", ":hunter2@", 1)
    result = run("migrate", "--from", str(source), "--to", with_password)
    assert result.returncode == 1
    assert "the database URL carries a password" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_report_sla_reads_the_same_figures_from_the_copy(tmp_path: Path, postgres_url: str) -> None:
    source = populated(tmp_path / "collector.db", results=100)
    migrate.copy_database(source, DatabaseSpec(url=postgres_url))
    reports = []
    for name, database in (("sqlite", str(source)), ("postgresql", postgres_url)):
        folder = tmp_path / name
        folder.mkdir()
        config = collector_config(folder, database)
        first = datetime.fromtimestamp(START, UTC).date() - timedelta(days=1)
        # A period over by now: one running into today ends "now", and each report's figures
        # (the unknown seconds, as_of) would then differ by the moment between the two runs.
        last = datetime.fromtimestamp(START, UTC).date() + timedelta(days=1)
        result = run("report", "sla", "--config", str(config), "--from", str(first),
                     "--to", str(last), "--format", "csv")  # fmt: skip
        assert result.returncode == 0, result.stderr
        reports.append(result.stdout)
    assert reports[0] == reports[1], reports[0]
    assert "priority,P2,opened,2" in reports[0]  # the two incidents copied
