"""Dashboard sessions in the database, SQLite and PostgreSQL: expiry, the cap, what is stored,
how often last use is written, and logins that outlive a restart or cross to another process.

Each test runs on both backends (`store`, `database_spec` in tests/conftest.py); PostgreSQL is
the session's real server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from collector.dashboard.sessions import COOKIE, SESSIONS, TOUCH_EVERY, Login, SessionBook
from collector.store import DatabaseSpec, Store
from sitewatch.config.files import load_collector_config
from tests.apps import served
from tests.browser.conftest import Dashboard, write_config
from tests.conftest import opened


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def other(database_spec: DatabaseSpec, store: Store) -> Iterator[Store]:
    """A second process's store on the same database."""
    yield from opened(database_spec)


def stored(store: Store) -> list[tuple[Any, ...]]:
    with store.db.reading() as db:
        rows = db.execute(
            "SELECT token_hash, name, role, csrf, created, last_seen FROM sessions "
            "ORDER BY created, token_hash"
        ).fetchall()
    return [tuple(row) for row in rows]


def test_a_session_lives_while_it_is_used_and_expires_when_idle(store: Store) -> None:
    clock = Clock()
    book = SessionBook(store.sessions, idle=100.0, clock=clock)
    token = book.create(Login("desk", "operator"))
    for _ in range(5):
        clock.now += 90
        session = book.get(token)
        assert session is not None
        assert session.login == Login("desk", "operator")
    clock.now += 101
    assert book.get(token) is None
    assert book.get("made-up") is None


def test_sessions_are_bounded_and_tokens_are_not_kept(store: Store) -> None:
    clock = Clock()
    book = SessionBook(store.sessions, capacity=3, clock=clock)
    tokens = []
    for n in range(3):
        clock.now += 1  # the database orders use by time, not by insertion
        tokens.append(book.create(Login(f"u{n}", "viewer")))
    clock.now += 1
    assert book.get(tokens[0]) is not None  # used: now the freshest
    newest = book.create(Login("u3", "viewer"))
    assert len(book) == 3
    assert book.get(tokens[1]) is None  # the least recently used went
    assert all(book.get(t) is not None for t in (tokens[0], tokens[2], newest))
    assert not any(t in repr(vars(book)) for t in tokens)  # only digests are kept
    assert not any(t in repr(stored(store)) for t in [*tokens, newest])  # also in the database
    book.drop(newest)
    assert book.get(newest) is None
    assert len(book) == 2


def test_an_idle_session_is_swept_when_someone_logs_in(store: Store) -> None:
    clock = Clock()
    book = SessionBook(store.sessions, idle=100.0, clock=clock)
    book.create(Login("gone", "viewer"))
    clock.now += 101
    kept = book.create(Login("desk", "operator"))
    assert [row[1] for row in stored(store)] == ["desk"]
    assert book.get(kept) is not None


def test_each_session_has_its_own_csrf_token(store: Store) -> None:
    book = SessionBook(store.sessions)
    first, second = book.create(Login("a", "viewer")), book.create(Login("a", "viewer"))
    one, two = book.get(first), book.get(second)
    assert one is not None
    assert two is not None
    assert one.csrf != two.csrf
    assert len(one.csrf) >= 32


def test_last_use_is_written_at_most_once_a_minute(store: Store) -> None:
    clock = Clock()
    book = SessionBook(store.sessions, clock=clock)
    token = book.create(Login("desk", "operator"))
    for _ in range(59):  # a request a second for most of a minute: no write
        clock.now += 1
        assert book.get(token) is not None
    assert [row[5] for row in stored(store)] == [1_000.0]
    clock.now += 1  # a minute after the last write
    assert book.get(token) is not None
    assert [row[5] for row in stored(store)] == [1_060.0]
    clock.now += 30
    assert book.get(token) is not None
    book.flush()  # the collector stops: the last use is kept
    assert [row[5] for row in stored(store)] == [1_090.0]


def test_another_process_knows_the_session_and_sees_a_logout_within_a_minute(
    store: Store, other: Store
) -> None:
    clock = Clock()
    here = SessionBook(store.sessions, clock=clock)
    there = SessionBook(other.sessions, clock=clock)
    token = here.create(Login("desk", "operator"))
    found, mine = there.get(token), here.get(token)
    assert found is not None
    assert mine is not None
    assert (found.login, found.csrf) == (mine.login, mine.csrf)
    there.drop(token)  # logged out through the other process
    assert there.get(token) is None
    assert here.get(token) is not None  # this one asks the database once a minute
    clock.now += TOUCH_EVERY
    assert here.get(token) is None


def test_expiry_counts_use_in_any_process(store: Store, other: Store) -> None:
    clock = Clock()
    here = SessionBook(store.sessions, idle=100.0, clock=clock, touch_every=10.0)
    there = SessionBook(other.sessions, idle=100.0, clock=clock, touch_every=10.0)
    token = here.create(Login("desk", "operator"))
    for _ in range(4):  # used only through the other process
        clock.now += 60
        assert there.get(token) is not None
    clock.now += 60  # 240 s after this process last saw it, 60 s after the other did
    assert here.get(token) is not None


# -- through the app -------------------------------------------------------------------------


@asynccontextmanager
async def app_on(
    spec: DatabaseSpec, tmp_path: Path, hashes: dict[str, str]
) -> AsyncIterator[Dashboard]:
    """A collector's app on the database of `spec`: one collector process."""
    config = load_collector_config(write_config(tmp_path, hashes))
    async with served(config, spec) as (client, collector):
        yield Dashboard(client, collector)


async def test_a_restarted_collector_keeps_everyone_logged_in(
    database_spec: DatabaseSpec, tmp_path: Path, hashes: dict[str, str]
) -> None:
    async with app_on(database_spec, tmp_path, hashes) as first:
        assert await first.login("desk") == 303
        jar = first.client.session.cookie_jar.filter_cookies(first.client.make_url("/"))
        token = jar[COOKIE].value
        status, html = await first.page("/")
        assert (status, "desk" in html) == (200, True)
    async with app_on(database_spec, tmp_path, hashes) as second:  # the restart
        second.client.session.cookie_jar.update_cookies({COOKIE: token})
        status, html = await second.page("/")
        assert status == 200
        assert "desk" in html
        response = await second.client.get("/api/v1/sites")  # the API takes the session too
        assert response.status == 200


async def test_a_logout_through_one_collector_ends_the_session_in_another(
    database_spec: DatabaseSpec, tmp_path: Path, hashes: dict[str, str]
) -> None:
    async with (
        app_on(database_spec, tmp_path, hashes) as one,
        app_on(database_spec, tmp_path, hashes) as two,
    ):
        assert await one.login("desk") == 303
        jar = one.client.session.cookie_jar.filter_cookies(one.client.make_url("/"))
        two.client.session.cookie_jar.update_cookies({COOKIE: jar[COOKIE].value})
        assert (await two.page("/"))[0] == 200
        assert one.client.app is not None
        await one.client.post("/logout", data={"csrf": await one.csrf()}, allow_redirects=False)
        assert (await one.page("/"))[0] == 303
        assert two.client.app is not None
        two.client.app[SESSIONS].touch_every = 0.0  # a minute later: it asks the database
        assert (await two.page("/"))[0] == 303
