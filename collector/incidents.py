"""Incidents: one per cause, opened, upgraded, escalated and resolved from correlation passes.

Each pass hands the book the causes it found. A cause with no open incident opens one, or
reopens the one it had if that was resolved less than `reopen_window` ago (the SLA clock keeps
running from the first opening; each relapse counts as a flap). A cause whose impact grew upgrades
its incident in place. An open incident whose cause is gone resolves itself, or is merged into
the cause that now explains it (one phone's incident into "most phones down", a link's into the
cut upstream of it). An operator may acknowledge, add notes and resolve by hand; a cause that is
still there after a manual resolution stays quiet until it has cleared once.

Every change, its timeline entry and its notifications are written in one transaction, so a
notification is queued exactly when its incident changed, and none is lost with a crash. The
database keeps the rule of one open incident per key with a unique index; the book keeps the
open and recently resolved incidents in memory so a pass costs no query.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, Literal, NotRequired, TypedDict

from collector import notify
from collector.sla import WorkingCalendar
from collector.state import silence_allowance
from collector.store import Store
from collector.store import incidents as table
from collector.store.database import Connection
from collector.store.incidents import (
    Event,
    Incident,
    IncidentChanged,
    IncidentStatus,
    Status,
    is_unique_violation,
)
from collector.times import iso, iso_or_none
from collector.topology import PRIORITY_ORDER, Cause, Priority, Topology
from sitewatch.config.model import Inventory, Notifier

__all__ = [
    "AGENT_BACK_WITHIN",
    "MAJOR_AT_PERCENT",
    "MAJOR_P1_COUNT",
    "SETTLE_MARGIN",
    "Event",
    "Incident",
    "IncidentBook",
    "IncidentConflict",
    "IncidentError",
    "IncidentJson",
    "IncidentNotFound",
    "NoteJson",
    "SlaJson",
    "StaffAction",
    "Status",
    "TimelineEntryJson",
]
log = logging.getLogger(__name__)
StaffAction = Literal["acknowledge", "note", "resolve"]
MAJOR_AT_PERCENT = 75.0  # a P1 that has used this much of its SLA is a major incident
MAJOR_P1_COUNT = 2  # this many P1s open at once make each of them major
# What an outage explained a moment ago may not open for 2 intervals and this many seconds: the
# evidence behind a cut (a chain's own link seen down from the centre, its silent agent) is
# refreshed one source at a time as it heals, and for a moment a recovering child looks like an
# outage of its own. A child still down after that is a real fault, and opens then.
SETTLE_MARGIN = 2.0
# An agent cut off with its site posts again within this long of its path coming back: an
# attempt in flight failing (5 s without a reply or a connection, agent.shipper.REPLY_TIMEOUT),
# its longest backoff (30 s, BACKOFF_MAX), then at most one more such failure at a collector
# that is down before the next one, tried at once (agent.collectors), takes the batch. Until
# then its silence is the cut's echo, not a fault of its own, however short the probe interval.
AGENT_BACK_WITHIN = 42.0
_NOTHING: Mapping[str, str] = MappingProxyType({})


class SlaJson(TypedDict):
    """Where an incident stands against its priority's SLA."""

    due_at: str
    percent_used: float  # of the SLA's working time, one decimal; over 100 once breached
    breached: bool


class NoteJson(TypedDict):
    ts: str
    author: str | None
    text: str


class TimelineEntryJson(TypedDict):
    ts: str
    kind: str
    author: str | None
    detail: dict[str, Any]  # each kind has its own fields; the timeline shows them as they are


class IncidentJson(TypedDict):
    """An incident as the contract gives it: the API, the dashboard and every notification.

    A notification stores this as its payload, so a field added here reaches PagerDuty and the
    webhooks too; `timeline` only when the caller asked for the events.
    """

    id: int
    key: str
    priority: Priority
    status: Status
    title: str
    cause: dict[str, Any]  # the correlation's cause as stored: `kind` and its kind's evidence
    sites: list[str]
    site_names: list[str]
    affected_users: int
    opened_at: str
    acknowledged_at: str | None
    acknowledged_by: str | None
    resolved_at: str | None
    resolved_by: str | None
    sla: SlaJson
    major: bool
    flaps: int
    notes: list[NoteJson]
    timeline: NotRequired[list[TimelineEntryJson]]


