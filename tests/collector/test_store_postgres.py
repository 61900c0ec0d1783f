"""Raw results on a real PostgreSQL server: day partitions, COPY ingest, retention by the day.

What holds on both backends is proven in test_store.py (its `store` runs on each); these are
the partitions only PostgreSQL has, and its rollups compared with SQLite's for the same rows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from collector.store import DatabaseSpec, Store
from collector.store import partitions as store_partitions
from collector.store.agents import last_heard
from collector.store.partitions import DAY, DEFAULT_PARTITION, day_of, partition_name
from probes.result import ProbeResult
from tests.conftest import opened

D = 1_799_971_200  # the start of a UTC day (2027-01-15): D % 86_400 == 0
NOW = D + DAY + 3_600.0  # when the collector received everything: an hour into the next day
DEADLINE = 60.0  # seconds a thread of the concurrency test may take before it is a failure


def result(ts: float, rtt_ms: float | None = None, *, ok: bool = True) -> ProbeResult:
    return ProbeResult("gw", "icmp", datetime.fromtimestamp(ts, UTC), ok, rtt_ms=rtt_ms)


def numbered(first: int, results: list[ProbeResult]) -> list[tuple[int, ProbeResult]]:
    return list(enumerate(results, start=first))


def rows(store: Store, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with store.db.reading() as conn:
        return [tuple(row) for row in conn.execute(sql, args).fetchall()]


def partitions(store: Store) -> dict[str, int]:
    """Return each partition of results and how many rows it holds."""
    names = rows(
        store,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'results'::regclass ORDER BY c.relname",
    )
    return {name: rows(store, f"SELECT count(*) FROM {name}")[0][0] for (name,) in names}  # noqa: S608 -- catalogue names


@pytest.fixture
def pg_store(migrated_postgres_url: str) -> Iterator[Store]:
    yield from opened(DatabaseSpec(url=migrated_postgres_url))


def test_a_batch_spanning_two_days_lands_in_two_partitions(pg_store: Store) -> None:
    batch = numbered(
        1, [result(D + DAY - 2), result(D + DAY - 1), result(D + DAY), result(D + DAY + 5)]
    )
    outcome = pg_store.results.ingest("a", batch, received=NOW)
    assert (outcome.stored, outcome.duplicates) == (4, 0)
    assert partitions(pg_store) == {
        partition_name(D): 2,
        partition_name(D + DAY): 2,
        DEFAULT_PARTITION: 0,
    }
    assert partition_name(D) == "results_20270115"
    assert [s.seq for s in pg_store.results.history("gw", D, D + 2 * DAY)] == [1, 2, 3, 4]


def test_a_resent_batch_is_counted_as_duplicates_and_changes_nothing(pg_store: Store) -> None:
    batch = numbered(1, [result(D + 10, 1.0), result(D + DAY + 10, 2.0)])
    assert pg_store.results.ingest("a", batch, received=NOW).stored == 2
    before = rows(pg_store, "SELECT * FROM results ORDER BY seq")
    again = pg_store.results.ingest("a", batch, received=NOW + 60)
    assert (again.stored, again.duplicates) == (0, 2)
    assert rows(pg_store, "SELECT * FROM results ORDER BY seq") == before  # not even received
    repeated = pg_store.results.ingest(
        "a", [(3, result(D + 20)), (3, result(D + 21))], received=NOW
    )
    assert (repeated.stored, repeated.duplicates) == (1, 1)  # a seq repeated within one batch
    assert pg_store.results.sequences("a") == [1, 2, 3]
    assert last_heard(pg_store.db)["a"][0] == NOW  # the agent's contact, in the batch's transaction


def test_times_far_off_go_to_the_default_partition(pg_store: Store) -> None:
    """A clock gone wrong must not make a table per wild timestamp."""
    far = [result(D - 400 * DAY), result(NOW + 3 * DAY), result(D + 5)]
    assert pg_store.results.ingest("a", numbered(1, far), received=NOW).stored == 3
    assert partitions(pg_store) == {partition_name(D): 1, DEFAULT_PARTITION: 2}
    assert len(pg_store.results.history("gw", 0, NOW + 10 * DAY)) == 3


def test_rows_in_the_default_partition_move_into_their_day_when_it_is_made(
    pg_store: Store,
) -> None:
    early = numbered(1, [result(D + 100, 1.0), result(D + 200, 2.0), result(D + DAY + 1, 3.0)])
    # received long before: the results' days were too far ahead to get a partition then
    assert pg_store.results.ingest("a", early, received=D - 10 * DAY).stored == 3
    assert partitions(pg_store) == {DEFAULT_PARTITION: 3}
    later = pg_store.results.ingest("a", numbered(4, [result(D + 300, 4.0)]), received=NOW)
    assert later.stored == 1
    assert partitions(pg_store) == {
        partition_name(D): 3,  # its two old rows moved in beside the new one
        DEFAULT_PARTITION: 1,  # the next day's row waits for a batch of that day
    }
    found = pg_store.results.history("gw", D, D + DAY)
    assert [(s.seq, s.result.rtt_ms) for s in found] == [(1, 1.0), (2, 2.0), (4, 4.0)]
    # the moved rows still count as stored
    resent = pg_store.results.ingest("a", early, received=NOW)
    assert (resent.stored, resent.duplicates) == (0, 3)


def test_a_new_store_knows_the_partitions_that_exist(migrated_postgres_url: str) -> None:
    first = Store(migrated_postgres_url)
    try:
        first.results.ingest("a", numbered(1, [result(D + 1)]), received=NOW)
    finally:
        first.close()
    second = Store(migrated_postgres_url)
    try:
        assert second.results.partitions.known() == {D}
        assert second.results.ingest("a", numbered(2, [result(D + 2)]), received=NOW).stored == 1
        assert partitions(second) == {partition_name(D): 2, DEFAULT_PARTITION: 0}
    finally:
        second.close()


def mixed_day(first_seq: int, day: int) -> list[tuple[int, ProbeResult]]:
    """A day of results with failures, missing round trips and a bucket on the boundary."""
    results = [
        result(day + 1, 10.0),
        result(day + 60, 30.0),
        result(day + 120, None, ok=False),
        result(day + 299.5, 20.0),
        result(day + 300, None, ok=False),
        result(day + 43_210.25, 7.5),
        result(day + DAY - 0.001, 9.0),
    ]
    return numbered(first_seq, results)


def sorted_rollups(store: Store) -> list[dict[str, Any]]:
    found = store.results.rollups("gw", 0, NOW)
    return sorted(found, key=lambda r: (r["bucket"], r["source"], r["kind"]))


def test_roll_up_drops_the_old_days_partition_and_rolls_up_as_sqlite_does(
    pg_store: Store, tmp_path: Path
) -> None:
    sqlite_store = Store(tmp_path / "collector.db")
    try:
        for store in (pg_store, sqlite_store):
            store.results.ingest("a", mixed_day(1, D), received=NOW)
            store.results.ingest("a", mixed_day(100, D + DAY), received=NOW)
            store.results.ingest("centre", numbered(1, [result(D + 5, 4.0)]), received=NOW)
            # far off
            store.results.ingest("b", numbered(1, [result(D - 500 * DAY, 1.0)]), received=NOW)
        # PostgreSQL rounds the cutoff down to D + DAY: the whole day D, and no more
        assert pg_store.results.roll_up(D + DAY + 7_200) == 7 + 1 + 1
        assert sqlite_store.results.roll_up(D + DAY) == 9
        assert partitions(pg_store) == {partition_name(D + DAY): 7, DEFAULT_PARTITION: 0}
        # a late result for the rolled-up day, as an agent's backlog: merged on the next pass
        for store in (pg_store, sqlite_store):
            late = [result(D + 30, 60.0), result(D + 250), result(D + 310, None, ok=False)]
            store.results.ingest("a", numbered(50, late), received=NOW)
        assert partitions(pg_store)[DEFAULT_PARTITION] == 0
        assert pg_store.results.roll_up(D + DAY) == 3
        assert sqlite_store.results.roll_up(D + DAY) == 3
        rolled_up = sorted_rollups(pg_store)
        assert rolled_up == sorted_rollups(sqlite_store)
        assert len(rolled_up) == 6  # a's 4 buckets of day D, the centre's, b's far-off one
        assert rolled_up[1]["count"] == 6  # a's first bucket, with the late results
        newer = [(s.seq, s.result) for s in pg_store.results.history("gw", D + DAY, D + 2 * DAY)]
        assert newer == [
            (s.seq, s.result) for s in sqlite_store.results.history("gw", D + DAY, D + 2 * DAY)
        ]
        assert [seq for seq, _ in newer] == list(range(100, 107))
    finally:
        sqlite_store.close()


def test_two_collectors_making_the_same_day_at_once_both_succeed(postgres_url: str) -> None:
    """Two Stores (two pools, like two collectors) meet the same new days from threads.

    Each day has a row waiting in the DEFAULT partition, and the senders take the days in
    opposite orders, so makers of different days meet there too.
    """
    stores = [Store(postgres_url), Store(postgres_url)]
    early = numbered(1, [result(D + day * DAY + 50) for day in range(3)])
    assert stores[0].results.ingest("early", early, received=D - 100 * DAY).stored == 3
    senders = [(store, f"agent-{n}-{m}") for n, store in enumerate(stores) for m in range(2)]
    start = threading.Barrier(len(senders))

    def ingest(store: Store, source: str) -> list[int]:
        start.wait(timeout=DEADLINE)  # all at once, so they meet each day's partition together
        days = range(3) if source.endswith("0") else range(2, -1, -1)
        return [
            store.results.ingest(
                source, numbered(1 + 10 * day, day_of_results(day)), received=NOW
            ).stored
            for day in days
        ]

    try:
        with ThreadPoolExecutor(len(senders)) as pool:
            running = [pool.submit(ingest, store, source) for store, source in senders]
            stored = [future.result(timeout=DEADLINE) for future in running]  # raises theirs
        assert stored == [[10, 10, 10]] * len(senders)
        assert partitions(stores[0]) == {
            partition_name(D): 41,
            partition_name(D + DAY): 41,
            partition_name(D + 2 * DAY): 41,
            DEFAULT_PARTITION: 0,
        }
    finally:
        for store in stores:
            store.close()


def day_of_results(day: int) -> list[ProbeResult]:
    return [result(D + day * DAY + n) for n in range(10)]


def test_day_of_is_the_utc_day(pg_store: Store) -> None:
    assert day_of(D) == D
    assert day_of(D + DAY - 0.5) == D
    assert day_of(D - 0.5) == D - DAY
    assert pg_store.dialect == "postgresql"


def waiting_for_a_lock(store: Store) -> bool:
    """Return whether some other session of the database waits for a lock."""
    return bool(rows(store, "SELECT count(*) FROM pg_locks WHERE NOT granted")[0][0])


@pytest.mark.parametrize("moment", ["before-detach", "while-detaching"])
def test_a_batch_committed_while_roll_up_runs_is_rolled_up_or_kept_raw(
    pg_store: Store, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    """An agent's backlog for a day retention drops lands from another connection meanwhile.

    Retention's fold, drop and delete used to be separate statements: a batch committed
    between them was dropped with its day and never counted. Now every result ingested is
    either still raw or counted in the rollups.
    """
    pg_store.results.ingest("a", numbered(1, [result(D + 100, 1.0)]), received=NOW)
    assert D in pg_store.results.partitions.known()
    real = store_partitions.detach_before
    late = ThreadPoolExecutor(1)

    def late_batch_meanwhile(tx: Any, cutoff: int) -> list[int]:
        if moment == "before-detach":
            sent = late.submit(
                pg_store.results.ingest, "a", numbered(2, [result(D + 400, 2.0)]), received=NOW
            )
            assert sent.result(timeout=DEADLINE).stored == 1
            return real(tx, cutoff)
        gone = real(tx, cutoff)
        late.submit(pg_store.results.ingest, "a", numbered(2, [result(D + 400, 2.0)]), received=NOW)
        deadline = time.monotonic() + DEADLINE
        while not waiting_for_a_lock(pg_store):  # the batch waits for this transaction
            assert time.monotonic() < deadline, "the late batch never met the detach"
            time.sleep(0.01)
        return gone

    monkeypatch.setattr(store_partitions, "detach_before", late_batch_meanwhile)
    with late:
        folded = pg_store.results.roll_up(D + DAY)
    monkeypatch.undo()
    rolled = sum(r["count"] for r in pg_store.results.rollups("gw", D, D + DAY))
    raw = len(pg_store.results.history("gw", D, D + DAY))
    assert (folded, rolled, raw) == ((2, 2, 0) if moment == "before-detach" else (1, 1, 1))
    assert partition_name(D) not in partitions(pg_store)
    # the late row, in the DEFAULT partition, next time
    assert pg_store.results.roll_up(D + DAY) == raw
    assert sum(r["count"] for r in pg_store.results.rollups("gw", D, D + DAY)) == 2


def test_retention_forgets_the_keys_of_the_results_it_removes(pg_store: Store) -> None:
    pg_store.results.ingest("a", numbered(1, [result(D + 10), result(D + DAY + 10)]), received=NOW)
    # the DEFAULT partition
    pg_store.results.ingest("b", numbered(1, [result(D - 500 * DAY)]), received=NOW)
    assert pg_store.results.roll_up(D + DAY) == 2
    assert rows(pg_store, "SELECT source, seq, ts FROM result_keys") == [("a", 2, D + DAY + 10)]
    resent = pg_store.results.ingest("a", numbered(2, [result(D + DAY + 10)]), received=NOW)
    assert (resent.stored, resent.duplicates) == (0, 1)  # the kept day's key still holds


def test_a_batch_needing_a_new_day_is_stored_while_a_long_read_is_open(
    pg_store: Store, migrated_postgres_url: str
) -> None:
    """Making a day's partition (ATTACH) waits for every read of results in progress; a batch
    must not wait behind a month's report: its new day's rows go to the DEFAULT partition."""
    pg_store.results.ingest("a", numbered(1, [result(D + 10)]), received=NOW)
    with psycopg.connect(migrated_postgres_url) as reader, ThreadPoolExecutor(1) as sender:
        assert reader.execute("SELECT count(*) FROM results").fetchone() == (1,)  # stays open
        tomorrow = numbered(2, [result(D + DAY + 10)])
        sent = sender.submit(pg_store.results.ingest, "a", tomorrow, received=NOW)
        assert sent.result(timeout=DEADLINE).stored == 1
        assert reader.info.transaction_status == TransactionStatus.INTRANS  # the read is open
        assert [s.seq for s in pg_store.results.history("gw", D, D + 2 * DAY)] == [1, 2]
        assert partitions(pg_store) == {partition_name(D): 1, DEFAULT_PARTITION: 1}
    pg_store.results.prepare_days(D + DAY + 5)  # the housekeeping, with no read in the way
    assert partitions(pg_store) == {
        partition_name(D): 1,
        partition_name(D + DAY): 1,  # the row moved in from the DEFAULT partition
        partition_name(D + 2 * DAY): 0,
        partition_name(D + 3 * DAY): 0,
        DEFAULT_PARTITION: 0,
    }
