"""How a background loop of the collector reports its rounds: state changes, not every retry.

A loop (correlation, the edge sweep, notification delivery, roll-ups) runs one round at a time,
and a round may fail: the database is locked past its timeout, the disk is full, a bug. The
loop must go on, and the log must stay readable when the fault lasts an hour: the first failed
round is logged once at error level with its traceback, each further failure at debug, and the
first round that works again once at info ("recovered"). Home Assistant's
DataUpdateCoordinator reports its updates the same way.

    rounds = Rounds("a correlation pass", log)
    while not stop.is_set():
        with rounds.one():
            ...  # one round; an exception ends the round, not the loop
        await wait(...)

Cancellation is not a failure: `CancelledError` is not an `Exception` and passes through.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Rounds:
    """The rounds of one background loop, and whether the latest one failed."""

    what: str  # names a round in the log: "a correlation pass"
    log: logging.Logger
    failing: bool = False
    failures: int = 0  # failed rounds in a row

    @contextmanager
    def one(self) -> Iterator[None]:
        """Run one round: log its failure (the first one loudly) or its recovery, go on."""
        try:
            yield
        except Exception as err:  # a round's failure must not stop the loop; the next retries
            self.failures += 1
            if self.failing:  # the traceback was logged with the first failure
                self.log.debug("%s failed again (%d in a row): %r", self.what, self.failures, err)
            else:
                self.log.exception("%s failed; trying again on every round", self.what)
            self.failing = True
        else:
            if self.failing:
                self.log.info("%s recovered after %d failed rounds", self.what, self.failures)
            self.failing = False
            self.failures = 0


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Wait `seconds` between rounds, or until `stop` is set, whichever comes first."""
    try:
        async with asyncio.timeout(max(seconds, 0.0)):
            await stop.wait()
    except TimeoutError:
        pass
