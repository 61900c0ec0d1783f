"""Which of the collectors on one database leads: a PostgreSQL advisory lock, on a connection
of its own.

Every collector takes agents' results and serves the API and the dashboard. The leader alone
runs what must happen once: correlation's writes (the status log, incidents), notification
delivery, roll-ups and retention, gap replay, and the centre's sweep of the links' edges (one
sweep, so the centre's evidence is one vantage point, not one per replica). Leadership is the
session-level advisory lock LEADER_LOCK, held on a connection used for nothing else. The
server ends that session, and so frees the lock, when the leader's process or machine dies, or
when the leader stops talking to it for SESSION_TIMEOUT (idle_session_timeout: a process
stopped with SIGSTOP, a frozen VM, a network path gone). Followers try for the lock every
CAMPAIGN_EVERY, so one takes over within about SESSION_TIMEOUT + CAMPAIGN_EVERY.

A leader notices that it lost its session when its ping fails, and stops leading at once. One
that lost it without noticing (it was stopped, and is resumed) is fenced by the database: the
new leader raised the leadership epoch, and every leader transaction checks it
(`collector.store.leadership`), so the stale leader's next write fails instead of opening an
incident twice.

SQLite holds one collector per database file: it leads from its start, unfenced.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from collector.loops import Rounds, pause
from collector.store import Store, StoreError
from collector.store.leadership import LEADER_LOCK

log = logging.getLogger(__name__)
CAMPAIGN_EVERY = 1.0  # seconds between a follower's tries for the lock, and a leader's pings
SESSION_TIMEOUT = 5.0  # seconds the server keeps a silent lock session (idle_session_timeout)
# The lock session's own TCP: a leader whose network path is gone learns it within seconds,
# not after the kernel's two hours, and stops leading before a follower can take over.
SESSION_OPTIONS = {
    "keepalives": 1,
    "keepalives_idle": 2,
    "keepalives_interval": 1,
    "keepalives_count": 2,
    "tcp_user_timeout": 3_000,  # ms
    "application_name": "sitewatch-leadership",
}
SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": 2,
    "tcp_keepalives_interval": 1,
    "tcp_keepalives_count": 2,
}
IDLE_SESSION_TIMEOUT_SINCE = 140000  # server_version of PostgreSQL 14


def replica_name(host: str, port: int) -> str:
    """Return how this collector is named to the others: its machine and listen address (the
    same after a restart, so a metric labelled with it stays one series)."""
    return f"{socket.gethostname()} {host}:{port}"


class Election:
    """This collector's standing for leader; `leading` says whether it leads now."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self.dialect = store.dialect
        self.leading = self.dialect == "sqlite"  # one collector per SQLite file: it leads
        self.elected = asyncio.Event()  # set while this collector leads
        self.terms = int(self.leading)  # how many times it took the lead since start
        self.leader = name if self.leading else ""  # who leads, as last seen ("": not known)
        self.epoch_seen = 0  # the leadership epoch as last seen in the database
        self.rounds = 0  # rounds of the election run since start, for tests and metrics
        self._session: Any = None  # psycopg.Connection holding the lock, or trying to
        self._said_old_server = False
        if self.leading:
            self.elected.set()

    @property
    def epoch(self) -> int:
        """The leadership epoch this collector holds; 0 when it does not (or on SQLite)."""
        held = self.store.leadership.held
        return held if held is not None and self.leading else 0

    async def until_leading(self, stop: asyncio.Event) -> bool:
        """Wait until this collector leads, or `stop`; return False only at `stop`.

        The loops that must run once among the collectors call it before each round.
        """
        while not self.leading and not stop.is_set():
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.elected.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
        return not stop.is_set()

    @property
    def term(self) -> int:
        """Which of this collector's terms as leader is running; 0 while it does not lead."""
        return self.terms if self.leading else 0

    async def run(self, stop: asyncio.Event) -> None:
        """Stand for leader until `stop`, then give the lead up at once (close the session)."""
        if self.dialect == "sqlite":
            await stop.wait()
            return
        self.store.leadership.lose()  # from now on, no leader's write before it takes the lead
        # A thread of each run's own: a ping queued behind the store's slow reads in the shared
        # pool would leave the session silent past SESSION_TIMEOUT, and the lead would move.
        thread = ThreadPoolExecutor(1, thread_name_prefix="sitewatch-election")
        rounds = Rounds("standing for leader", log)
        try:
            while not stop.is_set():
                with rounds.one():
                    loop = asyncio.get_running_loop()
                    leading, failure = await loop.run_in_executor(thread, self._round)
                    self._note(leading)
                    if failure is not None:
                        raise failure
                await pause(stop, CAMPAIGN_EVERY)
        finally:
            self._note(False)
            await asyncio.get_running_loop().run_in_executor(thread, self._close)
            thread.shutdown(wait=False)

    def _note(self, leading: bool) -> None:
        """Take the outcome of a round, on the event loop: say when the lead came or went."""
        self.rounds += 1
        if leading and not self.leading:
            self.terms += 1
            log.info("%s leads now (epoch %d)", self.name, self.store.leadership.held or 0)
            self.elected.set()
        elif self.leading and not leading:
            self.store.leadership.lose()
            log.warning("%s no longer leads", self.name)
            self.elected.clear()
            self.leader = ""  # until a round reads who does
        self.leading = leading

    def _round(self) -> tuple[bool, Exception | None]:
        """Ping the lock's session if leading, else try for the lock; return whether this
        collector leads, and why the round failed (the session is closed then: the server
        frees the lock with it). Blocking: run in a worker thread."""
        import psycopg  # noqa: PLC0415 -- PostgreSQL only

        try:
            leading = self._step(self._open())
        except (psycopg.Error, StoreError) as err:
            self._close()
            return False, err
        return leading, None

    def _step(self, session: Any) -> bool:
        if self.leading:
            session.execute("SELECT 1")
            return True
        row = session.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
        if row is None or not row[0]:
            current = self.store.leadership.current()  # for /healthz and the dashboard
            self.leader, self.epoch_seen = current.holder, current.epoch
            return False
        self.epoch_seen = self.store.leadership.take(self.name, time.time())
        self.leader = self.name
        return True

    def _open(self) -> Any:
        """Return the lock's session, opened (with its timeouts) if it is not."""
        if self._session is not None and not self._session.closed:
            return self._session
        session = self.store.db.dedicated(**SESSION_OPTIONS)
        # The server's side of the same: it drops the session, and frees the lock, when this
        # collector falls silent (PostgreSQL 14 and later), or when TCP finds it gone.
        for setting, value in SERVER_KEEPALIVES.items():
            session.execute(f"SET {setting} = {value}")
        if session.info.server_version >= IDLE_SESSION_TIMEOUT_SINCE:
            session.execute(f"SET idle_session_timeout = {int(SESSION_TIMEOUT * 1000)}")
        elif not self._said_old_server:
            self._said_old_server = True
            log.warning(
                "PostgreSQL %s has no idle_session_timeout (14 and later do): a leader that is "
                "frozen but connected keeps the lead until TCP keepalives end its session",
                session.info.server_version,
            )
        self._session = session
        return session

    def _close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
