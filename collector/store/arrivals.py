"""The announcement of each batch stored in PostgreSQL, for the other collectors on the database.

Agents post to whichever collector answers them, and every collector's state book must see
every result. So the batch's own transaction NOTIFYs the channel CHANNEL with a small JSON
payload (`Arrival`): the collector that stored it, the source and outbox, the range of its
seqs and of its probe times, and when it was received. PostgreSQL delivers a notification at
commit, to every session LISTENing then, and never one of a transaction rolled back, so an
announced batch is always there to read (collector.arrivals listens and reads it back). A
batch with no result (a heartbeat alone) is announced too: it says the agent was heard.

The payload is the only place outside the tables where one collector tells another something,
and any session on the database may NOTIFY: `Arrival.parse` refuses whatever is not one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

from collector.store.database import Connection

CHANNEL = "sitewatch_results"
MAX_TEXT = 200  # characters of a collector's name, a source or an outbox
MAX_SEQ = 2**63 - 1
NUL = "\x00"


@dataclass(frozen=True, slots=True)
class Arrival:
    """One stored batch, as announced."""

    origin: str  # the collector that stored it (collector.leadership.replica_name)
    source: str  # the agent, or the centre
    outbox: str
    first: int  # the range of its seqs; first > last for a batch without results
    last: int
    start: float  # the range of its probe times, Unix seconds
    end: float
    received: float  # when the collector that stored it received it
    clock: float | None  # the agent's clock when it sent the batch (its heartbeat's), if given

    def payload(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> Arrival | None:
        """Return the arrival a payload announces, or None for anything else on the channel."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or set(data) != {f.name for f in fields(cls)}:
            return None
        texts = [data[name] for name in ("origin", "source", "outbox")]
        numbers = [data[name] for name in ("start", "end", "received")]
        if data["clock"] is not None:
            numbers.append(data["clock"])
        seqs = [data["first"], data["last"]]
        if not all(isinstance(v, str) and 0 < len(v) <= MAX_TEXT and NUL not in v for v in texts):
            return None  # a NUL would fail the read-back, and with it the batches around it
        if not all(type(value) is int and 0 <= value <= MAX_SEQ for value in seqs):
            return None
        if not all(type(value) in (int, float) and math.isfinite(value) for value in numbers):
            return None
        floats = {name: float(data[name]) for name in ("start", "end", "received")}
        clock = None if data["clock"] is None else float(data["clock"])
        return cls(**{**data, **floats, "clock": clock})


def announce(tx: Connection, arrival: Arrival) -> None:
    """Announce a batch in the transaction that stores it: delivered only if it commits."""
    tx.execute("SELECT pg_notify(?, ?)", (CHANNEL, arrival.payload()))
