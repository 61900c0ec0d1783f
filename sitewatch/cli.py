"""The `sitewatch` command line.

Each subcommand is one small function; expected failures (a bad file, an empty password) print
one clear line and set the exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import json
import logging
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

from sitewatch import __version__, probe_command
from sitewatch.config import ConfigError, check_files
from sitewatch.config.files import Kind
from sitewatch.passwords import hash_password

MIN_PASSWORD_LENGTH = 8
SERVICES = {  # command: (summary, description, example config); each runs `<command>.main.run`
    "agent": (
        "run a site agent",
        "Run a branch-office agent: fetch this site's probe plan from the collector (and cache "
        "it in state_dir), probe on schedule, keep every result in an on-disk outbox and ship "
        "it to the collector. SIGTERM stops it cleanly.",
        "agent.yaml",
    ),
    "collector": (
        "run the collector",
        "Run the central collector: the agents' ingest and plans, the staff API, the centre's "
        "probes of every link's edge, the state of every site, root-cause correlation, "
        "incidents with working-hours SLA clocks, maintenance windows and notifications "
        "(webhook, PagerDuty, email). SIGTERM stops it cleanly.",
        "collector.yaml",
    ),
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose complaints are one line: what is wrong, and where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for every subcommand."""
    parser = _Parser(
        prog="sitewatch",
        description="Network and endpoint monitoring with automatic incidents.",
    )
    parser.add_argument("--version", action="version", version=f"sitewatch {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    check = commands.add_parser(
        "check-config",
        help="validate inventory, agent and collector files",
        description=(
            "Validate inventory, agent and collector files, recognised by their content. "
            "Prints 'FILE: ok (KIND)' for each clean file and 'FILE:LINE: path.to.key: what is "
            "wrong' for each problem. Files given together are also checked against each "
            "other (an agent's site must be in the inventory). Warnings ('FILE:LINE: "
            "path.to.key: warning: ...', e.g. a link of a site with a backup that no "
            "path-bound evidence watches) are printed but do not fail the check. Exit status 1 "
            "if any problem."
        ),
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    check.set_defaults(handler=_check_config)

    hasher = commands.add_parser(
        "hash-password",
        help="print the password_hash for a collector user",
        description=(
            "Read a password on standard input (asked twice when it is a terminal) and print "
            "the scrypt hash to put in a collector user's password_hash."
        ),
    )
    hasher.set_defaults(handler=_hash_password)
    probe_command.add_parser(commands)
    _add_report_parser(commands)
    _add_migrate_parser(commands)

    for name, (summary, description, example) in SERVICES.items():
        service = commands.add_parser(name, help=summary, description=description)
        service.add_argument("--config", type=Path, required=True, metavar="FILE", help=example)
        service.add_argument("--verbose", action="store_true", help="debug logging")
        service.set_defaults(handler=_service)
    return parser


def _add_report_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Add `report sla`: the management report, read from the collector's database."""
    report = commands.add_parser(
        "report",
        help="print a management report from the collector's database",
        description="Print a management report read from the collector's database.",
    )
    kinds = report.add_subparsers(
        dest="report", required=True, metavar="REPORT", parser_class=_Parser
    )
    sla = kinds.add_parser(
        "sla",
        help="incidents resolved within target, and site availability",
        description=(
            "Print the SLA report of the days FROM to TO inclusive, midnight to midnight in "
            "the inventory's time zone: per priority, incidents opened, resolved, within "
            "target and breached, the share achieved against the target, and time to resolve "
            "in working hours; per site, availability round the clock and in business hours, "
            "downtime and unknown time; the major incidents. Incidents are judged as they "
            "stood at the end of the period (an incident open past its due time is breached). "
            "Reads the database named in the collector file; the collector may keep running. "
            "Exit status 1 for a bad config file or database, 2 for bad arguments."
        ),
    )
    sla.add_argument("--config", type=Path, required=True, metavar="FILE", help="collector.yaml")
    sla.add_argument(
        "--from", dest="first", type=_day, required=True, metavar="DATE", help="YYYY-MM-DD"
    )
    sla.add_argument(
        "--to",
        dest="last",
        type=_day,
        required=True,
        metavar="DATE",
        help="YYYY-MM-DD, inclusive",
    )
    sla.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="default table"
    )
    sla.set_defaults(handler=_report_sla, parser=sla)


