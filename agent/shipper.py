"""Ship the outbox to the collector: batched, gzipped, at least once, with backoff.

Entries leave the outbox only when the collector has acknowledged them, so a crash or a lost
reply means a resend, and the collector's (agent, outbox, seq) key turns the resend into a
no-op; the outbox's identity keeps a reinstalled agent, numbering from 1 again, from looking
like one resending what it sent before. While the collector cannot be reached the shipper backs
off exponentially with jitter and logs the change of state once, not every attempt.

The collector is upgraded at other times than the agents, so every answer of a collector older
or newer than this agent is handled without stalling and without losing results silently:

- 422 naming results (`"refused": [{"index", "message"}]`, or only `"index"` from an older
  collector): those can never be accepted (malformed, a kind the collector does not know, older
  than its retention). All of them are set aside in one go, logged once per batch at warning
  with the count and the first message, and the rest is sent again at once.
- 422 without an index: the collector refuses the batch as a whole. If it carried a heartbeat,
  the heartbeat is the likely cause (an older collector refuses a heartbeat field it does not
  know, with the whole batch), so results go on without heartbeats for HEARTBEAT_RETRY.
  Otherwise it is logged once at error, the shipper backs off like for an unreachable
  collector, and the results wait in the outbox for a collector that takes them.
- 200 with `"heartbeat": {"refused": ...}`: the results are stored, the heartbeat was not; said
  once per message. `"ignored"` (keys the collector does not know): said once.
- 429 (this agent's previous batch is still being stored): wait its Retry-After, quietly.
- 413 (the batch is over the collector's bytes or JSON values, `too_large` or
  `too_many_values`): the next batches are half as large, down to one result, at once; a single
  result still refused can never be accepted, and is set aside with a warning. Once the outbox
  is caught up, batches go back to their full size.
- The outbox identity is sent only when it is not the legacy one: a collector older than
  outbox identities refuses the field, and for it the legacy outbox is all there is.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from agent.collectors import Collectors
from agent.outbox import LEGACY_IDENTITY, Entry, Outbox

log = logging.getLogger(__name__)
BATCH_SIZE = 500
BATCH_AGE = 2.0  # seconds a fresh result may wait for company before it is sent
HEARTBEAT_EVERY = 30.0
HEARTBEAT_RETRY = 600.0  # seconds without heartbeats once a collector refused a batch for one
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
REQUEST_TIMEOUT = 20.0
# A collector answers a batch in well under a second; a reply this late means the connection
# sits on a path that just failed (an MPLS cut with the backup taking over), so drop it and
# retry on a fresh connection, which takes the new route, rather than wait out REQUEST_TIMEOUT.
# A collector that does not accept a connection as long is down or cut off: try the next one.
REPLY_TIMEOUT = 5.0
GZIP_ABOVE = 1024  # bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """The collector's answer to one batch: its status (0 for none) and JSON object."""

    status: int
    body: dict[str, Any]  # the whole object for a 200; its "error" object for a refusal
    retry_after: float | None = None  # seconds, from a 429's Retry-After

    @property
    def message(self) -> str:
        message = self.body.get("message")
        return message if isinstance(message, str) else ""

    def refused(self, count: int) -> list[int]:
        """Return the indexes of the results a 422 names, among the `count` sent."""
        listed = self.body.get("refused")
        if isinstance(listed, list):
            found = {item.get("index") for item in listed if isinstance(item, dict)}
        else:
            found = {self.body.get("index")}  # a collector from before "refused"
        return sorted(i for i in found if type(i) is int and 0 <= i < count)

    def first_refusal(self) -> str:
        """Return the first refused result's message, or the error's."""
        listed = self.body.get("refused")
        first = listed[0] if isinstance(listed, list) and listed else None
        message = first.get("message") if isinstance(first, dict) else None
        return message if isinstance(message, str) else self.message