class IncidentError(Exception):
    """A staff action that cannot be done; the subclass says why (`collector.errors` maps each
    to its HTTP status and code, in its one table)."""


class IncidentNotFound(IncidentError):
    """No incident has the id a staff action names."""


class IncidentConflict(IncidentError):
    """The incident's state forbids the action: acknowledged already, or resolved."""


class IncidentBook:
    """The incidents of one collector: the database holds them, and keeps the rule of one open
    incident per key; the book keeps a copy of the open and recently resolved ones in memory
    (a cache, `reload` reads it again) so a correlation pass costs no query."""

    def __init__(
        self,
        store: Store,
        inventory: Inventory,
        notifiers: Sequence[Notifier] = (),
        calendar: WorkingCalendar | None = None,
        agents: Mapping[str, str] = _NOTHING,
    ) -> None:
        """`agents` maps each agent's id to its site's: what a cut-off site's outage explains
        includes its agent's silence."""
        self.store = store
        self.inventory = inventory
        self.notifiers = tuple(notifiers)
        self.calendar = calendar or WorkingCalendar(inventory.business_hours, inventory.timezone)
        self._names = {site.id: site.name for site in inventory.sites}
        self._topology = Topology(inventory).with_agents(agents.items())
        self._lock = threading.Lock()
        self._live: dict[str, Incident] = {}  # key -> open, or resolved within the window
        self._quiet: set[str] = set()  # resolved by hand while the cause was still present
        self._open: tuple[Incident, ...] = ()  # published for readers that must not wait
        self._hold_until = 0.0  # after a restart, loaded incidents wait for fresh evidence
        self._loaded_at = 0.0  # ... those opened before the collector started watching
        self._present: set[str] = set()  # keys of the last pass's causes
        self._covered: frozenset[str] = frozenset()  # what the last pass's causes explained
        self._settling: dict[str, float] = {}  # key -> until when it may not open
        interval = inventory.thresholds.interval.total_seconds()
        self.settle = 2 * interval + SETTLE_MARGIN

    # -- start-up and take-over -----------------------------------------------------------

    def load(self, now: float) -> None:
        """Read the open and recently resolved incidents back after a restart."""
        with self._lock:
            self._reload(now)
            # What was open before the restart is not resolved by the first passes after it:
            # agents count as heard until their silence allowance runs out again, so a cause
            # built on silence (a dead agent, a site cut off) would look cleared, then relapse.
            # What opened later was judged on evidence this collector watched too (live, or
            # read from the other collectors' writes as a follower): it needs no hold.
            interval = self.inventory.thresholds.interval.total_seconds()
            allowance = silence_allowance(interval)
            self._hold_until = now + allowance + interval
            self._loaded_at = now
            self._covered = self._explained()
            self._publish()

    def reload(self, now: float) -> None:
        """Read the open and recently resolved incidents again from the database.

        For a collector that takes over from another, or whose copy another process changed
        (an operator acknowledged an incident through another collector). A pass that finds
        its copy out of date reloads by itself.
        """
        with self._lock:
            self._reload(now)
            self._covered = self._explained()
            self._publish()

    def _explained(self) -> frozenset[str]:
        """Return what the open outages explain: the keys of their sites, links and devices.

        The passes of the collector that opened them knew it; one that starts or takes over
        begins from this instead of from nothing, so that when an outage clears, what it
        explained settles before it may open (`_settling`), as it would have for them. Else
        the moment of a restore, when an agent's batch gets through before the centre sees
        the edges back, opens an incident for a link behind the one that was cut.
        """
        topology = self._topology
        keys: set[str] = set()
        for incident in self._live.values():
            if incident.status == "resolved" or not _cuts_off(incident):
                continue
            for site_id in (s for s in incident.sites if s in topology.sites):
                keys |= topology.keys_of(site_id)
                keys.update(f"link:{link.id}" for link in topology.sites[site_id].links)
        return frozenset(keys - {i.key for i in self._live.values() if i.status != "resolved"})

    def _reload(self, now: float) -> None:
        window = self.inventory.priorities.reopen_window.total_seconds()
        rows = self.store.incidents.live(now - window)
        live = {incident.key: incident for incident in rows}
        # A key kept quiet outlives the window in the copy (`_forget_old`): keep its incident
        # unless the database has a newer one of that key.
        for key in self._quiet - set(live):
            if key in self._live:
                live[key] = self._live[key]
        self._quiet = {
            key for key in self._quiet if key in live and live[key].status == "resolved"
        } | {i.key for i in rows if i.status == "resolved" and i.resolved_by is not None}
        self._live = live

    # -- correlation passes ---------------------------------------------------------------

    def reconcile(
        self,
        causes: Iterable[Cause],
        now: float,
        unsure: Container[str] = frozenset(),
        unwatched: Mapping[str, str] = _NOTHING,
    ) -> int:
        """Bring the incidents in line with this pass's causes; return notifications queued.

        `unsure` are the keys whose subject shows no evidence of recovery (state unknown, or
        up on too few successes): their incidents stay open though their cause is absent.
        `unwatched` are the keys whose subject nobody watches any more, with the reason their
        incident gives when it resolves (`StateBook.unwatched`).

        When the database refuses the pass because the copy was out of date (another process
        opened, reopened or changed an incident), the pass is undone, the incidents are read
        again and the pass is made once more on what the database holds.
        """
        causes = list(causes)
        with self._lock:
            try:
                return self._pass(causes, now, unsure, unwatched)
            except Exception as err:
                if not isinstance(err, IncidentChanged) and not is_unique_violation(err):
                    raise
                log.warning("Incidents changed under this collector's copy (%s): read again", err)
                self._reload(now)
                return self._pass(causes, now, unsure, unwatched)

    def _pass(
        self,
        causes: list[Cause],
        now: float,
        unsure: Container[str],
        unwatched: Mapping[str, str],
    ) -> int:
        with self._undone_on_error(), self.store.leadership.fenced() as tx:
            writer = _Writer(self, tx, now)
            present = {cause.key: cause for cause in causes}
            covered = {key: cause.key for cause in causes for key in cause.covers}
            self._settling = {k: until for k, until in self._settling.items() if until > now}
            for released in self._covered - set(covered):
                self._settling[released] = now + self._settle_for(released)
            self._covered = frozenset(covered)
            for cause in causes:
                self._apply(writer, cause, now)
            for key, incident in list(self._live.items()):
                if incident.status == "resolved" or key in present:
                    continue
                if now < self._hold_until and incident.opened_at < self._loaded_at:
                    continue  # loaded at start-up: its evidence is still being gathered
                if key in covered:
                    writer.resolve(incident, None, {"merged_into": covered[key]})
                elif key in unsure:
                    continue  # no cause, but nobody saw it recover either: wait for evidence
                else:
                    reason = unwatched.get(key, "the cause cleared")
                    writer.resolve(incident, None, {"reason": reason})
            self._quiet &= set(present)
            self._present = set(present)
            self._escalate(writer, now)
            self._forget_old(now)
        self._publish()
        return writer.queued

    def _settle_for(self, key: str) -> float:
        """How long a key an outage released may not open (SETTLE_MARGIN, AGENT_BACK_WITHIN)."""
        if key.startswith("agent:"):
            return max(self.settle, AGENT_BACK_WITHIN + SETTLE_MARGIN)
        return self.settle

    @contextmanager
    def _undone_on_error(self) -> Iterator[None]:
        """Put the copy back as it was when the transaction around it is rolled back."""
        kept = (
            dict(self._live),
            set(self._quiet),
            set(self._present),
            self._covered,
            dict(self._settling),
        )
        try:
            yield
        except BaseException:
            self._live, self._quiet, self._present, self._covered, self._settling = kept
            raise

    def _apply(self, writer: _Writer, cause: Cause, now: float) -> None:
        incident = self._live.get(cause.key)
        if cause.key in self._quiet:
            if incident is not None and not _grew(incident, cause):
                return  # resolved by hand while present: quiet until it has cleared once
            self._quiet.discard(cause.key)  # worse than what was resolved: it counts again
        window = self.inventory.priorities.reopen_window.total_seconds()
        if incident is None or incident.status == "resolved":
            if now < self._settling.get(cause.key, 0.0):
                return  # the echo of an outage that just cleared: wait for fresh evidence
            if incident is None or (incident.resolved_at or 0.0) < now - window:
                writer.open(cause)
                return
            incident = writer.reopen(incident)
        if _rank(cause.priority) < _rank(incident.priority):
            writer.upgrade(incident, cause)
        elif not set(cause.sites) <= set(incident.sites):
            writer.extend(incident, cause)
        elif cause.title != incident.title:
            writer.retitle(incident, cause)

    def _escalate(self, writer: _Writer, now: float) -> None:
        p1 = [i for i in self._live.values() if i.status != "resolved" and i.priority == "P1"]
        for incident in p1:
            if incident.major:
                continue
            if len(p1) >= MAJOR_P1_COUNT:
                writer.escalate(incident, f"{len(p1)} P1 incidents open at once")
            elif self.percent_used(incident, now) >= MAJOR_AT_PERCENT:
                writer.escalate(incident, f"{MAJOR_AT_PERCENT:g}% of its SLA used")

    def _forget_old(self, now: float) -> None:
        window = self.inventory.priorities.reopen_window.total_seconds()
        for key, incident in list(self._live.items()):
            old = incident.status == "resolved" and (incident.resolved_at or 0.0) < now - window
            if old and key not in self._quiet:
                del self._live[key]

    # -- staff actions --------------------------------------------------------------------

    def acknowledge(self, incident_id: int, who: str, now: float) -> Incident:
        def act(writer: _Writer, incident: Incident) -> Incident:
            if incident.status != "open":
                raise IncidentConflict(f"incident {incident_id} is {incident.status}")
            return writer.acknowledge(incident, who)

        return self._staff(incident_id, now, act)

    def add_note(self, incident_id: int, who: str, text: str, now: float) -> Incident:
        def act(writer: _Writer, incident: Incident) -> Incident:
            writer.event(incident.id, "note", {"text": text}, author=who)
            return incident

        return self._staff(incident_id, now, act)

    def resolve(self, incident_id: int, who: str, note: str, now: float) -> Incident:
        def act(writer: _Writer, incident: Incident) -> Incident:
            if incident.status == "resolved":
                raise IncidentConflict(f"incident {incident_id} is resolved")
            resolved = writer.resolve(incident, who, {"note": note})
            if incident.key in self._present:
                self._quiet.add(incident.key)
            return resolved

        return self._staff(incident_id, now, act)

    def _staff(
        self, incident_id: int, now: float, act: Callable[[_Writer, Incident], Incident]
    ) -> Incident:
        """Do a staff action on the incident as the database holds it, in one transaction.

        The row is read inside the transaction, and written only if its status is still the
        one read: if another process changed it in between, the action is tried once more on
        what it did.
        """
        with self._lock:
            for attempt in (1, 2):
                try:
                    with self._undone_on_error(), self.store.db.writing() as tx:
                        incident = table.read(tx, incident_id)
                        if incident is None:
                            raise IncidentNotFound(f"no incident {incident_id}")
                        done = act(_Writer(self, tx, now), incident)
                except IncidentChanged:
                    if attempt == 2:
                        raise
                    continue
                self._publish()
                return done
        raise AssertionError("unreachable")  # pragma: no cover

    def act(self, action: StaffAction, incident_id: int, who: str, text: str, now: float) -> None:
        """Do what an operator asked, from the API or the dashboard: the text is the note."""
        if action == "acknowledge":
            self.acknowledge(incident_id, who, now)
            if text:
                self.add_note(incident_id, who, text, now)
        elif action == "note":
            self.add_note(incident_id, who, text, now)
        else:
            self.resolve(incident_id, who, text, now)

    # -- reading ----------------------------------------------------------------------------

    def open_incidents(self) -> list[Incident]:
        """Return the open incidents, worst first, without waiting on a write in progress.

        The list is published at the end of every change (one reference swapped), so the event
        loop can read it while a worker thread holds the lock for a slow transaction.
        """
        return list(self._open)

    def _publish(self) -> None:
        self._open = tuple(
            sorted(
                (i for i in self._live.values() if i.status != "resolved"),
                key=lambda i: (_rank(i.priority), i.opened_at),
            )
        )

    def get(self, incident_id: int) -> Incident | None:
        return self.store.incidents.get(incident_id)

    def find(self, status: IncidentStatus, start: float, end: float, limit: int) -> list[Incident]:
        """Return incidents opened in [start, end), newest first; open means not resolved."""
        return self.store.incidents.find(status, start, end, limit)

    def timeline(self, incident_id: int) -> list[Event]:
        return self.store.incidents.timeline(incident_id)

    def notes_of(self, incident_ids: Sequence[int]) -> dict[int, list[NoteJson]]:
        """Return the notes of many incidents in one read, as the incident JSON gives them."""
        notes: dict[int, list[NoteJson]] = {i: [] for i in incident_ids}
        for note in self.store.incidents.notes(list(notes)):
            notes[note.incident].append(
                {"ts": iso(note.ts), "author": note.author, "text": note.text}
            )
        return notes

    def percent_used(self, incident: Incident, now: float) -> float:
        end = now if incident.resolved_at is None else incident.resolved_at
        return self.calendar.percent_used(
            incident.opened_at, self.inventory.sla[incident.priority], end
        )

    def to_json(
        self, incident: Incident, now: float, events: Sequence[Event] | None = None
    ) -> IncidentJson:
        """Return the incident in the contract's form; with `events`, its notes and timeline."""
        end = now if incident.resolved_at is None else incident.resolved_at
        body: IncidentJson = {
            "id": incident.id,
            "key": incident.key,
            "priority": incident.priority,
            "status": incident.status,
            "title": incident.title,
            "cause": dict(incident.cause),
            "sites": list(incident.sites),
            "site_names": [self._names.get(s, s) for s in incident.sites],
            "affected_users": incident.affected_users,
            "opened_at": iso(incident.opened_at),
            "acknowledged_at": iso_or_none(incident.acknowledged_at),
            "acknowledged_by": incident.acknowledged_by,
            "resolved_at": iso_or_none(incident.resolved_at),
            "resolved_by": incident.resolved_by,
            "sla": {
                "due_at": iso(incident.due_at),
                "percent_used": round(self.percent_used(incident, now), 1),
                "breached": end > incident.due_at,
            },
            "major": incident.major,
            "flaps": incident.flaps,
            "notes": [],
        }
        if events is not None:
            body["notes"] = [
                {"ts": iso(e.ts), "author": e.author, "text": e.detail.get("text", "")}
                for e in events
                if e.kind == "note"
            ]
            body["timeline"] = [
                {"ts": iso(e.ts), "kind": e.kind, "author": e.author, "detail": dict(e.detail)}
                for e in events
            ]
        return body


