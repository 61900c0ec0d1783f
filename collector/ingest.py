"""The body an agent posts: parsed and checked whole before anything is stored.

Agents at branch sites are upgraded at other times than the collector, so a mismatch between
them must never stall shipping or lose results silently. The rules:

- A result the collector cannot take (malformed, not at this site, in the future, older than the
  raw retention, a kind it does not know) refuses the batch with a 422, and nothing of the batch
  is stored. The reply lists *every* refused result, `"refused": [{"index": 3, "message":
  "results[3].result.ts: ..."}, ...]`, with `"index"` the first of them (what older agents
  read), so an agent sets all of them aside in one go and resends the rest: a backlog a month
  old costs one extra round trip per batch, not one per result.
- A problem with the batch as a whole (not an object, an unknown top-level field, another
  agent's name, too many results) is a 422 without an index: nothing in it can be set aside.
- A bad heartbeat never refuses the batch: the results are stored, the heartbeat is dropped,
  the reply says `"heartbeat": {"refused": "heartbeat.outbox_depth: ..."}`, and `Intake`
  counts it and warns once per agent and field.
- Keys this collector does not know inside a known kind's `value`, and unknown heartbeat
  fields, are dropped (the known ones still checked), counted, and named in the reply's
  `"ignored"`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from collector.evidence import LINK_ONLY_KINDS
from collector.heartbeat import Heartbeat, HeartbeatError
from collector.store import LEGACY_OUTBOX
from probes.result import ProbeResult, ResultFormatError, format_ts
from probes.values import Dropped

log = logging.getLogger(__name__)

MAX_RESULTS_PER_BATCH = 5_000
MAX_CLOCK_SKEW = 300.0  # seconds a result may be ahead of the collector's clock
MAX_SEQ = 2**63 - 1
FIELD_FIRST = re.compile(r"[a-z_]+[.\[:]")  # an error that starts with the field it names
INDEX = re.compile(r"\[[0-9]+\]")
MAX_MESSAGE = 300  # characters of one refusal in a reply: 5,000 of them stay under 2 MB
MAX_WARNED = 32  # kinds of problem warned of per agent; a hostile agent could invent more
ITEM_KEYS = frozenset({"seq", "result"})
OUTBOX_ID = re.compile(r"[0-9a-f]{32}")  # a random UUID's hex, made when the outbox was created


class BatchError(ValueError):
    """A posted batch is refused; `refused` names each offending result, `index` the first."""

    def __init__(
        self, message: str, index: int | None = None, refused: tuple[Refusal, ...] = ()
    ) -> None:
        super().__init__(message)
        self.index = index
        self.refused = refused or (() if index is None else (Refusal(index, message),))


@dataclass(frozen=True, slots=True)
class Refusal:
    """One result of a batch that can never be stored, and why."""

    index: int
    message: str


@dataclass(frozen=True, slots=True)
class Batch:
    items: tuple[tuple[int, ProbeResult], ...]
    heartbeat: Heartbeat | None
    outbox: str = LEGACY_OUTBOX  # the identity of the agent outbox that numbered the items
    heartbeat_refused: str | None = None  # why the heartbeat sent with it was not kept
    ignored: tuple[str, ...] = ()  # unknown keys dropped: `results[3].result.value.colour`


def parse_batch(
    body: object,
    *,
    agent: str,
    targets: Collection[str],
    now: float,
    links: Collection[str],
    not_before: float = float("-inf"),
) -> Batch:
    """Return the batch in a decoded JSON body, or raise BatchError naming every refused result.

    `targets` are the ids this agent may report on: its site's links and devices, and its own
    id for the host-health results it sends about itself. A result probed before `not_before`
    (the raw retention: it would be rolled up at once, or rebuild history nobody keeps) is
    refused, so a bad clock cannot file results in year 1. `links` are those of `targets` that
    are links: a result of a kind only a link's probes make (its router's interface, the path
    probe) about anything else is refused, since no plan asks for it and a device would take
    it for a failing service of its own.
    """
    if not isinstance(body, dict):
        raise BatchError("the body must be a JSON object")
    unknown = sorted(set(body) - {"agent", "outbox", "results", "heartbeat"})
    if unknown:
        raise BatchError(f"unknown field {unknown[0]!r}")
    if body.get("agent", agent) != agent:
        raise BatchError(f"agent: this token belongs to {agent!r}")
    results = body.get("results", [])
    if not isinstance(results, list):
        raise BatchError("results: must be a list")
    if len(results) > MAX_RESULTS_PER_BATCH:
        raise BatchError(f"results: at most {MAX_RESULTS_PER_BATCH} per batch")
    outbox = body.get("outbox", LEGACY_OUTBOX)  # agents older than outbox identities send none
    if outbox != LEGACY_OUTBOX and not (isinstance(outbox, str) and OUTBOX_ID.fullmatch(outbox)):
        raise BatchError("outbox: must be 32 lowercase hexadecimal digits")
    items = []
    ignored: list[str] = []
    refused: list[Refusal] = []
    seen: set[int] = set()
    for index, item in enumerate(results):
        try:
            seq, result, dropped = _item(item, index, targets, now, not_before, links=links)
        except BatchError as err:
            refused.append(Refusal(index, _short(str(err))))
            continue
        if seq in seen:
            refused.append(
                Refusal(index, f"results[{index}].seq: {seq} appears twice in this batch")
            )
            continue
        seen.add(seq)
        items.append((seq, result))
        if dropped:
            ignored.extend(f"results[{index}].result.{path}" for path in dropped)
    if refused:
        raise BatchError(refused[0].message, refused[0].index, tuple(refused))
    heartbeat, heartbeat_refused, heartbeat_ignored = _heartbeat(body.get("heartbeat"), agent)
    return Batch(tuple(items), heartbeat, outbox, heartbeat_refused, (*ignored, *heartbeat_ignored))


def _heartbeat(data: object, agent: str) -> tuple[Heartbeat | None, str | None, Dropped]:
    """Return the heartbeat, or why it is refused, and the unknown fields left out of it."""
    if data is None:
        return None, None, ()
    try:
        heartbeat, ignored = Heartbeat.checked(data, agent=agent)
    except HeartbeatError as err:
        return None, _short(str(err)), ()
    return heartbeat, None, ignored


def _item(
    item: object,
    index: int,
    targets: Collection[str],
    now: float,
    not_before: float,
    *,
    links: Collection[str],
) -> tuple[int, ProbeResult, Dropped]:
    where = f"results[{index}]"
    if not isinstance(item, dict) or item.keys() != ITEM_KEYS:
        raise BatchError(f"{where}: must be an object with seq and result", index)
    seq = item["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 < seq <= MAX_SEQ:
        raise BatchError(f"{where}.seq: must be a positive whole number", index)
    try:
        result, dropped = ProbeResult.checked(item["result"])
    except ResultFormatError as err:
        message = str(err)  # "value.supplies[0].index: is missing" joins the path as one
        joined = f".{message}" if FIELD_FIRST.match(message) else f": {message}"
        raise BatchError(f"{where}.result{joined}", index) from err
    if result.target not in targets:
        raise BatchError(f"{where}.result.target: {result.target!r} is not at this site", index)
    if result.kind in LINK_ONLY_KINDS and result.target not in links:
        raise BatchError(
            f"{where}.result.kind: {result.kind} results are about a link, and "
            f"{result.target!r} is a device",
            index,
        )
    when = result.ts.timestamp()
    if when > now + MAX_CLOCK_SKEW:
        raise BatchError(
            f"{where}.result.ts: {item['result']['ts']} is in the future "
            f"(more than {MAX_CLOCK_SKEW:g}s ahead of the collector's clock)",
            index,
        )
    if when < not_before:
        raise BatchError(
            f"{where}.result.ts: {format_ts(result.ts)} is older than the collector keeps raw "
            f"results (nothing before {format_ts(datetime.fromtimestamp(not_before, UTC))})",
            index,
        )
    return seq, result, dropped


def _short(message: str) -> str:
    """Return a refusal's message cut to a length a reply listing thousands of them can carry."""
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


