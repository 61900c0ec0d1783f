"""The body an agent posts: parsed and checked whole before anything is stored.

One bad result refuses the whole batch (nothing partial is stored) with an error that names
it, `results[3].result.ts: ...`, so the agent can set that one result aside and send the rest.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from collector.heartbeat import Heartbeat, HeartbeatError
from collector.store import LEGACY_OUTBOX
from probes.result import ProbeResult, ResultFormatError, format_ts

MAX_RESULTS_PER_BATCH = 5_000
MAX_CLOCK_SKEW = 300.0  # seconds a result may be ahead of the collector's clock
MAX_SEQ = 2**63 - 1
FIELD_FIRST = re.compile(r"[a-z_]+[.\[:]")  # an error that starts with the field it names
OUTBOX_ID = re.compile(r"[0-9a-f]{32}")  # a random UUID's hex, made when the outbox was created


class BatchError(ValueError):
    """A posted batch is malformed; `index` names the offending result when there is one."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True, slots=True)
class Batch:
    items: tuple[tuple[int, ProbeResult], ...]
    heartbeat: Heartbeat | None
    outbox: str = LEGACY_OUTBOX  # the identity of the agent outbox that numbered the items


def parse_batch(
    body: object,
    *,
    agent: str,
    targets: Collection[str],
    now: float,
    not_before: float = float("-inf"),
) -> Batch:
    """Return the batch in a decoded JSON body, or raise BatchError naming the first problem.

    `targets` are the ids this agent may report on: its site's links and devices, and its own
    id for the host-health results it sends about itself. A result probed before `not_before`
    (the raw retention: it would be rolled up at once, or rebuild history nobody keeps) is
    refused, so a bad clock cannot file results in year 1.
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
    heartbeat = _heartbeat(body.get("heartbeat"), agent)
    outbox = body.get("outbox", LEGACY_OUTBOX)  # agents older than outbox identities send none
    if outbox != LEGACY_OUTBOX and not (isinstance(outbox, str) and OUTBOX_ID.fullmatch(outbox)):
        raise BatchError("outbox: must be 32 lowercase hexadecimal digits")
    items = []
    seen: set[int] = set()
    for index, item in enumerate(results):
        seq, result = _item(item, index, targets, now, not_before)
        if seq in seen:
            raise BatchError(f"results[{index}].seq: {seq} appears twice in this batch", index)
        seen.add(seq)
        items.append((seq, result))
    return Batch(tuple(items), heartbeat, outbox)


def _heartbeat(data: object, agent: str) -> Heartbeat | None:
    if data is None:
        return None
    try:
        return Heartbeat.from_json(data, agent=agent)
    except HeartbeatError as err:
        raise BatchError(str(err)) from err


def _item(
    item: object, index: int, targets: Collection[str], now: float, not_before: float
) -> tuple[int, ProbeResult]:
    where = f"results[{index}]"
    if not isinstance(item, dict) or set(item) != {"seq", "result"}:
        raise BatchError(f"{where}: must be an object with seq and result", index)
    seq = item["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 < seq <= MAX_SEQ:
        raise BatchError(f"{where}.seq: must be a positive whole number", index)
    try:
        result = ProbeResult.from_json(item["result"])
    except ResultFormatError as err:
        message = str(err)  # "value.supplies[0].index: is missing" joins the path as one
        joined = f".{message}" if FIELD_FIRST.match(message) else f": {message}"
        raise BatchError(f"{where}.result{joined}", index) from err
    if result.target not in targets:
        raise BatchError(f"{where}.result.target: {result.target!r} is not at this site", index)
    if result.ts.timestamp() > now + MAX_CLOCK_SKEW:
        raise BatchError(
            f"{where}.result.ts: {item['result']['ts']} is in the future "
            f"(more than {MAX_CLOCK_SKEW:g}s ahead of the collector's clock)",
            index,
        )
    if result.ts.timestamp() < not_before:
        raise BatchError(
            f"{where}.result.ts: {format_ts(result.ts)} is older than the collector keeps raw "
            f"results (nothing before {format_ts(datetime.fromtimestamp(not_before, UTC))})",
            index,
        )
    return seq, result
