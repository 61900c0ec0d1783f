"""Run every target of the plan on its interval and hand each result to a sink.

Targets with the same interval share a tick. The first tick of each interval runs at once, so
that a restarted agent leaves no more of a hole in its site's history than its own start-up;
the later ticks are shifted by a random phase so that a hundred agents restarted together do
not go on probing in step. On each tick the ICMP targets are swept together on the shared
sockets (a link with several far-end addresses is up when any answers); the other probes run as
separate tasks under a concurrency limit, and their results go to the sink as soon as each is
done, so a slow SNMP device delays nobody. A target whose previous probe is still running skips
a tick rather than piling up. The plan may be replaced at any time: the next tick of each
interval uses the new one.

Nothing slow runs on the event loop before the first tick: probe modules that are imported on
first use (pysnmp, a second or more of work on a busy two-core box) are imported in a worker
thread as soon as the plan names their kind, and only that kind's probes wait for it. Imported
on the loop, it stalled every sweep of a freshly started agent and cost ticks.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from probes import PROBES, ProbeResult, Target, icmp
from probes.plan import Plan, PlanTarget
from probes.result import now
from sitewatch.config.model import IcmpProbe

log = logging.getLogger(__name__)
Sink = Callable[[ProbeResult], Awaitable[None]]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
MAX_CONCURRENT = 32
MAX_PHASE = 5.0  # seconds: the most a later tick is shifted, whatever the interval
# Probe kinds whose module `probes` imports on the first probe (see probes/__init__.py).
IMPORTED_ON_FIRST_USE = {"snmp": "probes.snmp", "interface": "probes.snmp"}


class Scheduler:
    """Probes a plan until cancelled."""

    def __init__(
        self,
        plan: Plan,
        sink: Sink,
        *,
        max_concurrent: int = MAX_CONCURRENT,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """Probe `plan` into `sink`; `clock`, `sleep` and `rng` are the tests' to replace."""
        self.plan = plan
        self.sink = sink
        self.limit = asyncio.Semaphore(max_concurrent)
        self.running: set[tuple[str, str]] = set()  # (target id, kind) with a probe in flight
        self.clock = clock
        self.sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 -- spreading ticks, not cryptography
        self._loops: dict[float, asyncio.Task[None]] = {}
        self._imports: dict[str, asyncio.Task[None]] = {}  # kind -> its module's import
        self._group: asyncio.TaskGroup | None = None

    def replace(self, plan: Plan) -> None:
        """Use a new plan from the next tick on; start loops for intervals new to it."""
        self.plan = plan
        if self._group is not None:
            self._start_loops(self._group)

    async def run(self) -> None:
        """Probe until cancelled; return once no import is left half done."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._start_loops(group)
                await asyncio.Event().wait()  # until cancelled
        finally:
            # A thread cannot be stopped half way through an import, and `probes.close()`
            # must not meet a half-made module: wait for it (it ends by itself, in a second).
            importing = [task for task in self._imports.values() if not task.done()]
            if importing:
                await asyncio.wait(importing)

    def _start_loops(self, group: asyncio.TaskGroup) -> None:
        for kind in {t.spec.kind for t in self.plan.targets}:
            module = IMPORTED_ON_FIRST_USE.get(kind)
            if module is not None and kind not in self._imports:
                # Not the group's: cancelling it would not stop the thread, only lose sight of it.
                self._imports[kind] = asyncio.create_task(asyncio.to_thread(_import, module))
        for interval in {t.interval for t in self.plan.targets}:
            loop = self._loops.get(interval)
            if loop is None or loop.done():
                self._loops[interval] = group.create_task(self._every(interval, group))

    async def _every(self, interval: float, group: asyncio.TaskGroup) -> None:
        """Tick now, then every `interval` on a grid shifted by a random phase."""
        start = self.clock() + self._rng.uniform(0, min(interval / 2, MAX_PHASE))
        tick = 0  # the grid's ticks are start + k * interval for k >= 1
        while True:
            targets = [t for t in self.plan.targets if t.interval == interval]
            if not targets:
                return  # the plan no longer has this interval
            self._tick(targets, group)
            tick = max(tick + 1, int((self.clock() - start) / interval) + 1)
            await self.sleep(max(0.0, start + tick * interval - self.clock()))

    def _tick(self, targets: Sequence[PlanTarget], group: asyncio.TaskGroup) -> None:
        pings = [t for t in targets if isinstance(t.spec, IcmpProbe) and self._free(t)]
        others = [t for t in targets if not isinstance(t.spec, IcmpProbe) and self._free(t)]
        if pings:
            group.create_task(self._sweep(pings))
        for target in others:
            group.create_task(self._probe(target))

    def _free(self, target: PlanTarget) -> bool:
        key = (target.id, target.spec.kind)
        if key in self.running:
            log.debug("%s %s is still running: skipping a tick", *key)
            return False
        return True

    async def _sweep(self, targets: Sequence[PlanTarget]) -> None:
        keys = [(t.id, "icmp") for t in targets]
        self.running.update(keys)
        try:
            flat = [
                (index, Target(address, t.spec, id=t.id))
                for index, t in enumerate(targets)
                for address in t.addresses
            ]
            timeout = max(t.timeout for t in targets)
            results = await icmp.sweep([target for _, target in flat], timeout=timeout)
            merged: dict[int, ProbeResult] = {}
            for (index, _), result in zip(flat, results, strict=True):
                best = merged.get(index)
                if best is None or (result.ok and not best.ok):
                    merged[index] = result
            for index in sorted(merged):
                await self.sink(merged[index])
        finally:
            self.running.difference_update(keys)

    async def _probe(self, target: PlanTarget) -> None:
        key = (target.id, target.spec.kind)
        self.running.add(key)
        try:
            importing = self._imports.get(target.spec.kind)
            if importing is not None:
                await asyncio.shield(importing)  # a cancelled probe leaves it for the next
            async with self.limit:
                probe = PROBES.get(target.spec.kind)
                if probe is None:
                    return
                spec_target = Target(target.addresses[0], target.spec, id=target.id)
                try:
                    result = await probe(spec_target, timeout=target.timeout)
                except Exception as err:  # a probe bug must not stop the agent
                    log.exception("%s %s probe failed", target.id, target.spec.kind)
                    result = ProbeResult(
                        target.id,
                        target.spec.kind,
                        now(),
                        ok=False,
                        error_kind="protocol",
                        detail=f"probe error: {type(err).__name__}",
                    )
            await self.sink(result)
        finally:
            self.running.discard(key)


def _import(module: str) -> None:
    """Import a probe module (in a worker thread); a failure is the probe's to report."""
    try:
        importlib.import_module(module)
    except Exception:  # must not stop the agent: each probe of the kind then reports it
        log.exception("cannot import %s; its probes will fail", module)
