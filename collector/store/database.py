"""The collector's database connections, SQLite or PostgreSQL, behind one small interface.

The table modules write their SQL once, with `?` placeholders, and run it through `writing()`
(one transaction) or `reading()` (a connection that is never the writer's). Where the two
dialects differ the owning table module branches on `Database.dialect`; nothing else here
knows SQL.

SQLite: one writer connection, used under a lock (SQLite allows one writer), in WAL mode with
synchronous=FULL so an acknowledged batch survives a power cut; readers each get a read-only
connection of their own thread, so a month's report or a chart never waits behind ingest
(WAL lets readers and the writer run at once).

PostgreSQL: psycopg 3 with a `psycopg_pool.ConnectionPool`. Every method here is blocking and is
called from worker threads (`asyncio.to_thread`), as the SQLite connections are: one code path
for both dialects, and psycopg's pool is thread-safe. The password never comes from the YAML:
a `password_file`, or libpq's own PGPASSWORD / ~/.pgpass.
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

# The config names the database, so the spec lives there; re-exported for the store's users.
from sitewatch.config.model import DatabaseSpec as DatabaseSpec  # noqa: PLC0414
from sitewatch.config.model import Dialect as Dialect  # noqa: PLC0414
from sitewatch.private_files import create_private

log = logging.getLogger(__name__)
DATABASE_MODE = 0o640  # the collector and its group (backups, reports) read it; nobody else
BUSY_TIMEOUT_MS = 5_000
POOL_SIZE = 8  # connections: the worker threads that may query at once, plus the loops
# Seconds a query waits for a pooled connection before the request is told 503: when the
# server is down, a request must not hold its worker thread for the whole connect timeout.
POOL_WAIT = 3.0
# Seconds after a connection came back to the pool during which it is lent again unchecked.
# The check is a round trip on every lend, ~5 % of the collector's CPU while agents post; a
# server gone within that second fails the one request that gets such a connection, as
# DatabaseUnavailable (a 503, which agents retry), and the check finds it on the others.
RECHECK_AFTER = 1.0
CONNECT_TIMEOUT = 10.0  # seconds to reach a PostgreSQL server before saying it is unreachable
# Every pooled session: a transaction left idle for 5 s is ended by the server, and a dead peer
# is found by TCP within seconds. A collector stopped, frozen or cut off inside a transaction
# would otherwise hold its locks until it came back, or for the kernel's two hours: among them
# the leadership row's (collector.store.leadership), which a new leader waits for. Every
# transaction of ours runs its statements back to back; none waits on anything else.
POOL_SESSION = {
    "options": "-c idle_in_transaction_session_timeout=5000",
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}


class StoreError(Exception):
    """The database cannot be opened, reached, or is not a SiteWatch database."""


class DatabaseUnavailable(StoreError):
    """The database cannot be used just now: its server is down or unreachable, no connection
    came free in time, or (SQLite) the file is locked past the busy timeout, full, or failing.

    Not a fault of the request: the API answers 503 with Retry-After, and loops try again.
    """


# SQLite's result codes (and their extended forms) that mean "not now", not "wrong SQL".
_SQLITE_UNAVAILABLE = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_CANTOPEN",
)


def conninfo(spec: DatabaseSpec) -> str:
    """Return libpq's connection string, with the password read from its file if any."""
    if spec.url is None:
        raise StoreError(f"{spec}: not a PostgreSQL database")
    if urlsplit(spec.url).password is not None:
        raise StoreError(
            f"{spec.url.split('@')[-1]}: the database URL carries a password; "
            "put it in a password_file (or PGPASSWORD, ~/.pgpass) instead"
        )
    from psycopg import ProgrammingError  # noqa: PLC0415 -- only PostgreSQL needs it
    from psycopg.conninfo import make_conninfo  # noqa: PLC0415 -- as above

    options: dict[str, Any] = dict(spec.tls)
    options["connect_timeout"] = int(CONNECT_TIMEOUT)
    options["application_name"] = "sitewatch-collector"
    if spec.password_file is not None:
        options["password"] = read_password(spec.password_file)
    try:
        return make_conninfo(spec.url, **options)
    except ProgrammingError as err:  # libpq cannot parse the URL (a stray %, an unknown option)
        raise StoreError(f"{spec.url}: not a valid database URL: {_first_line(err)}") from err


