"""The sessions table: the dashboard's logins; the only module writing it.

In the database, so that every collector process serving the dashboard knows every login and
a restart logs nobody out. A row is keyed by the SHA-256 of the session's token, never the
token: a copy of the database hands out no live cookie. `last_seen` is written at most every
so often per session (`collector.dashboard.sessions` decides how often), not on every request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from collector.store.database import Connection, Database

Touch = tuple[str, float]  # (token hash, last use)


@dataclass(frozen=True, slots=True)
class StoredSession:
    """One row of the sessions table."""

    token_hash: str  # SHA-256 of the cookie's token, hex
    name: str
    role: str
    csrf: str
    created: float
    last_seen: float


class SessionTable:
    """The dashboard sessions of one store."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def start(
        self,
        session: StoredSession,
        *,
        alive_since: float,
        capacity: int,
        touched: Sequence[Touch] = (),
    ) -> list[str]:
        """Store a new session; return the token hashes of the sessions it pushed out.

        In one transaction: the uses in `touched` not yet written are written (so the least
        recently used is known), sessions unused since before `alive_since` are deleted, and
        then the least recently used ones, until the new one fits in `capacity`.
        """
        with self.db.writing() as tx:
            _touch(tx, touched)
            dropped = [
                str(row[0])
                for row in tx.execute(
                    "DELETE FROM sessions WHERE last_seen < ? RETURNING token_hash", (alive_since,)
                ).fetchall()
            ]
            (count,) = tx.execute("SELECT count(*) FROM sessions").fetchone()
            excess = int(count) - capacity + 1
            if excess > 0:
                dropped += [
                    str(row[0])
                    for row in tx.execute(
                        "DELETE FROM sessions WHERE token_hash IN (SELECT token_hash FROM "
                        "sessions ORDER BY last_seen, created, token_hash LIMIT ?) "
                        "RETURNING token_hash",
                        (excess,),
                    ).fetchall()
                ]
            tx.execute(
                "INSERT INTO sessions (token_hash, name, role, csrf, created, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    session.token_hash,
                    session.name,
                    session.role,
                    session.csrf,
                    session.created,
                    session.last_seen,
                ),
            )
        return dropped

    def find(self, token_hash: str) -> StoredSession | None:
        """Return the session of a token hash, however long unused; None when there is none."""
        with self.db.reading() as conn:
            row = conn.execute(
                "SELECT token_hash, name, role, csrf, created, last_seen FROM sessions "
                "WHERE token_hash = ?",
                (token_hash,),
            ).fetchone()
        return None if row is None else StoredSession(*row)

    def touch(self, touched: Sequence[Touch]) -> int:
        """Write sessions' last uses (never moving one back); return how many sessions exist
        of those given."""
        if not touched:
            return 0
        with self.db.writing() as tx:
            return _touch(tx, touched)

    def end(self, token_hash: str) -> None:
        """Delete a session (a logout)."""
        with self.db.writing() as tx:
            tx.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))

    def count(self) -> int:
        with self.db.reading() as conn:
            (count,) = conn.execute("SELECT count(*) FROM sessions").fetchone()
        return int(count)


def _touch(tx: Connection, touched: Sequence[Touch]) -> int:
    if not touched:
        return 0
    return tx.executemany(
        "UPDATE sessions SET last_seen = CASE WHEN last_seen < ? THEN ? ELSE last_seen END "
        "WHERE token_hash = ?",
        [(when, when, token_hash) for token_hash, when in touched],
    )
