"""A SiteWatch deployment in a folder: configs with fresh tokens, a collector and its agents.

Used by the pipeline tests (on loopback), the lab's end-to-end tests and `make run` (agents in
the lab's site namespaces). Every process is started as the user would start it, through the
`sitewatch` command, and stopped by the deployment even when a test fails.

The collector's database is a SQLite file in the deployment's folder, or a PostgreSQL database
given as its URL (`deploy(..., database=URL)`). The lab's end-to-end modules run on both: their
module-scoped collector is parametrised over `BACKENDS` (tests/conftest.py), and
`collector_database` gives each run its database, a fresh one on the session's PostgreSQL server
for the second. On PostgreSQL a second collector, the standby, may share the database
(`deploy(..., standby=LISTEN)`); the agents are then given both addresses.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from agent.main import OUTBOX_NAME
from tests import pg
from tests.conftest import EXAMPLE_INVENTORY
from tests.lab import Lab, LabError, wait_until

COLLECTOR, STANDBY = "collector", "standby"  # the process names of the two collectors
FAST = {  # the example inventory's timings, made fast enough for an outage to play in seconds
    "  interval: 30s": "  interval: 1s",
    "  timeout: 2s": "  timeout: 500ms",
    "  fail_after: 3 ": "  fail_after: 2 ",
    "  recover_after: 2 ": "  recover_after: 1 ",
}


@dataclass
class Deployment:
    folder: Path
    inventory: Path
    url: str
    staff_token: str
    agent_tokens: dict[str, str]  # site -> token
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ca_file: Path | None = None  # the CA that signed the collector's certificate, under TLS
    database_url: str | None = None  # a postgresql:// URL: the collector's database, not the file
    standby_url: str | None = None  # a second collector on the same database, if deployed

    @property
    def collector_config(self) -> Path:
        return self.config_of(COLLECTOR)

    def config_of(self, collector: str) -> Path:
        """Return the config file of COLLECTOR or STANDBY."""
        return self.folder / f"{collector}.yaml"

    def url_of(self, collector: str) -> str:
        """Return where COLLECTOR or STANDBY answers."""
        url = self.url if collector == COLLECTOR else self.standby_url
        if url is None:
            raise ValueError(f"no {collector} in this deployment")
        return url

    @property
    def collector_urls(self) -> list[str]:
        """Return the addresses the agents are given, in their order."""
        return [self.url, *([self.standby_url] if self.standby_url else [])]

    def agent_id(self, site: str) -> str:
        return f"{site}-agent"

    def agent_config(self, site: str) -> Path:
        return self.folder / site / "agent.yaml"

    def state_dir(self, site: str) -> Path:
        return self.folder / site / "state"

    @property
    def database(self) -> Path:
        """The collector's SQLite file (unused when it is given `database_url`)."""
        return self.folder / "collector.db"

    @property
    def database_setting(self) -> str:
        """What collector.yaml says under `database:`: the URL, or the SQLite file."""
        return self.database_url or str(self.database)

    def outbox(self, site: str) -> Path:
        return self.state_dir(site) / OUTBOX_NAME

    def outbox_depth(self, site: str) -> int:
        """Return how many results a (running) agent's outbox holds; WAL lets us read beside it."""
        with sqlite3.connect(f"file:{self.outbox(site)}?mode=ro", uri=True) as db:
            (depth,) = db.execute("SELECT depth FROM meta").fetchone()
        db.close()
        return int(depth)

    def stored_sequences(self, source: str) -> list[int]:
        """Return the sequence numbers the collector has stored from one source, in order."""
        if self.database_url is not None:
            with psycopg.connect(self.database_url, connect_timeout=10) as conn:
                found = conn.execute(
                    "SELECT seq FROM results WHERE source = %s ORDER BY seq", (source,)
                ).fetchall()
            return [int(row[0]) for row in found]
        with closing(sqlite3.connect(self.database)) as db:
            rows = db.execute(
                "SELECT seq FROM results WHERE source = ? ORDER BY seq", (source,)
            ).fetchall()
        return [row[0] for row in rows]

    def start_collector(self, name: str = COLLECTOR) -> subprocess.Popen[bytes]:
        """Start COLLECTOR or STANDBY; return once it answers /healthz."""
        url = self.url_of(name)
        process = self._start(name, ["collector", "--config", str(self.config_of(name))])

        def answering() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the {name} exited: {self.log(name)[-2000:]}")
            return self.health(url) is not None

        wait_until(answering, 30, f"the {name} answering /healthz")
        return process

    def start_agent(self, site: str, netns: str | None = None) -> subprocess.Popen[bytes]:
        prefix = ["ip", "netns", "exec", netns] if netns else []
        command = ["agent", "--config", str(self.agent_config(site))]
        return self._start(f"agent-{site}", command, prefix)

    def _start(
        self, name: str, args: list[str], prefix: list[str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "sitewatch.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
        )
        log.close()
        self.processes[name] = process
        return process

    def kill(self, name: str, signum: int = signal.SIGKILL) -> int:
        """Signal a process and wait for it; return its exit status."""
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signum)
        status = process.wait(timeout=30)  # kept on a timeout, for stop_all's SIGKILL
        del self.processes[name]
        return status

    def stop_all(self) -> None:
        for name in sorted(self.processes, key=lambda n: n in (COLLECTOR, STANDBY)):  # agents first
            try:
                self.kill(name, signal.SIGTERM)
            except subprocess.TimeoutExpired:
                self.kill(name, signal.SIGKILL)

    def healthy(self) -> bool:
        return self.health(self.url) is not None

    def health(self, url: str) -> dict[str, Any] | None:
        """Return what the collector at `url` says at /healthz, or None if it answers not 200."""
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2, context=self._tls()) as got:  # noqa: S310
                return dict(json.load(got)) if got.status == 200 else None
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def api(self, path: str, at: str | None = None) -> Any:
        """GET `path` as the staff token from the collector at `at` (by default, the first)."""
        request = urllib.request.Request(  # noqa: S310 -- our own collector
            f"{at or self.url}{path}", headers={"Authorization": f"Bearer {self.staff_token}"}
        )
        with urllib.request.urlopen(request, timeout=5, context=self._tls()) as response:  # noqa: S310
            return json.load(response)

    def _tls(self) -> ssl.SSLContext | None:
        """Return a context trusting the deployment's CA, or None for plain HTTP."""
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None

    def post(self, path: str, body: Any, method: str = "POST") -> tuple[int, Any]:
        """Send JSON as the staff token; return the status and the decoded reply (None if empty)."""
        request = urllib.request.Request(  # noqa: S310 -- our own collector
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            method=method,
            headers={
                "Authorization": f"Bearer {self.staff_token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=5, context=self._tls()) as response:  # noqa: S310
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def calm(self, sites: list[str]) -> bool:
        """Whether every one of `sites` is up with its agent heard, and no incident is open."""
        views = {view["id"]: view for view in self.api("/api/v1/sites")}
        up = all(views[s]["status"] == "up" and views[s]["agent_alive"] for s in sites)
        return up and not self.api("/api/v1/incidents?status=open")

    def site(self, site: str) -> dict[str, Any]:
        found: dict[str, Any] = self.api(f"/api/v1/sites/{site}")
        return found

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")


def deploy(
    folder: Path,
    inventory: Path,
    sites: list[str],
    listen: str,
    *,
    tls: tuple[Path, Path] | None = None,
    ca_file: Path | None = None,
    collector_extra: str = "",
    database: str | None = None,
    standby: str | None = None,
) -> Deployment:
    """Write the collector's config and one agent config per site, with fresh tokens.

    With `tls` (certificate chain, key) the collector serves HTTPS, and the agents and the
    deployment's own requests trust `ca_file`. `collector_extra` is appended to collector.yaml
    (receivers under `notify:`, dashboard `users:`). `database`, a postgresql:// URL, is the
    collector's database instead of the SQLite file in `folder`. `standby`, a second listen
    address, configures a second collector on that database (STANDBY), every agent told of
    both.
    """
    if (tls is None) != (ca_file is None):
        raise ValueError("tls and ca_file go together")
    if standby is not None and database is None:
        raise ValueError("two collectors share a PostgreSQL database: give its URL")
    folder.mkdir(parents=True, exist_ok=True)
    host, port = listen.rsplit(":", 1)
    tokens = {site: secrets.token_urlsafe(24) for site in sites}
    scheme = "https" if tls else "http"
    deployment = Deployment(
        folder,
        inventory,
        f"{scheme}://{host}:{port}",
        secrets.token_urlsafe(24),
        tokens,
        ca_file=ca_file.resolve() if ca_file else None,
        database_url=database,
        standby_url=f"{scheme}://{standby}" if standby else None,
    )
    agents = "\n".join(
        f"  - {{id: {deployment.agent_id(site)}, site: {site}, token_sha256: {_sha(token)}}}"
        for site, token in tokens.items()
    )
    tls_key = f"tls: {{cert: {tls[0].resolve()}, key: {tls[1].resolve()}}}\n" if tls else ""
    for name, address in ((COLLECTOR, listen), (STANDBY, standby)):
        if address is None:
            continue
        deployment.config_of(name).write_text(
            f"listen: {address}\n"
            f"{tls_key}"
            f"database: {deployment.database_setting}\n"
            f"inventory: {inventory.resolve()}\n"
            f"agents:\n{agents}\n"
            "api_tokens:\n"
            f"  - {{name: tests, role: admin, token_sha256: {_sha(deployment.staff_token)}}}\n"
            f"{collector_extra}"
        )
    for site, token in tokens.items():
        (folder / site).mkdir(exist_ok=True)
        token_file = folder / site / "agent.token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        deployment.agent_config(site).write_text(
            f"id: {deployment.agent_id(site)}\n"
            f"site: {site}\n"
            f"collector: {_one_or_list(deployment.collector_urls)}\n"
            + (f"ca_file: {deployment.ca_file}\n" if deployment.ca_file else "")
            + f"token_file: {token_file}\n"
            f"state_dir: {deployment.state_dir(site)}\n"
        )
    return deployment


InventoryEdit = Callable[[dict[str, Any]], None]  # changes a parsed inventory in place


def fast_inventory(folder: Path, lab: Lab, edit: InventoryEdit | None = None) -> Path:
    """Write the example inventory with FAST timings into `folder`; return its path.

    Only for a lab that is up: a collector run from it pings every link's edge, and only the
    lab's namespaces and blackhole routes keep those packets on this machine (run without a
    lab, they would head for the default gateway). `edit`, if given, changes the parsed
    inventory before it is written (comments are lost): a variant for the collector, such
    as one without some link evidence, while the lab is still built from the example.
    """
    if not lab.manifest_path.exists():
        raise LabError("the example inventory's addresses are safe only with its lab up")
    text = EXAMPLE_INVENTORY.read_text()
    for slow, fast in FAST.items():
        if slow not in text:
            raise ValueError(f"the example inventory no longer says {slow.strip()!r}")
        text = text.replace(slow, fast)
    if edit is not None:
        tree = yaml.safe_load(text)
        edit(tree)
        text = yaml.safe_dump(tree, sort_keys=False)
    path = folder / "inventory.yaml"
    path.write_text(text)
    return path


@contextmanager
def on_lab(
    lab: Lab,
    folder: Path,
    port: int,
    collector_extra: str = "",
    edit: InventoryEdit | None = None,
    *,
    database: str | None = None,
    standby: bool = False,
) -> Iterator[Deployment]:
    """Run the fast example on the lab: the collector on the hub, an agent in every site.

    `edit` changes the collector's inventory (see `fast_inventory`); the agents' plans follow
    it. `database`, a postgresql:// URL, replaces the collector's SQLite file; with `standby`
    a second collector shares it, on the hub's second address and the same port. Yields once
    every site is up with its agent heard and no incident is open; stops every process
    afterwards, also when the test fails.
    """
    sites = list(lab.plan.sites)
    running = deploy(
        folder,
        fast_inventory(folder, lab, edit),
        sites,
        f"{lab.plan.hub_address}:{port}",
        collector_extra=collector_extra,
        database=database,
        standby=f"{lab.plan.standby_address}:{port}" if standby else None,
    )
    try:
        running.start_collector()
        if standby:
            running.start_collector(STANDBY)
        for site in sites:
            running.start_agent(site, netns=lab.namespace(site))
        wait_until(lambda: running.calm(sites), 120, "every site up, no incident open")
        yield running
    finally:
        running.stop_all()


@contextmanager
def collector_database(request: pytest.FixtureRequest, name: str) -> Iterator[str | None]:
    """Yield the database of a collector fixture parametrised over `BACKENDS`.

    None for SQLite (the deployment's own file); for PostgreSQL the URL of a fresh database
    `name` on the session's server, dropped once the caller is done (after its collector has
    stopped). The server is asked for only here, so a SQLite run never starts one; under CI a
    server that cannot start fails the run (see `postgres_server`).
    """
    if request.param == "sqlite":
        yield None
        return
    server: pg.PostgresServer = request.getfixturevalue("postgres_server")
    made = server.create_database(name)
    try:
        yield server.url(made)
    finally:
        server.drop_database(made)


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _one_or_list(urls: list[str]) -> str:
    """Return `collector:` as agent.yaml says it: one URL, or the list of several."""
    return urls[0] if len(urls) == 1 else f"[{', '.join(urls)}]"


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
