"""Incident notifications against real receivers on 127.0.0.1: a webhook server and an SMTP relay.

The outbox is a real database, SQLite and PostgreSQL (the `store` fixture runs each test on both).

Time is a fake clock wherever backoff matters; receivers that are "down" are a bound socket
that does not listen, so the connection is refused at once and the same port can come up later.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import math
import random
import socket
import time
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from typing import Any, cast

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from collector.incidents import IncidentJson, SlaJson
from collector.notify import (
    EVENTS,
    GAVE_UP,
    MAX_SUMMARY,
    Deliverer,
    Round,
    channel_name,
    email_body,
    events_for,
    queue,
    render_email,
    render_generic,
    render_pagerduty,
)
from collector.store import DatabaseSpec, Store
from sitewatch.config.model import EmailNotifier, Notifier, WebhookNotifier

T0 = 1_800_000_000.0
DEADLINE = 10.0  # seconds any awaited condition may take before the test fails
PAYLOAD: IncidentJson = {
    "id": 7,
    "key": "link:customer-care-mpls",
    "priority": "P1",
    "status": "open",
    "title": "Link customer-care-mpls down: 2 sites cut off (22 users)",
    "cause": {"kind": "link", "links": ["customer-care-mpls"]},
    "sites": ["customer-care", "town-hall"],
    "site_names": ["Customer Care", "Dutywa Town Hall (Community Services)"],
    "affected_users": 22,
    "opened_at": "2026-11-23T10:00:00Z",
    "acknowledged_at": None,
    "acknowledged_by": None,
    "resolved_at": None,
    "resolved_by": None,
    "sla": {"due_at": "2026-11-23T14:00:00Z", "percent_used": 12.5, "breached": False},
    "major": False,
    "flaps": 0,
    "notes": [{"ts": "2026-11-23T10:05:00Z", "author": "thandi", "text": "called the carrier"}],
}
MAIL = EmailNotifier(
    smtp_host="127.0.0.1",
    smtp_port=25,
    sender="sitewatch@dutywa.example",
    recipients=("noc@dutywa.example", "it@dutywa.example"),
    starttls=False,
)


class Clock:
    """A clock that moves only when told."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Receiver:
    """A webhook receiver on 127.0.0.1, down (refusing connections) until `up()`."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        self.port: int = self.sock.getsockname()[1]
        self.received: list[tuple[str, Any]] = []
        self.statuses: list[int] = []  # answers for the next requests; 202 once used up
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self.sock.close()

    async def wait_for(self, count: int) -> None:
        """Return once `count` requests have arrived."""
        async with asyncio.timeout(DEADLINE):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append((request.path, await request.json()))
        self._arrived.set()
        status = self.statuses.pop(0) if self.statuses else 202
        return web.json_response({"status": "ok" if status < 300 else "no"}, status=status)


class Mailbox:
    """An aiosmtpd handler that keeps what it is given, or refuses it with `answer`."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.answer = "250 Message accepted for delivery"

    async def handle_DATA(  # noqa: N802 -- the hook name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        if self.answer.startswith("250"):
            assert isinstance(envelope.content, bytes)
            parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), parsed))
        return self.answer


class PortZeroController(Controller):
    """aiosmtpd's controller on a port the kernel picked (it cannot be given port 0 itself)."""

    def __init__(self, handler: Mailbox) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        super().__init__(handler, hostname="127.0.0.1", port=self._sock.getsockname()[1])

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    made = Receiver()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
def smtp() -> Iterator[tuple[PortZeroController, Mailbox]]:
    mailbox = Mailbox()
    controller = PortZeroController(mailbox)
    controller.start()
    try:
        yield controller, mailbox
    finally:
        controller.stop()


def add_incident(store: Store, key: str = "link:customer-care-mpls") -> int:
    with store.db.writing() as db:
        (incident,) = db.execute(
            "INSERT INTO incidents (key, priority, status, title, cause, sites, affected_users, "
            "opened_at, due_at) VALUES (?, 'P1', 'open', 'down', '{\"kind\":\"link\"}', "
            "'[\"customer-care\"]', 22, ?, ?) RETURNING id",
            (key, T0, T0 + 14_400),
        ).fetchone()
    return int(incident)


