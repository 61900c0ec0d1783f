"""Run every target of the plan on its interval and hand each result to a sink.

Targets with the same interval share a tick; each interval's ticks start at a random phase so
that a hundred agents restarted together do not probe in step. On each tick the ICMP targets
are swept together on the shared sockets (a link with several far-end addresses is up when any
answers); the other probes run as separate tasks under a concurrency limit, and their results
go to the sink as soon as each is done, so a slow SNMP device delays nobody. A target whose
previous probe is still running skips a tick rather than piling up. The plan may be replaced at
any time: the next tick of each interval uses the new one.
"""

from __future__ import annotations

import asyncio
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
MAX_CONCURRENT = 32


class Scheduler:
    """Probes a plan until cancelled."""

    def __init__(self, plan: Plan, sink: Sink, *, max_concurrent: int = MAX_CONCURRENT) -> None:
        self.plan = plan
        self.sink = sink
        self.limit = asyncio.Semaphore(max_concurrent)
        self.running: set[tuple[str, str]] = set()  # (target id, kind) with a probe in flight
        self._loops: dict[float, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None

    def replace(self, plan: Plan) -> None:
        """Use a new plan from the next tick on; start loops for intervals new to it."""
        self.plan = plan
        if self._group is not None:
            self._start_loops(self._group)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            self._start_loops(group)
            await asyncio.Event().wait()  # until cancelled

    def _start_loops(self, group: asyncio.TaskGroup) -> None:
        for interval in {t.interval for t in self.plan.targets}:
            loop = self._loops.get(interval)
            if loop is None or loop.done():
                self._loops[interval] = group.create_task(self._every(interval, group))

    async def _every(self, interval: float, group: asyncio.TaskGroup) -> None:
        start = time.monotonic() + random.uniform(0, min(interval, 5.0))  # noqa: S311
        tick = 0
        while True:
            await asyncio.sleep(max(0.0, start + tick * interval - time.monotonic()))
            targets = [t for t in self.plan.targets if t.interval == interval]
            if not targets:
                return  # the plan no longer has this interval
            self._tick(targets, group)
            tick = max(tick + 1, int((time.monotonic() - start) / interval) + 1)

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
