"""Leadership among collectors on one PostgreSQL database: one leads, another takes over when
it goes, and a leader that lost the lead cannot write as leader again (the epoch's fence)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.arrivals import Heard, Listener
from collector.leadership import Election
from collector.service import Collector
from collector.store import Store
from collector.store.leadership import NOT_HELD, NotLeader
from probes.result import ProbeResult
from sitewatch.config.files import load_collector_config
from tests.pg import PostgresServer

ROOT = Path(__file__).resolve().parents[2]

DEADLINE = 20.0  # seconds: takeover is due within SESSION_TIMEOUT + CAMPAIGN_EVERY


@contextmanager
def stores(url: str, count: int) -> Iterator[list[Store]]:
    opened = [Store(url) for _ in range(count)]
    try:
        yield opened
    finally:
        for store in opened:
            store.close()


@asynccontextmanager
async def standing(election: Election) -> AsyncIterator[asyncio.Event]:
    """Run an election until the block ends; yield the event that stops it."""
    stop = asyncio.Event()
    task = asyncio.create_task(election.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await task


def waiting_on_the_row(store: Store) -> bool:
    """Whether a session waits for a lock while updating the leadership row (a take-over)."""
    with store.db.reading() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE 'UPDATE leadership%'"
        ).fetchone()
    return bool(row and row[0])


async def until(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> float:
    """Wait until `condition` holds, or fail saying `what` did not happen; return the wait."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < deadline, f"{what} within {deadline:g} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - began


async def test_one_collector_leads_and_another_takes_over_when_it_stops(
    migrated_postgres_url: str,
) -> None:
    with stores(migrated_postgres_url, 2) as (first_store, second_store):
        first, second = Election(first_store, "first"), Election(second_store, "second")
        async with standing(first) as stop_first, standing(second) as stop_second:
            await until(lambda: first.leading or second.leading, "one leads")
            leader, follower = (first, second) if first.leading else (second, first)
            seen = follower.rounds
            await until(lambda: follower.rounds >= seen + 2, "two more rounds of the follower")
            assert leader.leading
            assert not follower.leading
            assert follower.epoch == 0
            assert not follower.elected.is_set()
            taken = first_store.leadership.current()
            assert (taken.holder, taken.epoch) == (leader.name, leader.epoch)
            (stop_first if leader is first else stop_second).set()  # its session closes now
            await until(lambda: follower.leading, "the follower takes over")
            assert follower.epoch == taken.epoch + 1
            assert follower.elected.is_set()
            assert first_store.leadership.current().holder == follower.name
            await until(lambda: not leader.leading, "the stopped one says it does not lead")
            assert leader.store.leadership.held == NOT_HELD  # its fenced writes fail from now on


async def test_a_leader_whose_session_is_killed_stops_leading_and_is_fenced(
    migrated_postgres_url: str, postgres_server: PostgresServer
) -> None:
    """The lock's session killed on the server (as when its network path dies): the leader
    learns it at its next ping and stops; another takes the lead with a new epoch; a write
    the old leader still tries as leader is refused, and changes nothing."""
    with stores(migrated_postgres_url, 2) as (old_store, new_store):
        old = Election(old_store, "old")
        async with standing(old):
            await until(lambda: old.leading, "the only collector leads")
            epoch = old.epoch
            admin = postgres_server.connect()
            try:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'sitewatch-leadership'"
                )
            finally:
                admin.close()
            await until(lambda: not old.leading, "the leader notices it lost the lead")
            new = Election(new_store, "new")
            async with standing(new):
                await until(lambda: new.leading, "the other collector takes the lead")
                assert new.epoch > epoch
                old_store.leadership.held = epoch  # as a leader paused through all of this
                with pytest.raises(NotLeader, match="no longer leads"):  # noqa: SIM117
                    with old_store.leadership.fenced() as tx:
                        tx.execute("UPDATE leadership SET holder = 'old' WHERE id = 1")
                assert new_store.leadership.current().holder == "new"
                with new_store.leadership.fenced() as tx:  # the leader's own write goes in
                    tx.execute("SELECT 1")


