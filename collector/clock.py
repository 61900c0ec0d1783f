"""The collector's sense of "now", passed in rather than read from the system.

Correlation, the status log, SLA clocks and the API all ask what time it is. When they call
``time.time()`` themselves a test cannot replay an outage at the moment it happened or step
through an SLA without waiting. They take a ``Clock`` instead; the running collector gives
them ``SystemClock``, a test gives them one it moves by hand.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Anything that can say the current time, in seconds since the epoch (UTC)."""

    def now(self) -> float:
        """The current time, as ``time.time()`` would give it."""
        ...


class SystemClock:
    """The wall clock of this machine: what the running collector uses."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that stands still until it is moved, for tests and replays."""

    def __init__(self, start: float) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def set(self, when: float) -> None:
        """Put the clock at ``when``; it may go backwards, as a replay needs."""
        self._now = when

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds``."""
        self._now += seconds


SYSTEM_CLOCK = SystemClock()
"""The one shared instance: it has no state, so every default can be this object."""