def enqueue(
    store: Store,
    notifiers: list[Notifier],
    incident: int,
    event: str,
    *,
    now: float = T0,
    payload: IncidentJson | None = None,
) -> int:
    with store.db.writing() as db:
        return queue(
            db, notifiers, incident=incident, event=event, payload=payload or PAYLOAD, now=now
        )


COLUMNS = (
    "id, incident, channel, event, payload, created, attempts, next_attempt, delivered_at, "
    "last_error"
)


def rows(store: Store) -> list[dict[str, Any]]:
    with store.db.reading() as db:
        found = db.execute(f"SELECT {COLUMNS} FROM notifications ORDER BY id").fetchall()  # noqa: S608
    return [dict(zip(COLUMNS.split(", "), row, strict=True)) for row in found]


def events(store: Store, kind: str) -> list[dict[str, Any]]:
    with store.db.reading() as db:
        found = db.execute(
            "SELECT author, detail FROM incident_events WHERE kind = ? ORDER BY rowid", (kind,)
        ).fetchall()
    assert all(author is None for author, _ in found)
    return [json.loads(detail) for _, detail in found]


def webhook(url: str) -> WebhookNotifier:
    return WebhookNotifier(url=url, format="generic", routing_key=None)


def pagerduty(url: str, key: str = "R0UT1NGKEY0123456789abcdef012345") -> WebhookNotifier:
    return WebhookNotifier(url=url, format="pagerduty", routing_key=key)


# -- names and rules ------------------------------------------------------------------------


def test_channel_names_are_readable_and_hold_no_secrets() -> None:
    key = "R0UT1NGKEY0123456789abcdef012345"
    assert (
        channel_name(webhook("http://127.0.0.1:9000/hook")) == "webhook:http://127.0.0.1:9000/hook"
    )
    assert channel_name(MAIL) == "email:noc@dutywa.example,it@dutywa.example"
    enqueue_url = "https://events.pagerduty.com/v2/enqueue"
    name = channel_name(pagerduty(enqueue_url, key))
    assert name.startswith(f"pagerduty:{enqueue_url}#")
    assert key not in name
    assert name == channel_name(pagerduty(enqueue_url, key))  # stable
    assert name != channel_name(pagerduty(enqueue_url, "another-service-key"))
    secret = channel_name(webhook("https://bot:hunter2@hooks.example/in?token=s3cret"))
    assert secret.startswith("webhook:https://hooks.example/in#")
    assert "hunter2" not in secret
    assert "s3cret" not in secret


def test_each_receiver_takes_its_events(store: Store) -> None:
    generic, pd = webhook("http://127.0.0.1:1/a"), pagerduty("http://127.0.0.1:1/b")
    assert events_for(generic) == events_for(pd) == set(EVENTS)
    assert events_for(MAIL) == {"opened", "reopened", "escalated", "resolved"}
    incident = add_incident(store)
    assert enqueue(store, [generic, pd, MAIL], incident, "opened") == 3
    assert enqueue(store, [generic, pd, MAIL], incident, "acknowledged") == 2
    assert enqueue(store, [generic, pd, MAIL], incident, "upgraded") == 2
    queued = rows(store)
    assert [(r["event"], r["channel"]) for r in queued[3:]] == [
        ("acknowledged", channel_name(generic)),
        ("acknowledged", channel_name(pd)),
        ("upgraded", channel_name(generic)),
        ("upgraded", channel_name(pd)),
    ]
    assert all(r["attempts"] == 0 and r["next_attempt"] == T0 for r in queued)
    assert json.loads(queued[0]["payload"]) == PAYLOAD
    with pytest.raises(ValueError, match="unknown notification event"):
        enqueue(store, [generic], incident, "exploded")


# -- rendering ------------------------------------------------------------------------------


def test_generic_body() -> None:
    body = render_generic("escalated", PAYLOAD)
    assert body == {"source": "sitewatch", "event": "escalated", "incident": PAYLOAD}
    json.dumps(body)  # it must be JSON as it stands


@pytest.mark.parametrize("event", ["opened", "reopened", "upgraded", "escalated"])
def test_pagerduty_trigger(event: str) -> None:
    body = render_pagerduty("KEY", event, PAYLOAD, at=T0)
    assert body["routing_key"] == "KEY"
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == "link:customer-care-mpls"
    assert body["payload"] == {
        "summary": "P1 Link customer-care-mpls down: 2 sites cut off (22 users)",
        "source": "sitewatch",
        "severity": "critical",
        "timestamp": "2027-01-15T08:00:00Z",
        "component": "customer-care",
        "group": "link:customer-care-mpls",
        "class": "link",
        "custom_details": PAYLOAD,
    }


