"""What the other collectors on a PostgreSQL database stored, read into this one's state book.

An agent posts to whichever collector answers it first (its `collector:` list), and the leader
must correlate every agent's evidence; a follower must show it. So each collector LISTENs, on
a session of its own, for the batches the others announce (collector.store.arrivals), reads
each back by its key (`Results.arrived`) and applies it to its state book, with the agent's
last contact and heartbeat (`Pipeline.take_in`). Its own batches it applied as it stored them.

A notification is delivered only to a session listening at its commit. When the listening
session is (re)opened, at start or after the server or the network dropped it, whatever was
announced meanwhile is lost: the collector then reads the newest results again, as at start-up
(`Pipeline.catch_up`), and the state book drops what it has applied already (a result no newer
than the last applied to its target). So nothing stored is missed for longer than a reconnect.

SQLite holds one collector per file: nothing to listen for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from collector.loops import Rounds, pause
from collector.store import Store
from collector.store.agents import last_heard
from collector.store.arrivals import CHANNEL, Arrival
from collector.store.results import Stored

log = logging.getLogger(__name__)
Taker = Callable[["Heard"], Awaitable[None]]  # what a wait's batches go to: Pipeline.take_in
LISTEN_FOR = 1.0  # seconds of one wait for announcements
RETRY_AFTER = 2.0  # seconds before listening again after the session failed
SESSION_OPTIONS = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "application_name": "sitewatch-arrivals",
}


@dataclass(frozen=True, slots=True)
class Heard:
    """One wait's worth of other collectors' batches, read back."""

    batches: list[tuple[Arrival, list[Stored]]] = field(default_factory=list)
    heartbeats: dict[str, Any] = field(default_factory=dict)  # agent -> its stored heartbeat
    missed: bool = False  # the session was (re)opened: announcements may have been lost
    ignored: int = 0  # notifications on the channel that were not announcements


class Listener:
    """This collector's session listening for the other collectors' batches."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self.read = 0  # results read back from other collectors since start
        self._session: Any = None  # psycopg.Connection, LISTENing
        self._missed = True  # announcements may have been lost since the last batches handed on

    async def run(self, stop: asyncio.Event, take: Taker) -> None:
        """Listen until `stop`, passing what the others stored to `take`."""
        if self.store.dialect != "postgresql":
            await stop.wait()
            return
        # A thread of each run's own: each wait blocks for up to LISTEN_FOR, and must not take
        # one of the shared pool's threads from the requests for good.
        thread = ThreadPoolExecutor(1, thread_name_prefix="sitewatch-arrivals")
        rounds = Rounds("reading other collectors' results", log)
        try:
            while not stop.is_set():
                failed = True
                with rounds.one():
                    loop = asyncio.get_running_loop()
                    heard = await loop.run_in_executor(thread, self._listen)
                    if heard.ignored:
                        log.warning("ignored %d notifications on %s", heard.ignored, CHANNEL)
                    await take(heard)
                    self._missed = False
                    self.read += sum(len(stored) for _, stored in heard.batches)
                    failed = False
                if failed:
                    await pause(stop, RETRY_AFTER)
        finally:
            await asyncio.get_running_loop().run_in_executor(thread, self._close)
            thread.shutdown(wait=False)

    def _listen(self) -> Heard:
        """Wait up to LISTEN_FOR for announcements; read back the others' batches. Blocking.

        A session that fails is closed, and the failure raised: the next call opens a new one,
        and says that announcements were missed, as it does after any failure to hand them on.
        """
        import psycopg  # noqa: PLC0415 -- PostgreSQL only

        if self._session is None or self._session.closed:
            self._missed = True
        missed = self._missed
        try:
            if self._session is None or self._session.closed:
                self._open()
            notes = [note.payload for note in self._session.notifies(timeout=LISTEN_FOR)]
        except psycopg.Error:
            self._close()
            raise
        # Consumed: until `run` has handed them on, a failure means they were missed.
        self._missed = self._missed or bool(notes)
        arrivals = [Arrival.parse(payload) for payload in notes]
        others = [a for a in arrivals if a is not None and a.origin != self.name]
        batches = [(arrival, self.store.results.arrived(arrival)) for arrival in others]
        heartbeats: dict[str, Any] = {}
        if others:
            heartbeats = {agent: beat for agent, (_, beat) in last_heard(self.store.db).items()}
        ignored = sum(1 for arrival in arrivals if arrival is None)
        return Heard(batches, heartbeats, missed, ignored)

    def _open(self) -> None:
        session = self.store.db.dedicated(**SESSION_OPTIONS)
        session.execute(f"LISTEN {CHANNEL}")
        self._session = session

    def _close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
