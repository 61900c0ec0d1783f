"""The outbox: the agent's durable queue of results waiting for the collector.

    put(records) -> seqs      written and fsynced before the shipper sees them
    take(limit) -> entries    what to ship next; nothing is removed
    ack(seqs)                 the collector has them; delete
    identity                  a random id made with the file: seqs are unique per outbox

A result is written here before it is shipped and deleted only once the collector has
acknowledged it, so a WAN outage, kill -9 or a power cut loses nothing that `put` returned.
One SQLite file in WAL mode with `synchronous=FULL`: every commit is fsynced, which is what
makes a returned sequence number a promise, and why callers should put results in batches
rather than one by one (an fsync is cheap on an SSD, tens of milliseconds on an SD card).
The file, its -wal and -shm are made 0600 whatever the umask: results describe the site.

Exceptions:

    OutboxError    the file is not an outbox, or SQLite failed (disk full, I/O error, corruption)

Methods block on disk I/O; call them through `asyncio.to_thread`. One lock serialises them, so
the object may be created on the loop's thread and used from worker threads.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sitewatch.private_files import create_private

log = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES = 200_000

# "SWob": marks the file as ours, so another program's SQLite database is refused, not migrated.
_APPLICATION_ID = 0x53576F62
_SCHEMA_VERSION = 2
FILE_MODE = 0o600  # results and what they reveal of the site are the agent's business only
# The identity of an outbox made before outboxes had one: the collector holds its sequence
# numbers under this name, so it must keep it to have its resends recognised.
LEGACY_IDENTITY = "legacy"
# Separate statements, not executescript(), which would commit the transaction they belong to.
# The meta row keeps next_seq apart from the entries so numbers survive a full ack, and keeps
# depth so that neither depth() nor put() has to count 200,000 rows. Its outbox column is the
# identity made when the file was created: the collector keys results by (agent, outbox, seq),
# so an agent reinstalled with a fresh outbox, numbering from 1 again, loses nothing.
_SCHEMA = (
    "CREATE TABLE entries (seq INTEGER PRIMARY KEY, put_at REAL NOT NULL, record TEXT NOT NULL)",
    "CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), next_seq INTEGER NOT NULL,"
    " depth INTEGER NOT NULL, dropped INTEGER NOT NULL, outbox TEXT NOT NULL)",
    "INSERT INTO meta (id, next_seq, depth, dropped, outbox) VALUES (1, 1, 0, 0, ?)",
    f"PRAGMA application_id = {_APPLICATION_ID}",
    f"PRAGMA user_version = {_SCHEMA_VERSION}",
)
_UPGRADES = {  # from version N to N + 1
    1: (
        f"ALTER TABLE meta ADD COLUMN outbox TEXT NOT NULL DEFAULT '{LEGACY_IDENTITY}'",
        "PRAGMA user_version = 2",
    ),
}


class OutboxError(Exception):
    """The outbox file cannot be used; the message starts with its path."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One waiting result."""

    seq: int  # per-agent sequence number, strictly increasing, never reused
    record: dict[str, Any]  # the result's JSON form


