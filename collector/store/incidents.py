"""The incidents and incident_events tables: the only module writing them.

An incident's row is its current state; its events are its timeline (opened, upgraded,
acknowledged, a note, notified, ...), in the order they were written: by time, then by
`rowid` (SQLite's implicit one; PostgreSQL's table has a column of that name for it).

The database keeps the rule "at most one open incident per key" with a partial unique index:
an INSERT or a reopening that would break it fails with a unique violation
(`is_unique_violation` names both drivers' errors). A change to a row is written only while
the row still has the status its writer read (`change`), so a collector acting on an old copy
of an incident (another process acknowledged or resolved it meanwhile) fails with
`IncidentChanged` instead of writing over what the other did. Both undo the caller's
transaction; the caller reads the incidents again and decides anew.

The functions taking a `Connection` write inside the caller's transaction, so that an
incident's change, its timeline entry and its notifications are committed together.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from collector.store.database import Connection, Database
from collector.topology import Priority

Status = Literal["open", "acknowledged", "resolved"]
IncidentStatus = Literal["open", "resolved", "all"]  # what `find` may be asked for
COLUMNS = (
    "id, key, priority, status, title, cause, sites, affected_users, opened_at, "
    "acknowledged_at, acknowledged_by, resolved_at, resolved_by, due_at, major, flaps"
)
# What `change` may write: every column but the id, the key and the opening time.
CHANGEABLE = frozenset(
    {
        "priority", "status", "title", "cause", "sites", "affected_users", "acknowledged_at",
        "acknowledged_by", "resolved_at", "resolved_by", "due_at", "major", "flaps",
    }
)  # fmt: skip
_FIND = {
    "open": "status != 'resolved'",
    "resolved": "status = 'resolved'",
    "all": "1 = 1",
}


class IncidentChanged(Exception):
    """An incident's row no longer had the status its writer read: someone else changed it."""


@dataclass(frozen=True, slots=True)
class Incident:
    """One row of the incidents table."""

    id: int
    key: str
    priority: Priority
    status: Status
    title: str
    cause: Mapping[str, Any]
    sites: tuple[str, ...]
    affected_users: int
    opened_at: float
    acknowledged_at: float | None
    acknowledged_by: str | None
    resolved_at: float | None
    resolved_by: str | None
    due_at: float
    major: bool
    flaps: int


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of an incident's timeline."""

    ts: float
    kind: str
    author: str | None
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Note:
    """A note of an incident, as the incident JSON lists them."""

    incident: int
    ts: float
    author: str | None
    text: str


def is_unique_violation(err: BaseException) -> bool:
    """Return whether `err` is a unique index refusing a row, from either driver."""
    if isinstance(err, sqlite3.IntegrityError):
        return getattr(err, "sqlite_errorname", "") in (
            "SQLITE_CONSTRAINT_UNIQUE",
            "SQLITE_CONSTRAINT_PRIMARYKEY",
        )
    try:
        from psycopg import errors  # noqa: PLC0415 -- a SQLite collector has no need of it
    except ImportError:  # pragma: no cover -- a dependency of the package
        return False
    return isinstance(err, errors.UniqueViolation)


# -- writes, inside the caller's transaction -------------------------------------------------


def insert(tx: Connection, incident: Incident) -> Incident:
    """Store a new incident (its `id` is ignored) and return it with the id it was given.

    Raises the driver's unique violation when its key already has an open incident.
    """
    (incident_id,) = tx.execute(
        "INSERT INTO incidents (key, priority, status, title, cause, sites, affected_users, "
        "opened_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, due_at, major, "
        "flaps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            incident.key,
            incident.priority,
            incident.status,
            incident.title,
            _json(incident.cause),
            _json(list(incident.sites)),
            incident.affected_users,
            incident.opened_at,
            incident.acknowledged_at,
            incident.acknowledged_by,
            incident.resolved_at,
            incident.resolved_by,
            incident.due_at,
            int(incident.major),
            incident.flaps,
        ),
    ).fetchone()
    return replace(incident, id=int(incident_id))


def change(tx: Connection, incident: Incident, **changes: Any) -> Incident:
    """Write `changes` to an incident whose row still has `incident.status`; return the row.

    Only the changed columns are written, so what another process set in the others stays.
    Raises IncidentChanged when the row's status is no longer the one read (or the row is
    gone), and the driver's unique violation when reopening it would make a second open
    incident of its key.
    """
    unknown = set(changes) - CHANGEABLE
    if unknown:
        raise ValueError(f"not a changeable incident column: {sorted(unknown)}")
    if not changes:
        return incident
    names = sorted(changes)
    assignments = ", ".join(f"{name} = ?" for name in names)
    row = tx.execute(
        f"UPDATE incidents SET {assignments} WHERE id = ? AND status = ? "  # noqa: S608 -- names checked above
        f"RETURNING {COLUMNS}",
        [*(_column(name, changes[name]) for name in names), incident.id, incident.status],
    ).fetchone()
    if row is None:
        raise IncidentChanged(
            f"incident {incident.id} ({incident.key}) is no longer {incident.status}"
        )
    return from_row(row)


