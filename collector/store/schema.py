"""The collector's schema: one versioned list of migrations for SQLite and PostgreSQL.

Migration N takes a database from version N-1 to N, in one transaction. SQLite keeps its
version in `PRAGMA user_version`, PostgreSQL in the table `sitewatch_schema` (our own name:
`schema_version` is other tools' default). PostgreSQL support began at version 7: its
migration 1 creates in one step what SQLite reached by 7 (with raw results partitioned by day),
and 2 to 7 have nothing to do there. Every later migration is written for both. A collector
refuses a database newer than it knows, and one that is something else's; `sitewatch migrate`
shows and applies what is pending.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from collector.store.database import Connection, Database, SqliteConnection, StoreError

log = logging.getLogger(__name__)
SCHEMA_LOCK = 0x5173_0013  # PostgreSQL advisory lock: one collector migrates at a time
VERSION_TABLE = "sitewatch_schema"  # PostgreSQL's record of the version
FIRST_TABLES = ("results", "agents")  # what migration 1 made, in every dialect


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema, in each dialect; None where a dialect has nothing to do."""

    sqlite: str
    postgresql: str | None
    about: str  # one line for `sitewatch migrate`


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
_SQLITE: tuple[str, ...] = (
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

# PostgreSQL's migration 1: the schema SQLite reached by migration 7. Raw results are
# partitioned by day (collector.store.results creates the day partitions as results arrive,
# and retention drops whole days); a partitioned table's unique key must hold the partition
# key, and a resent result has the same ts, so (source, outbox, seq, ts) keeps ingest
# idempotent.
_POSTGRES_V7 = """
    CREATE TABLE results (
        source text NOT NULL,
        seq bigint NOT NULL,
        target text NOT NULL,
        kind text NOT NULL,
        ts double precision NOT NULL,
        ok integer NOT NULL,
        rtt_ms double precision,
        loss double precision,
        value text NOT NULL,
        error_kind text,
        detail text NOT NULL,
        received double precision NOT NULL,
        outbox text NOT NULL
    ) PARTITION BY RANGE (ts);
    CREATE TABLE results_other PARTITION OF results DEFAULT;
    CREATE TABLE result_keys (
        source text NOT NULL,
        outbox text NOT NULL,
        seq bigint NOT NULL,
        ts double precision NOT NULL,
        PRIMARY KEY (source, outbox, seq)
    );
    CREATE INDEX results_by_target ON results (target, ts);
    CREATE INDEX results_by_ts ON results (ts);
    CREATE TABLE rollups (
        target text NOT NULL,
        kind text NOT NULL,
        source text NOT NULL,
        bucket bigint NOT NULL,
        count bigint NOT NULL,
        failures bigint NOT NULL,
        rtt_min double precision,
        rtt_avg double precision,
        rtt_max double precision,
        rtt_count bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (target, kind, source, bucket)
    );
    CREATE TABLE agents (
        id text PRIMARY KEY,
        last_seen double precision NOT NULL,
        heartbeat text NOT NULL
    );
    CREATE TABLE sequences (source text PRIMARY KEY, next bigint NOT NULL);
    CREATE TABLE incidents (
        id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        key text NOT NULL,
        priority text NOT NULL,
        status text NOT NULL,
        title text NOT NULL,
        cause text NOT NULL,
        sites text NOT NULL,
        affected_users bigint NOT NULL,
        opened_at double precision NOT NULL,
        acknowledged_at double precision,
        acknowledged_by text,
        resolved_at double precision,
        resolved_by text,
        due_at double precision NOT NULL,
        major integer NOT NULL DEFAULT 0,
        flaps integer NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX incidents_one_open_per_key ON incidents (key) WHERE status != 'resolved';
    CREATE INDEX incidents_by_opened ON incidents (opened_at);
    CREATE TABLE incident_events (
        incident bigint NOT NULL REFERENCES incidents (id),
        ts double precision NOT NULL,
        kind text NOT NULL,
        author text,
        detail text NOT NULL,
        rowid bigint GENERATED BY DEFAULT AS IDENTITY  -- SQLite's implicit rowid: write order
    );
    CREATE INDEX incident_events_by_incident ON incident_events (incident, ts);
    CREATE TABLE notifications (
        id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        incident bigint NOT NULL REFERENCES incidents (id),
        channel text NOT NULL,
        event text NOT NULL,
        payload text NOT NULL,
        created double precision NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt double precision NOT NULL,
        delivered_at double precision,
        last_error text
    );
    CREATE INDEX notifications_pending ON notifications (next_attempt)
        WHERE delivered_at IS NULL;
    CREATE TABLE maintenance (
        id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        scope text NOT NULL,
        target text NOT NULL,
        start double precision,
        "end" double precision,
        weekly text,
        reason text NOT NULL,
        created_by text NOT NULL,
        created_at double precision NOT NULL,
        deleted_at double precision
    );
    CREATE TABLE collector (alive_until double precision NOT NULL);
    CREATE TABLE gaps (
        id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        start double precision NOT NULL,
        "end" double precision NOT NULL,
        rebuilt_at double precision
    );
    CREATE UNIQUE INDEX gaps_by_start ON gaps (start);
    CREATE TABLE status_log (
        -- SQLite's implicit rowid, made explicit: the write order, so that of rows with one
        -- ts the one written later wins (collector.availability), in the same SQL for both
        rowid bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        entity text NOT NULL,
        ts double precision NOT NULL,
        status text NOT NULL,
        gap bigint REFERENCES gaps (id),
        evidence text
    );
    CREATE INDEX status_log_by_entity ON status_log (entity, ts);
    CREATE INDEX status_log_by_gap ON status_log (gap) WHERE gap IS NOT NULL;
"""
_ABOUT = (
    "results, rollups, agents' heartbeats, sequences",
    "rollups weigh late results' round trips by how many had one",
    "incidents, their events, notifications, maintenance windows, the status log",
    "until when the collector was last alive",
    "the collector's own gaps, and status rows rebuilt for them",
    "sequences unique per agent outbox (rebuilds results)",
    "the evidence behind each status change",
)
# Dashboard sessions, in the database so that every collector process serving the dashboard
# knows every login, and a restart logs nobody out. Only the SHA-256 of a session's token.
_SESSIONS = """
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,  -- SHA-256 of the cookie's token, hex
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE INDEX sessions_by_last_seen ON sessions (last_seen);
"""
# Which collector leads (collector.leadership): one row, its epoch raised by each that takes
# over, and checked by every leader transaction (the fence), so a leader that lost the lock
# without knowing cannot write as leader again.
_LEADERSHIP = """
    CREATE TABLE leadership (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        epoch INTEGER NOT NULL,
        holder TEXT NOT NULL,        -- the leader's name: host, process and listen address
        since REAL NOT NULL
    );
    INSERT INTO leadership VALUES (1, 0, '', 0);
"""
SCHEMA: tuple[Migration, ...] = (
    *(
        Migration(script, _POSTGRES_V7 if number == 1 else None, about)
        for number, (script, about) in enumerate(zip(_SQLITE, _ABOUT, strict=True), start=1)
    ),
    Migration(_SESSIONS, _SESSIONS.replace("REAL", "double precision"), "dashboard sessions"),
    Migration(
        _LEADERSHIP,
        _LEADERSHIP.replace("INTEGER NOT", "bigint NOT").replace("REAL", "double precision"),
        "which collector leads, and its epoch",
    ),
)
MIGRATIONS: tuple[str, ...] = tuple(migration.sqlite for migration in SCHEMA)  # SQLite's scripts
RESULTS_REBUILT_BY = 6  # the migration that copies every stored result: it may take a while


def version(conn: Connection) -> int:
    """Return a database's schema version: 0 for a database SiteWatch never migrated."""
    if conn.dialect == "sqlite":
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    columns = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ?",
        (VERSION_TABLE,),
    ).fetchall()
    if not columns:
        return 0
    if [tuple(column) for column in columns] != [("version", "integer")]:
        raise StoreError(f"the table {VERSION_TABLE} is something else's, not SiteWatch's")
    row = conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()  # noqa: S608
    return 0 if row is None else int(row[0])


