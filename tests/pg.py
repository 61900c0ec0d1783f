"""A real PostgreSQL server for the test session and for `make run DB=postgres`.

    server = start_postgres(Path(tempfile.mkdtemp(prefix=TEMP_PREFIX)))
    url = server.url(server.create_database("t1"))  # postgresql://postgres@127.0.0.1:PORT/t1
    ...
    server.stop(); server.remove()

The server is Debian's own PostgreSQL (the newest of /usr/lib/postgresql/<version>/bin), its
cluster made by initdb in a directory of ours and run by `postgres` as our child. PostgreSQL
refuses to run as root, so as root both run as the unprivileged system user `sitewatch-pg`
(created on first use). It listens on 127.0.0.1 only, on a free port, and on a unix socket in
its directory.

Two roles: the superuser `postgres`, trusted from loopback and the socket, and `sitewatch_pw`,
which must give its password (scram-sha-256), for tests of `password_file`.

A server outlives nothing that started it: it gets SIGINT (a fast shutdown) when its parent
dies, however it dies, and `sweep_stale()` stops and removes what a killed run still left
behind (directories whose owning process is gone). Nothing here leaves a server that could stop
the next run from starting its own: each run takes a fresh directory and a free port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

PG_USER = "sitewatch-pg"  # the system user the server runs as when we are root
SUPERUSER = "postgres"
PASSWORD_ROLE = "sitewatch_pw"  # noqa: S105 -- a role's name; its password is random per start
TEMPLATE = "sitewatch_template"  # an empty database that fresh test databases are copied from
TEMP_PREFIX = "sitewatch-pg-"  # temporary clusters: tempfile.gettempdir()/sitewatch-pg-XXXX
OWNER_FILE = "owner.pid"  # the pid of the process a temporary cluster belongs to
DEBIAN_ROOT = Path("/usr/lib/postgresql")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

# Loopback and socket only. The superuser is trusted (tests need no secrets to set up); every
# other role must prove its password, so a test can show a role cannot get in without it.
HBA = f"""\
# TYPE  DATABASE  USER       ADDRESS       METHOD
local   all       {SUPERUSER}                   trust
host    all       {SUPERUSER}  127.0.0.1/32  trust
local   all       all                      scram-sha-256
host    all       all        127.0.0.1/32  scram-sha-256
"""

# fsync, synchronous commit and full-page writes are off: these servers prove SQL (and serve a
# demo), not durability, and a crash of one loses nothing anyone needs.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",  # each test's pool, and a few test sessions' worth of them
    "log_min_messages": "warning",
}


class PostgresError(RuntimeError):
    """PostgreSQL is missing, or its server could not be set up or started (says which)."""


@dataclass(frozen=True, slots=True)
class Binaries:
    """Where one PostgreSQL installation keeps its server programs."""

    bindir: Path
    version: str

    @property
    def initdb(self) -> Path:
        return self.bindir / "initdb"

    @property
    def postgres(self) -> Path:
        return self.bindir / "postgres"

    @property
    def pg_ctl(self) -> Path:
        return self.bindir / "pg_ctl"


def find_binaries() -> Binaries:
    """Return the newest PostgreSQL with initdb, postgres and pg_ctl; raise naming what's missing.

    Debian keeps server programs out of PATH, in /usr/lib/postgresql/<version>/bin; PATH (and
    pg_config) is the fallback for other installations.
    """
    found: list[tuple[tuple[int, ...], Path]] = []
    if DEBIAN_ROOT.is_dir():
        for bindir in DEBIAN_ROOT.glob("*/bin"):
            version = bindir.parent.name
            if re.fullmatch(r"\d+(\.\d+)*", version) and _complete(bindir):
                found.append((tuple(int(part) for part in version.split(".")), bindir))
    if found:
        version_key, bindir = max(found)
        return Binaries(bindir, ".".join(str(part) for part in version_key))
    initdb = shutil.which("initdb")
    if initdb and _complete(Path(initdb).resolve().parent):
        return Binaries(Path(initdb).resolve().parent, "unknown")
    raise PostgresError(
        f"PostgreSQL is not installed: no initdb, postgres and pg_ctl in {DEBIAN_ROOT}/*/bin "
        "or on PATH (install the Debian package postgresql: `make system-packages` as root)"
    )


def _complete(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "postgres", "pg_ctl"))


@dataclass(frozen=True, slots=True)
class RunAs:
    """The account the server's processes run as: ourselves, or PG_USER when we are root."""

    uid: int
    gid: int
    name: str

    @property
    def is_us(self) -> bool:
        return self.uid == os.geteuid()

    @property
    def user(self) -> int | None:
        """Popen's `user`: drop to this account, unless it is ours already."""
        return None if self.is_us else self.uid

    @property
    def group(self) -> int | None:
        return None if self.is_us else self.gid

    @property
    def extra_groups(self) -> list[int] | None:
        """Popen's `extra_groups`: none of root's supplementary groups go with us."""
        return None if self.is_us else []