@dataclass
class Intake:
    """What ingest keeps per agent between batches: who is mid-batch, and what was refused.

    One batch per agent at a time: a second arriving while the first is stored (an agent that
    gave up waiting for a slow reply and resent) is answered 429, so one agent cannot hold
    several workers. The counts are since start and shown on /metrics; each kind of problem
    (a heartbeat field, an unknown key) is logged once per agent at warning, repeats at debug,
    since a mismatched agent sends the same thing every batch.
    """

    busy: set[str] = field(default_factory=set)
    results_refused: dict[str, int] = field(default_factory=dict)  # by agent
    heartbeats_refused: dict[str, int] = field(default_factory=dict)
    keys_ignored: dict[str, int] = field(default_factory=dict)
    _warned: set[tuple[str, str]] = field(default_factory=set)

    def admit(self, agent: str) -> bool:
        """Return whether the agent may post a batch now (it has none in flight); take the slot."""
        if agent in self.busy:
            return False
        self.busy.add(agent)
        return True

    def leave(self, agent: str) -> None:
        """Free the agent's slot."""
        self.busy.discard(agent)

    def refused(self, agent: str, err: BatchError) -> None:
        """Count the results of a batch refused for good."""
        if err.refused:
            _add(self.results_refused, agent, len(err.refused))
            first = err.refused[0].message
            self._warn(agent, _kind(first), f"refused {len(err.refused)} results, first {first}")

    def stored(self, agent: str, batch: Batch) -> None:
        """Count what was left out of a stored batch, and say so once per kind of problem."""
        if (refused := batch.heartbeat_refused) is not None:
            _add(self.heartbeats_refused, agent, 1)
            self._warn(agent, _kind(refused), f"heartbeat refused, results kept: {refused}")
        if ignored := batch.ignored:
            _add(self.keys_ignored, agent, len(ignored))
            self._warn(
                agent,
                _kind(ignored[0]),
                f"ignored {len(ignored)} keys this collector does not know, first {ignored[0]}",
            )

    def _warn(self, agent: str, kind: str, text: str) -> None:
        warned = sum(1 for who, _ in self._warned if who == agent)
        if (agent, kind) in self._warned or warned >= MAX_WARNED:
            log.debug("agent %s: %s", agent, text)
            return
        self._warned.add((agent, kind))
        log.warning("agent %s: %s (said once; repeats at debug)", agent, text)


def _add(counts: dict[str, int], agent: str, count: int) -> None:
    counts[agent] = counts.get(agent, 0) + count


def _kind(message: str) -> str:
    """Return the field a message is about, indexes blanked: `results[].result.value.colour`."""
    return INDEX.sub("[]", message.partition(":")[0])
