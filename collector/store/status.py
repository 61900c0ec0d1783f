"""The status log, the collector's own heartbeat, and its gaps: the only writer of their tables.

Tables `status_log`, `collector` (`alive_until`) and `gaps`. The status log is what
availability and the SLA report are computed from: a row says an entity (`site:ID`, `link:ID`)
had a status from `ts` on, until its next row; of rows with one `ts`, the one written later
wins. `alive_until` is when the collector last noted it was watching, so that after a restart
the time since then is logged `unknown`, neither up nor down, and recorded as a gap. A gap's
rows are rebuilt later from the results agents replay (`collector.history`); a rebuilt row
names its gap, so the next rebuild replaces it, and rows logged live name none.

The SQL is written once, with `?` placeholders, in the subset SQLite and PostgreSQL share
(`ON CONFLICT`, `CASE` instead of the two-argument `max`, `"end"` quoted). The rebuild's read
of the results table lives here too: it is the one reader that walks a gap's results in probe
order, and writes nothing there. Every method blocks on the database: call it from a worker
thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from collector.store.database import Connection, Database
from collector.store.leadership import Leadership
from collector.store.results import stored_reading, stored_time, stored_value
from probes.result import MAX_RTT_MS, ErrorKind, ProbeResult

READ_CHUNK = 5_000  # results read per query in a rebuild, so ingest never waits long for the store


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A site's or link's new status, as the status log keeps it, with the evidence for it."""

    entity: str  # site:ID or link:ID
    status: str
    evidence: str | None  # for people: the status and what moved it; None: nothing to say


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch [start, end) the collector did not watch."""

    id: int
    start: float
    end: float
    rebuilt_at: float | None  # results received until then are in its rebuilt rows


Rebuilt = tuple[str, float, str]  # (entity, ts, status): one row of a gap's rebuilt log
Version = tuple[Any, ...]  # alive_until's rows, and every gap as (id, end, rebuilt_at)

# Each entity's last row at or before the start (its status when the range opens), then its
# rows inside the range; ties in ts are broken by rowid (the write order: SQLite's own, an
# identity column in PostgreSQL), so the row written last wins. The wanted entities come as one
# JSON list, a parameter whatever their number; each dialect has its own way to unpack it.
_TOUCHING = """
    WITH wanted(entity) AS (SELECT DISTINCT value FROM {entities})
    SELECT wanted.entity, log.ts, log.status, log.rowid FROM wanted
    JOIN status_log AS log ON log.rowid = (
        SELECT rowid FROM status_log WHERE entity = wanted.entity AND ts <= :start
        ORDER BY ts DESC, rowid DESC LIMIT 1)
    UNION ALL
    SELECT entity, ts, status, rowid FROM status_log
    WHERE entity IN (SELECT entity FROM wanted) AND ts > :start AND ts < :end
    ORDER BY 1, 2, 4
