"""The collectors an agent reports to, in the order its file lists them.

Several collectors on one PostgreSQL database take results alike (collector.leadership), so an
agent posts to one at a time: the first listed, and after a post or a plan fetch that finds it
unreachable or unavailable (no answer, 502, 503, 504), the next, round the list. A refusal
(4xx) is not a reason to move: every collector would refuse the same batch. The next one is
tried at once; only when every collector failed in a row does the agent back off (agent.shipper),
so a dead collector costs a post one failed attempt, not a backoff. Nothing is lost
in between: results leave the outbox only when a collector acknowledged them, and a batch sent
to two collectors is stored once (its (agent, outbox, seq) key).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

log = logging.getLogger(__name__)
UNAVAILABLE = frozenset({0, 502, 503, 504})  # statuses that say "try another" (0: no answer)


class Collectors:
    """The collectors' base URLs, and the one in use."""

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("an agent needs at least one collector")
        self.urls = tuple(urls)
        self._at = 0
        self._failed = 0  # collectors found unavailable one after another since one answered

    @property
    def current(self) -> str:
        return self.urls[self._at]

    @property
    def untried(self) -> bool:
        """Whether the collector now current is the next of a round still going: the last
        failure moved to it, and not every collector has failed since the round began. Worth
        trying at once; a round that every collector failed ends in a backoff."""
        return self._failed % len(self.urls) != 0

    def answered(self, url: str, status: int, why: str = "") -> None:
        """Note how the collector at `url` answered; move on if it was unavailable."""
        if url != self.current:
            return
        if status not in UNAVAILABLE:
            self._failed = 0
            return
        self._failed += 1
        if len(self.urls) == 1:
            return
        self._at = (self._at + 1) % len(self.urls)
        reason = f"{status} {why}".strip() if status else why or "no answer"
        log.warning("collector %s unavailable (%s): trying %s", url, reason, self.current)