@pytest.mark.parametrize(
    ("event", "action"), [("acknowledged", "acknowledge"), ("resolved", "resolve")]
)
def test_pagerduty_acknowledge_and_resolve_carry_no_payload(event: str, action: str) -> None:
    assert render_pagerduty("KEY", event, PAYLOAD, at=T0) == {
        "routing_key": "KEY",
        "event_action": action,
        "dedup_key": "link:customer-care-mpls",
    }


@pytest.mark.parametrize(("priority", "severity"), [("P2", "error"), ("P3", "warning")])
def test_pagerduty_severity_and_summary_limit(priority: str, severity: str) -> None:
    long = {**PAYLOAD, "priority": priority, "title": "x\n" * 2_000}
    details = render_pagerduty("KEY", "opened", long, at=T0)["payload"]
    assert details["severity"] == severity
    assert len(details["summary"]) == MAX_SUMMARY
    assert "\n" not in details["summary"]


def test_email_message() -> None:
    message = render_email(MAIL, "opened", PAYLOAD, at=T0, message_id="<n.1@dutywa.example>")
    assert message["Subject"] == (
        "P1 Customer Care (+1 site): opened: "
        "Link customer-care-mpls down: 2 sites cut off (22 users)"
    )
    assert message["From"] == "sitewatch@dutywa.example"
    assert message["To"] == "noc@dutywa.example, it@dutywa.example"
    assert message["Message-ID"] == "<n.1@dutywa.example>"
    assert message["Date"].datetime.timestamp() == T0
    body = message.get_content()
    for fact in [
        "Priority:       P1",
        "Status:         open",
        "Sites:          Customer Care, Dutywa Town Hall (Community Services)",
        "Affected users: 22",
        "Opened:         2026-11-23T10:00:00Z",
        "SLA due:        2026-11-23T14:00:00Z (12% used)",  # 12.5 rounds half to even
        "Major:          no",
        "Cause:          link (links customer-care-mpls)",
        "Notes:          1",
    ]:
        assert fact in body.splitlines(), fact


def test_email_subject_counts_the_other_sites() -> None:
    one = {**PAYLOAD, "priority": "P3", "site_names": ["Customer Care"]}
    three = {**PAYLOAD, "site_names": ["Customer Care", "Library", "Clinic"]}
    assert render_email(MAIL, "resolved", one, at=T0, message_id="<a@b>")["Subject"] == (
        "P3 Customer Care: resolved: Link customer-care-mpls down: 2 sites cut off (22 users)"
    )
    subject = render_email(MAIL, "escalated", three, at=T0, message_id="<a@b>")["Subject"]
    assert subject.startswith("P1 Customer Care (+2 sites): escalated: ")


def test_email_body_shows_breach_and_major() -> None:
    sla: SlaJson = {**PAYLOAD["sla"], "percent_used": 130.0, "breached": True}
    late: IncidentJson = {**PAYLOAD, "major": True, "sla": sla}
    body = email_body("escalated", late).splitlines()
    assert "SLA due:        2026-11-23T14:00:00Z (130% used, breached)" in body
    assert "Major:          yes" in body


# -- delivery -------------------------------------------------------------------------------


async def test_webhook_delivered_and_logged(store: Store, receiver: Receiver) -> None:
    await receiver.up()
    hook = webhook(receiver.url())
    incident = add_incident(store)
    enqueue(store, [hook], incident, "opened")
    clock = Clock(T0 + 3)
    done = await Deliverer(store, [hook], clock=clock).deliver_due()
    assert (done.delivered, done.failed, done.gave_up, done.next_attempt) == (1, 0, 0, None)
    assert receiver.received == [("/hook", render_generic("opened", PAYLOAD))]
    (row,) = rows(store)
    assert row["delivered_at"] == T0 + 3
    assert row["attempts"] == 1
    assert row["last_error"] is None
    assert events(store, "notified") == [
        {"channel": "webhook:" + receiver.url(), "event": "opened", "attempts": 1}
    ]
    assert await Deliverer(store, [hook], clock=clock).pending() == []


