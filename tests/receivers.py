"""Notification receivers on loopback for end-to-end tests and benches: webhooks and SMTP.

Both run in threads of their own, so a synchronous test can poll what arrived while the
collector, a separate process, delivers to them. Each arrival is stamped with the time it came.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.deploy import free_port


@dataclass(frozen=True, slots=True)
class Hook:
    path: str
    body: dict[str, Any]
    received: float  # Unix seconds


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.hooks: list[Hook] = []
        self.status = 202
        self.holding = threading.Event()  # a POST is kept waiting for its answer (hold_next)
        self._hold_next = False
        self._release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                if receiver.status < 300:
                    with receiver._lock:
                        receiver.hooks.append(Hook(self.path, body, time.time()))
                        hold, receiver._hold_next = receiver._hold_next, False
                    if hold:
                        receiver.holding.set()
                        receiver._release.wait(timeout=120)
                try:
                    self.send_response(receiver.status)
                    self.end_headers()
                except OSError:
                    pass  # the sender died waiting (a collector killed mid-delivery)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # quiet: the test reads what arrived, not an access log

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def hold_next(self) -> None:
        """Keep the next POST waiting for its answer (kept as received) until `release`."""
        with self._lock:
            self._hold_next = True
            self.holding.clear()
            self._release.clear()

    def release(self) -> None:
        self._release.set()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path: str) -> list[Hook]:
        with self._lock:
            return [hook for hook in self.hooks if hook.path == path]


@dataclass
class _Mailbox:
    messages: list[tuple[float, Message]] = field(default_factory=list)

    async def handle_DATA(  # noqa: N802 -- the name aiosmtpd calls
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        self.messages.append((time.time(), message_from_bytes(content)))
        return "250 Message accepted for delivery"


class MailReceiver:
    """An SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message."""

    def __init__(self) -> None:
        self._mailbox = _Mailbox()
        self.port = free_port()
        self._controller = Controller(self._mailbox, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> MailReceiver:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    def subjects(self) -> list[str]:
        return [str(message["Subject"]) for _, message in list(self._mailbox.messages)]

    def messages(self) -> list[tuple[float, Message]]:
        return list(self._mailbox.messages)