def _ours(conn: Connection) -> bool:
    """Return whether a database with a schema version holds SiteWatch's first tables.

    Other programs set SQLite's user_version too: a version alone proves nothing.
    """
    if conn.dialect == "sqlite":
        found = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?)",
            FIRST_TABLES,
        ).fetchone()[0]
    else:
        found = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename IN (?, ?)",
            FIRST_TABLES,
        ).fetchone()[0]
    return int(found) == len(FIRST_TABLES)


def _foreign_tables(conn: Connection) -> bool:
    """Return whether an unmigrated database holds tables of something else."""
    if conn.dialect == "sqlite":
        return bool(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])
    return bool(
        conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename != ?",
            (VERSION_TABLE,),
        ).fetchone()[0]
    )


def pending(db: Database) -> list[tuple[int, Migration]]:
    """Return the migrations a database lacks, numbered; raise StoreError for a newer one."""
    with db.reading() as conn:
        found = version(conn)
        _refuse_foreign(db, conn, found)
    if found > len(SCHEMA):
        raise StoreError(
            f"{db}: schema version {found} is newer than this SiteWatch knows ({len(SCHEMA)}); "
            "run the newer SiteWatch, or restore a backup"
        )
    return list(enumerate(SCHEMA[found:], start=found + 1))