async def test_receiver_down_backs_off_then_delivers_in_order(
    store: Store, receiver: Receiver
) -> None:
    pd = pagerduty(receiver.url("/v2/enqueue"))
    incident = add_incident(store)
    enqueue(store, [pd], incident, "opened")
    enqueue(store, [pd], incident, "resolved", now=T0 + 1)
    clock = Clock(T0 + 1)
    deliverer = Deliverer(store, [pd], clock=clock, rng=random.Random(7))

    waits = []
    for attempt in range(1, 5):
        done = await deliverer.deliver_due()
        first, second = rows(store)
        assert (done.delivered, done.failed) == (0, 1)
        assert (first["attempts"], second["attempts"]) == (attempt, 0)  # the resolve waits
        assert "Cannot connect" in first["last_error"]
        assert done.next_attempt == first["next_attempt"]  # not the blocked row: no busy loop
        waits.append(first["next_attempt"] - clock.now)
        # Between retries nothing is due: the resolve, due since T0 + 1, may not overtake.
        clock.now += waits[-1] / 2
        assert (await deliverer.deliver_due()).failed == 0
        assert rows(store)[0]["attempts"] == attempt
        clock.now = first["next_attempt"]

    for attempt, wait in enumerate(waits):
        assert 0.8 * 2**attempt <= wait <= 1.2 * 2**attempt
    failed = events(store, "notify_failed")
    assert len(failed) == 4
    assert {tuple(sorted(f)) for f in failed} == {("channel", "error", "event", "retry_at")}
    assert failed[0]["channel"] == channel_name(pd)
    assert failed[0]["event"] == "opened"

    await receiver.up()
    done = await deliverer.deliver_due()
    assert (done.delivered, done.failed, done.next_attempt) == (2, 0, None)
    actions = [body["event_action"] for _, body in receiver.received]
    assert actions == ["trigger", "resolve"]
    assert [r["attempts"] for r in rows(store)] == [5, 1]
    assert [e["attempts"] for e in events(store, "notified")] == [5, 1]


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
async def test_a_refused_message_is_given_up(store: Store, receiver: Receiver, status: int) -> None:
    await receiver.up()
    receiver.statuses = [status]
    hook = webhook(receiver.url())
    incident = add_incident(store)
    enqueue(store, [hook], incident, "opened")
    enqueue(store, [hook], incident, "acknowledged")
    deliverer = Deliverer(store, [hook], clock=Clock(T0))
    done = await deliverer.deliver_due()
    assert (done.delivered, done.failed, done.gave_up, done.next_attempt) == (1, 0, 1, None)
    refused, taken = rows(store)
    assert refused["delivered_at"] is None
    assert refused["next_attempt"] == GAVE_UP
    assert refused["last_error"].startswith(f"HTTP {status}")
    assert taken["delivered_at"] == T0  # a refused message does not hold up the next one
    (failed,) = events(store, "notify_failed")
    assert failed == {
        "channel": channel_name(hook),
        "event": "opened",
        "error": refused["last_error"],
        "gave_up": True,
    }
    assert await deliverer.pending() == []
    assert (await deliverer.deliver_due()).delivered == 0  # it never comes back


@pytest.mark.parametrize("status", [408, 429, 500, 503])
async def test_a_busy_receiver_is_retried(store: Store, receiver: Receiver, status: int) -> None:
    await receiver.up()
    receiver.statuses = [status]
    hook = webhook(receiver.url())
    enqueue(store, [hook], add_incident(store), "opened")
    clock = Clock(T0)
    deliverer = Deliverer(store, [hook], clock=clock)
    done = await deliverer.deliver_due()
    assert (done.delivered, done.failed, done.gave_up) == (0, 1, 0)
    (row,) = rows(store)
    assert row["last_error"] == f'HTTP {status}: {{"status": "no"}}'
    assert T0 + 0.8 <= row["next_attempt"] <= T0 + 1.2
    assert "retry_at" in events(store, "notify_failed")[0]
    clock.now = row["next_attempt"]
    assert (await deliverer.deliver_due()).delivered == 1
    assert len(receiver.received) == 2


async def test_rows_of_a_removed_receiver_are_given_up(store: Store, receiver: Receiver) -> None:
    gone = webhook(receiver.url("/old"))
    enqueue(store, [gone], add_incident(store), "opened")
    done = await Deliverer(store, [webhook(receiver.url("/new"))], clock=Clock()).deliver_due()
    assert (done.delivered, done.failed, done.gave_up) == (0, 0, 1)
    (failed,) = events(store, "notify_failed")
    assert failed["error"] == "receiver no longer configured"
    assert failed["gave_up"] is True
    assert receiver.received == []


