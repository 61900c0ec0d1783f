"""The collector's store on both backends (SQLite files, PostgreSQL): idempotent ingest, rollups,
history, sequences; what only SQLite has (its file, WAL, PRAGMAs, sub-day cutoffs) on SQLite."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.service import Collector
from collector.store import MIGRATIONS, ROLLUP_SECONDS, Store, StoreError
from collector.store.agents import last_heard
from probes.result import ProbeResult
from sitewatch.config.files import load_collector_config

ROOT = Path(__file__).resolve().parents[2]

B = 1_800_000_000  # the start of a 5-minute bucket: 1_800_000_000 % 300 == 0
NOW = B + 86_400.0  # when the collector received everything: `Results.ingest`'s `received`


def result(
    ts: float,
    rtt_ms: float | None = None,
    *,
    ok: bool = True,
    target: str = "gw",
    kind: str = "icmp",
) -> ProbeResult:
    return ProbeResult(target, kind, datetime.fromtimestamp(ts, UTC), ok, rtt_ms=rtt_ms)


def numbered(first: int, *results: ProbeResult) -> list[tuple[int, ProbeResult]]:
    return list(enumerate(results, start=first))


def raw_rows(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute(sql, args).fetchall()


def rollups(store: Store, target: str = "gw") -> dict[tuple[str, str, int], dict[str, Any]]:
    """Return a target's rollups keyed by (kind, source, bucket)."""
    return {
        (r["kind"], r["source"], r["bucket"]): r for r in store.results.rollups(target, 0, 2 * NOW)
    }


# -- ingest ---------------------------------------------------------------------------------


def test_ingest_stores_each_source_and_seq_once_and_counts_the_rest(store: Store) -> None:
    first = numbered(1, result(B + 1, 1.0), result(B + 2, 2.0))
    outcome = store.results.ingest("a", first, received=NOW)
    assert (outcome.stored, outcome.duplicates) == (2, 0)
    # the reply was lost; the agent sends again
    outcome = store.results.ingest("a", first, received=NOW)
    assert (outcome.stored, outcome.duplicates) == (0, 2)
    resent = numbered(2, result(B + 2, 99.0, ok=False), result(B + 3, 3.0))  # 2 again, changed
    outcome = store.results.ingest("a", resent, received=NOW)
    assert (outcome.stored, outcome.duplicates) == (1, 1)
    within = store.results.ingest("a", [(4, result(B + 4)), (4, result(B + 5))], received=NOW)
    assert (within.stored, within.duplicates) == (1, 1)  # a batch repeating itself, too
    # same seq, other source
    other = store.results.ingest("b", numbered(1, result(B + 1, 5.0)), received=NOW)
    assert (other.stored, other.duplicates) == (1, 0)
    assert store.results.sequences("a") == [1, 2, 3, 4]
    assert store.results.sequences("b") == [1]
    by_seq = {s.seq: s.result for s in store.results.history("gw", B, B + 10) if s.source == "a"}
    assert by_seq[2] == result(B + 2, 2.0)  # the first copy stays; a resend changes nothing
    assert by_seq[4] == result(B + 4)


def test_ingest_records_contact_and_keeps_the_last_heartbeat(store: Store) -> None:
    store.results.ingest("a", numbered(1, result(B)), heartbeat={"depth": 7}, received=NOW)
    store.results.ingest("a", numbered(2, result(B + 1)), received=NOW + 30)
    assert last_heard(store.db) == {"a": (NOW + 30, {"depth": 7})}


# -- history --------------------------------------------------------------------------------


def test_history_is_start_inclusive_end_exclusive_and_oldest_first(store: Store) -> None:
    full = ProbeResult(
        "gw",
        "http",
        datetime.fromtimestamp(B + 10.123456, UTC),
        False,
        rtt_ms=12.5,
        loss=0.25,
        value={"status": 503, "headers": ["a", "b"]},
        error_kind="unexpected",
        detail="503 Service Unavailable",
    )
    store.results.ingest(
        "b", [(1, result(B + 20)), (2, result(B)), (3, result(B + 30))], received=NOW
    )
    store.results.ingest(
        "a", [(7, full), (8, result(B + 20)), (9, result(B + 20, target="sw"))], received=NOW
    )
    found = store.results.history("gw", B, B + 30)
    assert [(s.source, s.seq) for s in found] == [("b", 2), ("a", 7), ("a", 8), ("b", 1)]
    assert found[1].result == full  # every field survives the round trip
    assert found[0].result.ts == datetime.fromtimestamp(B, UTC)
    assert [s.seq for s in store.results.history("gw", B + 0.5, B + 30.5)] == [7, 8, 1, 3]
    assert store.results.history("gw", B + 21, B + 30) == []
    assert [s.seq for s in store.results.history("gw", B, B + 31, limit=2)] == [2, 7]


