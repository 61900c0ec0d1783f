"""An agent's heartbeat: what the collector learns of an agent besides its results.

The agent sends it with a batch every minute or so (`agent/main.py` `_heartbeat`): its version,
its clock, how many results wait in its outbox, how many it had to drop, and its own host
health (the host probe's result record). It is checked field by field, as results are, into a
frozen `Heartbeat`: the collector keeps the latest per site, shows it on the site's page and in
`/metrics`, and stores it so a restart knows it again. A heartbeat that would break a reader
later (a 400-digit `outbox_depth` that Prometheus cannot turn into a float, a version with a
lone surrogate that no page can encode) is refused, with a message naming the field; one already
stored by an older collector is skipped with a warning when it is read back.

A refused heartbeat never refuses the batch it rides on (`collector.ingest`): the results are
stored and the reply says the heartbeat was not. A field this collector does not know (sent by
a newer agent) is dropped and the rest of the heartbeat kept, as unknown keys in a result's
value are: agents are upgraded at other times than the collector.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from probes.result import ProbeResult, ResultFormatError, ResultJson, format_ts, parse_ts
from probes.values import Dropped, clean_text, printable_key

log = logging.getLogger(__name__)

MAX_COUNT = 2**63 - 1  # what SQLite's INTEGER and a float-valued metric still hold
MAX_VERSION = 64  # characters
VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_~-]*")  # PEP 440 and semver spellings


class HeartbeatJson(TypedDict, total=False):
    """The heartbeat object on the wire; every field may be left out."""

    version: str
    clock: str
    outbox_depth: int
    dropped: int
    host: ResultJson | None


HEARTBEAT_FIELDS = frozenset(HeartbeatJson.__annotations__)


class HeartbeatError(ValueError):
    """A heartbeat is malformed; the message names the field (`heartbeat.outbox_depth: ...`)."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """An agent's latest heartbeat, checked."""

    agent: str  # the agent it came from: its token's, never a field of the heartbeat
    version: str | None = None
    clock: datetime | None = None  # the agent's clock when it sent this, UTC
    outbox_depth: int | None = None  # results waiting to be shipped
    dropped: int | None = None  # results the outbox had to drop (full disk, bad records)
    host: ProbeResult | None = None  # the agent machine's health

    @classmethod
    def from_json(cls, data: object, *, agent: str) -> Heartbeat:
        """Return the heartbeat in a decoded JSON object, or raise HeartbeatError."""
        return cls.checked(data, agent=agent)[0]

    @classmethod
    def checked(cls, data: object, *, agent: str) -> tuple[Heartbeat, Dropped]:
        """Return the heartbeat and the paths of the unknown fields left out of it."""
        if not isinstance(data, dict):
            raise HeartbeatError("heartbeat: must be an object")
        unknown = sorted(set(data) - HEARTBEAT_FIELDS, key=str)
        version, clock = _version(data.get("version")), _clock(data.get("clock"))
        outbox_depth, dropped = _count(data, "outbox_depth"), _count(data, "dropped")
        host, host_dropped = _host(data.get("host"))  # checked last: the first error is named
        heartbeat = cls(agent, version, clock, outbox_depth, dropped, host)
        ignored = tuple(f"heartbeat.{printable_key(key)}" for key in unknown)
        return heartbeat, ignored + tuple(f"heartbeat.host.{path}" for path in host_dropped)

    def to_json(self) -> HeartbeatJson:
        """Return the wire form, as stored: only the fields the agent sent."""
        data: HeartbeatJson = {}
        if self.version is not None:
            data["version"] = self.version
        if self.clock is not None:
            data["clock"] = format_ts(self.clock)
        if self.outbox_depth is not None:
            data["outbox_depth"] = self.outbox_depth
        if self.dropped is not None:
            data["dropped"] = self.dropped
        if self.host is not None:
            data["host"] = self.host.to_json()
        return data


def stored(agent: str, data: object) -> Heartbeat | None:
    """Return a heartbeat read back from the store; None for none, or for a bad one (logged).

    An older collector stored heartbeats without checking them: one of those must not stop
    the start-up or break a page, so it is dropped as if the agent had never sent one.
    """
    if data is None or data == {}:
        return None
    try:
        return Heartbeat.from_json(data, agent=agent)
    except HeartbeatError as err:
        log.warning("ignoring the stored heartbeat of agent %s: %s", agent, err)
        return None


def _version(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not clean_text(value):
        raise HeartbeatError("heartbeat.version: must be a string of valid Unicode text")
    if len(value) > MAX_VERSION or not VERSION.fullmatch(value):
        raise HeartbeatError(
            f"heartbeat.version: must be a version like 1.2.3, at most {MAX_VERSION} characters"
        )
    return value


def _clock(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise HeartbeatError("heartbeat.clock: must be an RFC 3339 time")
    try:
        return parse_ts(value)
    except ResultFormatError as err:
        raise HeartbeatError(f"heartbeat.clock: {str(err).removeprefix('ts: ')}") from err


def _count(data: dict[object, object], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise HeartbeatError(f"heartbeat.{key}: must be a whole number 0..{MAX_COUNT}")
    return value


def _host(value: object) -> tuple[ProbeResult | None, Dropped]:
    if value is None:
        return None, ()
    try:
        result, dropped = ProbeResult.checked(value)
    except ResultFormatError as err:
        raise HeartbeatError(f"heartbeat.host: {err}") from err
    if result.kind != "host":
        raise HeartbeatError("heartbeat.host.kind: must be host")
    return result, dropped