async def test_a_payload_that_cannot_be_rendered_is_given_up(
    store: Store, receiver: Receiver
) -> None:
    await receiver.up()
    pd = pagerduty(receiver.url())
    old = cast("IncidentJson", {"key": "link:x"})  # as a row an older SiteWatch may have stored
    enqueue(store, [pd], add_incident(store), "opened", payload=old)
    done = await Deliverer(store, [pd], clock=Clock()).deliver_due()
    assert done.gave_up == 1
    assert rows(store)[0]["last_error"].startswith("cannot render the stored incident")
    assert receiver.received == []


async def test_email_arrives(store: Store, smtp: tuple[PortZeroController, Mailbox]) -> None:
    controller, mailbox = smtp
    relay = EmailNotifier(
        smtp_host="127.0.0.1",
        smtp_port=controller.port,
        sender="sitewatch@dutywa.example",
        recipients=("noc@dutywa.example", "it@dutywa.example"),
        starttls=False,
    )
    incident = add_incident(store)
    for event in ("opened", "acknowledged", "resolved"):
        enqueue(store, [relay], incident, event)
    done = await Deliverer(store, [relay], clock=Clock()).deliver_due()
    assert done.delivered == 2
    assert [(sender, to) for sender, to, _ in mailbox.messages] == 2 * [
        ("sitewatch@dutywa.example", ["noc@dutywa.example", "it@dutywa.example"])
    ]
    opened, resolved = (message for _, _, message in mailbox.messages)
    assert opened["Subject"].startswith("P1 Customer Care (+1 site): opened: Link")
    assert resolved["Subject"].startswith("P1 Customer Care (+1 site): resolved: Link")
    assert opened["To"] == "noc@dutywa.example, it@dutywa.example"
    assert opened["Message-ID"] != resolved["Message-ID"]
    assert "Affected users: 22" in opened.get_content()
    assert [e["channel"] for e in events(store, "notified")] == 2 * [channel_name(relay)]


async def test_email_refused_or_relay_down(
    store: Store, smtp: tuple[PortZeroController, Mailbox], receiver: Receiver
) -> None:
    controller, mailbox = smtp
    mailbox.answer = "550 5.7.1 Message rejected"
    refused = EmailNotifier(
        "127.0.0.1", controller.port, "a@dutywa.example", ("b@x.example",), False
    )
    down = EmailNotifier("127.0.0.1", receiver.port, "a@dutywa.example", ("c@x.example",), False)
    enqueue(store, [refused, down], add_incident(store), "opened")
    done = await Deliverer(store, [refused, down], clock=Clock()).deliver_due()
    assert (done.delivered, done.failed, done.gave_up) == (0, 1, 1)
    by_channel = {r["channel"]: r for r in rows(store)}
    assert by_channel[channel_name(refused)]["next_attempt"] == GAVE_UP
    assert by_channel[channel_name(refused)]["last_error"].startswith("SMTP 550")
    assert by_channel[channel_name(down)]["next_attempt"] < GAVE_UP
    assert "refused" in by_channel[channel_name(down)]["last_error"].lower()


async def test_queued_rows_survive_a_restart(
    database_spec: DatabaseSpec, receiver: Receiver
) -> None:
    hook = webhook(receiver.url())
    first = Store(database_spec)
    try:
        incident = add_incident(first)
        enqueue(first, [hook], incident, "opened")
        enqueue(first, [hook], incident, "resolved")
        assert (await Deliverer(first, [hook], clock=Clock()).deliver_due()).failed == 1
    finally:
        first.close()

    await receiver.up()
    second = Store(database_spec)
    try:
        deliverer = Deliverer(second, [hook], clock=Clock(T0 + 3_600))
        assert [note.event for note in await deliverer.pending()] == ["opened", "resolved"]
        assert (await deliverer.deliver_due()).delivered == 2
        assert [body["event"] for _, body in receiver.received] == ["opened", "resolved"]
    finally:
        second.close()