class _Writer:
    """The changes of one transaction: rows, timeline entries and notifications together."""

    def __init__(self, book: IncidentBook, tx: Connection, now: float) -> None:
        self.book, self.tx, self.now = book, tx, now
        self.queued = 0

    def due(self, opened_at: float, priority: Priority) -> float:
        return self.book.calendar.due_at(opened_at, self.book.inventory.sla[priority])

    def open(self, cause: Cause) -> Incident:
        due = self.due(self.now, cause.priority)
        fresh = Incident(
            0, cause.key, cause.priority, "open", cause.title, cause.as_json(), cause.sites,
            cause.affected_users, self.now, None, None, None, None, due, False, 0,
        )  # fmt: skip
        incident = table.insert(self.tx, fresh)  # the database refuses a second open one
        self.book._live[cause.key] = incident
        self.event(incident.id, "opened", {"priority": cause.priority, "title": cause.title})
        self.notify(incident, "opened")
        return incident

    def reopen(self, incident: Incident) -> Incident:
        flaps = incident.flaps + 1
        reopened = self.save(
            incident, status="open", resolved_at=None, resolved_by=None, flaps=flaps
        )
        self.event(
            incident.id,
            "reopened",
            {"flap": flaps, "resolved_at": iso_or_none(incident.resolved_at)},
        )
        self.notify(reopened, "reopened")
        return reopened

    def upgrade(self, incident: Incident, cause: Cause) -> Incident:
        upgraded = self.save(
            incident,
            priority=cause.priority,
            due_at=self.due(incident.opened_at, cause.priority),
            **self._impact(incident, cause),
        )
        self.event(
            incident.id,
            "upgraded",
            {"from": incident.priority, "to": cause.priority, "sites": list(upgraded.sites)},
        )
        self.notify(upgraded, "upgraded")
        return upgraded

    def extend(self, incident: Incident, cause: Cause) -> Incident:
        extended = self.save(incident, **self._impact(incident, cause))
        self.event(incident.id, "extended", {"sites": list(extended.sites)})
        return extended

    @staticmethod
    def _impact(incident: Incident, cause: Cause) -> dict[str, Any]:
        """An incident keeps the widest impact it has had: sites are added, never removed."""
        sites = tuple(dict.fromkeys([*incident.sites, *cause.sites]))
        return {
            "sites": sites,
            "affected_users": max(incident.affected_users, cause.affected_users),
            "title": cause.title,
            "cause": cause.as_json(),
        }

    def retitle(self, incident: Incident, cause: Cause) -> Incident:
        """The same cause, described anew: a degraded link that went down, say."""
        changed = self.save(incident, title=cause.title, cause=cause.as_json())
        self.event(incident.id, "changed", {"title": cause.title})
        return changed

    def escalate(self, incident: Incident, reason: str) -> Incident:
        escalated = self.save(incident, major=True)
        self.event(incident.id, "escalated", {"reason": reason})
        self.notify(escalated, "escalated")
        return escalated

    def acknowledge(self, incident: Incident, who: str) -> Incident:
        acknowledged = self.save(
            incident, status="acknowledged", acknowledged_at=self.now, acknowledged_by=who
        )
        self.event(incident.id, "acknowledged", {}, author=who)
        self.notify(acknowledged, "acknowledged")
        return acknowledged

    def resolve(self, incident: Incident, who: str | None, detail: dict[str, Any]) -> Incident:
        resolved = self.save(incident, status="resolved", resolved_at=self.now, resolved_by=who)
        duration = self.now - incident.opened_at
        self.event(incident.id, "resolved", {**detail, "duration_s": round(duration, 1)}, who)
        if who is not None and detail.get("note"):
            self.event(incident.id, "note", {"text": detail["note"]}, author=who)
        self.notify(resolved, "resolved")
        return resolved

    def save(self, incident: Incident, **changes: Any) -> Incident:
        """Write what changed, if the row is still as `incident` says (IncidentChanged if not)."""
        changed = {
            name: value for name, value in changes.items() if getattr(incident, name) != value
        }
        updated = table.change(self.tx, incident, **changed)
        live = self.book._live.get(updated.key)
        if live is None or live.id == updated.id:
            self.book._live[updated.key] = updated
        return updated

    def event(
        self, incident: int, kind: str, detail: Mapping[str, Any], author: str | None = None
    ) -> None:
        table.add_event(self.tx, incident, self.now, kind, detail, author=author)

    def notify(self, incident: Incident, event: str) -> None:
        if not self.book.notifiers:
            return
        payload = self.book.to_json(incident, self.now)
        self.queued += notify.queue(
            self.tx,
            self.book.notifiers,
            incident=incident.id,
            event=event,
            payload=payload,
            now=self.now,
        )


def _cuts_off(incident: Incident) -> bool:
    """Whether an incident is an outage that cuts sites off: a cut link's or an unreachable
    site's (collector.topology names the cut-off site in its cause), the only kind whose cause
    explains other keys. A site's own link on its backup, degraded, or a backup down explains
    nothing: those causes say the `problem`, or name no site."""
    kind = incident.key.split(":", 1)[0]
    return kind in ("link", "site") and "site" in incident.cause and "problem" not in incident.cause


def _grew(incident: Incident, cause: Cause) -> bool:
    """Whether a cause is worse than its incident: a higher priority, or more sites."""
    return _rank(cause.priority) < _rank(incident.priority) or not set(cause.sites) <= set(
        incident.sites
    )


def _rank(priority: Priority) -> int:
    return PRIORITY_ORDER.index(priority)
