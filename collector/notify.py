"""Incident notifications: a durable outbox in the database and the loop that empties it.

The incident code calls `queue` inside its own transaction, so a notification exists exactly
when the change it announces was committed. `Deliverer` then sends the rows: each receiver
(channel) strictly in order, so a PagerDuty `resolve` never overtakes its `trigger`, and the
channels independently of each other, so a dead mail relay does not hold up the webhook.
A row stays until it is delivered, across restarts; a failure is retried with exponential
backoff, and only a receiver that refuses the message itself (HTTP 4xx, SMTP 5xx) makes us
give up. Delivery is at least once: a receiver that took a message whose delivery we could not
record gets it again.

Rows are kept by `collector.store.notifications`, the only writer of the outbox.

Errors::

    DeliveryError    a receiver did not take a notification; `retry` says if trying again can help
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import math
import random
import smtplib
import ssl
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    NotRequired,
    ParamSpec,
    TypedDict,
    TypeVar,
    get_args,
)
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from collector.loops import Rounds
from collector.store import Store
from collector.store import notifications as outbox
from collector.store.database import Connection
from collector.store.notifications import Notification
from collector.times import iso, mail_date
from sitewatch.config.model import EmailNotifier, Notifier

if TYPE_CHECKING:  # collector.incidents imports this module to queue its notifications
    from collector.incidents import IncidentJson

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

Event = Literal["opened", "reopened", "upgraded", "escalated", "acknowledged", "resolved"]
EVENTS: tuple[Event, ...] = get_args(Event)
EMAIL_EVENTS: frozenset[Event] = frozenset({"opened", "reopened", "escalated", "resolved"})
PagerDutyAction = Literal["trigger", "acknowledge", "resolve"]
PAGERDUTY_ACTIONS: Mapping[str, PagerDutyAction] = {
    "opened": "trigger",
    "reopened": "trigger",
    "upgraded": "trigger",
    "escalated": "trigger",
    "acknowledged": "acknowledge",
    "resolved": "resolve",
}
PAGERDUTY_SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning"}
MAX_SUMMARY = 1024  # characters: PagerDuty's limit for payload.summary

SEND_TIMEOUT = 10.0  # seconds for one delivery attempt
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 300.0  # before jitter
JITTER = 0.2
IDLE_RECHECK = 60.0  # seconds: run() looks again even if nobody sets `wake`
FAILED_ROUND_RETRY = 5.0  # seconds: run() tries again after a round that raised
# Rows of one channel claimed per round, and seconds of lease beyond their sending time: a
# leader that dies while sending leaves its claimed rows to the next one after at most
# CLAIM_RUN * SEND_TIMEOUT + CLAIM_MARGIN (65 s). More rows wait for the next round, at once.
CLAIM_RUN = 5
CLAIM_MARGIN = 15.0
GAVE_UP = math.inf  # next_attempt of a row given up: never due again, still undelivered
RETRYABLE_STATUS = frozenset({408, 429})


class DeliveryError(Exception):
    """A receiver did not take a notification; `retry` is False if it refused the message."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry


class GenericBody(TypedDict):
    """The JSON a generic webhook receives."""

    source: str
    event: str
    incident: dict[str, Any]


PagerDutyPayload = TypedDict(  # "class" is a keyword: only the functional form can name it
    "PagerDutyPayload",
    {
        "summary": str,
        "source": str,
        "severity": str,
        "timestamp": str,
        "component": str,
        "group": str,
        "class": str,
        "custom_details": dict[str, Any],
    },
)


class PagerDutyBody(TypedDict):
    """A PagerDuty Events API v2 event; only a trigger carries `payload`."""

    routing_key: str
    event_action: PagerDutyAction
    dedup_key: str
    payload: NotRequired[PagerDutyPayload]


@dataclass(frozen=True, slots=True)
class Round:
    """What one pass of `Deliverer.deliver_due` did, and when the next row falls due."""

    delivered: int
    failed: int  # will be retried
    gave_up: int
    next_attempt: float | None  # None when nothing is waiting