@dataclass
class Shipper:
    """Moves results from the outbox to the collector."""

    session: aiohttp.ClientSession
    collectors: Collectors  # the one in use moves on when it is unavailable
    agent_id: str
    outbox: Outbox
    heartbeat: Callable[[], Awaitable[dict[str, Any]]]
    batch_size: int = BATCH_SIZE
    heartbeat_every: float = HEARTBEAT_EVERY
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    reachable: bool | None = None  # None until the first attempt
    shipped: int = 0
    set_aside: int = 0  # results the collector refused for good, since start
    again: bool = False  # the last attempt cleared the way: ship again without waiting
    retry_in: float | None = None  # the collector asked to wait this long (429 Retry-After)
    backoffs: int = 0  # waits after a round in which no collector took the batch
    _last_heartbeat: float = float("-inf")
    _full_size: int = 0  # batch_size as configured; a 413 shrinks batch_size below it for a while
    _refusal: str | None = None  # why the collector refuses our batches as a whole, said once
    _said: set[str] = field(default_factory=set)  # heartbeat refusals and ignored keys, said

    def __post_init__(self) -> None:
        self._full_size = self.batch_size

    def wake(self) -> None:
        """Say that new results are in the outbox."""
        self.arrived.set()

    async def run(self) -> None:
        """Ship until cancelled."""
        backoff = BACKOFF_FIRST
        while True:
            sent = await self.ship_once()
            if sent is None and self.retry_in is None and self.collectors.untried:
                continue  # that collector is unavailable: the next one, at once
            if sent is None:  # failed: wait, longer each time, with jitter
                self.backoffs += 1
                wait = self.retry_in or backoff * random.uniform(0.5, 1.0)  # noqa: S311
                await asyncio.sleep(wait)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_FIRST
            if sent < self.batch_size and not self.again:  # caught up: wait for results
                await self._wait_for_work()  # or the next heartbeat

    async def _wait_for_work(self) -> None:
        due = self._last_heartbeat + self.heartbeat_every - time.monotonic()
        try:
            async with asyncio.timeout(max(due, 0.0)):
                await self.arrived.wait()
            await asyncio.sleep(BATCH_AGE)  # let a tick's results gather into one batch
        except TimeoutError:
            pass
        self.arrived.clear()

    async def ship_once(self) -> int | None:
        """Send one batch (and the heartbeat when due).

        Return how many results left the outbox (stored, or set aside as refused), or None
        when the batch could not be delivered and the caller should back off.
        """
        self.again, self.retry_in = False, None
        entries = await asyncio.to_thread(self.outbox.take, self.batch_size)
        if len(entries) < self.batch_size < self._full_size:  # caught up: full batches again
            self.batch_size = self._full_size
            log.info("the outbox is caught up: batches of up to %d again", self.batch_size)
        heartbeat_due = time.monotonic() - self._last_heartbeat >= self.heartbeat_every
        if not entries and not heartbeat_due:
            return 0
        heartbeat = await self.heartbeat() if heartbeat_due else None
        reply = await self._post(entries, heartbeat)
        if reply.status == 200:
            await asyncio.to_thread(self.outbox.ack, [e.seq for e in entries])
            if heartbeat is not None:
                self._last_heartbeat = time.monotonic()
                await self._heartbeat_taken(heartbeat, reply)
            self._said_ignored(reply)
            self.shipped += len(entries)
            self._now_reachable(True, "")
            self._batches_refused(None)
            return len(entries)
        if reply.status == 422:
            return await self._refused(entries, heartbeat, reply)
        if reply.status == 413 and entries:
            return await self._too_large(entries, reply)
        if reply.status == 429:  # our previous batch is still being stored: not a failure
            self.retry_in = min(reply.retry_after or BACKOFF_FIRST, BACKOFF_MAX)
            log.debug("the collector is busy with our last batch: next in %.1fs", self.retry_in)
            return None
        self._now_reachable(False, f"{reply.status or ''} {reply.message}".strip())
        return None

    async def _refused(
        self, entries: list[Entry], heartbeat: dict[str, Any] | None, reply: Reply
    ) -> int | None:
        """Set aside the results a 422 names; or make sense of a refusal of the whole batch."""
        self._now_reachable(True, "")
        indexes = reply.refused(len(entries))
        if indexes:
            seqs = [entries[i].seq for i in indexes]
            log.warning(
                "the collector refused %d results for good (first, seq %d: %s); setting them aside",
                len(seqs),
                seqs[0],
                reply.first_refusal(),
            )
            await asyncio.to_thread(self.outbox.ack, seqs)
            self.set_aside += len(seqs)
            self.again = True  # the rest of the batch goes at once
            return len(seqs)
        if heartbeat is not None:
            self._last_heartbeat = time.monotonic() + HEARTBEAT_RETRY - self.heartbeat_every
            said = log.warning if self._say_once(f"batch {reply.message}") else log.debug
            said(
                "the collector refused a batch carrying our heartbeat (%s): probably an older "
                "collector; sending results without heartbeats for %.0f s",
                reply.message,
                HEARTBEAT_RETRY,
            )
            self.again = True
            return 0
        self._batches_refused(reply.message or "no reason given")
        return None

    async def _too_large(self, entries: list[Entry], reply: Reply) -> int:
        """Halve the batch for the next tries; set aside one result the collector refuses alone.

        Retrying the same batch would be refused for ever, and a batch no larger than the
        outbox's backlog would not shrink by halving `batch_size`: halve what was sent.
        """
        self._now_reachable(True, "")
        self.again = True  # the smaller batch, or the rest, goes at once
        if len(entries) > 1:
            self.batch_size = len(entries) // 2
            log.warning(
                "the collector refused a batch of %d as too large (%s): now %d per batch",
                len(entries),
                reply.message or reply.body.get("code"),
                self.batch_size,
            )
            return 0
        seq = entries[0].seq
        log.warning(
            "the collector refuses result seq %d on its own as too large (%s); setting it aside",
            seq,
            reply.message or reply.body.get("code"),
        )
        await asyncio.to_thread(self.outbox.ack, [seq])
        self.set_aside += 1
        return 1

    def _batches_refused(self, why: str | None) -> None:
        """Log a refusal of whole batches once at error, repeats at debug, its end at info."""
        if why == self._refusal:
            if why is not None:
                log.debug("the collector still refuses our batches: %s", why)
            return
        if why is None:
            log.info("the collector takes our batches again")
        else:
            log.error(
                "the collector refuses our batches as a whole (422: %s); results wait in the "
                "outbox, retried with backoff: the collector may need upgrading",
                why,
            )
        self._refusal = why

    async def _heartbeat_taken(self, heartbeat: dict[str, Any], reply: Reply) -> None:
        refused = reply.body.get("heartbeat")
        why = refused.get("refused") if isinstance(refused, dict) else None
        if why is None:  # taken: the collector now knows of the drops it counted
            await asyncio.to_thread(self.outbox.reported_dropped, heartbeat["dropped"])
        elif self._say_once(f"heartbeat {why}"):
            log.warning("the collector stored our results but refused our heartbeat: %s", why)

    def _said_ignored(self, reply: Reply) -> None:
        ignored = reply.body.get("ignored")
        if isinstance(ignored, list) and ignored and self._say_once("ignored"):
            log.warning(
                "the collector does not know some of what we send and leaves it out "
                "(first: %s): it is older than this agent",
                ignored[0],
            )

    def _say_once(self, what: str) -> bool:
        """Return whether `what` is news (and note it); bounded, one per kind of message."""
        if what in self._said or len(self._said) >= 64:
            return False
        self._said.add(what)
        return True

    async def _post(self, entries: list[Entry], heartbeat: dict[str, Any] | None) -> Reply:
        batch: dict[str, Any] = {
            "agent": self.agent_id,
            "results": [{"seq": e.seq, "result": e.record} for e in entries],
            "heartbeat": heartbeat,
        }
        if self.outbox.identity != LEGACY_IDENTITY:  # older collectors refuse the field
            batch["outbox"] = self.outbox.identity  # seqs are unique per outbox, not per agent
        body = json.dumps(batch, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if len(body) > GZIP_ABOVE:
            body = await asyncio.to_thread(gzip.compress, body, 6)
            headers["Content-Encoding"] = "gzip"
        url = self.collectors.current
        reply = await self._send(url, body, headers)
        self.collectors.answered(url, reply.status, reply.message)
        return reply

    async def _send(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        try:
            async with self.session.post(
                f"{url}/api/v1/agent/results",
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(
                    total=REQUEST_TIMEOUT, sock_connect=REPLY_TIMEOUT, sock_read=REPLY_TIMEOUT
                ),
            ) as response:
                text = await response.text()
                retry_after = _seconds(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            return Reply(0, {"message": str(err) or type(err).__name__})
        try:
            reply = json.loads(text)
        except ValueError:
            reply = {}
        if not isinstance(reply, dict):
            reply = {}
        if response.status != 200:
            error = reply.get("error")
            reply = error if isinstance(error, dict) else {}
        return Reply(response.status, reply, retry_after)

    def _now_reachable(self, reachable: bool, why: str) -> None:
        if reachable == self.reachable:
            return
        if reachable:
            log.info("collector reachable%s", "" if self.reachable is None else " again")
        else:
            log.warning("collector unreachable (%s); results wait in the outbox", why)
        self.reachable = reachable


def _seconds(header: str | None) -> float | None:
    """Return a Retry-After in seconds (the collector sends whole seconds, never a date)."""
    try:
        seconds = float(header) if header is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 3_600 else None