class Outbox:
    """A durable FIFO of JSON records in one SQLite file."""

    def __init__(self, path: Path, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        """Open or create the outbox at `path`; raise OutboxError if it is something else."""
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self._path = path
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._dropping = False  # so a full outbox is logged once, not on every put
        self.identity = LEGACY_IDENTITY  # read from the file by _prepare
        try:
            create_private(path, FILE_MODE)
        except OSError as err:
            raise OutboxError(f"{path}: cannot create: {err}") from err
        try:
            # isolation_level=None: transactions are begun and committed explicitly below.
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as err:
            raise OutboxError(f"{path}: cannot open: {err}") from err
        try:
            self._prepare(self._conn)
        except BaseException:
            self._conn.close()
            raise

    def __enter__(self) -> Self:
        """Return the outbox; it is closed when the block ends."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the outbox."""
        self.close()

    def put(self, records: Sequence[Mapping[str, Any]]) -> list[int]:
        """Store records in one transaction, returning their new sequence numbers.

        When the outbox would exceed max_entries, the OLDEST entries are deleted to make room
        and a persisted 'dropped' counter grows by how many were deleted. A batch larger than
        max_entries therefore keeps only its own newest records, though every record still
        gets a number. A record that is not JSON (NaN included) raises before anything is
        written.
        """
        texts = [
            json.dumps(dict(record), allow_nan=False, separators=(",", ":")) for record in records
        ]
        if not texts:
            return []
        put_at = time.time()
        with self._transaction(immediate=True) as conn:
            next_seq, depth, dropped = conn.execute(
                "SELECT next_seq, depth, dropped FROM meta WHERE id = 1"
            ).fetchone()
            seqs = list(range(next_seq, next_seq + len(texts)))
            conn.executemany(
                "INSERT INTO entries (seq, put_at, record) VALUES (?, ?, ?)",
                [(seq, put_at, text) for seq, text in zip(seqs, texts, strict=True)],
            )
            excess = max(0, depth + len(texts) - self._max_entries)
            if excess:
                conn.execute(
                    "DELETE FROM entries WHERE seq IN "
                    "(SELECT seq FROM entries ORDER BY seq LIMIT ?)",
                    (excess,),
                )
            conn.execute(
                "UPDATE meta SET next_seq = ?, depth = ?, dropped = ? WHERE id = 1",
                (seqs[-1] + 1, depth + len(texts) - excess, dropped + excess),
            )
        self._note_dropping(excess)
        return seqs

    def take(self, limit: int, *, fresh_share: float = 0.25) -> list[Entry]:
        """Return the entries to ship next, sorted by seq; nothing is removed.

        Normally the oldest `limit`. When more than `limit` are waiting (a backlog after an
        outage), up to fresh_share*limit of them are the NEWEST entries and the rest the
        oldest, so replaying a long backlog does not starve fresh results: the collector sees
        current state within one round trip while history fills in behind it.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        if not 0.0 <= fresh_share <= 1.0:
            raise ValueError(f"fresh_share must be between 0 and 1, not {fresh_share}")
        select = "SELECT seq, record FROM entries ORDER BY seq"
        # A read transaction, so the depth and both ends come from one snapshot.
        with self._transaction(immediate=False) as conn:
            (depth,) = conn.execute("SELECT depth FROM meta WHERE id = 1").fetchone()
            fresh = int(fresh_share * limit) if depth > limit else 0
            rows = conn.execute(f"{select} LIMIT ?", (limit - fresh,)).fetchall()
            if fresh:
                rows += conn.execute(f"{select} DESC LIMIT ?", (fresh,)).fetchall()
        # depth > limit keeps the two ends apart; the dict is only a guard against overlap.
        unique = dict(rows)
        return [Entry(seq, self._decode(seq, unique[seq])) for seq in sorted(unique)]

    def ack(self, seqs: Iterable[int]) -> None:
        """Delete these entries (unknown seqs ignored)."""
        params = [(seq,) for seq in set(seqs)]
        if not params:
            return
        with self._transaction(immediate=True) as conn:
            deleted = conn.executemany("DELETE FROM entries WHERE seq = ?", params).rowcount
            conn.execute("UPDATE meta SET depth = depth - ? WHERE id = 1", (deleted,))

    def depth(self) -> int:
        """Return how many entries are waiting."""
        with self._transaction(immediate=False) as conn:
            (depth,) = conn.execute("SELECT depth FROM meta WHERE id = 1").fetchone()
        return int(depth)

    def dropped(self) -> int:
        """Return the entries dropped for room and not yet reported."""
        with self._transaction(immediate=False) as conn:
            (dropped,) = conn.execute("SELECT dropped FROM meta WHERE id = 1").fetchone()
        return int(dropped)

    def reported_dropped(self, count: int) -> None:
        """Subtract `count` from the dropped counter once a heartbeat carrying it was acked.

        The counter stops at zero: a count larger than it can only come from two heartbeats
        that carried the same drops, and the collector has those already.
        """
        if count < 0:
            raise ValueError(f"count must not be negative, not {count}")
        with self._transaction(immediate=True) as conn:
            conn.execute("UPDATE meta SET dropped = MAX(dropped - ?, 0) WHERE id = 1", (count,))

    def oldest_age_seconds(self, now: float) -> float | None:
        """Return the age of the oldest waiting entry by its put time, None when empty.

        Never negative, so a wall clock stepped backwards reads as "just now", not as a
        nonsense age in the heartbeat.
        """
        with self._transaction(immediate=False) as conn:
            row = conn.execute("SELECT put_at FROM entries ORDER BY seq LIMIT 1").fetchone()
        if row is None:
            return None
        return max(0.0, now - float(row[0]))

    def close(self) -> None:
        """Close the file; further calls raise OutboxError. Closing twice is harmless."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Check that the file is an outbox, creating the schema in an empty one."""
        try:
            # Per connection, not stored in the file: set before anything is written.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                created = self._check_or_create(conn)
                (self.identity,) = conn.execute("SELECT outbox FROM meta WHERE id = 1").fetchone()
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    conn.rollback()
            # Set only now: it is stored in the file, and a foreign file must stay untouched.
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.Error as err:
            if err.sqlite_errorname == "SQLITE_NOTADB":
                raise OutboxError(f"{self._path}: not an outbox database: {err}") from err
            raise OutboxError(f"{self._path}: cannot open: {err}") from err
        if mode != "wal":
            raise OutboxError(f"{self._path}: cannot use WAL journal mode (got {mode!r})")
        if created:
            # SQLite fsyncs the directory for a new journal or WAL, but not for a new database
            # file: without this a power cut could lose the file's name and with it the outbox.
            try:
                _fsync_directory(self._path.parent)
            except OSError as err:
                raise OutboxError(f"{self._path}: cannot sync its directory: {err}") from err

    def _check_or_create(self, conn: sqlite3.Connection) -> bool:
        """Return True if the schema was created, False if it was there; raise if foreign."""
        (application_id,) = conn.execute("PRAGMA application_id").fetchone()
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        (objects,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if application_id == 0 and version == 0 and objects == 0:
            for statement in _SCHEMA:
                conn.execute(statement, (uuid.uuid4().hex,) if "?" in statement else ())
            return True
        if application_id != _APPLICATION_ID:
            raise OutboxError(
                f"{self._path}: not an outbox database "
                f"(application_id {application_id:#x}, {objects} schema objects)"
            )
        for step in range(version, _SCHEMA_VERSION):
            for statement in _UPGRADES.get(step, ()):
                conn.execute(statement)
            version = step + 1
        if version != _SCHEMA_VERSION:
            raise OutboxError(
                f"{self._path}: outbox schema version {version}, "
                f"this agent reads version {_SCHEMA_VERSION}"
            )
        return False

    def _note_dropping(self, excess: int) -> None:
        """Log when the outbox starts and stops dropping its oldest entries."""
        if excess and not self._dropping:
            log.error(
                "outbox %s is full (%d entries): dropping the oldest results",
                self._path,
                self._max_entries,
            )
        elif not excess and self._dropping:
            log.info("outbox %s has room again", self._path)
        self._dropping = bool(excess)

    def _decode(self, seq: int, text: str) -> dict[str, Any]:
        """Return a stored record, which `put` wrote as a JSON object."""
        record = json.loads(text)
        if not isinstance(record, dict):
            raise OutboxError(f"{self._path}: entry {seq} is not a JSON object")
        return record

    @contextmanager
    def _transaction(self, *, immediate: bool) -> Iterator[sqlite3.Connection]:
        """Run the block in one transaction under the lock, mapping SQLite's errors.

        Immediate transactions take the write lock up front, so a write never fails half way
        because another connection wrote first.
        """
        with self._lock:
            conn = self._conn
            if conn is None:
                raise OutboxError(f"{self._path}: outbox is closed")
            try:
                conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
                try:
                    yield conn
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:
                        conn.rollback()
            except sqlite3.ProgrammingError:
                raise  # misuse of the API is a bug, not a storage failure
            except sqlite3.Error as err:
                raise OutboxError(f"{self._path}: {err}") from err


def _fsync_directory(directory: Path) -> None:
    """Make the directory's entries (a newly created file's name) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