def _refuse_foreign(db: Database, conn: Connection, start: int) -> None:
    """Refuse a database that is something else's: tables but no version, or a version
    without SiteWatch's tables."""
    if start == 0 and _foreign_tables(conn):
        raise StoreError(f"{db}: holds tables of something else, not SiteWatch")
    if start > 0 and not _ours(conn):
        raise StoreError(f"{db}: schema version {start} but no SiteWatch tables: not SiteWatch's")


def check(db: Database) -> None:
    """Refuse a database whose schema is not the one this SiteWatch reads (for read-only use)."""
    with db.reading() as conn:
        found = version(conn)
        _refuse_foreign(db, conn, found)
    if found != len(SCHEMA):
        raise StoreError(
            f"{db}: schema version {found}, this SiteWatch reads version {len(SCHEMA)} "
            "(a collector of this version upgrades it when it starts)"
        )


def migrate(db: Database) -> list[int]:
    """Apply the migrations a database lacks, each in its own transaction; return their numbers.

    PostgreSQL: under an advisory lock, so two collectors starting together migrate once.
    """
    applied: list[int] = []
    if db.dialect == "sqlite":
        with db.maintaining() as conn:
            start = version(conn)
            if start > len(SCHEMA):
                raise StoreError(f"{db}: schema version {start} is newer than this SiteWatch knows")
            _refuse_foreign(db, conn, start)
            for number, migration in enumerate(SCHEMA[start:], start=start + 1):
                _apply_sqlite(conn, db, number, migration)
                applied.append(number)
        return applied
    with db.writing() as conn:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))
        conn.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version integer NOT NULL)")
        start = version(conn)
        if start > len(SCHEMA):
            raise StoreError(f"{db}: schema version {start} is newer than this SiteWatch knows")
        _refuse_foreign(db, conn, start)
        if start == 0:
            conn.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (0)")  # noqa: S608
        for number, migration in enumerate(SCHEMA[start:], start=start + 1):
            if migration.postgresql is not None:
                conn.execute(migration.postgresql)
            conn.execute(f"UPDATE {VERSION_TABLE} SET version = ?", (number,))  # noqa: S608
            applied.append(number)
    return applied


def _apply_sqlite(conn: Connection, db: Database, number: int, migration: Migration) -> None:
    began = time.monotonic()
    if number == RESULTS_REBUILT_BY:
        (count,) = conn.execute("SELECT count(*) FROM results").fetchone()
        log.info("%s: migrating %d results to schema %d (this may take a while)", db, count, number)
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in migration.sqlite.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        if not isinstance(conn, SqliteConnection) or conn.raw.in_transaction:
            conn.execute("ROLLBACK")  # unless SQLite rolled back itself (a full disk, I/O)
        raise
    if number == RESULTS_REBUILT_BY:
        log.info("%s: migrated to schema %d in %.1f s", db, number, time.monotonic() - began)