# -- next_sequence --------------------------------------------------------------------------


def test_next_sequence_reserves_disjoint_ranges_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "collector.db"
    reserved: dict[str, list[range]] = {"centre": [], "other": []}
    for counts in ([5, 1, 3], [2], [4, 4]):
        store = Store(path)
        try:
            for source, count in [*(("centre", c) for c in counts), ("other", 2)]:
                first = store.results.next_sequence(source, count)
                reserved[source].append(range(first, first + count))
        finally:
            store.close()
    assert [r.start for r in reserved["centre"]] == [1, 6, 7, 10, 12, 16]
    assert [n for r in reserved["centre"] for n in r] == list(range(1, 20))  # disjoint, no gap
    assert [n for r in reserved["other"] for n in r] == list(range(1, 7))  # each source its own


# -- roll_up --------------------------------------------------------------------------------


def crafted(store: Store) -> None:
    """Results in three buckets of gw (two whole, one current) and beside it."""
    store.results.ingest(
        "a",
        numbered(
            1,
            result(B + 1, 10.0),
            result(B + 60, 30.0),
            result(B + 120, None, ok=False),
            result(B + 299.5, 20.0),  # bucket B: 4 results, 1 failure, rtt 10/20/30
            result(B + 300, None, ok=False),  # exactly on a boundary: bucket B+300
            result(B + 599.999, None, ok=False),  # bucket B+300: 2 failures, no rtt at all
            result(B + 600, 7.0),
            result(B + 650, 9.0),  # bucket B+600: not whole at the cutoff
            result(B + 10, 1.5, target="sw", kind="tcp"),
        ),
        received=NOW,
    )
    store.results.ingest("centre", numbered(1, result(B + 5, 4.0)), received=NOW)


def test_roll_up_folds_whole_buckets_older_than_the_cutoff(sqlite_store: Store) -> None:
    store = sqlite_store  # cutoffs within a day: PostgreSQL folds whole days (test_store_postgres)
    crafted(store)
    assert store.results.roll_up(B + 600 + 299) == 8  # cutoff B+600: bucket B+600 is not whole yet
    assert rollups(store) == {
        ("icmp", "a", B): {
            "kind": "icmp",
            "source": "a",
            "bucket": B,
            "count": 4,
            "failures": 1,
            "rtt_min": 10.0,
            "rtt_avg": 20.0,
            "rtt_max": 30.0,
        },
        ("icmp", "a", B + 300): {
            "kind": "icmp",
            "source": "a",
            "bucket": B + 300,
            "count": 2,
            "failures": 2,
            "rtt_min": None,
            "rtt_avg": None,
            "rtt_max": None,
        },
        ("icmp", "centre", B): {
            "kind": "icmp",
            "source": "centre",
            "bucket": B,
            "count": 1,
            "failures": 0,
            "rtt_min": 4.0,
            "rtt_avg": 4.0,
            "rtt_max": 4.0,
        },
    }
    assert [
        (r["kind"], r["count"], r["rtt_avg"]) for r in store.results.rollups("sw", 0, 2 * NOW)
    ] == [("tcp", 1, 1.5)]
    assert [(s.seq, s.result.rtt_ms) for s in store.results.history("gw", 0, 2 * NOW)] == [
        (7, 7.0),
        (8, 9.0),
    ]  # the current bucket untouched
    assert store.results.sequences("a") == [7, 8]
    assert store.results.sequences("centre") == []
    assert store.results.roll_up(B + 600 + 299) == 0  # nothing more to fold
    assert len(rollups(store)) == 3


