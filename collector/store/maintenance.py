"""The maintenance table: staff's maintenance windows; the only module writing it.

A window is stored as staff gave it: a one-off `[start, "end")` in Unix seconds, or a weekly
recurrence as the JSON of its wire form (`weekly`). Windows are deleted softly (`deleted_at`),
so the record of who planned what stays. What a window means is `collector.maintenance`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.store.database import Database


@dataclass(frozen=True, slots=True)
class StoredWindow:
    """One row of the maintenance table that is not deleted."""

    id: int
    scope: str
    target: str
    start: float | None
    end: float | None
    weekly: str | None  # JSON {days, start, end}
    reason: str
    created_by: str
    created_at: float


class MaintenanceTable:
    """The maintenance windows of one store."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self,
        scope: str,
        target: str,
        *,
        start: float | None,
        end: float | None,
        weekly: str | None,
        reason: str,
        created_by: str,
        now: float,
    ) -> int:
        """Store a window; return its id."""
        with self.db.writing() as tx:
            (window_id,) = tx.execute(
                'INSERT INTO maintenance (scope, target, start, "end", weekly, reason, '
                "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (scope, target, start, end, weekly, reason, created_by, now),
            ).fetchone()
        return int(window_id)

    def windows(self) -> list[StoredWindow]:
        """Return every window not deleted, oldest first."""
        with self.db.reading() as conn:
            rows = conn.execute(
                'SELECT id, scope, target, start, "end", weekly, reason, created_by, created_at '
                "FROM maintenance WHERE deleted_at IS NULL ORDER BY id"
            ).fetchall()
        return [StoredWindow(int(row[0]), *row[1:]) for row in rows]

    def delete(self, window_id: int, now: float) -> bool:
        """Delete a window softly; return False when there is no such window left to delete."""
        with self.db.writing() as tx:
            cursor = tx.execute(
                "UPDATE maintenance SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                (now, window_id),
            )
            return cursor.rowcount == 1
