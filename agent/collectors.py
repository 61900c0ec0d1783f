"""The collectors an agent reports to, in the order its file lists them.

Several collectors on one PostgreSQL database take results alike (collector.leadership), so an
agent posts to one at a time: the first listed, and after a post or a plan fetch that finds it
unreachable or unavailable (no answer, 502, 503, 504), the next, round the list. A refusal
(4xx) is not a reason to move: every collector would refuse the same batch. Nothing is lost
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

    @property
    def current(self) -> str:
        return self.urls[self._at]

    def answered(self, url: str, status: int, why: str = "") -> None:
        """Note how the collector at `url` answered; move on if it was unavailable."""
        if status not in UNAVAILABLE or url != self.current or len(self.urls) == 1:
            return
        self._at = (self._at + 1) % len(self.urls)
        reason = f"{status} {why}".strip() if status else why or "no answer"
        log.warning("collector %s unavailable (%s): trying %s", url, reason, self.current)