"""
TOUCHING = {
    "sqlite": _TOUCHING.format(entities="json_each(:entities)"),
    "postgresql": _TOUCHING.format(entities="json_array_elements_text(CAST(:entities AS json))"),
}


class StatusLog:
    """The status log's tables in one store; see the module's docstring."""

    def __init__(self, db: Database, leadership: Leadership) -> None:
        self._db = db
        self._leadership = leadership  # the log is the leader's to write: its writes are fenced

    def log(self, changes: Sequence[StatusChange], at: float) -> None:
        """Log `changes` as beginning at `at`, and note the collector watched until `at`."""
        with self._leadership.fenced() as db:
            db.executemany(
                "INSERT INTO status_log (entity, ts, status, evidence) VALUES (?, ?, ?, ?)",
                [(change.entity, at, change.status, change.evidence) for change in changes],
            )
            db.execute("UPDATE collector SET alive_until = ?", (at,))

    def touching(
        self, entities: Sequence[str], start: float, end: float
    ) -> dict[str, list[tuple[float, str]]]:
        """Return each entity's rows that say its status in [start, end), oldest first.

        That is its last row at or before `start` (its status when the range opens) and every
        row after it before `end`; an entity with none is absent. One query for all of them:
        the sites API asks for every site and link on each request.
        """
        found: dict[str, list[tuple[float, str]]] = {}
        if not entities or end <= start:
            return found
        params = {"entities": json.dumps(list(entities)), "start": start, "end": end}
        with self._db.reading() as db:
            for entity, ts, status, _rowid in db.execute(TOUCHING[db.dialect], params):
                found.setdefault(entity, []).append((float(ts), status))
        return found

    def version(self) -> Version:
        """Return what changes whenever the log does: `alive_until`, which every live write
        sets, and the gaps, which every write of the past changes (see `collector.site_cache`).
        """
        with self._db.reading() as db:
            alive = db.execute("SELECT alive_until FROM collector").fetchall()
            gaps = db.execute('SELECT id, "end", rebuilt_at FROM gaps ORDER BY id').fetchall()
        return (tuple(tuple(row) for row in alive), tuple(tuple(row) for row in gaps))

    def alive_until(self) -> float | None:
        """Return when the collector last noted it was watching (None: it never started).

        A read of a real table, not `SELECT 1`: on SQLite it makes the reader open the file,
        so `/healthz` asks it to learn whether the database can be read at all.
        """
        with self._db.reading() as db:
            row = db.execute("SELECT alive_until FROM collector").fetchone()
        return None if row is None else float(row[0])

    def mark_gap(self, entities: Iterable[str], now: float) -> float | None:
        """Log `entities` unknown from when the collector was last alive, and record the gap.

        Return the gap's start, or None for a collector's first start (nothing was watched
        before, so nothing is missing). The gap is recorded only when it has length.
        """
        with self._leadership.fenced() as db:
            row = db.execute("SELECT alive_until FROM collector").fetchone()
            if row is None:
                db.execute("INSERT INTO collector (alive_until) VALUES (?)", (now,))
                return None
            start = float(row[0])
            db.executemany(
                "INSERT INTO status_log (entity, ts, status) VALUES (?, ?, 'unknown')",
                [(entity, start) for entity in entities],
            )
            _note_gap(db, start, now)
        return start

    def gaps(self, since: float) -> list[Gap]:
        """Return the gaps that end after `since`, oldest first."""
        with self._db.reading() as db:
            rows = db.execute(
                'SELECT id, start, "end", rebuilt_at FROM gaps WHERE "end" > ? ORDER BY start',
                (since,),
            ).fetchall()
        return [Gap(*row) for row in rows]

    def due(self, since: float, warm_up: float) -> list[Gap]:
        """Return the gaps ending after `since` with results received since their last rebuild.

        Results count from `warm_up` seconds before a gap, the rebuild's warm-up. A gap never
        rebuilt is due once results of its time arrive after it began: until then its
        `unknown` rows say all there is to say.
        """
        with self._db.reading() as db:
            rows = db.execute(
                'SELECT id, start, "end", rebuilt_at FROM gaps WHERE "end" > ? AND EXISTS ('
                '    SELECT 1 FROM results WHERE ts >= gaps.start - ? AND ts < gaps."end"'
                "    AND received > coalesce(gaps.rebuilt_at, gaps.start)"
                ") ORDER BY start",
                (since, warm_up),
            ).fetchall()
        return [Gap(*row) for row in rows]

    def replace(self, gap: Gap, rows: Sequence[Rebuilt], rebuilt_at: float) -> None:
        """Replace the gap's rebuilt rows with `rows` and note `rebuilt_at`, in one transaction.

        Rows outside the gap are dropped: the time around it belongs to the live log. A gap
        that grew meanwhile (a later restart with the same start) keeps no `rebuilt_at`, so it
        is rebuilt again.
        """
        inside = [
            (entity, ts, status, gap.id) for entity, ts, status in rows if gap.start <= ts < gap.end
        ]
        with self._leadership.fenced() as db:
            db.execute("DELETE FROM status_log WHERE gap = ?", (gap.id,))
            db.executemany(
                "INSERT INTO status_log (entity, ts, status, gap) VALUES (?, ?, ?, ?)", inside
            )
            db.execute(
                'UPDATE gaps SET rebuilt_at = ? WHERE id = ? AND "end" = ?',
                (rebuilt_at, gap.id, gap.end),
            )

    def results(self, start: float, end: float) -> Iterator[tuple[str, ProbeResult]]:
        """Yield (source, result) for the results probed in [start, end), in probe order.

        Read in chunks, each from where the last one stopped and on a connection of its own,
        so ingest never waits on a rebuild; only the fields the state book reads, `value`
        among them: a router's ifOperStatus and the hop a path probe saw are in it, and
        without them the links they watch would be rebuilt as unknown.
        """
        columns = (
            "SELECT ts, source, outbox, seq, target, kind, ok, rtt_ms, loss, error_kind, value "
            "FROM results"
        )
        # A row is one (source, outbox, seq): a reinstalled agent numbers from 1 again
        order = "ORDER BY ts, source, outbox, seq LIMIT ?"
        after: tuple[float, str, str, int] | None = None
        while True:
            with self._db.reading() as db:
                if after is None:
                    rows = db.execute(
                        f"{columns} WHERE ts >= ? AND ts < ? {order}",
                        (start, end, READ_CHUNK),
                    ).fetchall()
                else:
                    rows = db.execute(
                        f"{columns} WHERE ts >= ? AND ts < ? "
                        f"AND (ts, source, outbox, seq) > (?, ?, ?, ?) {order}",
                        (after[0], end, *after, READ_CHUNK),
                    ).fetchall()
            for ts, source, _, _, target, kind, ok, rtt_ms, loss, error_kind, value in rows:
                yield (
                    source,
                    ProbeResult(  # read as tolerantly as the store's own readers read a row
                        target,
                        kind,
                        stored_time(ts),
                        ok=bool(ok),
                        rtt_ms=stored_reading(rtt_ms, MAX_RTT_MS),
                        loss=stored_reading(loss, 1.0),
                        value={} if value == "{}" else stored_value(value),
                        error_kind=cast("ErrorKind | None", error_kind),
                    ),
                )
            if len(rows) < READ_CHUNK:
                return
            after = (rows[-1][0], rows[-1][1], rows[-1][2], rows[-1][3])


def _note_gap(db: Connection, start: float, end: float) -> None:
    """Record a gap inside the caller's transaction (mark_gap's).

    A restart that died before its first pass left `alive_until` as it was, so the next one
    reports a gap with the same start: that gap grows, loses the rows rebuilt for its shorter
    self (their last status would hold over the new part) and is rebuilt again.
    """
    if end <= start:
        return
    db.execute(
        "DELETE FROM status_log WHERE gap IN (SELECT id FROM gaps WHERE start = ?)", (start,)
    )
    db.execute(
        'INSERT INTO gaps (start, "end") VALUES (?, ?) ON CONFLICT (start) DO UPDATE SET '
        '"end" = CASE WHEN excluded."end" > gaps."end" THEN excluded."end" ELSE gaps."end" END, '
        "rebuilt_at = NULL",
        (start, end),
    )
