"""PostgreSQL's day partitions of `results`: made ahead of need, dropped by retention.

Raw results are partitioned by UTC day (`results_YYYYMMDD`, the range [day start, next day's
start) in Unix seconds), so retention drops a day's table instead of deleting its rows one by
one. The collector's housekeeping makes today's and the next two days' partitions (`prepare`),
hourly; a batch's days that still have none get theirs before it is inserted, for days near
enough to be kept (`near_days`: [now - retention - 1 day, now + 1 day]), unless that would wait
for readers (ingest's lock timeout). Results beyond that, a clock gone wrong, or of a day whose
partition could not be made in time, land in the DEFAULT partition `results_other`, so a wild
timestamp never makes a table.

A day whose partition is made late may have rows in the DEFAULT partition already (they came
before it was near enough): its table is made beside `results`, those rows are moved into it,
and only then attached, in one transaction, so ATTACH never meets rows of its range in the
DEFAULT partition. Two collectors may make the same day at once: each takes the day's advisory
lock first, and the second finds the first one's table attached and does nothing.

Which days exist is kept in memory, read once from the catalogue, so a batch whose days exist
costs no query. A day another collector dropped still in our set only sends its (late) rows to
the DEFAULT partition, where retention deletes them row by row.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from datetime import UTC, datetime

from collector.store.database import Connection, Database, DatabaseUnavailable

log = logging.getLogger(__name__)
DAY = 86_400
# PostgreSQL advisory lock: one transaction at a time, of any collector, makes or drops
# partitions. One lock for every day: two makers of different days would otherwise each hold
# the DEFAULT partition and wait for the other to let go of it (ATTACH locks it whole).
PARTITION_LOCK = 0x5173_0014
DEFAULT_PARTITION = "results_other"
_NAME = re.compile(r"results_(\d{8})")


def day_of(ts: float) -> int:
    """Return the start of the UTC day holding `ts`, in Unix seconds."""
    return int(ts // DAY) * DAY


def partition_name(day: int) -> str:
    """Return the name of the partition of the UTC day starting at `day`."""
    return f"results_{datetime.fromtimestamp(day, UTC):%Y%m%d}"


def near_days(days: Iterable[int], now: float, retention: float) -> set[int]:
    """Return those of `days` that get a partition of their own at `now`.

    The window runs from retention's reach (a day of slack before it) to a day ahead, for
    ingest and for sitewatch migrate alike. Rows of other days, older ones retention deletes
    next or a clock gone wrong, go to the DEFAULT partition, so a wild timestamp never makes a
    table.
    """
    earliest = day_of(now - retention - DAY)
    latest = day_of(now + DAY)
    return {day for day in days if earliest <= day <= latest}


class Partitions:
    """The day partitions of one database, as this process knows them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._days: set[int] | None = None
        self._lock = threading.Lock()

    def known(self) -> set[int]:
        """Return the days that have a partition (read from the catalogue the first time)."""
        if self._days is None:
            with self._lock:
                if self._days is None:
                    with self.db.reading() as conn:
                        self._days = attached_days(conn)
        return self._days

    def forget(self) -> None:
        """Read the catalogue again at next use (after another process changed it)."""
        with self._lock:
            self._days = None

    def ensure(self, days: Iterable[int], *, lock_timeout: float | None = None) -> set[int]:
        """Make the partitions of `days` that do not exist yet, each in its own transaction;
        return the days that have a partition now.

        Before the batch's own transaction, so a batch that fails takes no partition with it
        and the set in memory never names a table that was rolled back. ATTACH locks the
        DEFAULT partition whole, so it waits for every read of results in progress (and every
        read after it waits for it): with a `lock_timeout` (seconds), a day whose locks do not
        come in time is left without a partition, its rows go to the DEFAULT one, and are moved
        into their own when it is made, ahead of need (`prepare`) or by a later batch.
        """
        from psycopg.errors import LockNotAvailable  # noqa: PLC0415 -- PostgreSQL only

        known = self.known()
        for day in sorted(set(days) - known):
            try:
                with self.db.writing() as tx:
                    if lock_timeout is not None:
                        tx.execute(f"SET LOCAL lock_timeout = {int(lock_timeout * 1000)}")
                    create(tx, day)
            except DatabaseUnavailable as err:
                if not isinstance(err.__cause__, LockNotAvailable):
                    raise  # the server is down: the batch fails with it
                log.info(
                    "%s waits for readers of results: its rows go to %s meanwhile",
                    partition_name(day),
                    DEFAULT_PARTITION,
                )
                continue
            known.add(day)
        return known

    def prepare(self, now: float, *, lock_timeout: float | None = None) -> None:
        """Make the partitions of today and the next two days ahead of need.

        From the collector's housekeeping, at start and hourly, so that a batch almost never
        makes one on the ingest path, where it would wait for long reads of results.
        """
        today = day_of(now)
        self.ensure((today, today + DAY, today + 2 * DAY), lock_timeout=lock_timeout)

    def dropped(self, days: Iterable[int]) -> None:
        """Note that the partitions of `days` were dropped (after that transaction committed)."""
        self.known().difference_update(days)