def test_roll_up_merges_late_results_into_a_rolled_up_bucket(sqlite_store: Store) -> None:
    store = sqlite_store  # cutoffs within a day: PostgreSQL folds whole days (test_store_postgres)
    crafted(store)
    store.results.roll_up(B + 600)
    # an agent's backlog arrives for buckets already rolled up
    store.results.ingest(
        "a",
        numbered(
            20,
            result(B + 200, 60.0),
            result(B + 250, None, ok=False),  # bucket B: now 6, rtt 10/20/30/60
            result(B + 400, 5.0),  # bucket B+300: its first rtt
            result(B + 301, None, ok=False),
        ),
        received=NOW,
    )
    assert store.results.roll_up(B + 900) == 6  # the four late ones and bucket B+600
    merged = rollups(store)
    bucket = merged["icmp", "a", B]
    assert (bucket["count"], bucket["failures"]) == (6, 2)
    assert (bucket["rtt_min"], bucket["rtt_max"]) == (10.0, 60.0)
    assert bucket["rtt_avg"] == pytest.approx((10 + 30 + 20 + 60) / 4)  # per rtt, not per result
    later = merged["icmp", "a", B + 300]
    assert (later["count"], later["failures"]) == (4, 3)
    assert (later["rtt_min"], later["rtt_avg"], later["rtt_max"]) == (5.0, 5.0, 5.0)
    current = merged["icmp", "a", B + 600]
    assert (current["count"], current["failures"], current["rtt_avg"]) == (2, 0, 8.0)
    assert merged["icmp", "centre", B]["count"] == 1  # untouched by the second pass
    assert store.results.history("gw", 0, 2 * NOW) == []


def test_roll_up_of_late_results_without_rtt_keeps_the_average(sqlite_store: Store) -> None:
    store = sqlite_store  # cutoffs within a day: PostgreSQL folds whole days (test_store_postgres)
    crafted(store)
    store.results.roll_up(B + 600)
    store.results.ingest("a", numbered(20, result(B + 7, None, ok=False)), received=NOW)
    store.results.ingest("a", numbered(21, result(B + 310, None, ok=False)), received=NOW)
    store.results.roll_up(B + 600)
    merged = rollups(store)
    assert (merged["icmp", "a", B]["count"], merged["icmp", "a", B]["rtt_avg"]) == (5, 20.0)
    assert merged["icmp", "a", B + 300]["rtt_avg"] is None  # still no rtt, not 0


OFFSETS = st.floats(min_value=0, max_value=3 * ROLLUP_SECONDS - 0.001)
RESULTS = st.lists(
    st.tuples(OFFSETS, st.one_of(st.none(), st.floats(0, 1000)), st.booleans()), max_size=12
)


@pytest.fixture(scope="module")
def migrated_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed SQLite database holding the collector's schema and nothing else.

    A property's examples copy it rather than run every migration for each of their stores
    (90 ms a store, measured, against 3 ms for the copy): two stores an example, 40 examples.
    """
    path = tmp_path_factory.mktemp("migrated") / "collector.db"
    Store(path).close()
    assert not path.with_name(f"{path.name}-wal").exists()  # all of it in the one file
    return path


def copied(template: Path, path: Path) -> Store:
    """Open a copy of `template` at `path`, as a store it would have migrated itself."""
    shutil.copyfile(template, path)
    return Store(path)


@settings(max_examples=40, deadline=None)
@given(first=RESULTS, late=RESULTS, cut=st.integers(1, 3))
def test_rolling_up_in_two_passes_equals_rolling_up_once(
    migrated_file: Path,
    first: list[tuple[float, float | None, bool]],
    late: list[tuple[float, float | None, bool]],
    cut: int,
) -> None:
    """However a bucket's results are split between passes, its rollup is the same."""

    def results(items: list[tuple[float, float | None, bool]]) -> list[ProbeResult]:
        return [result(B + offset, rtt, ok=ok) for offset, rtt, ok in items]

    older_than = B + cut * ROLLUP_SECONDS
    with tempfile.TemporaryDirectory() as folder:
        twice = copied(migrated_file, Path(folder) / "twice.db")
        once = copied(migrated_file, Path(folder) / "once.db")
        try:
            twice.results.ingest("a", numbered(1, *results(first)), received=NOW)
            twice.results.roll_up(older_than)
            twice.results.ingest("a", numbered(100, *results(late)), received=NOW)
            twice.results.roll_up(older_than)
            once.results.ingest("a", numbered(1, *results(first)), received=NOW)
            once.results.ingest("a", numbered(100, *results(late)), received=NOW)
            once.results.roll_up(older_than)
            split, whole = rollups(twice), rollups(once)
            assert split.keys() == whole.keys()
            for key, expected in whole.items():
                assert split[key] == {
                    k: pytest.approx(v) if k == "rtt_avg" and v is not None else v
                    for k, v in expected.items()
                }
            assert twice.results.history("gw", 0, 2 * NOW) == once.results.history("gw", 0, 2 * NOW)
        finally:
            twice.close()
            once.close()