def channel_name(notifier: Notifier) -> str:
    """Return the stable, printable name of a receiver: the outbox's `channel`.

    Secrets (a routing key, a password or query in the URL) never appear; a short hash of them
    stands in, so two PagerDuty services behind the same events URL stay two channels.
    """
    if isinstance(notifier, EmailNotifier):
        return "email:" + ",".join(notifier.recipients)
    prefix = "pagerduty" if notifier.format == "pagerduty" else "webhook"
    parts = urlsplit(notifier.url)
    userinfo, _, host = parts.netloc.rpartition("@")
    secrets = [notifier.routing_key or "", userinfo, parts.query, parts.fragment]
    if not any(secrets):
        return f"{prefix}:{notifier.url}"
    shown = urlunsplit((parts.scheme, host, parts.path, "", ""))
    fingerprint = hashlib.sha256("\0".join(secrets).encode()).hexdigest()[:8]
    return f"{prefix}:{shown}#{fingerprint}"


def events_for(notifier: Notifier) -> frozenset[Event]:
    """Return the events a receiver is told about."""
    if isinstance(notifier, EmailNotifier):
        return EMAIL_EVENTS  # people want one mail per open, escalation and resolution
    return frozenset(EVENTS)


def queue(
    tx: Connection,
    notifiers: Iterable[Notifier],
    *,
    incident: int,
    event: str,
    payload: IncidentJson,
    now: float,
) -> int:
    """Add one row per receiver that takes `event`; return how many were queued.

    Runs inside the caller's transaction and neither begins nor commits one. The renderers
    below take the payload back as a plain mapping: a stored row may be older than today's
    `IncidentJson` and lack a field, which `_render` turns into a row that cannot be sent.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown notification event {event!r}")
    channels = {channel_name(n): n for n in notifiers if event in events_for(n)}
    body = json.dumps(payload, separators=(",", ":"))
    outbox.add(tx, [(incident, channel, event, body, now) for channel in channels])
    return len(channels)


# -- rendering ------------------------------------------------------------------------------


def render_generic(event: str, payload: Mapping[str, Any]) -> GenericBody:
    """Return a generic webhook's JSON body."""
    return {"source": "sitewatch", "event": event, "incident": dict(payload)}


def render_pagerduty(
    routing_key: str, event: str, payload: Mapping[str, Any], *, at: float
) -> PagerDutyBody:
    """Return the PagerDuty Events API v2 event for an incident event that happened `at`."""
    action = PAGERDUTY_ACTIONS[event]
    body: PagerDutyBody = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": str(payload["key"]),
    }
    if action == "trigger":
        sites = [str(site) for site in payload["sites"]]
        summary = _one_line(f"{payload['priority']} {payload['title']}")
        if len(summary) > MAX_SUMMARY:
            summary = summary[: MAX_SUMMARY - 1] + "…"
        body["payload"] = {
            "summary": summary,
            "source": "sitewatch",
            "severity": PAGERDUTY_SEVERITY.get(str(payload["priority"]), "info"),
            "timestamp": iso(at),
            "component": sites[0] if sites else str(payload["key"]),
            "group": str(payload["key"]),  # every alert of one cause, reopenings included
            "class": str(payload["cause"]["kind"]),
            "custom_details": dict(payload),
        }
    return body


def render_email(
    notifier: EmailNotifier,
    event: str,
    payload: Mapping[str, Any],
    *,
    at: float,
    message_id: str,
) -> EmailMessage:
    """Return the mail for an incident event that happened `at`.

    Date is the event's time, not the sending time, so a mail held back by a dead relay still
    says when things happened; a fixed Message-ID lets mail systems drop a resent duplicate.
    """
    message = EmailMessage()
    message["From"] = notifier.sender
    message["To"] = ", ".join(notifier.recipients)
    message["Date"] = mail_date(at)
    message["Message-ID"] = message_id
    message["Subject"] = email_subject(event, payload)
    message.set_content(email_body(event, payload))
    return message


def email_subject(event: str, payload: Mapping[str, Any]) -> str:
    """Return a subject that starts with the priority and the site, for triage from the inbox."""
    names = [str(name) for name in payload.get("site_names") or payload["sites"]]
    where = names[0] if names else ""
    if len(names) > 1:
        more = len(names) - 1
        where += f" (+{more} site{'s' if more > 1 else ''})"
    head = f"{payload['priority']} {where}" if where else str(payload["priority"])
    return _one_line(f"{head}: {event}: {payload['title']}")


