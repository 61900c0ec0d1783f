"""Event-loop stall while an agent's batch of a hostile shape is decoded in a worker thread.

    .venv/bin/python bench/body_bench.py

The C JSON decoder holds the GIL between Python hooks, so a worker thread decoding a flat list
stalls the loop as if it ran on it. For each shape, at the collector's MAX_BATCH_VALUES: the
plain json.loads time, and the worst lag of a task sleeping 1 ms at a time on the loop while
`decode_json(in_thread=True)` runs in a thread, with the hooks per object only (as before) and
per object and number (as now). Then the 16 MiB flat list of the attack, which is now refused
after counting, and what the count costs.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from typing import Any

from collector import body
from collector.api import MAX_BATCH_VALUES
from collector.body import BodyError, count_values, decode_json


def shapes(cap: int) -> dict[str, bytes]:
    """Bodies of `cap` counted values each, the shapes the decoder is slowest or longest on."""
    keys = b",".join(b'"%s%d":0' % (b"k" * 40, i) for i in range(cap // 2))
    return {
        "zeros": b"[" + b"0," * (cap - 1) + b"0]",
        "long floats": b"[" + b"1.2345678901234567e-300," * (cap - 1) + b"1.5]",
        "20-digit ints": b"[" + b"18446744073709551615," * (cap - 1) + b"1]",
        "one object, 40-char keys": b"{" + keys + b"}",
        "nested [[]]": b"[" + b"[[]]," * (cap // 3) + b"[]]",
        "short strings": b"[" + b'"abcdefgh",' * (cap - 1) + b'""]',
        "4,000-digit ints, 16 MiB": b"[" + b",".join([b"1" * 4_000] * 4_190) + b"]",
    }


async def worst_lag(work: Callable[[], Any]) -> float:
    """Return the worst lag of a 1 ms sleeper on the loop while `work` runs in a thread."""
    worst, done = 0.0, asyncio.Event()

    async def watch() -> None:
        nonlocal worst
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - start - 0.001)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.01)  # the watcher is running before the work starts
    try:
        await asyncio.to_thread(work)
    finally:
        done.set()
        await watcher
    return worst


def objects_only(raw: bytes) -> Any:
    """Decode as before the per-number hooks: a hook per object only."""
    return json.loads(raw, object_pairs_hook=body._pairs)  # the old path


async def main() -> None:
    print(f"MAX_BATCH_VALUES = {MAX_BATCH_VALUES:,}; times in ms, best of 3 for json.loads")
    print(f"{'shape':28} {'MiB':>6} {'values':>9} {'loads':>7} {'lag before':>11} {'lag now':>8}")
    for name, raw in shapes(MAX_BATCH_VALUES).items():
        loads = min(_timed(functools.partial(json.loads, raw)) for _ in range(3))
        before = await worst_lag(functools.partial(objects_only, raw))
        now = await worst_lag(functools.partial(decode_json, raw, in_thread=True))
        values = count_values(raw, 1 << 62)
        print(
            f"{name:28} {len(raw) / 2**20:6.2f} {values:>9,} {loads * 1e3:7.1f} "
            f"{before * 1e3:11.1f} {now * 1e3:8.1f}"
        )
    flat = b'{"results":[' + b"0," * (8 * 1024 * 1024 - 11) + b"0]}"
    before = await worst_lag(lambda: objects_only(flat))
    refused = await worst_lag(lambda: _refused(flat))
    whole = _timed(lambda: count_values(flat, 1 << 62))
    print(
        f"16 MiB flat list (8 M values): lag decoded {before * 1e3:.0f} ms; refused after "
        f"counting {refused * 1e3:.1f} ms (all four marks counted: {whole * 1e3:.1f} ms)"
    )


def _refused(raw: bytes) -> None:
    try:
        decode_json(raw, in_thread=True, max_values=MAX_BATCH_VALUES)
    except BodyError:
        return
    raise AssertionError("the flat list was decoded")


def _timed(work: Callable[[], Any]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


if __name__ == "__main__":
    asyncio.run(main())
