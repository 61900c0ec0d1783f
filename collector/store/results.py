"""Probe results, their 5-minute rollups, and the centre's sequence numbers.

Ingest is idempotent by (source, outbox, seq): an agent that retries a batch the collector
already stored changes nothing, and one reinstalled with a new outbox, numbering from 1 again,
is stored. Results are kept raw for `retention` and rolled up per target per 5 minutes beyond
it, so a year of history stays small.

PostgreSQL: raw results are partitioned by UTC day (collector.store.partitions), and a batch is
loaded with COPY (`Results.ingest`). A partitioned table's unique key must hold the partition key
(ts), which would take a result resent with another time (an outbox renumbered) for a new one:
the key (source, outbox, seq) is the table `result_keys` instead, not partitioned, written in
the batch's transaction and pruned by retention in the one that drops the results.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson

from collector.store import agents, partitions
from collector.store.arrivals import Arrival, announce
from collector.store.database import Connection, Database
from probes.result import ERROR_KINDS, MAX_RTT_MS, JsonValue, ProbeResult

log = logging.getLogger(__name__)
CENTRE = "centre"  # the source name of the collector's own probes
ROLLUP_SECONDS = 300
DEFAULT_RETENTION = 30 * 86_400.0
# Seconds PostgreSQL waits for the locks to make a day's partition (they wait for every read
# of results in progress, and reads after wait for them) before it gives up: ingest sends the
# day's rows to the DEFAULT partition, and the housekeeping tries again in an hour.
PARTITION_WAIT = 0.2
# Containers within containers a stored value may hold: a probe's go 3 deep (a printer's
# supplies, a host's disks); readers that recurse (cleaning, encoding) stay far from the limit.
MAX_VALUE_DEPTH = 32

INSERT_RESULT = "INSERT INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
# The columns in the order `_stored` reads them.
RESULT_COLUMNS = (
    "source, seq, target, kind, ts, ok, rtt_ms, loss, value, error_kind, detail, received, outbox"
)
# PostgreSQL's ingest of a batch that holds a result stored already: COPYed into this
# temporary table, one per connection and kept (its rows go at each commit), then its keys
# inserted into result_keys skipping those stored, and the rows of the keys inserted into
# results, in one statement. Reusing the table beats making one per batch (ON COMMIT DROP),
# whose catalogue churn costs more (bench/ingest_bench.py's docstring).
INCOMING = "incoming_results"
CREATE_INCOMING = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {INCOMING} (LIKE results) ON COMMIT DELETE ROWS"
)
KEY_COLUMNS = ("source", "outbox", "seq", "ts")
INSERT_INCOMING = f"""
    WITH fresh AS (
        INSERT INTO result_keys (source, outbox, seq, ts)
        SELECT source, outbox, seq, ts FROM {INCOMING}
        ON CONFLICT DO NOTHING RETURNING source, outbox, seq
    )
    INSERT INTO results SELECT incoming.* FROM {INCOMING} AS incoming
    JOIN fresh ON (fresh.source, fresh.outbox, fresh.seq)
                = (incoming.source, incoming.outbox, incoming.seq)
    """  # noqa: S608 -- fixed names
# The outbox identity of every result stored before outboxes had one, of agents too old to
# send one, and of the centre's own probes: their sequences are unique per source already.
LEGACY_OUTBOX = "legacy"  # migration 6 spells it out, as a migration must never change


@dataclass(frozen=True, slots=True)
class Stored:
    """One result with where it came from, as read back."""

    source: str
    seq: int
    result: ProbeResult
    outbox: str = LEGACY_OUTBOX  # which of the source's outboxes numbered it: seq is unique in it


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    stored: int
    duplicates: int


class Results:
    """The results, rollups and sequences tables: the only module that writes them."""

    def __init__(self, db: Database, retention: float = DEFAULT_RETENTION) -> None:
        """`retention` bounds the days that get a partition of their own (PostgreSQL)."""
        self.db = db
        self.retention = retention
        self.partitions = partitions.Partitions(db)

    def ingest(
        self,
        source: str,
        items: Sequence[tuple[int, ProbeResult]],
        *,
        received: float,
        heartbeat: dict[str, Any] | None = None,
        outbox: str = LEGACY_OUTBOX,
        origin: str | None = None,
        clock: float | None = None,
    ) -> IngestOutcome:
        """Store a batch in one transaction; rows already stored are counted, not changed.

        A row is the same when its source, the outbox that numbered it and its seq are. The
        agent's last contact (and heartbeat, if the batch has one) is noted in the same
        transaction, so the two never disagree. `origin`: the collector storing it, which
        announces it to the others on PostgreSQL (collector.store.arrivals) with `clock`, the
        agent's clock when it sent the batch.
        """
        rows = [result_row(source, seq, result, received, outbox) for seq, result in items]
        if self.db.dialect == "postgresql":
            arrival = None
            if origin is not None:
                seqs = [seq for seq, _ in items]
                arrival = arrival_of(
                    origin, source, outbox, seqs, rows, received=received, clock=clock
                )
            unique = first_of_each_seq(rows)
            stored = self._ingest_postgres(unique, received, source, heartbeat, arrival)
            return IngestOutcome(stored, len(rows) - stored)
        with self.db.writing() as tx:
            stored = tx.executemany(INSERT_RESULT, rows)
            agents.heard(tx, source, received, heartbeat)
        return IngestOutcome(stored, len(rows) - stored)

    def _ingest_postgres(
        self,
        rows: list[tuple[Any, ...]],
        received: float,
        source: str,
        heartbeat: dict[str, Any] | None,
        arrival: Arrival | None,
    ) -> int:
        """Insert a batch with COPY, announced as `arrival` if given; return the rows stored.

        The days the batch needs get their partitions first, in transactions of their own,
        unless that would wait for long reads of results (PARTITION_WAIT): then that day's rows
        go to the DEFAULT partition, as if it were far off. Most batches are new: COPYed
        straight in (`copy_results`). One that meets a stored key (an agent resending after a
        lost reply) is rolled back whole and stored again the long way (`copy_missing`). A
        savepoint around the straight COPY did the same in one transaction, for two more round
        trips on every batch.
        """
        from psycopg.errors import UniqueViolation  # noqa: PLC0415 -- PostgreSQL only

        days = {partitions.day_of(row[4]) for row in rows}
        self.partitions.ensure(
            partitions.near_days(days, received, self.retention), lock_timeout=PARTITION_WAIT
        )
        try:
            with self.db.writing() as tx:
                copy_results(tx, RESULT_COLUMNS.split(", "), rows)
                agents.heard(tx, source, received, heartbeat)
                if arrival is not None:
                    announce(tx, arrival)
        except UniqueViolation:
            pass  # rolled back: nothing of the batch is stored yet
        else:
            return len(rows)
        with self.db.writing() as tx:
            stored = copy_missing(tx, rows)
            agents.heard(tx, source, received, heartbeat)
            if arrival is not None:
                announce(tx, arrival)
        return stored

    def prepare_days(self, now: float) -> None:
        """Make PostgreSQL's partitions of today and the next two days, if they are missing.

        For the collector's housekeeping, at start and hourly: the ingest path then seldom
        makes one (`partitions.Partitions.prepare`). Nothing to do on SQLite.
        """
        if self.db.dialect == "postgresql":
            self.partitions.prepare(now, lock_timeout=PARTITION_WAIT)

    def next_sequence(self, source: str, count: int) -> int:
        """Reserve `count` sequence numbers for a source (the centre's probes); return the first."""
        with self.db.writing() as tx:
            row = tx.execute(
                "INSERT INTO sequences VALUES (?, ?) ON CONFLICT (source) DO UPDATE "
                "SET next = sequences.next + ? RETURNING next",
                (source, 1 + count, count),
            ).fetchone()
        return int(row[0]) - count

    def history(
        self,
        target: str,
        start: float,
        end: float,
        limit: int = 10_000,
        *,
        kinds: Sequence[str] | None = None,
    ) -> list[Stored]:
        """Return one target's raw results in [start, end), oldest first; only `kinds` if given.

        A link has results of several kinds (its pings, its router's interface, the path
        probe): a chart of round trips asks for its pings only, and the limit counts those.
        """
        if kinds is not None and not kinds:
            return []  # PostgreSQL refuses an empty `IN ()`; no kind named, nothing wanted
        wanted = "" if kinds is None else f" AND kind IN ({', '.join('?' * len(kinds))})"
        with self.db.reading() as conn:
            rows = conn.execute(
                f"SELECT {RESULT_COLUMNS} FROM results "  # noqa: S608 -- fixed columns, ? marks
                f"WHERE target = ? AND ts >= ? AND ts < ?{wanted} "
                "ORDER BY ts, source, outbox, seq LIMIT ?",
                (target, start, end, *(kinds or ()), limit),
            ).fetchall()
        return [_stored(row) for row in rows]

    def rollups(self, target: str, start: float, end: float) -> list[dict[str, Any]]:
        """Return one target's 5-minute rollups in [start, end), oldest first."""
        with self.db.reading() as conn:
            rows = conn.execute(
                "SELECT kind, source, bucket, count, failures, rtt_min, rtt_avg, rtt_max "
                "FROM rollups WHERE target = ? AND bucket >= ? AND bucket < ? ORDER BY bucket",
                (target, start - ROLLUP_SECONDS, end),
            ).fetchall()
        keys = ("kind", "source", "bucket", "count", "failures", "rtt_min", "rtt_avg", "rtt_max")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def newest(self, after: float, per_target: int) -> list[Stored]:
        """Return the state's start-up evidence: each target's newest results, oldest first.

        At most `per_target` results probed after `after` for each target, kind and vantage
        point (the centre or an agent), the newest of them: enough to replay the hysteresis
        (`fail_after`, `recover_after`) so a restarted collector reads what it read before,
        however many results the last hour holds.
        """
        with self.db.reading() as conn:
            rows = conn.execute(
                f"""
                SELECT {RESULT_COLUMNS} FROM (
                    SELECT *, row_number() OVER (
                        PARTITION BY target, kind, source = ? ORDER BY ts DESC
                    ) AS newest
                    FROM results WHERE ts > ?
                ) AS recent WHERE newest <= ? ORDER BY ts
                """,  # noqa: S608 -- a fixed column list
                (CENTRE, after, per_target),
            ).fetchall()
        return [_stored(row) for row in rows]

    def arrived(self, arrival: Arrival) -> list[Stored]:
        """Return the results of an announced batch, oldest first (collector.arrivals)."""
        if arrival.first > arrival.last:
            return []
        with self.db.reading() as conn:
            rows = conn.execute(
                f"SELECT {RESULT_COLUMNS} FROM results WHERE ts >= ? AND ts <= ? "  # noqa: S608 -- fixed columns
                "AND source = ? AND outbox = ? AND seq >= ? AND seq <= ? ORDER BY ts",
                (arrival.start, arrival.end, arrival.source, arrival.outbox, arrival.first,
                 arrival.last),
            ).fetchall()  # fmt: skip
        return [_stored(row) for row in rows]

    def sequences(self, source: str) -> list[int]:
        """Return the sequence number of each stored result of a source, in order.

        One number per result: a number repeats once for every outbox of the source that used
        it (a reinstalled agent numbers from 1 again), so [1, 1, 2, 2] is two outboxes of two
        results each. For tests and audits, which count results, not distinct numbers.
        """
        with self.db.reading() as conn:
            rows = conn.execute(
                "SELECT seq FROM results WHERE source = ? ORDER BY seq", (source,)
            ).fetchall()
        return [row[0] for row in rows]

    def roll_up(self, older_than: float) -> int:
        """Fold raw results older than `older_than` into 5-minute rollups and delete them.

        Whole buckets only, so a bucket is never rolled up twice; returns the rows folded.
        PostgreSQL folds whole days only (the cutoff is rounded down to a UTC day's start), so
        that each day's partition is dropped whole instead of deleted row by row: raw results
        are kept there up to a day longer than `older_than` asks (`_roll_up_postgres`).
        """
        if self.db.dialect == "postgresql":
            folded, gone = _roll_up_postgres(self.db, partitions.day_of(older_than))
            self.partitions.dropped(gone)
            return folded
        cutoff = older_than - older_than % ROLLUP_SECONDS
        with self.db.writing() as tx:
            tx.execute(
                _fold("results WHERE ts < ?", "sqlite"), (ROLLUP_SECONDS, ROLLUP_SECONDS, cutoff)
            )
            return int(tx.execute("DELETE FROM results WHERE ts < ?", (cutoff,)).rowcount)


def _fold(rows: str, dialect: str) -> str:
    """Return the statement that folds `rows` into rollups.

    SQLite's `rows` is a table and its WHERE, after ROLLUP_SECONDS twice in the parameters;
    PostgreSQL's is a query, before them, and the statement returns how many rows it folded.

    A rollup already there (late results of a bucket rolled up before) is merged with the new
    one, its average weighed by how many results had a round trip.
    """
    postgres = dialect == "postgresql"
    least, greatest = ("least", "greatest") if postgres else ("min", "max")
    bucket = "floor(ts / ?)::bigint * ?" if postgres else "CAST(ts / ? AS INTEGER) * ?"
    insert = f"""
        INSERT INTO rollups (target, kind, source, bucket, count, failures,
                             rtt_min, rtt_avg, rtt_max, rtt_count)
        SELECT target, kind, source, {bucket} AS bucket,
               count(*), sum(1 - ok), min(rtt_ms), avg(rtt_ms), max(rtt_ms), count(rtt_ms)
        FROM {"gone" if postgres else rows}
        GROUP BY target, kind, source, bucket
        ON CONFLICT (target, kind, source, bucket) DO UPDATE SET
            rtt_min = {least}(coalesce(rollups.rtt_min, excluded.rtt_min),
                              coalesce(excluded.rtt_min, rollups.rtt_min)),
            rtt_max = {greatest}(coalesce(rollups.rtt_max, excluded.rtt_max),
                                 coalesce(excluded.rtt_max, rollups.rtt_max)),
            rtt_avg = CASE WHEN rollups.rtt_count + excluded.rtt_count > 0 THEN
                      (coalesce(rollups.rtt_avg, 0) * rollups.rtt_count
                       + coalesce(excluded.rtt_avg, 0) * excluded.rtt_count)
                      / (rollups.rtt_count + excluded.rtt_count) END,
            rtt_count = rollups.rtt_count + excluded.rtt_count,
            count = rollups.count + excluded.count,
            failures = rollups.failures + excluded.failures
        """  # noqa: S608 -- names and function names from this module, values as ? marks
    if not postgres:
        return insert
    # Data-modifying WITH queries run once, to completion, whatever the main query reads.
    return f"WITH gone AS ({rows}), folded AS ({insert} RETURNING 1) SELECT count(*) FROM gone"  # noqa: S608 -- as above


def _roll_up_postgres(db: Database, cutoff: int) -> tuple[int, list[int]]:
    """Fold and remove PostgreSQL's results before `cutoff`; return the rows folded and the
    days whose partitions were dropped.

    One transaction, in this order, so that a result is either folded or kept raw, never lost:
    the old days' partitions are DETACHed first, which waits for every insert into results in
    flight (it locks results whole) and sends later ones for those days to the DEFAULT
    partition; then each detached table is folded and dropped, nobody else can write it now;
    then the DEFAULT partition's old rows are deleted and folded by one statement, so the rows
    folded are exactly the rows deleted, whatever commits meanwhile. Their keys go in the same
    transaction (`_forget_keys`).
    """
    folded = 0
    with db.writing() as tx:
        partitions.lock(tx)  # before reading results: see partitions.lock
        gone = partitions.detach_before(tx, cutoff)
        _forget_keys(tx, cutoff, gone)
        for day in gone:
            name = partitions.partition_name(day)
            (count,) = tx.execute(
                _fold(f"SELECT * FROM {name}", "postgresql"),  # noqa: S608 -- a made name
                (ROLLUP_SECONDS, ROLLUP_SECONDS),
            ).fetchone()
            folded += int(count)
            tx.execute(f"DROP TABLE {name}")
        (count,) = tx.execute(
            _fold(
                f"DELETE FROM {partitions.DEFAULT_PARTITION} WHERE ts < ? RETURNING *",  # noqa: S608 -- a fixed name
                "postgresql",
            ),
            (cutoff, ROLLUP_SECONDS, ROLLUP_SECONDS),
        ).fetchone()
        folded += int(count)
    return folded, gone


def _forget_keys(tx: Connection, cutoff: int, gone: list[int]) -> None:
    """Delete the keys of results before `cutoff`, as their rows go (a scan of result_keys).

    Before the DEFAULT partition's rows are deleted: a batch committed in between has its rows
    folded and keeps its keys, so a resend of it is still a duplicate; the other way round it
    would keep its rows and lose its keys. Only when rows go: once a day, or for old rows in the
    DEFAULT partition (found by its index on ts).
    """
    if not gone:
        (old,) = tx.execute(
            f"SELECT EXISTS (SELECT 1 FROM {partitions.DEFAULT_PARTITION} WHERE ts < ?)",  # noqa: S608 -- a fixed name
            (cutoff,),
        ).fetchone()
        if not old:
            return
    tx.execute("DELETE FROM result_keys WHERE ts < ?", (cutoff,))


def copy_missing(tx: Connection, rows: list[tuple[Any, ...]]) -> int:
    """Store those of a batch's rows not stored already, in PostgreSQL; return how many.

    COPY into the temporary table, then INSERT_INCOMING, whose row count is what was stored.
    The straight COPY took a quarter less time than this, and executemany of the INSERT in
    pipeline mode more than both (numbers in bench/ingest_bench.py's docstring), so this is
    only for a batch the straight COPY refused. The batch must not repeat a seq
    (`first_of_each_seq`).
    """
    tx.execute(CREATE_INCOMING)
    tx.copy_rows(INCOMING, RESULT_COLUMNS.split(", "), rows)
    return max(tx.execute(INSERT_INCOMING).rowcount, 0)


def copy_results(tx: Connection, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """COPY new results into PostgreSQL's results and their keys into result_keys.

    Raises psycopg's UniqueViolation for a key stored already (or repeated in `rows`). For
    every writer of PostgreSQL's results (ingest, `sitewatch migrate`'s copy): a result stored
    without its key would be stored again when resent.
    """
    where = [columns.index(column) for column in KEY_COLUMNS]
    tx.copy_rows("result_keys", KEY_COLUMNS, ([row[at] for at in where] for row in rows))
    tx.copy_rows("results", columns, rows)


def arrival_of(
    origin: str,
    source: str,
    outbox: str,
    seqs: Sequence[int],
    rows: Sequence[Sequence[Any]],
    *,
    received: float,
    clock: float | None,
) -> Arrival:
    """Return the announcement of a batch of `rows` (as result_row makes them)."""
    times = [float(row[4]) for row in rows]
    return Arrival(
        origin,
        source,
        outbox,
        min(seqs, default=1),
        max(seqs, default=0),
        min(times, default=received),
        max(times, default=received),
        received,
        clock,
    )


def first_of_each_seq(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Return a batch's rows without a seq it repeats, the first of each kept (as SQLite does).

    One batch has one source and outbox. PostgreSQL's straight COPY would fail on the repeat
    and take the long way (`copy_missing`) for nothing.
    """
    seen: set[int] = set()
    unique = []
    for row in rows:
        if row[1] not in seen:
            seen.add(row[1])
            unique.append(row)
    return unique


def result_row(
    source: str, seq: int, result: ProbeResult, received: float, outbox: str = LEGACY_OUTBOX
) -> tuple[Any, ...]:
    """Return the `results` row of one result, as ingest writes it."""
    return (
        source,
        seq,
        result.target,
        result.kind,
        result.ts.timestamp(),
        int(result.ok),
        result.rtt_ms,
        result.loss,
        value_text(result.value),
        result.error_kind,
        result.detail,
        received,
        outbox,
    )


_ENCODE_VALUE = json.JSONEncoder(separators=(",", ":")).encode
PASS_TO_JSON = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def value_text(value: Mapping[str, Any]) -> str:
    """Return a result's value as the JSON text its row holds.

    orjson writes the common value (ASCII, 64-bit integers, floats) in a tenth of the json
    module's time, a good part of ingest's own work per result. What it would write otherwise
    than json is left to json, as every value was written before: a key that is not text, an
    integer of more than 64 bits, non-ASCII text (json escapes it, so the column stays ASCII on
    every database), and what json refuses (a dataclass, a datetime, a subclass of str or int:
    passed through by orjson, so json raises as it did). orjson alone writes a UUID or an Enum,
    which no value holds: values are typed JsonValue. The wire never lets NaN or infinity in;
    orjson writes them as null where json wrote NaN, and both read back as missing.
    """
    try:
        text = orjson.dumps(value, option=PASS_TO_JSON)
    except TypeError:  # orjson.JSONEncodeError is one
        return _ENCODE_VALUE(value)
    return text.decode() if text.isascii() else _ENCODE_VALUE(value)


def _stored(row: Iterable[Any]) -> Stored:
    """Return a row read back, whatever an older version let into it.

    Rows are not put through the wire's gate again: a reader must show what it can, and a value
    that cannot be sent or drawn (NaN, a lone surrogate, a reading out of range, a time beyond
    what datetime holds) is shown as missing instead of failing the page or endpoint.
    """
    source, seq, target, kind, ts, ok, rtt_ms, loss, value, error_kind, detail, _, outbox = row
    result = ProbeResult(
        _clean_text(target),
        _clean_text(kind),
        stored_time(ts),
        bool(ok),
        rtt_ms=stored_reading(rtt_ms, MAX_RTT_MS),
        loss=stored_reading(loss, 1.0),
        value=stored_value(value),
        error_kind=error_kind if error_kind in ERROR_KINDS else None,
        detail=_clean_text(detail),
    )
    return Stored(source, seq, result, outbox)


def stored_time(ts: object) -> datetime:
    """Return a stored probe time in UTC; one beyond datetime's years is pinned to its end."""
    if isinstance(ts, int | float):
        try:
            return datetime.fromtimestamp(ts, UTC)
        except (OverflowError, ValueError, OSError):
            pass
        if ts < 0:
            return datetime.min.replace(tzinfo=UTC)
    return datetime.max.replace(tzinfo=UTC)


def stored_reading(number: object, upper: float) -> float | None:
    """Return a stored rtt or loss, or None for one no reader can show (NaN, inf, negative)."""
    if isinstance(number, bool) or not isinstance(number, int | float):
        return None
    reading = float(number)  # SQLite's REAL and INTEGER both fit a float
    return reading if math.isfinite(reading) and 0 <= reading <= upper else None


def stored_value(text: object) -> dict[str, JsonValue]:
    """Return a stored value: NaN and Infinity as null, lone surrogates replaced, else {}.

    A value nested deeper than MAX_VALUE_DEPTH is no probe's and shows as missing ({}): older
    collectors stored one 950 deep, and cleaning it (or encoding it for a page) recursed past
    Python's limit, failing the history API and the site page.
    """
    try:
        value = json.loads(str(text), parse_constant=lambda _: None)
        cleaned = _clean(value, MAX_VALUE_DEPTH)
    except (ValueError, RecursionError):  # not JSON, a number of over 4,300 digits, too deep
        return {}
    return cleaned if isinstance(cleaned, dict) else {}


def _clean(value: object, depth: int) -> JsonValue:
    """Return `value` cleaned; raise ValueError for containers nested more than `depth` deep."""
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, list | dict) and depth <= 0:
        raise ValueError("nested too deep")
    if isinstance(value, list):
        return [_clean(entry, depth - 1) for entry in value]
    if isinstance(value, dict):
        return {_clean_text(str(key)): _clean(entry, depth - 1) for key, entry in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return cast("JsonValue", value)


def _clean_text(text: object) -> str:
    """Return `text` as a string that can be encoded: each lone surrogate becomes U+FFFD."""
    return _SURROGATE.sub("\ufffd", str(text))


_SURROGATE = re.compile("[\ud800-\udfff]")