def email_body(event: str, payload: Mapping[str, Any]) -> str:
    """Return the plain-text body: the facts an on-call person needs without the dashboard."""
    sla = payload.get("sla") or {}
    breached = ", breached" if sla.get("breached") else ""
    percent = sla.get("percent_used")
    used = f" ({percent:.0f}% used{breached})" if isinstance(percent, int | float) else breached
    names = payload.get("site_names") or payload["sites"]
    facts = [
        ("Incident", f"#{payload['id']} ({payload['key']})"),
        ("Event", event),
        ("Priority", payload["priority"]),
        ("Status", payload["status"]),
        ("Sites", ", ".join(str(name) for name in names) or "none"),
        ("Affected users", payload.get("affected_users", "unknown")),
        ("Opened", payload.get("opened_at") or "unknown"),
        ("SLA due", f"{sla.get('due_at') or 'unknown'}{used}"),
        ("Major", "yes" if payload.get("major") else "no"),
        ("Cause", _cause(payload["cause"])),
        ("Notes", len(payload.get("notes") or [])),
    ]
    if payload.get("acknowledged_at"):
        facts.append(("Acknowledged", payload["acknowledged_at"]))
    if payload.get("resolved_at"):
        facts.append(("Resolved", payload["resolved_at"]))
    width = max(len(label) for label, _ in facts) + 2
    lines = [f"{label + ':':<{width}}{value}" for label, value in facts]
    return f"{payload['title']}\n\n" + "\n".join(lines) + "\n\n-- \nSiteWatch\n"


def _cause(cause: Mapping[str, Any]) -> str:
    details = [
        f"{name} {', '.join(map(str, value)) if isinstance(value, list) else value}"
        for name, value in cause.items()
        if name != "kind"
    ]
    return f"{cause['kind']} ({'; '.join(details)})" if details else str(cause["kind"])


def _one_line(text: str) -> str:
    return " ".join(text.split())  # a header may not hold a line break


# -- sending --------------------------------------------------------------------------------


@contextmanager
def _delivery_errors() -> Iterator[None]:
    """Turn whatever the network or a library raises during a delivery into DeliveryError."""
    try:
        yield
    except smtplib.SMTPRecipientsRefused as err:  # every recipient refused
        codes = [code for code, _ in err.recipients.values()]
        raise DeliveryError(
            f"SMTP refused every recipient: {err.recipients}", retry=min(codes) < 500
        ) from err
    except smtplib.SMTPResponseException as err:  # 5xx is SMTP's "permanent"
        text = err.smtp_error.decode(errors="replace") if isinstance(err.smtp_error, bytes) else ""
        raise DeliveryError(f"SMTP {err.smtp_code}: {text}", retry=err.smtp_code < 500) from err
    except smtplib.SMTPException as err:  # before OSError: SMTPException is one
        raise DeliveryError(f"SMTP: {err}") from err
    except (aiohttp.ClientError, OSError) as err:  # TimeoutError is an OSError
        raise DeliveryError(
            f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        ) from err


async def send(notifier: Notifier, note: Notification, session: aiohttp.ClientSession) -> None:
    """Deliver one notification, or raise DeliveryError."""
    if isinstance(notifier, EmailNotifier):
        domain = notifier.sender.rpartition("@")[2] or "sitewatch"
        mail = _render(
            render_email,
            notifier,
            note.event,
            note.payload,
            at=note.created,
            message_id=f"<sitewatch.{note.incident}.{note.id}@{domain}>",
        )
        with _delivery_errors():
            await asyncio.to_thread(_mail, notifier, mail)
        return
    body: GenericBody | PagerDutyBody
    if notifier.format == "pagerduty":
        body = _render(
            render_pagerduty, notifier.routing_key or "", note.event, note.payload, at=note.created
        )
    else:
        body = _render(render_generic, note.event, note.payload)
    with _delivery_errors():
        status, text = await _post(session, notifier.url, body)
    if not 200 <= status < 300:
        refused = 400 <= status < 500 and status not in RETRYABLE_STATUS
        raise DeliveryError(
            f"HTTP {status}: {text}" if text else f"HTTP {status}", retry=not refused
        )


