"""The collector's store: probe results, agents' heartbeats, rollups, on SQLite in WAL mode.

One connection writes (SQLite allows one writer; the collector is one process), used from a
worker thread so the event loop never waits on the disk. Ingest is idempotent by (source,
outbox, seq): an agent that retries a batch the collector already stored changes nothing, and
one reinstalled with a new outbox, numbering from 1 again, is stored. Each commit is fsynced
(synchronous=FULL) before ingest returns, so what the collector acknowledged survives a power
cut. The file is made 0640 whatever the umask. Results are kept raw for `retention` and rolled
up per target per 5 minutes beyond it, so a year of history stays small. The schema is versioned
with `PRAGMA user_version` and upgraded by MIGRATIONS in order.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from probes.result import ERROR_KINDS, MAX_RTT_MS, JsonValue, ProbeResult
from sitewatch.private_files import create_private

log = logging.getLogger(__name__)
CENTRE = "centre"  # the source name of the collector's own probes
ROLLUP_SECONDS = 300
DEFAULT_RETENTION = 30 * 86_400.0
# Containers within containers a stored value may hold: a probe's go 3 deep (a printer's
# supplies, a host's disks); readers that recurse (cleaning, encoding) stay far from the limit.
MAX_VALUE_DEPTH = 32
DATABASE_MODE = 0o640  # the collector and its group (backups, reports) read it; nobody else

_RESULTS_V1 = """
    CREATE TABLE results (
        source TEXT NOT NULL,        -- the agent id, or 'centre'
        seq INTEGER NOT NULL,        -- the source's sequence number
        target TEXT NOT NULL,
        kind TEXT NOT NULL,
        ts REAL NOT NULL,            -- when the probe ran, Unix seconds UTC
        ok INTEGER NOT NULL,
        rtt_ms REAL,
        loss REAL,
        value TEXT NOT NULL,         -- JSON
        error_kind TEXT,
        detail TEXT NOT NULL,
        received REAL NOT NULL,
        PRIMARY KEY (source, seq)
    ) WITHOUT ROWID;
    CREATE INDEX results_by_target ON results (target, ts);
    CREATE INDEX results_by_ts ON results (ts);
"""  # migration 1 made it so; migration 6 rebuilt it as RESULTS_SCHEMA
RESULTS_TABLE = """
    CREATE TABLE results (
        source TEXT NOT NULL,        -- the agent id, or 'centre'
        seq INTEGER NOT NULL,        -- the sequence number within the source's outbox
        target TEXT NOT NULL,
        kind TEXT NOT NULL,
        ts REAL NOT NULL,            -- when the probe ran, Unix seconds UTC
        ok INTEGER NOT NULL,
        rtt_ms REAL,
        loss REAL,
        value TEXT NOT NULL,         -- JSON
        error_kind TEXT,
        detail TEXT NOT NULL,
        received REAL NOT NULL,
        outbox TEXT NOT NULL,        -- the identity of the agent's outbox that numbered it
        PRIMARY KEY (source, outbox, seq)
    ) WITHOUT ROWID;
"""
RESULTS_INDEXES = """
    CREATE INDEX results_by_target ON results (target, ts);
    CREATE INDEX results_by_ts ON results (ts);