def attached_days(conn: Connection) -> set[int]:
    """Return the days whose partition is attached to `results`."""
    rows = conn.execute(
        "SELECT child.relname FROM pg_inherits "
        "JOIN pg_class AS child ON child.oid = pg_inherits.inhrelid "
        "WHERE pg_inherits.inhparent = 'results'::regclass"
    ).fetchall()
    days: set[int] = set()
    for (name,) in rows:
        if found := _NAME.fullmatch(name):
            when = datetime.strptime(found.group(1), "%Y%m%d").replace(tzinfo=UTC)
            days.add(int(when.timestamp()))
    return days


def lock(tx: Connection) -> None:
    """Take the partitions' advisory lock until the transaction ends; first thing in it, so
    it never waits for the lock while holding a table lock that the lock's holder needs."""
    tx.execute("SELECT pg_advisory_xact_lock(?)", (PARTITION_LOCK,))


def create(tx: Connection, day: int) -> None:
    """Make the day's partition in this transaction, moving its rows out of the DEFAULT one.

    The table is made LIKE results with a CHECK of its range, so ATTACH need not scan it; the
    unique and lookup indexes come with ATTACH (it makes the partitioned indexes' children).
    """
    lock(tx)
    if _attached(tx, day):
        return  # another collector made it while we waited for the lock
    name, end = partition_name(day), day + DAY
    # Names and bounds below are made here from integers, never from input.
    tx.execute(
        f"CREATE TABLE IF NOT EXISTS {name} (LIKE results INCLUDING DEFAULTS, "
        f"CONSTRAINT {name}_range CHECK (ts >= {day} AND ts < {end}))"
    )
    # No result may land in the DEFAULT partition between the move and ATTACH (which would
    # then refuse): ingest waits here for a moment once a day, readers go on.
    tx.execute(f"LOCK TABLE {DEFAULT_PARTITION} IN EXCLUSIVE MODE")
    tx.execute(
        f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE ts >= ? AND ts < ? RETURNING *) "  # noqa: S608 -- see above
        f"INSERT INTO {name} SELECT * FROM moved",
        (day, end),
    )
    tx.execute(f"ALTER TABLE results ATTACH PARTITION {name} FOR VALUES FROM ({day}) TO ({end})")
    tx.execute(f"ALTER TABLE {name} DROP CONSTRAINT IF EXISTS {name}_range")


def _attached(tx: Connection, day: int) -> bool:
    row = tx.execute(
        "SELECT 1 FROM pg_inherits WHERE inhparent = 'results'::regclass "
        "AND inhrelid = to_regclass(?)",
        (partition_name(day),),
    ).fetchone()
    return row is not None


def detach_before(tx: Connection, cutoff: int) -> list[int]:
    """DETACH every day partition wholly before `cutoff`; return their days.

    The caller folds and drops the detached tables in the same transaction. DETACH locks
    results whole, so it waits for the inserts in flight, and those after it commits route
    rows of these days to the DEFAULT partition. The transaction must hold the partitions'
    lock (`lock`), taken before it read results.
    """
    gone = sorted(day for day in attached_days(tx) if day + DAY <= cutoff)
    for day in gone:
        tx.execute(f"ALTER TABLE results DETACH PARTITION {partition_name(day)}")
    return gone