def read_password(path: Path) -> str:
    """Return a password file's first line; say which file when it cannot be read."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise StoreError(f"{path}: cannot read the database password file: {err}") from err
    if not lines or not lines[0]:
        raise StoreError(f"{path}: the database password file is empty")
    return lines[0]


class Cursor(Protocol):
    """What both drivers' cursors give back: rows and how many rows a statement changed."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection in a transaction (`writing`) or for reads (`reading`)."""

    dialect: Dialect

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int: ...

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Load rows into a table in bulk (PostgreSQL COPY; SQLite inserts them)."""
        ...


_POSITIONAL = re.compile(r"%|\?")
_NAMED = re.compile(r"%|(?<!:):([A-Za-z_]\w*)")


@functools.lru_cache(maxsize=1024)
def postgres_sql(sql: str, *, named: bool = False) -> str:
    """Return SQL written with `?` (or, when `named`, `:name`) placeholders in psycopg's form:
    `%s` (`%(name)s`), a literal % doubled; a `::type` cast stays as it is.

    Only a statement sent with parameters is translated (psycopg reads a statement without
    them as it is), and only the one style its parameters use, so a `'site:x'` literal in a
    statement with `?` marks stays intact. The table modules never put a `?` or `%` in a
    literal of a statement with parameters, nor a `:word` in one of a statement with named
    ones.
    """

    def replace(found: re.Match[str]) -> str:
        if found.group() == "%":
            return "%%"
        return "%s" if found.group() == "?" else f"%({found.group(1)})s"

    return (_NAMED if named else _POSITIONAL).sub(replace, sql)


@dataclass(slots=True)
class SqliteConnection:
    """A sqlite3 connection with the interface the table modules use."""

    raw: sqlite3.Connection
    dialect: Dialect = "sqlite"

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Cursor:
        return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        before = self.raw.total_changes
        self.raw.executemany(sql, rows)
        return self.raw.total_changes - before

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        marks = ", ".join("?" * len(columns))
        self.raw.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608 -- names from code
            rows,
        )


@dataclass(slots=True)
class PostgresConnection:
    """A psycopg connection with the interface the table modules use."""

    raw: Any  # psycopg.Connection
    dialect: Dialect = "postgresql"

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Cursor:
        cursor: Cursor
        if isinstance(params, Mapping):
            cursor = self.raw.execute(postgres_sql(sql, named=True), params)
        elif params:
            cursor = self.raw.execute(postgres_sql(sql), tuple(params))
        else:
            cursor = self.raw.execute(sql)
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        with self.raw.cursor() as cursor:
            cursor.executemany(postgres_sql(sql), rows)
            return max(int(cursor.rowcount), 0)

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with self.raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)


class Database:
    """One process's connections to its database; see the module's docstring."""

    def __init__(self, spec: DatabaseSpec, *, readonly: bool = False) -> None:
        self.spec = spec
        self.dialect: Dialect = spec.dialect
        self.readonly = readonly
        self._lock = threading.Lock()  # SQLite: the one writer
        self._writer: SqliteConnection | None = None
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._local = threading.local()
        self._pool: Any = None  # psycopg_pool.ConnectionPool
        self._returned = Returned()
        self._closed = False
        if self.dialect == "sqlite":
            self._open_sqlite()
        else:
            self._open_postgres()

    def __str__(self) -> str:
        return str(self.spec)

    # --- SQLite

    def _open_sqlite(self) -> None:
        path = self._sqlite_path()
        if self.readonly:
            return  # readers open their own connections, read-only, as they need them
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            create_private(path, DATABASE_MODE)
            raw = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"{path}: cannot open the database: {err}") from err
        try:
            raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except sqlite3.Error as err:
            raw.close()
            raise StoreError(f"{path}: not a SiteWatch database ({err})") from err
        self._writer = SqliteConnection(raw)

    def _sqlite_path(self) -> Path:
        if self.spec.path is None:
            raise StoreError(f"{self.spec}: not a SQLite database")
        return self.spec.path

    def _sqlite_writer(self) -> SqliteConnection:
        if self._writer is None:
            raise StoreError(f"{self.spec}: opened read-only")
        return self._writer

    def start_wal(self, *, migrated: bool) -> None:
        """Switch a SQLite database to WAL and fsync every commit; after the migrations.

        Before WAL, so another program's database stays as it was if it is refused. A migration
        that rewrote a table through the -wal left it as large as the table, and the collector's
        small commits would never shrink it: fold it into the database and truncate it.
        """
        if self.dialect != "sqlite" or self._writer is None:
            return
        raw = self._writer.raw
        (journal,) = raw.execute("PRAGMA journal_mode").fetchone()
        raw.execute("PRAGMA journal_mode=WAL")
        if migrated and journal == "wal":
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        # FULL: every commit is fsynced before ingest returns, so an acknowledged batch
        # survives a power cut (NORMAL would be durable only at the next checkpoint).
        raw.execute("PRAGMA synchronous=FULL")

    def _sqlite_reader(self) -> sqlite3.Connection:
        reader: sqlite3.Connection | None = getattr(self._local, "reader", None)
        if reader is None:
            path = self._sqlite_path()
            uri = f"{path.resolve().as_uri()}?mode=ro"
            try:
                reader = sqlite3.connect(
                    uri, uri=True, check_same_thread=False, isolation_level=None
                )
                reader.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            except sqlite3.Error as err:
                raise StoreError(f"{path}: cannot open the database: {err}") from err
            self._local.reader = reader
            with self._readers_lock:  # not the writer's: a writer may open its first reader
                self._readers.append(reader)
        return reader

    # --- PostgreSQL

    def _open_postgres(self) -> None:
        try:
            import psycopg  # noqa: PLC0415 -- a SQLite collector does not need the driver
            from psycopg_pool import ConnectionPool  # noqa: PLC0415
        except ImportError as err:  # pragma: no cover -- a dependency of the package
            raise StoreError(f"{self.spec}: psycopg is not installed ({err})") from err
        info = conninfo(self.spec)
        try:
            # Check the server answers before the pool starts retrying in the background:
            # a wrong host, user or password must fail the start with libpq's own words.
            psycopg.connect(info).close()
        except psycopg.Error as err:
            raise StoreError(f"{self.spec}: cannot connect: {_first_line(err)}") from err
        self._pool = ConnectionPool(
            info,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True, **POOL_SESSION},
            timeout=POOL_WAIT,
            # A connection the server dropped (a restart, a failover) is found before it is
            # lent, not by the request that gets it, unless it came back a moment ago.
            check=self._returned.check,
            reset=self._returned.note,
            open=True,
            name="sitewatch",
        )

    @contextmanager
    def _postgres(self) -> Iterator[Any]:
        import psycopg  # noqa: PLC0415 -- loaded already: the pool is psycopg's
        import psycopg_pool  # noqa: PLC0415

        try:
            with self._pool.connection() as raw:
                yield raw
        except psycopg_pool.PoolTimeout as err:
            raise DatabaseUnavailable(f"{self.spec}: no database connection: {err}") from err
        except psycopg.OperationalError as err:
            raise DatabaseUnavailable(f"{self.spec}: {_first_line(err)}") from err

    def dedicated(self, **options: Any) -> Any:
        """Open a PostgreSQL connection of its own, outside the pool, in autocommit: for a
        session that holds something for as long as it lives (the leader's lock)."""
        import psycopg  # noqa: PLC0415 -- PostgreSQL only

        try:
            return psycopg.connect(conninfo(self.spec), autocommit=True, **options)
        except psycopg.OperationalError as err:
            raise DatabaseUnavailable(f"{self.spec}: {_first_line(err)}") from err

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as err:
            if getattr(err, "sqlite_errorname", "").startswith(_SQLITE_UNAVAILABLE):
                raise DatabaseUnavailable(f"{self.spec}: {err}") from err
            raise

    # --- both

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """Run one transaction on a writer: committed on exit, rolled back on any error."""
        if self.readonly:
            raise StoreError(f"{self.spec}: opened read-only")
        if self.dialect == "sqlite":
            writer = self._sqlite_writer()
            with self._lock, self._sqlite_errors():
                raw = writer.raw
                raw.execute("BEGIN IMMEDIATE")
                try:
                    yield writer
                    raw.execute("COMMIT")
                except BaseException:
                    # SQLite rolls back by itself after some errors (a full disk, an I/O
                    # error): a second ROLLBACK would hide the first error behind its own.
                    if raw.in_transaction:
                        raw.execute("ROLLBACK")
                    raise
            return
        with self._postgres() as raw, raw.transaction():
            yield PostgresConnection(raw)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """Lend a connection for reads that is not the writer; each statement sees what was
        committed before it."""
        if self.dialect == "sqlite":
            with self._sqlite_errors():
                yield SqliteConnection(self._sqlite_reader())
            return
        with self._postgres() as raw:
            yield PostgresConnection(raw)

    @contextmanager
    def maintaining(self) -> Iterator[Connection]:
        """Lend the writer outside a transaction, for schema changes that manage their own.

        SQLite's migrations set `PRAGMA user_version`, which must run in their transaction.
        """
        if self.dialect == "sqlite":
            writer = self._sqlite_writer()
            with self._lock:
                yield writer
            return
        with self._postgres() as raw:
            yield PostgresConnection(raw)

    def close(self) -> None:
        """Close every connection; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.close()
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
        with self._lock:
            if self._writer is not None:
                self._writer.raw.close()


class Returned:
    """When each pooled PostgreSQL connection last came back to the pool; the pool's check."""

    def __init__(self) -> None:
        self._at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def note(self, conn: Any) -> None:
        """The pool's reset: `conn` came back idle."""
        self._at[conn] = time.monotonic()

    def check(self, conn: Any) -> None:
        """The pool's check: a round trip, unless `conn` came back within RECHECK_AFTER."""
        from psycopg_pool import ConnectionPool  # noqa: PLC0415 -- PostgreSQL only

        if time.monotonic() - self._at.get(conn, -RECHECK_AFTER) >= RECHECK_AFTER:
            ConnectionPool.check_connection(conn)


def open_database(where: str | Path | DatabaseSpec, *, readonly: bool = False) -> Database:
    """Return the connections to a database, or raise StoreError saying why not."""
    return Database(DatabaseSpec.of(where), readonly=readonly)


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
