"""The login rate limit: failed logins counted per client address and per user name.

MAX_FAILURES failures within WINDOW_SECONDS from one address, or for one name, block further
attempts from that address, or for that name, until the oldest failure leaves the window. A
blocked attempt is refused before any password is checked. The address is the peer of the TCP
connection: behind a reverse proxy every browser shares the proxy's address. Memory is bounded:
at most `capacity` addresses and names are remembered, the stalest forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from aiohttp import web

MAX_FAILURES = 5
WINDOW_SECONDS = 300.0
MAX_KEYS = 10_000


class LoginLimiter:
    """Recent login failures by address and by name."""

    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window: float = WINDOW_SECONDS,
        capacity: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.window, self.capacity, self.clock = (
            max_failures,
            window,
            capacity,
            clock,
        )
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str, name: str) -> float:
        """Return how many seconds until an attempt may be made; 0 when it may be made now."""
        now = self.clock()
        wait = 0.0
        for key in _keys(address, name):
            recent = self._recent(key, now)
            if len(recent) >= self.max_failures:
                wait = max(wait, recent[-self.max_failures] + self.window - now)
        return wait

    def failed(self, address: str, name: str) -> None:
        """Count one failed attempt against the address and the name."""
        now = self.clock()
        for key in _keys(address, name):
            recent = self._recent(key, now)
            recent.append(now)
            while len(recent) > self.max_failures:
                recent.popleft()
            self._failures[key] = recent
            self._failures.move_to_end(key)
        while len(self._failures) > self.capacity:
            self._failures.popitem(last=False)

    def succeeded(self, address: str, name: str) -> None:
        """Forget the name's failures from this address, and the attempt just counted."""
        self._failures.pop(_keys(address, name)[1], None)
        counted = self._failures.get(_keys(address, name)[0])
        if counted:
            counted.pop()

    def _recent(self, key: str, now: float) -> deque[float]:
        recent = self._failures.get(key, deque())
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        return recent


def _keys(address: str, name: str) -> tuple[str, str]:
    """The address, and the name as tried from that address.

    Not the name alone: then anyone could keep an operator locked out by failing five times
    every five minutes from anywhere. Guessing one name from many addresses is still bounded
    per address, and each guess costs a scrypt check.
    """
    return f"address:{address}", f"name:{name.casefold()}@{address}"


LIMITER: web.AppKey[LoginLimiter] = web.AppKey("dashboard_login_limiter", LoginLimiter)