# -- files that are not ours ----------------------------------------------------------------


def test_a_file_that_is_not_sqlite_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    content = b"these are not the tables you are looking for\n" * 100
    path.write_bytes(content)
    with pytest.raises(StoreError, match="not a SiteWatch database") as caught:
        Store(path)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == content


def test_another_programs_sqlite_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "inventory.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE printers (name TEXT)")
        db.execute("INSERT INTO printers VALUES ('third floor')")
        db.commit()
    with pytest.raises(StoreError, match="something else") as caught:
        Store(path)
    assert str(path) in str(caught.value)
    assert raw_rows(path, "PRAGMA journal_mode") == [("delete",)]  # not switched to WAL
    assert raw_rows(path, "SELECT name FROM sqlite_master") == [("printers",)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inventory.db"]  # and closed again


def test_a_schema_newer_than_this_sitewatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "collector.db"
    Store(path).close()
    assert raw_rows(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    with closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer") as caught:
        Store(path)
    assert str(path) in str(caught.value)


def test_a_version_1_database_is_upgraded_with_its_rollups(tmp_path: Path) -> None:
    """Version 1 kept no count of rtts; its averages are taken as over every result."""
    path = tmp_path / "collector.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        for statement in MIGRATIONS[0].split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        insert = "INSERT INTO rollups VALUES ('gw', 'icmp', 'a', ?, ?, ?, ?, ?, ?)"
        db.execute(insert, (B, 4, 0, 10.0, 20.0, 30.0))
        db.execute(insert, (B + 300, 2, 2, None, None, None))
    store = Store(path)
    try:
        store.results.ingest(
            "a", numbered(1, result(B + 9, 70.0), result(B + 309, 3.0)), received=NOW
        )
        store.results.roll_up(B + 600)
        merged = rollups(store)
    finally:
        store.close()
    assert raw_rows(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert (merged["icmp", "a", B]["count"], merged["icmp", "a", B]["rtt_avg"]) == (5, 30.0)
    assert (merged["icmp", "a", B + 300]["count"], merged["icmp", "a", B + 300]["rtt_avg"]) == (
        3,
        3.0,
    )


def test_read_only_neither_migrates_nor_writes(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as db:
        for statement in MIGRATIONS[0].split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.commit()
    with pytest.raises(StoreError, match="schema version 1"):
        Store(path, readonly=True)
    assert raw_rows(path, "PRAGMA user_version") == [(1,)]  # left as it was
    Store(path).close()  # a collector upgrades it
    store = Store(path, readonly=True)
    try:
        assert store.results.sequences("anyone") == []
        with pytest.raises(StoreError, match="read-only"):
            store.results.next_sequence("centre", 1)
    finally:
        store.close()


# -- outbox identity, durability, file modes, start-up evidence -------------------------------


def test_sequences_are_unique_per_outbox_so_a_reinstalled_agent_is_stored(store: Store) -> None:
    old, new = "a" * 32, "b" * 32
    assert (
        store.results.ingest(
            "a", numbered(1, result(B + 1), result(B + 2)), received=NOW, outbox=old
        ).stored
        == 2
    )
    again = store.results.ingest(
        "a", numbered(1, result(B + 3), result(B + 4)), received=NOW, outbox=new
    )
    assert (again.stored, again.duplicates) == (2, 0)  # numbered from 1 again, new outbox
    resent = store.results.ingest("a", numbered(2, result(B + 4)), received=NOW, outbox=new)
    assert (resent.stored, resent.duplicates) == (0, 1)  # a resend is still a duplicate
    assert store.results.sequences("a") == [1, 1, 2, 2]


def test_the_same_seq_with_another_time_is_a_duplicate(store: Store) -> None:
    """Idempotency is on (source, outbox, seq) alone, on both backends.

    PostgreSQL's key used to hold ts too (a partitioned table's unique key must), so a seq
    sent again with another time, by a straight COPY or the long way, was stored twice.
    """
    outbox = "c" * 32
    store.results.ingest(
        "a", numbered(7, result(B + 60), result(B + 120)), received=NOW, outbox=outbox
    )
    again = store.results.ingest("a", numbered(7, result(B + 90)), received=NOW, outbox=outbox)
    assert (again.stored, again.duplicates) == (0, 1)
    mixed = numbered(8, result(B + 200), result(B + 240))  # 8 stored at B + 120, 9 is new
    some = store.results.ingest("a", mixed, received=NOW, outbox=outbox)
    assert (some.stored, some.duplicates) == (1, 1)
    assert store.results.sequences("a") == [7, 8, 9]
    assert [s.result.ts.timestamp() for s in store.results.history("gw", B, NOW)] == [
        B + 60,
        B + 120,
        B + 240,
    ]


def test_a_version_5_database_keeps_its_rows_under_the_legacy_outbox(tmp_path: Path) -> None:
    path = tmp_path / "collector.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        for script in MIGRATIONS[:5]:
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute("PRAGMA user_version = 5")
        db.execute(
            "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("a", 1, "gw", "icmp", B + 1, 1, 2.0, None, "{}", None, "", NOW),
        )
    store = Store(path)
    try:
        # an old agent resends
        legacy = store.results.ingest("a", numbered(1, result(B + 1)), received=NOW)
        fresh = store.results.ingest("a", numbered(1, result(B + 2)), received=NOW, outbox="c" * 32)
        assert (legacy.stored, legacy.duplicates, fresh.stored) == (0, 1, 1)
        assert [s.result.rtt_ms for s in store.results.history("gw", B, B + 10)] == [2.0, None]
    finally:
        store.close()
    assert raw_rows(path, "SELECT outbox, seq FROM results ORDER BY ts") == [
        ("legacy", 1),
        ("c" * 32, 1),
    ]


def test_a_version_6_database_keeps_its_status_log_and_gains_evidence(tmp_path: Path) -> None:
    """Schema 7 adds why a status changed; every row logged before keeps its place, unexplained."""
    path = tmp_path / "collector.db"
    logged = [
        ("site:tesko", B + 1.0, "up", None),
        ("link:tesko-mpls", B + 1.0, "up", None),
        ("site:tesko", B + 60.0, "unknown", 1),  # rebuilt for a gap of the collector
    ]
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        for script in MIGRATIONS[:6]:
            db.executescript(script)
        db.execute("PRAGMA user_version = 6")
        db.execute('INSERT INTO gaps (id, start, "end") VALUES (1, ?, ?)', (B + 50, B + 70))
        db.executemany("INSERT INTO status_log (entity, ts, status, gap) VALUES (?,?,?,?)", logged)
        db.execute(
            "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("a", 1, "gw", "icmp", B + 1, 1, 2.0, None, "{}", None, "", NOW, "legacy"),
        )
    store = Store(path)
    try:
        with store.db.writing() as db:
            db.execute(
                "INSERT INTO status_log (entity, ts, status, evidence) VALUES (?, ?, ?, ?)",
                ("link:tesko-mpls", B + 90.0, "down", "centre-ping down (10.99.1.2: timeout)"),
            )
        assert [s.result.rtt_ms for s in store.results.history("gw", B, B + 10)] == [2.0]
    finally:
        store.close()
    assert raw_rows(path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    assert raw_rows(
        path, "SELECT entity, ts, status, gap, evidence FROM status_log ORDER BY rowid"
    ) == [
        *[(*row, None) for row in logged],
        ("link:tesko-mpls", B + 90.0, "down", None, "centre-ping down (10.99.1.2: timeout)"),
    ]


def test_history_of_some_kinds_counts_its_limit_in_those_kinds(store: Store) -> None:
    """A link's chart reads its pings; its interface and path readings must not crowd them out."""
    readings = [result(B + n, kind="interface" if n % 2 else "icmp") for n in range(10)]
    store.results.ingest("a", numbered(1, *readings), received=NOW)
    pings = store.results.history("gw", B, B + 100, limit=3, kinds=("icmp",))
    assert [(s.result.kind, s.result.ts.timestamp()) for s in pings] == [
        ("icmp", B + 0),
        ("icmp", B + 2),
        ("icmp", B + 4),
    ]
    assert len(store.results.history("gw", B, B + 100, kinds=("icmp", "interface"))) == 10
    assert store.results.history("gw", B, B + 100, kinds=()) == []
    assert len(store.results.history("gw", B, B + 100)) == 10  # every kind when none is named


def test_migrating_the_results_leaves_no_large_wal_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "collector.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=WAL")  # as a collector of version 5 left it
        for script in MIGRATIONS[:5]:
            db.executescript(script)
        db.execute("PRAGMA user_version = 5")
        db.executemany(
            "INSERT INTO results VALUES (?, ?, 'gw', 'icmp', ?, 1, 2.0, NULL, ?, NULL, '', ?)",
            [("a", n, B + n, "{}" + " " * 200, NOW) for n in range(5_000)],
        )
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with caplog.at_level("INFO", logger="collector.store"):
        store = Store(path)
    try:
        # the copy of 5,000 rows went through the -wal; nothing of it is left there
        assert Path(f"{path}-wal").stat().st_size == 0
        assert f"{path}: migrating 5000 results to schema 6 (this may take a while)" in caplog.text
        assert f"{path}: migrated to schema 6 in " in caplog.text
        assert len(store.results.history("gw", B, B + 10_000, limit=10_000)) == 5_000
        with store.db.reading() as db:
            indexes = db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'results'"
                " AND sql IS NOT NULL ORDER BY name"
            ).fetchall()
        assert indexes == [("results_by_target",), ("results_by_ts",)]
    finally:
        store.close()


def test_commits_are_fsynced_before_ingest_returns(sqlite_store: Store) -> None:
    with sqlite_store.db.reading() as db:
        assert db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL, not NORMAL (1)


def test_the_database_and_its_wal_are_0640_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "collector.db"
    permissive = os.umask(0o000)
    try:
        store = Store(path)
        try:
            store.results.ingest("a", numbered(1, result(B + 1)), received=NOW)
            modes = {
                p.name: p.stat().st_mode & 0o777
                for p in tmp_path.iterdir()
                if p.name.startswith("collector.db")
            }
        finally:
            store.close()
    finally:
        os.umask(permissive)
    assert modes == {"collector.db": 0o640, "collector.db-wal": 0o640, "collector.db-shm": 0o640}


def test_newest_returns_each_targets_newest_results_per_vantage(store: Store) -> None:
    store.results.ingest(
        "a", numbered(1, *(result(B + n, target="gw") for n in range(10))), received=NOW
    )
    store.results.ingest(
        "a", numbered(11, *(result(B + n, target="sw") for n in range(3))), received=NOW
    )
    store.results.ingest(
        "centre", numbered(1, *(result(B + n, target="gw") for n in range(5))), received=NOW
    )
    found = [
        (s.source, s.result.target, s.result.ts.timestamp()) for s in store.results.newest(B, 2)
    ]
    # after B only: the results at B itself are older than asked
    assert sorted(found) == sorted(
        [
            ("a", "gw", B + 8),
            ("a", "gw", B + 9),
            ("a", "sw", B + 1),
            ("a", "sw", B + 2),
            ("centre", "gw", B + 3),
            ("centre", "gw", B + 4),
        ]
    )
    assert [ts for _, _, ts in found] == sorted(ts for _, _, ts in found)  # oldest first


def test_warm_up_reads_the_newest_evidence_of_a_busy_hour(store: Store) -> None:
    """More than 100,000 results in the last hour: a phone's newest failures still count."""
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    now = B + 3_600.0
    phone = [result(B + 10 + 30 * n, ok=n < 60, target="dm-phone-01") for n in range(110)]
    # ... the phone answered for half an hour, then stopped; meanwhile the other targets of
    # the site filled the hour with results, more than today's limit of 100,000
    busy = [result(B + 5 + n * 0.016, target="dm-prn-01") for n in range(110_000)]
    store.results.ingest("dutywa-main-01", numbered(1, *busy, *phone), received=now)
    collector = Collector(config, store)
    collector.pipeline.warm_up(now=now)
    site = next(view for view in collector.views(now) if view.id == "dutywa-main")
    assert {d.id: d.status for d in site.devices}["dm-phone-01"] == "down"