def add_event(
    tx: Connection,
    incident: int,
    ts: float,
    kind: str,
    detail: Mapping[str, Any],
    *,
    author: str | None = None,
) -> None:
    """Add an entry to an incident's timeline."""
    tx.execute(
        "INSERT INTO incident_events (incident, ts, kind, author, detail) VALUES (?, ?, ?, ?, ?)",
        (incident, ts, kind, author, _json(detail)),
    )


def read(conn: Connection, incident_id: int) -> Incident | None:
    """Return one incident as the connection sees it (inside a transaction: as it will stay)."""
    row = conn.execute(
        f"SELECT {COLUMNS} FROM incidents WHERE id = ?",  # noqa: S608 -- fixed columns
        (incident_id,),
    ).fetchone()
    return None if row is None else from_row(row)


# -- reads -------------------------------------------------------------------------------------


class IncidentTable:
    """The reads of the incident tables; writes go through the functions above."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, incident_id: int) -> Incident | None:
        with self.db.reading() as conn:
            return read(conn, incident_id)

    def live(self, resolved_since: float) -> list[Incident]:
        """Return the open incidents and those resolved at or after `resolved_since`, oldest
        first."""
        return self._select(
            "status != 'resolved' OR resolved_at >= ? ORDER BY id", (resolved_since,)
        )

    def find(self, status: IncidentStatus, start: float, end: float, limit: int) -> list[Incident]:
        """Return incidents opened in [start, end), newest first; open means not resolved."""
        return self._select(
            f"{_FIND[status]} AND opened_at >= ? AND opened_at < ? "
            "ORDER BY opened_at DESC, id DESC LIMIT ?",
            (start, end, limit),
        )

    def opened_between(self, start: float, end: float) -> list[Incident]:
        """Return the incidents opened in [start, end), oldest first: the SLA report's."""
        return self._select("opened_at >= ? AND opened_at < ? ORDER BY opened_at, id", (start, end))

    def open_at(self, at: float) -> dict[str, int]:
        """Return how many incidents of each priority were open at `at`."""
        with self.db.reading() as conn:
            rows = conn.execute(
                "SELECT priority, count(*) FROM incidents WHERE opened_at < ? "
                "AND (resolved_at IS NULL OR resolved_at > ?) GROUP BY priority",
                (at, at),
            ).fetchall()
        return {str(priority): int(count) for priority, count in rows}

    def timeline(self, incident_id: int) -> list[Event]:
        with self.db.reading() as conn:
            rows = conn.execute(
                "SELECT ts, kind, author, detail FROM incident_events WHERE incident = ? "
                "ORDER BY ts, rowid",
                (incident_id,),
            ).fetchall()
        return [Event(ts, kind, author, json.loads(detail)) for ts, kind, author, detail in rows]

    def notes(self, incident_ids: Sequence[int]) -> list[Note]:
        """Return the notes of many incidents in one read, in the order they were written."""
        if not incident_ids:
            return []
        marks = ",".join("?" * len(incident_ids))
        with self.db.reading() as conn:
            rows = conn.execute(
                "SELECT incident, ts, author, detail FROM incident_events "  # noqa: S608
                f"WHERE kind = 'note' AND incident IN ({marks}) ORDER BY ts, rowid",
                list(incident_ids),
            ).fetchall()
        return [
            Note(int(incident), ts, author, str(json.loads(detail).get("text", "")))
            for incident, ts, author, detail in rows
        ]

    def _select(self, where: str, params: Sequence[Any]) -> list[Incident]:
        with self.db.reading() as conn:
            return select(conn, where, params)


def select(conn: Connection, where: str, params: Sequence[Any]) -> list[Incident]:
    """Read incidents; `where` is always one of the fixed clauses of this package."""
    query = f"SELECT {COLUMNS} FROM incidents WHERE {where}"  # noqa: S608 -- fixed clauses
    return [from_row(row) for row in conn.execute(query, params).fetchall()]


def from_row(row: Sequence[Any]) -> Incident:
    return Incident(
        int(row[0]),
        row[1],
        row[2],
        row[3],
        row[4],
        json.loads(row[5]),
        tuple(json.loads(row[6])),
        int(row[7]),
        row[8],
        row[9],
        row[10],
        row[11],
        row[12],
        row[13],
        bool(row[14]),
        int(row[15]),
    )


def _column(name: str, value: Any) -> Any:
    """Return a field's value as its column holds it."""
    if name == "cause":
        return _json(value)
    if name == "sites":
        return _json(list(value))
    if name == "major":
        return int(value)
    return value


def _json(value: Any) -> str:
    return json.dumps(dict(value) if isinstance(value, Mapping) else value)
