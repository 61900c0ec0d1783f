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
            print(f"{outcome.path}: ok ({kind})")
    return 1 if failed else 0


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
    database = Path(config.database)
    if "://" in config.database:
        return _report_error(f"{args.config}: database: only a SQLite file can be read for reports")
    if not database.is_absolute():
        database = config.source.parent / database
    if not database.is_file():
        return _report_error(
            f"{database}: no such database (has the collector run with this file?)"
        )
    inventory = config.inventory
    start, end = report.period_bounds(args.first, args.last, inventory.timezone)
    try:
        store = Store(database, readonly=True)
    except StoreError as err:
        return _report_error(str(err))
    try:
        built = report.build_report(store, inventory, start, end, time.time())
    except sqlite3.Error as err:
        return _report_error(f"{database}: cannot read the database: {err}")
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps(report.report_json(built), indent=2))
    elif args.format == "csv":
        sys.stdout.write(report.report_csv(built))
    else:
        sys.stdout.write(report.report_table(built))
    return 0


def _report_error(message: str) -> int:
    print(f"sitewatch report sla: {message}", file=sys.stderr)
    return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