def _add_migrate_parser(commands: argparse._SubParsersAction[Any]) -> None:
    """Add `migrate`: the schema's pending migrations, and the copy from SQLite to PostgreSQL."""
    migrate = commands.add_parser(
        "migrate",
        help="show or apply schema migrations; copy a SQLite database into PostgreSQL",
        description=(
            "With --config: print the schema version of the collector's database and the "
            "migrations this SiteWatch would apply to it (a collector applies them itself when "
            "it starts); --apply applies them now. With --from FILE.db and --to URL (or "
            "--config naming a PostgreSQL database): copy a SQLite collector's whole database "
            "(results, rollups, incidents, status log, ...) into an empty PostgreSQL database, "
            "then count every table on both sides. Stop the collector first. An interrupted "
            "copy resumes where it stopped when run again. Exit status 1 for a database that "
            "cannot be used or a copy whose counts differ, 2 for bad arguments."
        ),
    )
    migrate.add_argument("--config", type=Path, metavar="FILE", help="collector.yaml")
    migrate.add_argument("--apply", action="store_true", help="apply the pending migrations")
    migrate.add_argument(
        "--from", dest="source", type=Path, metavar="FILE.db", help="the SQLite database to copy"
    )
    migrate.add_argument(
        "--to", dest="target", metavar="URL", help="postgresql://user@host:5432/dbname"
    )
    migrate.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help="the PostgreSQL password for --to (else PGPASSWORD or ~/.pgpass)",
    )
    migrate.set_defaults(handler=_migrate, parser=migrate)


def _day(text: str) -> date:
    """Return the day of a YYYY-MM-DD argument (argparse makes a bad one a usage error)."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is None or len(text) != len("YYYY-MM-DD"):  # not the other ISO forms (20240301)
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD")
    if not date(1970, 1, 2) <= day <= date(9998, 12, 31):
        raise argparse.ArgumentTypeError(f"{text!r} is outside 1970-01-02 .. 9998-12-31")
    return day


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    args = build_parser().parse_args(argv)
    status: int = args.handler(args)
    return status


def _check_config(args: argparse.Namespace) -> int:
    failed = False
    for outcome in check_files(args.files):
        for warning in outcome.warnings:
            print(warning)
        if outcome.problems:
            failed = True
            for problem in outcome.problems:
                print(problem)
        else:
            kind = outcome.kind.value if outcome.kind else "unknown"
            print(f"{outcome.path}: ok ({kind}{_database_of(outcome.path, outcome.kind)})")
    return 1 if failed else 0


def _database_of(path: Path, kind: Kind | None) -> str:
    """Return ", database: WHERE" for a collector file (which database it would open)."""
    if kind is not Kind.COLLECTOR:
        return ""
    from sitewatch.config import load_collector_config  # noqa: PLC0415 -- checked just before

    spec = load_collector_config(path).database_spec
    return f", database: {spec}"


def _hash_password(_args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("sitewatch hash-password: the two passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if len(password) < MIN_PASSWORD_LENGTH:
        print(
            f"sitewatch hash-password: a password needs at least {MIN_PASSWORD_LENGTH} characters",
            file=sys.stderr,
        )
        return 1
    print(hash_password(password))
    return 0


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _service(args: argparse.Namespace) -> int:
    """Run the agent or the collector; imported here so that other commands stay light."""
    service = importlib.import_module(f"{args.command}.main")
    _logging(args.verbose)
    try:
        status: int = service.run(args.config)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    return status


def _report_sla(args: argparse.Namespace) -> int:
    """Print the SLA report; imported here so that other commands stay light."""
    from collector import report  # noqa: PLC0415 -- the collector's modules load on demand
    from collector.store import Store, StoreError  # noqa: PLC0415 -- as above
    from sitewatch.config import load_collector_config  # noqa: PLC0415 -- as above

    if args.last < args.first:
        args.parser.error(f"--from {args.first} is after --to {args.last}")
    try:
        config = load_collector_config(args.config)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    spec = config.database_spec
    if spec.path is not None and not spec.path.is_file():
        return _report_error(f"{spec}: no such database (has the collector run with this file?)")
    unreadable: tuple[type[Exception], ...] = (*_driver_errors(), StoreError)
    inventory = config.inventory
    start, end = report.period_bounds(args.first, args.last, inventory.timezone)
    try:
        store = Store(spec, readonly=True)
    except StoreError as err:
        return _report_error(str(err))
    try:
        built = report.build_report(store, inventory, start, end, time.time())
    except unreadable as err:
        return _report_error(f"{spec}: cannot read the database: {err}")
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps(report.report_json(built), indent=2))
    elif args.format == "csv":
        sys.stdout.write(report.report_csv(built))
    else:
        sys.stdout.write(report.report_table(built))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    """Show or apply the schema's migrations, or copy a SQLite database into PostgreSQL."""
    from collector.store import StoreError  # noqa: PLC0415 -- the collector's modules load on demand

    parser: argparse.ArgumentParser = args.parser
    if args.source is None:
        if args.config is None:
            parser.error("give --config FILE, or --from FILE.db with --to URL")
        if args.target is not None or args.password_file is not None:
            parser.error("--to and --password-file go with --from")
    elif args.apply:
        parser.error("--apply goes with --config alone; --from copies, and migrates its target")
    elif (args.target is None) == (args.config is None):
        parser.error("--from needs the PostgreSQL database: --to URL, or --config FILE")
    elif args.config is not None and args.password_file is not None:
        parser.error("--password-file goes with --to; the --config file names its own")
    failures: tuple[type[Exception], ...] = _driver_errors()
    try:
        if args.source is not None:
            return _migrate_copy(args)
        return _migrate_schema(args.config, apply=args.apply)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 1
    except StoreError as err:
        return _migrate_error(str(err))
    except failures as err:
        # A connection lost half-way through a copy loses nothing: it resumes when run again.
        again = "; run it again to resume" if args.source is not None else ""
        return _migrate_error(f"{str(err).strip().splitlines()[0]}{again}")


