"""A real collector for the fuzz suite, and its ledger of what was acknowledged.

Every property talks HTTP to the collector's own aiohttp app, served on 127.0.0.1 port 0, with
the example inventory, one real database (a SQLite file, or a database of its own on the
session's PostgreSQL server: `Databases`), a token for each example agent, a viewer and an
operator API token, and a dashboard login. One collector serves all the examples of one test,
so the database grows as it would in service, and the ledger checks that it holds exactly what
was acknowledged.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_runner import BaseRunner

from collector.api import build_app
from collector.dashboard.sessions import COOKIE, SESSIONS, Login
from collector.front import FrontRunner
from collector.service import Collector
from collector.store import CENTRE, DatabaseSpec, Store
from sitewatch.config.files import load_collector_config
from sitewatch.config.model import AgentCredential, ApiToken, CollectorConfig, User
from tests import pg
from tests.browser.conftest import Dashboard
from tests.collector.test_api import OPERATOR, ROOT, STAFF, sha

EXAMPLE = load_collector_config(ROOT / "config" / "collector.yaml")
SITE_TARGETS = {
    site.id: (*(link.id for link in site.links), *(device.id for device in site.devices))
    for site in EXAMPLE.inventory.sites
}


def agent_token(agent: str) -> str:
    return f"{agent}-fuzz-token"


_DATABASE_NUMBERS = itertools.count(1)  # PostgreSQL database names, unique in the session


class Databases:
    """Fresh, empty collector databases of one backend, for a test and the collectors it starts.

    SQLite: a new file in a folder of the test's. PostgreSQL: a new database on the session's
    server, copied from a template the collector's schema is already migrated into (a file copy,
    where an empty database plus the migration costs a few times more, and the fuzz suite
    starts a fresh collector per example in places: `checks.alone`, the older-database test).
    Every PostgreSQL database made here is dropped by `close`.
    """

    def __init__(
        self, folder: Path, server: pg.PostgresServer | None = None, template: str = ""
    ) -> None:
        self.folder = folder
        self.server = server
        self.template = template
        self.made: list[str] = []

    @property
    def dialect(self) -> str:
        return "sqlite" if self.server is None else "postgresql"

    def fresh(self, name: str) -> DatabaseSpec:
        """A new, empty collector database called after `name` (blocking: one DDL statement)."""
        if self.server is None:
            folder = self.folder / name
            folder.mkdir(parents=True, exist_ok=True)
            return DatabaseSpec(path=folder / "collector.db")
        database = self.server.create_database(
            f"fuzz_{next(_DATABASE_NUMBERS)}_{name.replace('-', '_')}",
            template=self.template,
        )
        self.made.append(database)
        return DatabaseSpec(url=self.server.url(database))

    def drop(self, spec: DatabaseSpec) -> None:
        """Drop a PostgreSQL database made here once its collector is done (a test may make
        hundreds); a SQLite file stays in the test's folder, to look at after a failure."""
        if self.server is not None and spec.url is not None:
            database = spec.url.rsplit("/", 1)[1]
            self.server.drop_database(database)
            self.made.remove(database)

    def close(self) -> None:
        """Drop the PostgreSQL databases made here that are left (a test that failed)."""
        if self.server is not None:
            for database in self.made:
                self.server.drop_database(database)
        self.made.clear()


@dataclass
class Ledger:
    """What the collector said it stored, per agent: the exactly-accepted invariant."""

    accepted: dict[str, Counter[int]] = field(default_factory=dict)  # agent -> seqs stored
    keys: dict[str, set[tuple[str, int]]] = field(default_factory=dict)
    stored: int = 0
    batches: int = 0
    healthy: bool = True  # every read has worked so far
    fresh: int = 0  # collectors started to try one input alone

    def expect(self, agent: str, outbox: str, seqs: list[int]) -> int:
        """Return how many of these seqs are new to the collector, and count them as stored."""
        keys = self.keys.setdefault(agent, set())
        fresh = [seq for seq in seqs if (outbox, seq) not in keys]
        keys.update((outbox, seq) for seq in fresh)
        self.accepted.setdefault(agent, Counter()).update(fresh)
        return len(fresh)