def server_account() -> RunAs:
    """Return the account to run PostgreSQL as, creating the system user PG_USER as root."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)
    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise PostgresError(
                f"PostgreSQL refuses to run as root and there is no useradd to create the "
                f"unprivileged user {PG_USER}"
            ) from None
        made = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        try:  # another session may have created it at the same moment: that is fine
            entry = pwd.getpwnam(PG_USER)
        except KeyError:
            raise PostgresError(
                f"could not create the unprivileged user {PG_USER} for PostgreSQL: "
                f"{made.stderr.strip()}"
            ) from None
    return RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)


def _die_with_parent() -> None:
    """Ask the kernel to send SIGINT (PostgreSQL's fast shutdown) when our parent dies.

    Runs in the child after it has dropped to the server's account (a change of credentials
    would clear the setting), just before exec: a test session killed outright (pytest-timeout,
    SIGKILL, an IDE's stop button) then takes its server with it.
    """
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGINT, 0, 0, 0)


@dataclass
class PostgresServer:
    """A running PostgreSQL server of ours: where it listens and how to get a database."""

    directory: Path
    host: str
    port: int
    process: subprocess.Popen[bytes]
    account: RunAs
    binaries: Binaries
    superuser: str = SUPERUSER
    password_role: str = PASSWORD_ROLE
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def url(self, dbname: str, user: str | None = None) -> str:
        """Return a libpq URL for `dbname` over loopback TCP, as the superuser or `user`.

        Never with a password in it: `password_role` reads its password elsewhere
        (`server.password`, put in a password file or PGPASSWORD by the test).
        """
        return f"postgresql://{user or self.superuser}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """Open an autocommit connection as the superuser (caller closes it)."""
        return psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=10)

    def create_database(
        self, name: str, template: str | None = None, owner: str | None = None
    ) -> str:
        """Create database `name` as a copy of `template` (the empty TEMPLATE); return `name`.

        A copy of a database nobody is connected to, so a test may pass a template with a
        schema already in it. From PostgreSQL 15 the copy is made with STRATEGY FILE_COPY, not
        the default WAL_LOG: WAL_LOG writes every page of the template to the WAL (about
        120 ms for an empty database, 220 ms for one holding the collector's schema, measured
        here) while FILE_COPY copies the files behind two checkpoints, which cost next to
        nothing with fsync off (25 ms and 40 ms); a test session makes hundreds.
        """
        with self.connect() as conn:
            strategy = sql.SQL(" STRATEGY FILE_COPY" if conn.info.server_version >= 150000 else "")
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {}{}").format(
                sql.Identifier(name),
                sql.Identifier(template or TEMPLATE),
                sql.Identifier(owner or self.superuser),
                strategy,
            )
            conn.execute(statement)
        return name

    def drop_database(self, name: str) -> None:
        """Drop database `name`, disconnecting whoever is still in it (a pool a test left open)."""
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self) -> None:
        """Stop the server: a fast shutdown, then SIGQUIT and SIGKILL if it does not end."""
        for signum in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
            if self.process.poll() is not None:
                return
            self.process.send_signal(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_TIMEOUT)

    def restart(self) -> None:
        """Stop the server and start it again on its cluster and port, as `pg_ctl restart`
        does: every session ends, and clients reconnect to the same address."""
        self.stop()
        self.process = _spawn(self.binaries, self.account, self.directory, self.data, self.port)
        _wait_ready(self)

    def remove(self) -> None:
        """Delete the server's directory (after `stop`)."""
        remove_directory(self.directory)


def start_postgres(directory: Path, *, owner_pid: int | None = None) -> PostgresServer:
    """Start a server whose cluster lives in `directory/data`; return it once it answers.

    A new directory gets a cluster (initdb); one that already holds a cluster is reused, after
    stopping a server a killed run may have left on it (how `make run DB=postgres` keeps its
    data). `directory` must be reachable by PG_USER when we are root (tempfile.mkdtemp and
    /var/tmp are; pytest's tmp_path is not). `owner_pid` (default: this process) is written to
    OWNER_FILE so `sweep_stale` knows when the cluster has been abandoned.
    """
    binaries = find_binaries()
    account = server_account()
    _check_ours(directory, account)
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    _check_reachable(directory, account)
    os.chown(directory, account.uid, account.gid)
    directory.chmod(0o700)
    (directory / OWNER_FILE).write_text(f"{owner_pid or os.getpid()}\n")
    data = directory / "data"
    if (data / "PG_VERSION").exists():
        _stop_leftover(binaries, account, data)
    else:
        _initdb(binaries, account, directory, data)
    last_error = ""
    for _attempt in range(3):  # a free port can be taken between our look and the server's bind
        port = _free_port()
        process = _spawn(binaries, account, directory, data, port)
        server = PostgresServer(directory, "127.0.0.1", port, process, account, binaries)
        try:
            _wait_ready(server)
        except PostgresError as err:
            server.stop()
            last_error = str(err)
            if "could not bind" not in last_error and "in use" not in last_error:
                raise
            continue
        try:
            _prepare(server)
        except psycopg.Error as err:
            server.stop()
            raise PostgresError(f"PostgreSQL started but could not be prepared: {err}") from err
        return server
    raise PostgresError(f"PostgreSQL found no free port in three tries: {last_error}")


def _check_ours(directory: Path, account: RunAs) -> None:
    """Refuse a directory someone else made (in /var/tmp, say): we would chown and run in it."""
    if directory.is_symlink():
        raise PostgresError(f"{directory} is a symbolic link; refusing to keep a cluster there")
    if directory.exists() and directory.stat().st_uid not in {os.geteuid(), account.uid}:
        raise PostgresError(
            f"{directory} belongs to uid {directory.stat().st_uid}, neither us nor "
            f"{account.name}; refusing to keep a cluster there"
        )


def _check_reachable(directory: Path, account: RunAs) -> None:
    """Fail early, by name, on a parent directory the server's account cannot pass through."""
    if account.is_us:
        return
    for parent in directory.parents:
        mode = parent.stat().st_mode
        if parent.stat().st_uid != account.uid and not mode & 0o001:
            raise PostgresError(
                f"{parent} is closed to the user {account.name} that PostgreSQL runs as; "
                f"put the cluster elsewhere (tempfile.mkdtemp, /var/tmp)"
            )


def _initdb(binaries: Binaries, account: RunAs, directory: Path, data: Path) -> None:
    hba = directory / "pg_hba.conf.in"
    hba.write_text(HBA)
    os.chown(hba, account.uid, account.gid)
    made = subprocess.run(
        [
            str(binaries.initdb),
            "--pgdata",
            str(data),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",  # see SETTINGS: no durability wanted
            "--no-instructions",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=directory,
        env=_environment(directory),
        user=account.user,
        group=account.group,
        extra_groups=account.extra_groups,
    )
    if made.returncode != 0:
        raise PostgresError(f"initdb failed in {data}: {(made.stderr or made.stdout).strip()}")
    shutil.copyfile(hba, data / "pg_hba.conf")
    os.chown(data / "pg_hba.conf", account.uid, account.gid)
    hba.unlink()


def _spawn(
    binaries: Binaries, account: RunAs, directory: Path, data: Path, port: int
) -> subprocess.Popen[bytes]:
    settings = {**SETTINGS, "port": str(port), "unix_socket_directories": str(directory)}
    arguments = [f"--{name}={value}" for name, value in settings.items()]
    log = (directory / "server.log").open("ab")
    try:
        os.chown(directory / "server.log", account.uid, account.gid)
        return subprocess.Popen(
            [str(binaries.postgres), "-D", str(data), *arguments],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=directory,
            env=_environment(directory),
            preexec_fn=_die_with_parent,  # noqa: PLW1509 -- prctl only, before exec
            start_new_session=True,  # Ctrl-C in a terminal reaches pytest, which stops us in order
            user=account.user,
            group=account.group,
            extra_groups=account.extra_groups,
        )
    finally:
        log.close()


def _environment(directory: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory), "LC_ALL": "C"}


def _wait_ready(server: PostgresServer) -> None:
    """Wait until the server takes a connection, or raise with its log if it exited."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.process.poll() is not None:
            raise PostgresError(
                f"PostgreSQL exited with status {server.process.returncode}: {_tail(server.log)}"
            )
        try:
            with server.connect():
                return
        except psycopg.OperationalError as err:
            if time.monotonic() > deadline:
                raise PostgresError(
                    f"PostgreSQL did not answer within {START_TIMEOUT:.0f}s: {err}; "
                    f"{_tail(server.log)}"
                ) from err
        time.sleep(0.05)  # polling a condition with a deadline, not synchronising by time


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:].strip()
    except OSError:
        return "(no server log)"


def _prepare(server: PostgresServer) -> None:
    """Create the empty template and the password role (its password new on every start)."""
    with server.connect() as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE,)
        ).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
        role = sql.Identifier(server.password_role)
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PASSWORD_ROLE,)).fetchone():
            statement = sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}")
        else:
            statement = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}")
        conn.execute(statement.format(role, sql.Literal(server.password)))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _stop_leftover(binaries: Binaries, account: RunAs, data: Path) -> None:
    """Stop a server still running on `data` (its run was killed); no-op when there is none."""
    if not (data / "postmaster.pid").exists():
        return
    subprocess.run(
        [str(binaries.pg_ctl), "stop", "--pgdata", str(data), "--mode", "immediate", "--wait"],
        capture_output=True,
        check=False,
        cwd=data.parent,
        env=_environment(data.parent),
        user=account.user,
        group=account.group,
        extra_groups=account.extra_groups,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(base: Path | None = None, alive: Callable[[int], bool] = _alive) -> list[Path]:
    """Stop and remove temporary clusters whose owning process is gone; return what went.

    A test session killed before its teardown leaves its directory (and, if the kernel's
    parent-death signal did not reach it, its server). Clusters of sessions still running
    are left alone.
    """
    base = base or Path(tempfile.gettempdir())
    swept = []
    for directory in sorted(base.glob(f"{TEMP_PREFIX}*")):
        try:
            owner = int((directory / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue  # not ours, or still being made
        if alive(owner):
            continue
        if (directory / "data" / "postmaster.pid").exists():
            with contextlib.suppress(PostgresError):
                _stop_leftover(find_binaries(), server_account(), directory / "data")
        shutil.rmtree(directory, ignore_errors=True)
        swept.append(directory)
    return swept


def temporary_directory() -> Path:
    """Return a new directory for a throwaway cluster, where PG_USER can reach it."""
    return Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))


def remove_directory(directory: Path) -> None:
    """Remove a cluster directory whose server never started (or has stopped)."""
    shutil.rmtree(directory, ignore_errors=True)
