"""`python -m tests.lab up|run|down`: the lab for a person, with SiteWatch on it, or sweep it.

`up` builds the lab alone; `run` (what `make run` does) also starts the collector on the hub and
one agent in each monitored site's namespace, with fresh tokens, and prints how to reach them.
`run --db postgres` (`make run DB=postgres`) gives the collector a local PostgreSQL instead of
its SQLite file.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import sys
import threading
from pathlib import Path

import psycopg

from sitewatch.config import ConfigError
from sitewatch.passwords import hash_password
from tests import pg
from tests.deploy import Deployment, deploy
from tests.lab import Lab, LabError, can_build, sweep_stale

CORE_HELP = "the address behind the hub that path probes aim at (default 10.99.0.254)"
PG_DIRECTORY = Path("/var/tmp/sitewatch-postgres")  # noqa: S108 -- kept between runs; pg.py refuses it if someone else made it
RUN_DATABASE = "sitewatch"
DB_HELP = (
    "the collector's database: sqlite (default: a file in --folder) or postgres: a local "
    "PostgreSQL server (Debian's, run as the unprivileged user sitewatch-pg when root) whose "
    "cluster lives in --pg-dir and is kept between runs; its database 'sitewatch' is made "
    "afresh on every run, like the SQLite file, and the server stops when the run ends"
)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="build the lab, print it, keep it until Ctrl-C")
    up.add_argument("--inventory", type=Path, default=Path("config/inventory.yaml"))
    up.add_argument("--hub", default="10.99.0.1", help="the hub's address (default 10.99.0.1)")
    up.add_argument("--core", default="10.99.0.254", help=CORE_HELP)
    run = commands.add_parser("run", help="build the lab and run SiteWatch on it until Ctrl-C")
    run.add_argument("--inventory", type=Path, default=Path("config/inventory.yaml"))
    run.add_argument("--hub", default="10.99.0.1", help="the hub's address (default 10.99.0.1)")
    run.add_argument("--core", default="10.99.0.254", help=CORE_HELP)
    run.add_argument("--port", type=int, default=8080, help="the collector's port (default 8080)")
    run.add_argument("--folder", type=Path, default=Path(".run"), help="configs, logs, database")
    run.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite", help=DB_HELP)
    run.add_argument(
        "--pg-dir",
        type=Path,
        default=PG_DIRECTORY,
        help=f"the PostgreSQL cluster's directory for --db postgres (default {PG_DIRECTORY})",
    )
    commands.add_parser("down", help="remove every lab whose process is gone")
    args = parser.parse_args()
    problem = can_build()
    if problem:
        print(f"lab: {problem}", file=sys.stderr)
        return 1
    if args.command == "down":
        swept = sweep_stale()
        print(f"lab: removed {', '.join(swept)}" if swept else "lab: nothing to remove")
        return 0
    sweep_stale()
    try:
        lab = Lab(args.inventory, hub_address=args.hub, core_address=args.core)
    except (ConfigError, LabError) as err:
        print(f"lab: {err}", file=sys.stderr)
        return 1
    server = None
    if args.command == "run" and args.db == "postgres":
        try:  # before the lab, so a missing PostgreSQL fails in a second, not after the build
            server = start_database(args.pg_dir)
        except (pg.PostgresError, psycopg.Error, OSError) as err:
            print(f"postgres: {err}", file=sys.stderr)
            return 1
        print(f"postgres: {server.url(RUN_DATABASE)} (cluster in {server.directory})")
    try:
        return _run_lab(lab, args, server)
    finally:
        if server is not None:
            server.stop()
            print("postgres: stopped")


def _run_lab(lab: Lab, args: argparse.Namespace, server: pg.PostgresServer | None) -> int:
    """Build the lab, start SiteWatch on it for `run`, and keep both until SIGINT/SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        lab.up()
    except LabError as err:
        print(f"lab: {err}", file=sys.stderr)
        return 1
    deployment = None
    try:
        print(lab.describe())
        if args.command == "run":
            database = server.url(RUN_DATABASE) if server else None
            deployment = _start_sitewatch(lab, args, database)
        else:
            print("\nThe lab is up. Ctrl-C tears it down.", flush=True)
        stop.wait()
    finally:
        if deployment is not None:
            deployment.stop_all()
            print("sitewatch: collector and agents stopped")
        lab.down()
        print("lab: torn down")
    return 0


def start_database(directory: Path) -> pg.PostgresServer:
    """Start the local PostgreSQL for `run --db postgres`, with an empty RUN_DATABASE in it.

    The cluster in `directory` is reused (a server a killed run left on it is stopped first);
    the database is dropped and made again, as `run` makes a fresh SQLite file.
    """
    server = pg.start_postgres(directory)
    try:
        server.drop_database(RUN_DATABASE)
        server.create_database(RUN_DATABASE)
    except psycopg.Error:
        server.stop()
        raise
    return server


def use_database(collector_config: Path, database: str) -> None:
    """Point a written collector config at `database` (a URL) instead of its SQLite file."""
    lines = collector_config.read_text().splitlines(keepends=True)
    found = [n for n, line in enumerate(lines) if line.startswith("database: ")]
    if len(found) != 1:
        raise ValueError(f"{collector_config} has {len(found)} 'database:' lines, expected one")
    lines[found[0]] = f"database: {database}\n"
    collector_config.write_text("".join(lines))


def _start_sitewatch(lab: Lab, args: argparse.Namespace, database: str | None) -> Deployment:
    """Start the collector on the hub and an agent in every monitored site's namespace.

    `database` (a postgresql:// URL) replaces the collector's SQLite file when given.
    """
    folder = args.folder.resolve()
    if folder.exists():
        shutil.rmtree(folder)  # a fresh database and fresh tokens each run
    sites = list(lab.plan.sites)
    passwords = {role: secrets.token_urlsafe(12) for role in ("operator", "viewer")}
    users = "users:\n" + "".join(
        f"  - {{name: {role}, role: {role}, password_hash: '{hash_password(password)}'}}\n"
        for role, password in passwords.items()
    )
    deployment = deploy(
        folder, args.inventory, sites, f"{args.hub}:{args.port}", collector_extra=users
    )
    if database is not None:
        use_database(deployment.collector_config, database)
    deployment.start_collector()
    for site in sites:
        deployment.start_agent(site, netns=lab.namespace(site))
    where = (
        f"Configs and logs: {folder}\nDatabase: {database}  (psql '{database}')\n"
        if database
        else f"Configs, logs and the database: {folder}\n"
    )
    print(
        f"\nSiteWatch is running: collector {deployment.url} (on the hub), "
        f"{len(sites)} agents in their site namespaces.\n"
        f"Dashboard: {deployment.url}/  log in as operator / {passwords['operator']} "
        f"(or viewer / {passwords['viewer']})\n"
        f"Staff API token (admin): {deployment.staff_token}\n"
        f"  curl -H 'Authorization: Bearer {deployment.staff_token}' "
        f"{deployment.url}/api/v1/sites\n"
        f"{where}"
        "Sites fill in within a few probe intervals. Ctrl-C stops SiteWatch and tears the "
        "lab down.",
        flush=True,
    )
    return deployment


if __name__ == "__main__":
    sys.exit(main())