class ErrorLog(logging.Handler):
    """Every record at ERROR or above, from the collector and aiohttp: none are expected."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass(repr=False)
class Rig:
    """A running collector: its HTTP client (logged in as an operator), its parts, its ledger."""

    client: TestClient[Any, Any]
    collector: Collector
    store: Store
    config: CollectorConfig
    databases: Databases  # where `checks.alone` gets a fresh collector's database
    hashes: dict[str, str]
    ledger: Ledger = field(default_factory=Ledger)

    @property
    def agents(self) -> tuple[AgentCredential, ...]:
        return self.config.agents

    def site_targets(self, site: str) -> tuple[str, ...]:
        """The link and device ids of a site, in inventory order."""
        return SITE_TARGETS[site]

    def __repr__(self) -> str:  # hypothesis prints the fixtures of a failing example
        return f"Rig({self.client.make_url('/')}, {self.ledger.stored} results stored)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis pretty-prints dataclasses field by field otherwise

    def stored_seqs(self, agent: str) -> Counter[int]:
        return Counter(self.store.results.sequences(agent))


class FrontTestServer(TestServer):
    """aiohttp's test server, run by the collector's own FrontRunner as `sitewatch collector` is.

    The front door (bodies inflated by the handlers, not the parser; JSON for what the parser
    refuses; connection limits) is part of what is fuzzed, so it must be the real one.
    """

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return FrontRunner(self.app, **kwargs)


def fuzz_config(spec: DatabaseSpec, hashes: dict[str, str]) -> CollectorConfig:
    """The example collector.yaml on `spec`, with tokens we know, and one login (desk)."""
    config = EXAMPLE
    return replace(
        config,
        database=str(spec),
        database_spec=spec,
        agents=tuple(replace(a, token_sha256=sha(agent_token(a.id))) for a in config.agents),
        api_tokens=(
            ApiToken("screen", "viewer", sha(STAFF)),
            ApiToken("desk", "operator", sha(OPERATOR)),
        ),
        users=(User("desk", "operator", hashes["desk"]),),
    )


@asynccontextmanager
async def running(
    databases: Databases,
    name: str,
    hashes: dict[str, str],
    *,
    correlate: bool,
    form_login: bool = True,
) -> AsyncIterator[Rig]:
    """Serve a collector on a new database (`name`), logged in; `correlate` runs its loop.

    With the correlation loop, fuzzed results move targets' states and open real incidents,
    and what the correlation writes (status log, incidents, notifications) is read back by the
    pages like everything else.
    """
    spec = await asyncio.to_thread(databases.fresh, name)
    config = fuzz_config(spec, hashes)
    try:
        async with serving(
            config, databases, hashes, correlate=correlate, form_login=form_login
        ) as rig:
            yield rig
    finally:
        await asyncio.to_thread(databases.drop, spec)


@asynccontextmanager
async def restarted(rig: Rig, *, form_login: bool = True) -> AsyncIterator[Rig]:
    """Serve a second collector on `rig`'s database, as after a restart (state warmed up)."""
    async with serving(
        rig.config, rig.databases, rig.hashes, correlate=False, form_login=form_login
    ) as again:
        again.ledger = rig.ledger
        yield again


@asynccontextmanager
async def serving(
    config: CollectorConfig,
    databases: Databases,
    hashes: dict[str, str],
    *,
    correlate: bool,
    form_login: bool = True,
) -> AsyncIterator[Rig]:
    """Serve a collector on the config's database, logged in as desk (operator)."""
    store = await asyncio.to_thread(Store, config.database_spec)
    stop = asyncio.Event()
    loop: asyncio.Task[None] | None = None
    election: asyncio.Task[None] | None = None
    try:
        collector = Collector(config, store)
        await asyncio.to_thread(collector.pipeline.warm_up)
        app = build_app(collector)
        async with TestClient(FrontTestServer(app, host="127.0.0.1", port=0)) as client:
            if form_login:
                assert await Dashboard(client, collector).login("desk") == 303
            else:  # the same session the form makes, without its deliberately slow scrypt
                token = app[SESSIONS].create(Login("desk", "operator"))
                client.session.cookie_jar.update_cookies({COOKIE: token}, client.make_url("/"))
            if correlate:
                election = asyncio.create_task(collector.election.run(stop))
                loop = asyncio.create_task(collector.correlation_loop(stop))
            try:
                yield Rig(client, collector, store, config, databases, hashes)
            finally:
                stop.set()
                for task in (loop, election):
                    if task is not None:
                        async with asyncio.timeout(30):
                            await task
    finally:
        store.close()


def assert_stored_exactly(rig: Rig) -> None:
    """The database holds exactly the (agent, seq) the collector acknowledged, no more."""
    total = 0
    for agent in rig.agents:
        stored = rig.stored_seqs(agent.id)
        assert stored == rig.ledger.accepted.get(agent.id, Counter()), agent.id
        total += stored.total()
    with rig.store.db.reading() as db:
        (rows,) = db.execute("SELECT count(*) FROM results WHERE source != ?", (CENTRE,)).fetchone()
    assert rows == total == rig.ledger.stored