async def test_run_delivers_when_woken_and_ends_when_stopped(
    store: Store, receiver: Receiver
) -> None:
    await receiver.up()
    hook = webhook(receiver.url())
    incident = add_incident(store)
    stop, wake = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(Deliverer(store, [hook]).run(stop, wake))
    try:
        for count, event in enumerate(["opened", "acknowledged"], start=1):
            await asyncio.to_thread(enqueue, store, [hook], incident, event, now=time.time())
            wake.set()  # nothing else would bring it back before IDLE_RECHECK
            await receiver.wait_for(count)
    finally:
        stop.set()
        async with asyncio.timeout(DEADLINE):
            await task
    assert [body["event"] for _, body in receiver.received] == ["opened", "acknowledged"]
    assert all(row["delivered_at"] is not None for row in rows(store))
    assert not wake.is_set()


class Observed(Deliverer):
    """A deliverer that reports each of its passes."""

    def __init__(self, store: Store, notifiers: list[Notifier]) -> None:
        super().__init__(store, notifiers)
        self.rounds: asyncio.Queue[Round] = asyncio.Queue()

    async def deliver_due(self) -> Round:
        done = await super().deliver_due()
        self.rounds.put_nowait(done)
        return done


async def test_run_sleeps_until_the_next_retry(store: Store, receiver: Receiver) -> None:
    hook = webhook(receiver.url())
    enqueue(store, [hook], add_incident(store), "opened", now=time.time())
    stop, wake = asyncio.Event(), asyncio.Event()
    deliverer = Observed(store, [hook])
    task = asyncio.create_task(deliverer.run(stop, wake))
    try:
        async with asyncio.timeout(DEADLINE):
            first = await deliverer.rounds.get()
        assert first.failed == 1
        assert first.next_attempt is not None
        assert 0.0 < first.next_attempt - time.time() <= 1.2
        await receiver.up()
        await receiver.wait_for(1)  # the retry comes after about a second, unasked
    finally:
        stop.set()
        async with asyncio.timeout(DEADLINE):
            await task
    assert deliverer.rounds.qsize() == 1  # one more pass, the one that delivered: no busy loop
    assert deliverer.rounds.get_nowait().delivered == 1
    assert len(events(store, "notify_failed")) == 1
    assert math.isfinite(rows(store)[0]["delivered_at"])


async def test_two_deliverers_at_once_send_each_notification_once(
    store: Store, receiver: Receiver
) -> None:
    """Two collectors' deliverers on one database, in the same round: each row is claimed by
    one of them (FOR UPDATE SKIP LOCKED on PostgreSQL) and sent once, in order."""
    hook = webhook(receiver.url("/hook"))
    incident = add_incident(store)
    for number in range(8):
        enqueue(store, [hook], incident, ("opened", "escalated")[number % 2], now=T0 + number)
    await receiver.up()
    other = Store(store.spec)
    try:
        clock = Clock(T0 + 60)
        rounds = await asyncio.gather(
            *(Deliverer(s, [hook], clock=clock).deliver_due() for s in (store, other, store))
        )
        while (done := await Deliverer(store, [hook], clock=clock).deliver_due()).delivered:
            rounds.append(done)
    finally:
        other.close()
    assert sum(done.delivered for done in rounds) == 8
    assert len(receiver.received) == 8  # none twice
    assert [r["delivered_at"] is not None for r in rows(store)] == [True] * 8
    assert [e["attempts"] for e in events(store, "notified")] == [1] * 8


async def test_a_claimed_row_waits_out_its_lease_then_goes_to_whoever_leads(
    store: Store, receiver: Receiver
) -> None:
    """A leader that died while sending left its rows claimed: nobody sends them before the
    lease ends, and the next deliverer sends them after (one duplicate at most)."""
    hook = webhook(receiver.url("/hook"))
    incident = add_incident(store)
    enqueue(store, [hook], incident, "opened")
    (row,) = rows(store)
    until = T0 + 100
    assert store.notifications.claim([row["id"]], T0 + 1, until) == {row["id"]}
    assert store.notifications.claim([row["id"]], T0 + 2, until) == set()  # leased
    await receiver.up()
    deliverer = Deliverer(store, [hook], clock=Clock(T0 + 50))
    done = await deliverer.deliver_due()
    assert (done.delivered, done.next_attempt) == (0, until)
    deliverer.clock = Clock(until)
    assert (await deliverer.deliver_due()).delivered == 1
    assert len(receiver.received) == 1