def _migrate_schema(config_path: Path, *, apply: bool) -> int:
    from collector.store import schema  # noqa: PLC0415 -- the collector's modules load on demand
    from collector.store.database import open_database  # noqa: PLC0415 -- as above
    from sitewatch.config import load_collector_config  # noqa: PLC0415 -- as above

    spec = load_collector_config(config_path).database_spec
    if spec.path is not None and not spec.path.is_file() and not apply:
        print(
            f"{spec}: no database yet; the collector creates it with schema version "
            f"{len(schema.SCHEMA)} when it starts"
        )
        return 0
    db = open_database(spec, readonly=not apply)
    try:
        todo = schema.pending(db)
        with db.reading() as conn:
            current = schema.version(conn)
        print(f"{spec}: schema version {current}; this SiteWatch's is {len(schema.SCHEMA)}")
        if not todo:
            print("no migrations pending")
            return 0
        print(f"{'applying' if apply else 'pending'}:")
        for number, migration in todo:
            print(f"  {number:>3}  {migration.about}")
        if not apply:
            print(
                f"apply them with: sitewatch migrate --config {config_path} --apply "
                "(a collector applies them when it starts)"
            )
            return 0
        applied = schema.migrate(db)
        db.start_wal(migrated=bool(applied))
        with db.reading() as conn:
            print(f"{spec}: now at schema version {schema.version(conn)}")
    finally:
        db.close()
    return 0


def _migrate_copy(args: argparse.Namespace) -> int:
    from collector import migrate  # noqa: PLC0415 -- the collector's modules load on demand
    from collector.store.database import conninfo  # noqa: PLC0415 -- as above
    from sitewatch.config import load_collector_config  # noqa: PLC0415 -- as above
    from sitewatch.config.model import DatabaseSpec  # noqa: PLC0415 -- as above

    if args.config is not None:
        target = load_collector_config(args.config).database_spec
    else:
        if not str(args.target).startswith(("postgresql://", "postgres://")):
            args.parser.error(f"--to {args.target!r}: give a postgresql:// URL")
        target = DatabaseSpec(url=args.target, password_file=args.password_file)
        conninfo(target)  # refuses a password in the URL before the URL is ever printed
    if target.dialect != "postgresql":
        return _migrate_error(f"{args.config}: database: the copy goes into a PostgreSQL database")
    last: dict[str, int] = {}

    def progress(table: str, rows: int) -> None:
        if rows and rows // 100_000 != last.get(table, 0) // 100_000:
            print(f"{table}: {rows} rows copied", flush=True)
        last[table] = rows

    print(f"copying {args.source} into {target}", flush=True)
    try:
        counts = migrate.copy_database(args.source, target, progress=progress)
    except migrate.CountMismatch as err:
        sys.stdout.write(migrate.format_counts(err.counts))
        return _migrate_error(str(err))
    except migrate.MigrationError as err:
        return _migrate_error(str(err))
    sys.stdout.write(migrate.format_counts(counts))
    print("copied: every table holds as many rows as its source")
    return 0


def _migrate_error(message: str) -> int:
    print(f"sitewatch migrate: {message}", file=sys.stderr)
    return 1


def _driver_errors() -> tuple[type[Exception], ...]:
    """Return the database drivers' root errors: sqlite3's, and psycopg's when installed."""
    try:
        import psycopg  # noqa: PLC0415 -- only a PostgreSQL database needs it
    except ImportError:  # pragma: no cover -- a dependency of the package
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


def _report_error(message: str) -> int:
    print(f"sitewatch report sla: {message}", file=sys.stderr)
    return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