def _render(render: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    # A stored payload an older SiteWatch wrote may lack a field: that row can never be sent.
    try:
        return render(*args, **kwargs)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise DeliveryError(f"cannot render the stored incident: {err!r}", retry=False) from err


async def _post(
    session: aiohttp.ClientSession, url: str, body: GenericBody | PagerDutyBody
) -> tuple[int, str]:
    async with session.post(url, json=body, allow_redirects=False) as response:
        text = (await response.content.read(300)).decode(errors="replace")  # enough to say why
        return response.status, _one_line(text)


def _mail(notifier: EmailNotifier, message: EmailMessage) -> None:
    # Blocking: runs in a worker thread.
    with smtplib.SMTP(notifier.smtp_host, notifier.smtp_port, timeout=SEND_TIMEOUT) as smtp:
        if notifier.starttls:
            smtp.starttls(context=ssl.create_default_context())
        refused = smtp.send_message(
            message, from_addr=notifier.sender, to_addrs=list(notifier.recipients)
        )
    if refused:  # the others have it: sending again would mail them twice
        log.warning("SMTP relay %s refused some recipients: %s", notifier.smtp_host, refused)


# -- the outbox loop ------------------------------------------------------------------------


def backoff(attempts: int, rng: random.Random) -> float:
    """Return the wait after the `attempts`-th failure: 1 s, 2 s, 4 s … 300 s, ±20%."""
    base = min(MAX_BACKOFF, FIRST_BACKOFF * 2.0 ** min(attempts - 1, 64))
    return base * rng.uniform(1 - JITTER, 1 + JITTER)


Leading = Callable[[asyncio.Event], Awaitable[bool]]  # waits until leading; False at stop


async def _always(stop: asyncio.Event) -> bool:
    return not stop.is_set()


class Deliverer:
    """Send the outbox's rows to the configured receivers."""

    def __init__(
        self,
        store: Store,
        notifiers: Iterable[Notifier],
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self._receivers = {channel_name(n): n for n in notifiers}
        self._rng = rng or random.Random()  # noqa: S311 -- jitter, not cryptography

    async def run(self, stop: asyncio.Event, wake: asyncio.Event, lead: Leading = _always) -> None:
        """Deliver until `stop` is set; `wake` says new rows were queued.

        A round that fails (the database locked past its timeout, a disk error) is logged and
        tried again after FAILED_ROUND_RETRY: it must not stop the collector. A message sent
        in a round that then failed to record it is sent again: delivery is at least once.
        Rounds run only while `lead` says this collector leads (collector.leadership).
        """
        rounds = Rounds("a notification delivery round", log)
        while await lead(stop):
            delay = FAILED_ROUND_RETRY
            with rounds.one():
                done = await self.deliver_due()
                delay = IDLE_RECHECK
                if done.next_attempt is not None:
                    delay = min(delay, max(0.0, done.next_attempt - self.clock()))
            if delay > 0:
                await _first_of(stop, wake, timeout=delay)
            wake.clear()

    async def pending(self) -> list[Notification]:
        """Return the rows still to be delivered, oldest first (given-up rows excluded)."""
        return await asyncio.to_thread(self._pending)

    async def deliver_due(self) -> Round:
        """Make one attempt at every row that is due, and return what happened."""
        now = self.clock()
        planned, orphans, _ = _plan(await self.pending(), self._receivers, now)
        due = await self._claim(planned, now)
        tally: Counter[str] = Counter()
        for note in orphans:
            await self._failed(note, DeliveryError("receiver no longer configured", retry=False))
            tally["gave_up"] += 1
        if due:
            timeout = aiohttp.ClientTimeout(total=SEND_TIMEOUT)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                asyncio.TaskGroup() as group,
            ):
                tasks = [
                    group.create_task(self._drain(self._receivers[channel], notes, session))
                    for channel, notes in due.items()
                ]
            for task in tasks:
                tally.update(task.result())
        _, _, next_attempt = _plan(await self.pending(), self._receivers, self.clock())
        return Round(tally["delivered"], tally["failed"], tally["gave_up"], next_attempt)

    async def _claim(
        self, planned: dict[str, list[Notification]], now: float
    ) -> dict[str, list[Notification]]:
        """Claim each channel's first CLAIM_RUN due rows; return each channel's run up to the
        first row not claimed (another deliverer holds it), so the order holds."""
        runs = {channel: notes[:CLAIM_RUN] for channel, notes in planned.items()}
        longest = max((len(notes) for notes in runs.values()), default=0)
        until = now + longest * SEND_TIMEOUT + CLAIM_MARGIN
        ids = [note.id for notes in runs.values() for note in notes]
        taken = await asyncio.to_thread(self.store.notifications.claim, ids, now, until)
        due: dict[str, list[Notification]] = {}
        cut: list[Notification] = []  # claimed behind a row someone else holds: given back
        for channel, notes in runs.items():
            run = list(itertools.takewhile(lambda note: note.id in taken, notes))
            cut += [note for note in notes[len(run) :] if note.id in taken]
            if run:
                due[channel] = run
        if cut:
            await asyncio.to_thread(self.store.notifications.release, cut)
        return due

    async def _drain(
        self, notifier: Notifier, notes: list[Notification], session: aiohttp.ClientSession
    ) -> Counter[str]:
        """Send one channel's due rows in order; stop at the first that may be retried."""
        tally: Counter[str] = Counter()
        for at, note in enumerate(notes):
            # A leader stopped (SIGSTOP, a frozen VM) after claiming may wake up here: only
            # the database knows whether it still leads, and a message sent is not taken back.
            await asyncio.to_thread(self.store.leadership.confirm)
            try:
                await send(notifier, note, session)
            except DeliveryError as err:
                await self._failed(note, err)
                if err.retry:
                    tally["failed"] += 1
                    # the rows after it wait, due as they were: order within a channel is kept
                    await asyncio.to_thread(self.store.notifications.release, notes[at + 1 :])
                    break
                tally["gave_up"] += 1
            else:
                await asyncio.to_thread(self._delivered, note, self.clock())
                tally["delivered"] += 1
        return tally

    async def _failed(self, note: Notification, err: DeliveryError) -> None:
        now = self.clock()
        retry_at = now + backoff(note.attempts + 1, self._rng) if err.retry else GAVE_UP
        await asyncio.to_thread(self._record_failure, note, err, now, retry_at)
        if err.retry:
            log.warning(
                "Notification %d (%s of incident %d) to %s failed, attempt %d: %s; "
                "retrying in %.0f s",
                note.id,
                note.event,
                note.incident,
                note.channel,
                note.attempts + 1,
                err.message,
                retry_at - now,
            )
        else:
            log.warning(
                "Notification %d (%s of incident %d) to %s given up: %s",
                note.id,
                note.event,
                note.incident,
                note.channel,
                err.message,
            )

    def _pending(self) -> list[Notification]:
        return self.store.notifications.pending(GAVE_UP)

    def _delivered(self, note: Notification, now: float) -> None:
        attempts = note.attempts + 1
        self.store.notifications.delivered(
            note, now, {"channel": note.channel, "event": note.event, "attempts": attempts}
        )
        if note.attempts:
            log.info(
                "Notification %d to %s delivered after %d attempts", note.id, note.channel, attempts
            )

    def _record_failure(
        self, note: Notification, err: DeliveryError, now: float, retry_at: float
    ) -> None:
        detail: dict[str, Any] = {
            "channel": note.channel,
            "event": note.event,
            "error": err.message,
        }
        if err.retry:
            detail["retry_at"] = iso(retry_at)
        else:
            detail["gave_up"] = True
        self.store.notifications.failed(note, now, err.message, retry_at, detail)


def _plan(
    pending: list[Notification], receivers: Mapping[str, Notifier], now: float
) -> tuple[dict[str, list[Notification]], list[Notification], float | None]:
    """Split pending rows into each channel's due run, orphans, and the next time one falls due.

    A channel's rows are due only up to its first row that is not: a later row must not
    overtake an earlier one that is waiting out its backoff.
    """
    by_channel: dict[str, list[Notification]] = defaultdict(list)
    orphans: list[Notification] = []
    for note in pending:
        (by_channel[note.channel] if note.channel in receivers else orphans).append(note)
    due: dict[str, list[Notification]] = {}
    heads: list[float] = []
    for channel, notes in by_channel.items():
        run = []
        for note in notes:
            if note.next_attempt > now:
                break
            run.append(note)
        if run:
            due[channel] = run
        heads.append(notes[0].next_attempt)
    return due, orphans, min(heads, default=None)


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    """Return when one of `events` is set, or after `timeout` seconds."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        async with asyncio.timeout(timeout):
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    except TimeoutError:
        pass
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.wait(waits)
