"""Ship the outbox to the collector: batched, gzipped, at least once, with backoff.

Entries leave the outbox only when the collector has acknowledged them, so a crash or a lost
reply means a resend, and the collector's (agent, outbox, seq) key turns the resend into a
no-op; the outbox's identity keeps a reinstalled agent, numbering from 1 again, from looking
like one resending what it sent before. While the collector cannot be reached the shipper backs
off exponentially with jitter and logs the change of state once, not every attempt. A result the
collector refuses as malformed (422 with its index) can never be accepted: it is logged and set
aside so it cannot block the queue.
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

from agent.outbox import Entry, Outbox

log = logging.getLogger(__name__)
BATCH_SIZE = 500
BATCH_AGE = 2.0  # seconds a fresh result may wait for company before it is sent
HEARTBEAT_EVERY = 30.0
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
REQUEST_TIMEOUT = 20.0
# A collector answers a batch in well under a second; a reply this late means the connection
# sits on a path that just failed (an MPLS cut with the backup taking over), so drop it and
# retry on a fresh connection, which takes the new route, rather than wait out REQUEST_TIMEOUT.
REPLY_TIMEOUT = 5.0
GZIP_ABOVE = 1024  # bytes


@dataclass
class Shipper:
    """Moves results from the outbox to the collector."""

    session: aiohttp.ClientSession
    base_url: str
    agent_id: str
    outbox: Outbox
    heartbeat: Callable[[], Awaitable[dict[str, Any]]]
    batch_size: int = BATCH_SIZE
    heartbeat_every: float = HEARTBEAT_EVERY
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    reachable: bool | None = None  # None until the first attempt
    shipped: int = 0
    _last_heartbeat: float = float("-inf")

    def wake(self) -> None:
        """Say that new results are in the outbox."""
        self.arrived.set()

    async def run(self) -> None:
        """Ship until cancelled."""
        backoff = BACKOFF_FIRST
        while True:
            sent = await self.ship_once()
            if sent is None:  # failed: wait, longer each time, with jitter
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_FIRST
            if sent < self.batch_size:  # caught up: wait for results or the next heartbeat
                await self._wait_for_work()

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
        """Send one batch (and the heartbeat when due); return how many, or None on failure."""
        entries = await asyncio.to_thread(self.outbox.take, self.batch_size)
        heartbeat_due = time.monotonic() - self._last_heartbeat >= self.heartbeat_every
        if not entries and not heartbeat_due:
            return 0
        heartbeat = await self.heartbeat() if heartbeat_due else None
        status, reply = await self._post(entries, heartbeat)
        if status == 200:
            await asyncio.to_thread(self.outbox.ack, [e.seq for e in entries])
            if heartbeat is not None:
                self._last_heartbeat = time.monotonic()
                await asyncio.to_thread(self.outbox.reported_dropped, heartbeat["dropped"])
            self.shipped += len(entries)
            self._now_reachable(True, "")
            return len(entries)
        if status == 422 and isinstance(reply.get("index"), int):
            bad = entries[reply["index"]] if reply["index"] < len(entries) else None
            if bad is not None:
                log.error("the collector refused result seq %d for good: %s; setting it aside",
                          bad.seq, reply.get("message"))  # fmt: skip
                await asyncio.to_thread(self.outbox.ack, [bad.seq])
                return 0
        if status == 413 and self.batch_size > 1:
            self.batch_size = max(1, self.batch_size // 2)
            log.warning("batch too large for the collector: now %d per batch", self.batch_size)
            return 0
        self._now_reachable(False, f"{status or ''} {reply.get('message', '')}".strip())
        return None

    async def _post(
        self, entries: list[Entry], heartbeat: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any]]:
        body = json.dumps(
            {
                "agent": self.agent_id,
                "outbox": self.outbox.identity,  # seqs are unique per outbox, not per agent
                "results": [{"seq": e.seq, "result": e.record} for e in entries],
                "heartbeat": heartbeat,
            },
            separators=(",", ":"),
        ).encode()
        headers = {"Content-Type": "application/json"}
        if len(body) > GZIP_ABOVE:
            body = await asyncio.to_thread(gzip.compress, body, 6)
            headers["Content-Encoding"] = "gzip"
        try:
            async with self.session.post(
                f"{self.base_url}/api/v1/agent/results",
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT, sock_read=REPLY_TIMEOUT),
            ) as response:
                text = await response.text()
                try:
                    reply = json.loads(text)
                except ValueError:
                    reply = {}
                error = reply.get("error") if isinstance(reply, dict) else None
                return response.status, error if isinstance(error, dict) else {}
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            return 0, {"message": str(err) or type(err).__name__}

    def _now_reachable(self, reachable: bool, why: str) -> None:
        if reachable == self.reachable:
            return
        if reachable:
            log.info("collector reachable%s", "" if self.reachable is None else " again")
        else:
            log.warning("collector unreachable (%s); results wait in the outbox", why)
        self.reachable = reachable
