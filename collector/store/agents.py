"""The agents table: each agent's last contact and last heartbeat; the only module writing it.

The row is written in the same transaction as the batch it came with (`heard`), so an agent's
last contact never disagrees with the results stored.
"""

from __future__ import annotations

import json
from typing import Any

from collector.store.database import Connection, Database


def heard(tx: Connection, agent: str, when: float, heartbeat: dict[str, Any] | None) -> None:
    """Note that an agent was heard at `when`; keep its last heartbeat unless it sent one."""
    tx.execute(
        "INSERT INTO agents VALUES (?,?,?) ON CONFLICT (id) DO UPDATE SET "
        "last_seen = excluded.last_seen, heartbeat = CASE WHEN ? THEN excluded.heartbeat "
        "ELSE agents.heartbeat END",
        (agent, when, json.dumps(heartbeat or {}), heartbeat is not None),
    )


def last_heard(db: Database) -> dict[str, tuple[float, Any]]:
    """Return each agent's last contact time and last heartbeat (None where not JSON)."""
    with db.reading() as conn:
        rows = conn.execute("SELECT id, last_seen, heartbeat FROM agents").fetchall()
    return {row[0]: (row[1], _heartbeat(row[2])) for row in rows}


def _heartbeat(text: object) -> Any:
    """Return a stored heartbeat's JSON, or None when it is not JSON (collector.heartbeat
    checks the rest as it reads it back)."""
    try:
        return json.loads(str(text))
    except (ValueError, RecursionError):
        return None
