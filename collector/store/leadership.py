"""The leadership table: which collector leads, since when, and the epoch that fences it.

One row. A collector that takes the lead (`collector.leadership`) raises the epoch as it does
(`take`), and every transaction it runs as leader (`fenced`) first reads the row and goes on
only while the epoch is still its own. On PostgreSQL that read takes a FOR SHARE lock: a new
leader's `take` waits for the old leader's transactions in flight, and every one after it sees
the new epoch and fails with NotLeader. So a leader that lost its lock without noticing (a
process stopped with SIGSTOP, a frozen VM, a cut network) cannot open an incident or send a
notification again when it wakes; the database, not a clock, decides.

A process that never stood for leader (`sitewatch migrate`, a report, a test driving the
pipeline by hand) writes unfenced, as every collector did before there could be two.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from collector.store.database import Connection, Database, StoreError

NOT_HELD = -1  # what a process that does not lead holds: no row ever has that epoch
LEADER_LOCK = 0x5157_4C14  # PostgreSQL advisory lock: held by the leading collector's session
TAKE_WAIT = 2.0  # seconds a take-over waits for a stale leader's transaction, per try


class NotLeader(StoreError):
    """A leader's write refused: another collector took the lead since this one did."""


@dataclass(frozen=True, slots=True)
class Holder:
    """The leadership as the database holds it."""

    epoch: int  # raised by one at each take-over; 0 before the first
    holder: str  # who took it last: host, process and listen address
    since: float  # when, Unix seconds


class Leadership:
    """The leadership row of one store, and the epoch this process holds (if any)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # None: this process never stood for leader and writes unfenced. Otherwise the epoch it
        # took, or NOT_HELD while it does not lead (before its first lead, and once it lost it).
        self.held: int | None = None

    def take(self, holder: str, now: float) -> int:
        """Raise the epoch and note this process as the leader; return the new epoch.

        Call it only while holding the leader's lock: two takes would both succeed, each
        fencing the other out.
        """
        with self.db.writing() as tx:
            if tx.dialect == "postgresql":  # a stale leader's transaction holds the row: the
                # server ends it within 5 s (POOL_SESSION); meanwhile fail, and try again
                tx.execute(f"SET LOCAL lock_timeout = {int(TAKE_WAIT * 1000)}")
            row = tx.execute(
                "UPDATE leadership SET epoch = epoch + 1, holder = ?, since = ? WHERE id = 1 "
                "RETURNING epoch",
                (holder, now),
            ).fetchone()
        if row is None:  # pragma: no cover -- the migration inserts the row, nothing deletes it
            raise StoreError(f"{self.db}: the leadership row is missing")
        self.held = int(row[0])
        return self.held

    def lose(self) -> None:
        """Note that this process does not lead: its fenced writes fail from now on (and from
        its start, for a collector that stands for leader)."""
        self.held = NOT_HELD

    def confirm(self) -> None:
        """Raise NotLeader unless this process still leads, as the database says now: before
        something no transaction can take back, such as sending a notification."""
        with self.fenced():
            pass

    def led(self) -> bool:
        """Whether some collector holds the leader's lock now (PostgreSQL; SQLite: False).

        For a collector starting up: with a live leader beside it, the time it was down is no
        gap in anyone's watch, and it must not mark one.
        """
        if self.db.dialect != "postgresql":
            return False
        with self.db.reading() as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = 0 AND objid = ? AND objsubid = 1 AND granted)",
                (LEADER_LOCK,),
            ).fetchone()
        return bool(row and row[0])

    def current(self) -> Holder:
        """Return who leads, as the database says."""
        with self.db.reading() as conn:
            row = conn.execute(
                "SELECT epoch, holder, since FROM leadership WHERE id = 1"
            ).fetchone()
        if row is None:  # pragma: no cover -- see take
            raise StoreError(f"{self.db}: the leadership row is missing")
        return Holder(int(row[0]), str(row[1]), float(row[2]))

    @contextmanager
    def fenced(self) -> Iterator[Connection]:
        """Run one leader's transaction: refused (NotLeader) unless this process's epoch is
        still the database's, checked first thing in the transaction."""
        with self.db.writing() as tx:
            if self.held is not None:
                check(tx, self.held)
            yield tx


def check(tx: Connection, epoch: int) -> None:
    """Raise NotLeader unless `epoch` is the leadership's; on PostgreSQL, hold the row shared
    until the transaction ends, so no take-over commits in between."""
    lock = " FOR SHARE" if tx.dialect == "postgresql" else ""
    row = tx.execute(f"SELECT epoch, holder FROM leadership WHERE id = 1{lock}").fetchone()  # noqa: S608 -- a fixed suffix
    if row is None or int(row[0]) != epoch:
        held_by = "nobody" if row is None else f"{row[1] or 'nobody'} (epoch {row[0]})"
        raise NotLeader(f"this collector no longer leads (epoch {epoch}): {held_by} does")
