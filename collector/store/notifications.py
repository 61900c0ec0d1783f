"""The notifications table, the outbox of incident notifications: the only module writing it.

Rows are queued inside the incident code's transaction (`add`), so a notification exists
exactly when the change it announces was committed. A delivery or a failed attempt is recorded
with its timeline entry in one transaction (`delivered`, `failed`). A row given up on keeps
`delivered_at` NULL and gets an infinite `next_attempt`: it is never due again, and stays
for the record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from collector.store import incidents
from collector.store.database import Connection, Database
from collector.store.leadership import Leadership

Queued = tuple[int, str, str, str, float]  # (incident, channel, event, payload JSON, created)


@dataclass(frozen=True, slots=True)
class Notification:
    """One row of the outbox."""

    id: int
    incident: int
    channel: str
    event: str
    payload: dict[str, Any]  # the incident's API JSON as it was at the event
    created: float
    attempts: int
    next_attempt: float
    last_error: str | None


def add(tx: Connection, rows: Iterable[Queued]) -> int:
    """Queue rows, due at once, inside the caller's transaction; return how many."""
    return tx.executemany(
        "INSERT INTO notifications (incident, channel, event, payload, created, next_attempt) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(incident, channel, event, payload, created, created) for (incident, channel, event,
         payload, created) in rows],
    )  # fmt: skip


class NotificationTable:
    """The outbox of one store. Delivering is the leader's (collector.leadership): a claim
    and the record of an attempt are fenced by its epoch."""

    def __init__(self, db: Database, leadership: Leadership) -> None:
        self.db = db
        self._leadership = leadership

    def claim(self, ids: Sequence[int], now: float, until: float) -> set[int]:
        """Take those of `ids` still due at `now` for delivery until `until`; return them.

        A taken row is not due for anyone else until `until` (its lease), unless its attempt
        is recorded first. On PostgreSQL a row another transaction is taking is skipped (FOR
        UPDATE SKIP LOCKED), not waited for. A leader that dies while sending leaves its rows
        to the next leader once their lease ends: one duplicate at most, with the same
        dedup key.
        """
        if not ids:
            return set()
        skip_locked = " FOR UPDATE SKIP LOCKED" if self.db.dialect == "postgresql" else ""
        marks = ", ".join("?" * len(ids))
        with self._leadership.fenced() as tx:
            rows = tx.execute(
                f"SELECT id FROM notifications WHERE id IN ({marks}) "  # noqa: S608 -- marks
                f"AND delivered_at IS NULL AND next_attempt <= ?{skip_locked}",
                (*ids, now),
            ).fetchall()
            taken = {int(row[0]) for row in rows}
            tx.executemany(
                "UPDATE notifications SET next_attempt = ? WHERE id = ?",
                [(until, taken_id) for taken_id in sorted(taken)],
            )
        return taken

    def pending(self, before: float) -> list[Notification]:
        """Return the undelivered rows due before `before`, in the order they were queued."""
        with self.db.reading() as conn:
            rows = conn.execute(
                "SELECT id, incident, channel, event, payload, created, attempts, next_attempt, "
                "last_error FROM notifications WHERE delivered_at IS NULL AND next_attempt < ? "
                "ORDER BY id",
                (before,),
            ).fetchall()
        return [
            Notification(
                int(r[0]), int(r[1]), r[2], r[3], json.loads(r[4]), r[5], int(r[6]), r[7], r[8]
            )
            for r in rows
        ]

    def release(self, notes: Iterable[Notification]) -> None:
        """Give claimed rows back unattempted: each due again when it was before the claim."""
        with self._leadership.fenced() as tx:
            tx.executemany(
                "UPDATE notifications SET next_attempt = ? WHERE id = ? AND delivered_at IS NULL",
                [(note.next_attempt, note.id) for note in notes],
            )

    def delivered(self, note: Notification, now: float, event: Mapping[str, Any]) -> None:
        """Record a delivery, and `event` as the incident's `notified` entry."""
        with self._leadership.fenced() as tx:
            tx.execute(
                "UPDATE notifications SET delivered_at = ?, attempts = ?, last_error = NULL "
                "WHERE id = ?",
                (now, note.attempts + 1, note.id),
            )
            incidents.add_event(tx, note.incident, now, "notified", event)

    def failed(
        self,
        note: Notification,
        now: float,
        error: str,
        retry_at: float,
        event: Mapping[str, Any],
    ) -> None:
        """Record a failed attempt, the next (or no further) one, and the `notify_failed`
        entry."""
        with self._leadership.fenced() as tx:
            tx.execute(
                "UPDATE notifications SET attempts = attempts + 1, next_attempt = ?, "
                "last_error = ? WHERE id = ?",
                (retry_at, error, note.id),
            )
            incidents.add_event(tx, note.incident, now, "notify_failed", event)