async def test_a_stale_leaders_transaction_in_flight_holds_the_takeover_until_it_ends(
    migrated_postgres_url: str,
) -> None:
    """The fence's read locks the row shared: a take-over waits for the old leader's
    transaction, so nothing the old leader commits lands after the new epoch."""
    with stores(migrated_postgres_url, 2) as (old_store, new_store):
        old_store.leadership.take("old", time.time())
        taken = asyncio.Event()
        with old_store.leadership.fenced():

            def take() -> None:
                new_store.leadership.take("new", time.time())
                taken.set()

            taking = asyncio.get_running_loop().run_in_executor(None, take)
            await until(lambda: waiting_on_the_row(new_store), "the take-over waiting")
            assert not taken.is_set()  # the take-over waits for the transaction in flight
        await asyncio.wait_for(taking, DEADLINE)
        assert new_store.leadership.current().holder == "new"


def test_sqlite_has_one_collector_and_it_leads_unfenced(sqlite_store: Store) -> None:
    election = Election(sqlite_store, "only")
    assert election.leading
    assert election.epoch == 0
    with sqlite_store.leadership.fenced() as tx:  # never stood for leader: no epoch to check
        tx.execute("SELECT 1")


async def test_a_stale_leader_frozen_inside_a_transaction_delays_a_takeover_by_seconds_only(
    migrated_postgres_url: str,
) -> None:
    """Its transaction never ends by itself (the process is frozen): the server ends it after
    5 s idle (the pool's idle_in_transaction_session_timeout), and the takeover goes through
    instead of waiting for the frozen process."""
    with stores(migrated_postgres_url, 2) as (old_store, new_store):
        old_store.leadership.take("old", time.time())
        frozen = old_store.leadership.fenced()
        frozen.__enter__()  # a fenced transaction, left open as by a process that stopped
        try:
            new = Election(new_store, "new")
            async with standing(new):
                waited = await until(lambda: new.leading, "the takeover")
            assert waited < DEADLINE
            assert new_store.leadership.current().holder == "new"
        finally:
            with contextlib.suppress(Exception):  # the server ended that transaction
                frozen.__exit__(None, None, None)


async def test_a_collector_that_stands_for_leader_writes_nothing_as_leader_before_it_leads(
    migrated_postgres_url: str,
) -> None:
    """A follower starting beside a live leader: its warm-up marks no gap (the leader was
    watching), and once it stands for leader its leader's writes are refused until it leads."""
    config = load_collector_config(ROOT / "config" / "collector.yaml")
    with stores(migrated_postgres_url, 2) as (leader_store, follower_store):
        leader = Election(leader_store, "leader")
        async with standing(leader):
            await until(lambda: leader.leading, "the leader leads")
            leader_store.status.log([], time.time())  # the leader's note that it watches
            before = leader_store.status.gaps(0.0)
            follower = Collector(config, follower_store)
            follower.pipeline.warm_up()
            assert follower_store.status.gaps(0.0) == before
            async with standing(follower.election):
                await until(lambda: follower.election.leader == "leader", "a round of its own")
                with pytest.raises(NotLeader):
                    follower_store.status.log([], time.time())


async def test_batches_not_handed_on_are_caught_up_from_the_newest_results(
    migrated_postgres_url: str,
) -> None:
    """The listener read an announced batch but could not hand it on (the state book's side
    failed): the next wait says announcements were missed, so the pipeline catches up."""
    with stores(migrated_postgres_url, 2) as (writer, reader):
        listener = Listener(reader, "reader")
        heard: list[Heard] = []
        failed: list[int] = []  # which wait's batches could not be handed on
        stop = asyncio.Event()

        async def take(batch: Heard) -> None:
            heard.append(batch)
            if batch.batches and not failed:
                failed.append(len(heard) - 1)
                raise RuntimeError("the state book failed")
            if failed:
                stop.set()  # the wait after the failure

        task = asyncio.create_task(listener.run(stop, take))
        try:
            await until(lambda: len(heard) >= 1, "the listener's first wait")
            result = ProbeResult("alpha-prn", "icmp", datetime.now(UTC), ok=False)
            writer.results.ingest("alpha-01", [(1, result)], received=time.time(), origin="writer")
            await until(stop.is_set, "a wait saying announcements were missed")
        finally:
            stop.set()
            await task
        [at] = failed
        assert len(heard[at].batches) == 1
        assert heard[at + 1].missed  # so Pipeline.take_in reads the newest results again


async def test_a_collector_stood_down_stands_again_and_leads(migrated_postgres_url: str) -> None:
    """The app's loops stop and start again (a test server, a reload): so does the election."""
    with stores(migrated_postgres_url, 1) as (store,):
        election = Election(store, "again")
        for term in (1, 2):
            async with standing(election):
                await until(lambda: election.leading, f"term {term}")
                assert election.term == term
            assert not election.leading
