"""`Store`: what the rest of the collector holds, the database and its table modules.

Opening it migrates the schema (a read-only store only checks it). Callers use the table
modules and the database (`store.results`, `store.db.writing()`, ...) directly: the Store
repeats none of their methods. They are blocking: call them from worker threads, never on the
event loop.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from collector.store import schema
from collector.store.database import DatabaseSpec, StoreError, open_database
from collector.store.incidents import IncidentTable
from collector.store.leadership import Leadership
from collector.store.maintenance import MaintenanceTable
from collector.store.notifications import NotificationTable
from collector.store.results import Results
from collector.store.sessions import SessionTable
from collector.store.status import StatusLog


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
        self.leadership = Leadership(self.db)
        self.results = Results(self.db)
        self.incidents = IncidentTable(self.db)
        self.notifications = NotificationTable(self.db, self.leadership)
        self.maintenance = MaintenanceTable(self.db)
        self.sessions = SessionTable(self.db)
        self.status = StatusLog(self.db, self.leadership)

    @property
    def dialect(self) -> str:
        return self.db.dialect

    def close(self) -> None:
        self.db.close()