"""
# The table as migration 6 left it: later changes go in new migrations; the bench reuses it.
RESULTS_SCHEMA = RESULTS_TABLE + RESULTS_INDEXES
INSERT_RESULT = "INSERT OR IGNORE INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
# The columns in the order `_stored` reads them.
RESULT_COLUMNS = (
    "source, seq, target, kind, ts, ok, rtt_ms, loss, value, error_kind, detail, received, outbox"
)
# The outbox identity of every result stored before outboxes had one, of agents too old to
# send one, and of the centre's own probes: their sequences are unique per source already.
LEGACY_OUTBOX = "legacy"  # migration 6 spells it out, as a migration must never change

MIGRATIONS: tuple[str, ...] = (
    _RESULTS_V1
    + """
    CREATE TABLE rollups (
        target TEXT NOT NULL,
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        bucket INTEGER NOT NULL,     -- start of the 5-minute bucket, Unix seconds
        count INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        rtt_min REAL,
        rtt_avg REAL,
        rtt_max REAL,
        PRIMARY KEY (target, kind, source, bucket)
    ) WITHOUT ROWID;
    CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        last_seen REAL NOT NULL,     -- when the collector last heard from it
        heartbeat TEXT NOT NULL      -- the last heartbeat, JSON
    );
    CREATE TABLE sequences (source TEXT PRIMARY KEY, next INTEGER NOT NULL);
    """,
    # How many of a bucket's results had an rtt: the weight of rtt_avg when late results for
    # the bucket are merged in. Version 1 weighted by count; its rows keep that assumption.
    """
    ALTER TABLE rollups ADD COLUMN rtt_count INTEGER NOT NULL DEFAULT 0;
    UPDATE rollups SET rtt_count = count WHERE rtt_avg IS NOT NULL;
    """,
    # Incidents, their timeline, the notification outbox, maintenance windows and the log of
    # status changes that availability is computed from. The partial unique index is the rule
    # "at most one open incident per cause", kept by the database, not only by the code.
    """
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL,           -- link:ID, site:ID, device:ID, agent:ID, devices:SITE:KIND
        priority TEXT NOT NULL,      -- P1 | P2 | P3
        status TEXT NOT NULL,        -- open | acknowledged | resolved
        title TEXT NOT NULL,
        cause TEXT NOT NULL,         -- JSON with at least its kind
        sites TEXT NOT NULL,         -- JSON list of site ids
        affected_users INTEGER NOT NULL,
        opened_at REAL NOT NULL,
        acknowledged_at REAL,
        acknowledged_by TEXT,
        resolved_at REAL,
        resolved_by TEXT,            -- who resolved it by hand, NULL when its cause cleared
        due_at REAL NOT NULL,
        major INTEGER NOT NULL DEFAULT 0,
        flaps INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX incidents_one_open_per_key ON incidents (key) WHERE status != 'resolved';
    CREATE INDEX incidents_by_opened ON incidents (opened_at);
    CREATE TABLE incident_events (
        incident INTEGER NOT NULL REFERENCES incidents (id),
        ts REAL NOT NULL,
        kind TEXT NOT NULL,          -- opened, upgraded, escalated, acknowledged, note, ...
        author TEXT,                 -- the operator, or NULL for SiteWatch itself
        detail TEXT NOT NULL         -- JSON
    );
    CREATE INDEX incident_events_by_incident ON incident_events (incident, ts);
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        incident INTEGER NOT NULL REFERENCES incidents (id),
        channel TEXT NOT NULL,       -- the receiver, as collector.notify.channel_name gives it
        event TEXT NOT NULL,         -- opened | acknowledged | escalated | ... | resolved
        payload TEXT NOT NULL,       -- JSON: the incident as it was at the event
        created REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        delivered_at REAL,
        last_error TEXT
    );
    CREATE INDEX notifications_pending ON notifications (next_attempt)
        WHERE delivered_at IS NULL;
    CREATE TABLE maintenance (
        id INTEGER PRIMARY KEY,
        scope TEXT NOT NULL,         -- site | link | device
        target TEXT NOT NULL,        -- its inventory id
        start REAL,                  -- a one-off window: [start, end), Unix seconds
        "end" REAL,
        weekly TEXT,                 -- or a weekly one: JSON {days, start, end}, local time
        reason TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        deleted_at REAL
    );
    CREATE TABLE status_log (
        entity TEXT NOT NULL,        -- site:ID or link:ID
        ts REAL NOT NULL,            -- when the status began
        status TEXT NOT NULL
    );
    CREATE INDEX status_log_by_entity ON status_log (entity, ts);
    """,
    # Until when the collector was last known to be watching: after a restart the time since
    # then is logged as unknown, neither up nor down.
    """
    CREATE TABLE collector (alive_until REAL NOT NULL);
    """,
    # The collector's own outages, and the status rows rebuilt for them from the results the
    # agents replayed late (collector.history). A rebuilt row names its gap, so the next
    # rebuild replaces it; rows logged live have none.
    """
    CREATE TABLE gaps (
        id INTEGER PRIMARY KEY,
        start REAL NOT NULL,         -- alive_until when the collector went away
        "end" REAL NOT NULL,         -- when it started again
        rebuilt_at REAL              -- results received up to then are in its rebuilt rows
    );
    CREATE UNIQUE INDEX gaps_by_start ON gaps (start);
    ALTER TABLE status_log ADD COLUMN gap INTEGER REFERENCES gaps (id);
    CREATE INDEX status_log_by_gap ON status_log (gap) WHERE gap IS NOT NULL;
    """,
    # Sequences are unique per agent outbox, not per agent: a reinstalled agent numbers from 1
    # again in a new outbox, and its results must not be taken for duplicates of the old one's.
    # The rows stored so far keep their (source, seq) under the legacy outbox identity. The
    # indexes are built after the copy, once, not kept up row by row while it runs.
    "".join(
        (
            """
            ALTER TABLE results RENAME TO results_v1;
            DROP INDEX results_by_target;
            DROP INDEX results_by_ts;
            """,
            RESULTS_TABLE,
            """
            INSERT INTO results SELECT *, 'legacy' FROM results_v1;
            DROP TABLE results_v1;
            """,
            RESULTS_INDEXES,
        )
    ),
    # Why a site's or link's status changed, for people reading the log: the evidence that
    # moved it ("centre-ping down: 10.99.6.2: cannot send; ..."). NULL where nobody said:
    # rows logged before, the collector's own gaps and the rows rebuilt for them.
    """
    ALTER TABLE status_log ADD COLUMN evidence TEXT;
    """,
)
RESULTS_REBUILT_BY = 6  # the migration that copies every stored result: it may take a while


class StoreError(Exception):
    """The database cannot be opened or is not a SiteWatch database."""


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


class Store:
    """The SQLite database of one collector."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        """Open (and create, or upgrade) the database; `readonly` only reads one as it is.

        Read-only is for reports run beside a live collector: they must neither migrate its
        database nor need write access to it.
        """
        self.path = path
        self._lock = threading.Lock()
        try:
            if readonly:
                uri = f"{path.resolve().as_uri()}?mode=ro"
                self._db = sqlite3.connect(
                    uri, uri=True, check_same_thread=False, isolation_level=None
                )
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                create_private(path, DATABASE_MODE)
                self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"{path}: cannot open the database: {err}") from err
        try:
            self._db.execute("PRAGMA busy_timeout=5000")
            if readonly:
                self._check_version()
                return
            (journal,) = self._db.execute("PRAGMA journal_mode").fetchone()
            migrated = self._migrate()  # before WAL: another program's database stays as it was
            self._db.execute("PRAGMA journal_mode=WAL")
            if migrated and journal == "wal":
                # A migration that rewrote a table through the -wal left it as large as the
                # table, and the collector's small commits would never shrink it: fold it into
                # the database and truncate it. (Without WAL then, there is nothing to fold.)
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            # FULL: every commit is fsynced before ingest returns, so an acknowledged batch
            # survives a power cut (NORMAL would be durable only at the next checkpoint).
            self._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as err:
            self._db.close()
            raise StoreError(f"{path}: not a SiteWatch database ({err})") from err
        except StoreError:
            self._db.close()
            raise

    def _check_version(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version != len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: schema version {version}, this SiteWatch reads version "
                f"{len(MIGRATIONS)} (a collector of this version upgrades it when it starts)"
            )

    def _migrate(self) -> bool:
        """Apply the migrations the database lacks, each in a transaction; return whether any."""
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: schema version {version} is newer than this SiteWatch knows"
            )
        if version == 0 and self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StoreError(f"{self.path}: holds tables of something else, not SiteWatch")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            began = time.monotonic()
            if number == RESULTS_REBUILT_BY:
                (count,) = self._db.execute("SELECT count(*) FROM results").fetchone()
                log.info(
                    "%s: migrating %d results to schema %d (this may take a while)",
                    self.path,
                    count,
                    number,
                )
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise
            if number == RESULTS_REBUILT_BY:
                took = time.monotonic() - began
                log.info("%s: migrated to schema %d in %.1f s", self.path, number, took)
        return int(version) < len(MIGRATIONS)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the writer for one transaction: committed on exit, rolled back on any error.

        For the modules that keep their own tables here (incidents, notifications,
        maintenance); call from a worker thread, like every other method of the store.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """Hold the connection for reads that need no transaction."""
        with self._lock:
            yield self._db

    def ingest(
        self,
        source: str,
        items: Sequence[tuple[int, ProbeResult]],
        heartbeat: dict[str, Any] | None = None,
        now: float | None = None,
        *,
        outbox: str = LEGACY_OUTBOX,
    ) -> IngestOutcome:
        """Store a batch in one transaction; rows already stored are counted, not changed.

        A row is the same when its source, the outbox that numbered it and its seq are.
        """
        received = time.time() if now is None else now
        rows = [result_row(source, seq, result, received, outbox) for seq, result in items]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                self._db.executemany(INSERT_RESULT, rows)
                stored = self._db.total_changes - before
                self._db.execute(
                    "INSERT INTO agents VALUES (?,?,?) ON CONFLICT(id) DO UPDATE SET "
                    "last_seen=excluded.last_seen, heartbeat=CASE WHEN ? THEN excluded.heartbeat "
                    "ELSE agents.heartbeat END",
                    (source, received, json.dumps(heartbeat or {}), heartbeat is not None),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return IngestOutcome(stored, len(rows) - stored)

    def next_sequence(self, source: str, count: int) -> int:
        """Reserve `count` sequence numbers for a source (the centre's probes); return the first."""
        with self._lock:
            row = self._db.execute(
                "INSERT INTO sequences VALUES (?, ?) ON CONFLICT(source) DO UPDATE "
                "SET next = next + ? RETURNING next",
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
        wanted = "" if kinds is None else f" AND kind IN ({', '.join('?' * len(kinds))})"
        with self._lock:
            rows = self._db.execute(
                f"SELECT {RESULT_COLUMNS} FROM results "  # noqa: S608 -- fixed columns, ? marks
                f"WHERE target = ? AND ts >= ? AND ts < ?{wanted} "
                "ORDER BY ts, source, outbox, seq LIMIT ?",
                (target, start, end, *(kinds or ()), limit),
            ).fetchall()
        return [_stored(row) for row in rows]

    def rollups(self, target: str, start: float, end: float) -> list[dict[str, Any]]:
        """Return one target's 5-minute rollups in [start, end), oldest first."""
        with self._lock:
            rows = self._db.execute(
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
        with self._lock:
            rows = self._db.execute(
                f"""
                SELECT {RESULT_COLUMNS} FROM (
                    SELECT *, row_number() OVER (
                        PARTITION BY target, kind, source = ? ORDER BY ts DESC
                    ) AS newest
                    FROM results WHERE ts > ?
                ) WHERE newest <= ? ORDER BY ts
                """,  # noqa: S608 -- a fixed column list
                (CENTRE, after, per_target),
            ).fetchall()
        return [_stored(row) for row in rows]

    def sources(self) -> dict[str, tuple[float, dict[str, Any]]]:
        """Return each agent's last contact time and last heartbeat."""
        with self._lock:
            rows = self._db.execute("SELECT id, last_seen, heartbeat FROM agents").fetchall()
        return {row[0]: (row[1], _heartbeat(row[2])) for row in rows}

    def sequences(self, source: str) -> list[int]:
        """Return the sequence number of each stored result of a source, in order.

        One number per result: a number repeats once for every outbox of the source that used
        it (a reinstalled agent numbers from 1 again), so [1, 1, 2, 2] is two outboxes of two
        results each. For tests and audits, which count results, not distinct numbers.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT seq FROM results WHERE source = ? ORDER BY seq", (source,)
            ).fetchall()
        return [row[0] for row in rows]

    def roll_up(self, older_than: float) -> int:
        """Fold raw results older than `older_than` into 5-minute rollups and delete them.

        Whole buckets only, so a bucket is never rolled up twice; returns the rows folded.
        """
        cutoff = older_than - older_than % ROLLUP_SECONDS
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    """
                    INSERT INTO rollups (target, kind, source, bucket, count, failures,
                                         rtt_min, rtt_avg, rtt_max, rtt_count)
                    SELECT target, kind, source, CAST(ts / ? AS INTEGER) * ? AS bucket,
                           count(*), sum(1 - ok), min(rtt_ms), avg(rtt_ms), max(rtt_ms),
                           count(rtt_ms)
                    FROM results WHERE ts < ?
                    GROUP BY target, kind, source, bucket
                    ON CONFLICT (target, kind, source, bucket) DO UPDATE SET
                        rtt_min = min(coalesce(rollups.rtt_min, excluded.rtt_min),
                                      coalesce(excluded.rtt_min, rollups.rtt_min)),
                        rtt_max = max(coalesce(rollups.rtt_max, excluded.rtt_max),
                                      coalesce(excluded.rtt_max, rollups.rtt_max)),
                        rtt_avg = CASE WHEN rollups.rtt_count + excluded.rtt_count > 0 THEN
                                  (coalesce(rollups.rtt_avg, 0) * rollups.rtt_count
                                   + coalesce(excluded.rtt_avg, 0) * excluded.rtt_count)
                                  / (rollups.rtt_count + excluded.rtt_count) END,
                        rtt_count = rollups.rtt_count + excluded.rtt_count,
                        count = rollups.count + excluded.count,
                        failures = rollups.failures + excluded.failures
                    """,
                    (ROLLUP_SECONDS, ROLLUP_SECONDS, cutoff),
                )
                folded = self._db.execute("DELETE FROM results WHERE ts < ?", (cutoff,)).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return folded


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
        json.dumps(result.value, separators=(",", ":")),
        result.error_kind,
        result.detail,
        received,
        outbox,
    )


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
        value=_value(value),
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


def _value(text: object) -> dict[str, JsonValue]:
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


def _heartbeat(text: object) -> Any:
    """Return a stored heartbeat's JSON, or None when it is not JSON (collector.heartbeat
    checks the rest as it reads it back)."""
    try:
        return json.loads(str(text))
    except (ValueError, RecursionError):
        return None


_SURROGATE = re.compile("[\ud800-\udfff]")
