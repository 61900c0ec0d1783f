"""`Store`: what the rest of the collector holds, the database and its table modules.

Opening it migrates the schema (a read-only store only checks it). Its methods are blocking:
call them from worker threads, never on the event loop.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from collector.store import agents, schema
from collector.store.database import Connection, DatabaseSpec, StoreError, open_database
from collector.store.incidents import IncidentTable
from collector.store.maintenance import MaintenanceTable
from collector.store.notifications import NotificationTable
from collector.store.results import LEGACY_OUTBOX, IngestOutcome, Results, Stored
from collector.store.sessions import SessionTable
from collector.store.status import StatusLog
from probes.result import ProbeResult


class Store:
    """The database of one collector, SQLite or PostgreSQL, and its table modules."""

    def __init__(self, where: str | Path | DatabaseSpec, *, readonly: bool = False) -> None:
        """Open (and create, or upgrade) the database; `readonly` only reads one as it is.

        Read-only is for reports run beside a live collector: they must neither migrate its
        database nor need write access to it.
        """
        self.spec = DatabaseSpec.of(where)
        self.path = self.spec.path  # None for PostgreSQL
        self.db = open_database(self.spec, readonly=readonly)
        try:
            if readonly:
                schema.check(self.db)
            else:
                migrated = schema.migrate(self.db)
                self.db.start_wal(migrated=bool(migrated))
        except sqlite3.Error as err:
            self.db.close()
            raise StoreError(f"{self.spec}: not a SiteWatch database ({err})") from err
        except BaseException as err:
            self.db.close()
            if self.db.dialect == "postgresql":
                import psycopg  # noqa: PLC0415 -- loaded already: the database is PostgreSQL

                if isinstance(err, psycopg.Error):  # a refusal, e.g. no CREATE on the schema
                    first = str(err).strip().splitlines()[0]
                    raise StoreError(f"{self.spec}: cannot set up the schema: {first}") from err
            raise
        self.results = Results(self.db)
        self.incidents = IncidentTable(self.db)
        self.notifications = NotificationTable(self.db)
        self.maintenance = MaintenanceTable(self.db)
        self.sessions = SessionTable(self.db)
        self.status = StatusLog(self.db)

    @property
    def dialect(self) -> str:
        return self.db.dialect

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction on the writer: committed on exit, rolled back on any error."""
        with self.db.writing() as tx:
            yield tx

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads, never the writer's."""
        with self.db.reading() as conn:
            yield conn

    # Today's calls, kept for their many callers: each is its table module's.

    def ingest(
        self,
        source: str,
        items: Sequence[tuple[int, ProbeResult]],
        heartbeat: dict[str, Any] | None = None,
        now: float | None = None,
        *,
        outbox: str = LEGACY_OUTBOX,
    ) -> IngestOutcome:
        received = time.time() if now is None else now
        return self.results.ingest(source, items, heartbeat, received, outbox)

    def next_sequence(self, source: str, count: int) -> int:
        return self.results.next_sequence(source, count)

    def history(
        self,
        target: str,
        start: float,
        end: float,
        limit: int = 10_000,
        *,
        kinds: Sequence[str] | None = None,
    ) -> list[Stored]:
        return self.results.history(target, start, end, limit, kinds=kinds)

    def rollups(self, target: str, start: float, end: float) -> list[dict[str, Any]]:
        return self.results.rollups(target, start, end)

    def newest(self, after: float, per_target: int) -> list[Stored]:
        return self.results.newest(after, per_target)

    def sources(self) -> dict[str, tuple[float, Any]]:
        return agents.last_heard(self.db)

    def sequences(self, source: str) -> list[int]:
        return self.results.sequences(source)

    def roll_up(self, older_than: float) -> int:
        return self.results.roll_up(older_than)
