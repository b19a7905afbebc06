"""Where the alert benchmark's notices arrive: a local SMTP server (aiosmtpd) and a
threaded HTTP receiver for the signed webhooks, both in the benchmark's own process.

Each message is recorded with its arrival time (`time.time()`, taken as soon as the whole
message is in: after DATA for email, after the body for a webhook) and the customer it is
for: the webhook body's `customer.id`; for email the recipient `ops+<id>@…`, else the
first customer id (matched by `id_pattern`) in the subject or the decoded text.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Channel = str  # "email" | "webhook"
CHANNELS: tuple[Channel, ...] = ("email", "webhook")


@dataclass(frozen=True, slots=True)
class Arrival:
    channel: Channel
    customer_id: str | None  # None: the message named no customer the bench knows
    at: float  # time.time() when the whole message had arrived
    notice_id: str | None  # webhook `id` / email X-Usage-Portal-Notice-Id
    kind: str | None  # webhook `kind`; for email the subject
    signature_ok: bool | None = None  # webhooks: checked against the channel's secret


class Recorder:
    """Arrivals by channel and customer; written by the sink threads, read by the bench."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all: list[Arrival] = []
        self._by_key: dict[tuple[Channel, str | None], list[Arrival]] = {}

    def record(self, arrival: Arrival) -> None:
        with self._lock:
            self._all.append(arrival)
            self._by_key.setdefault((arrival.channel, arrival.customer_id), []).append(arrival)

    def of(self, channel: Channel, customer_id: str | None) -> list[Arrival]:
        with self._lock:
            return list(self._by_key.get((channel, customer_id), ()))

    def has(self, channel: Channel, customer_id: str) -> bool:
        with self._lock:
            return (channel, customer_id) in self._by_key

    def all(self) -> list[Arrival]:
        with self._lock:
            return list(self._all)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- email


def email_customer(
    rcpt_tos: list[str],
    content: bytes,
    id_pattern: re.Pattern[str],
) -> tuple[str | None, str | None, str]:
    """(customer id, notice id, subject) of one email as it reached the SMTP server."""
    message = email.message_from_bytes(content, policy=email.policy.default)
    subject = str(message.get("Subject", ""))
    notice_id = message.get("X-Usage-Portal-Notice-Id")
    for rcpt in rcpt_tos:
        local = rcpt.rpartition("@")[0]
        _, plus, tag = local.partition("+")
        if plus and id_pattern.fullmatch(tag):
            return tag, None if notice_id is None else str(notice_id), subject
    texts = [subject]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            with contextlib.suppress(LookupError, ValueError):
                texts.append(str(part.get_content()))
    for text in texts:
        match = id_pattern.search(text)
        if match:
            return match.group(0), None if notice_id is None else str(notice_id), subject
    return None, None if notice_id is None else str(notice_id), subject


class _SmtpHandler:
    def __init__(self, recorder: Recorder, id_pattern: re.Pattern[str]) -> None:
        self.recorder = recorder
        self.id_pattern = id_pattern
        self.errors: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        at = time.time()
        try:
            content = envelope.original_content or envelope.content
            if isinstance(content, str):
                content = content.encode("utf-8", "surrogateescape")
            customer, notice_id, subject = email_customer(list(envelope.rcpt_tos), content, self.id_pattern)
        except Exception as exc:  # a message the bench cannot read is counted, not fatal
            self.errors.append(f"{type(exc).__name__}: {exc}")
            customer, notice_id, subject = None, None, ""
        self.recorder.record(Arrival("email", customer, at, notice_id, subject))
        return "250 Message accepted for delivery"


# --------------------------------------------------------------------------- webhook


def _webhook_handler(
    recorder: Recorder,
    secret_for: Callable[[str], str | None],
    verify: Callable[[str, str, bytes, str], bool] | None,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            at = time.time()
            customer: str | None = None
            notice_id: str | None = None
            kind: str | None = None
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                payload = json.loads(body)
                customer = str(payload["customer"]["id"])
                notice_id = payload.get("id")
                kind = payload.get("kind")
            if customer is None:  # the path is /hook/<id>
                customer = self.path.rstrip("/").rpartition("/")[2] or None
            signature_ok: bool | None = None
            secret = secret_for(customer) if customer else None
            if verify is not None and secret is not None:
                signature_ok = verify(
                    secret,
                    self.headers.get("X-Usage-Portal-Timestamp", ""),
                    body,
                    self.headers.get("X-Usage-Portal-Signature", ""),
                )
            recorder.record(Arrival("webhook", customer, at, notice_id, kind, signature_ok))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# --------------------------------------------------------------------------- both


class Sinks:
    """The SMTP server and the webhook receiver, started and stopped together."""

    def __init__(self, id_pattern: re.Pattern[str]) -> None:
        self.recorder = Recorder()
        self.id_pattern = id_pattern
        self.secrets: dict[str, str] = {}  # customer id → webhook signing secret
        self.smtp_port = 0
        self.http_port = 0
        self._smtp: Any = None
        self._smtp_handler: _SmtpHandler | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        try:
            from alerts.signing import verify as verify_signature

            def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
                return verify_signature(secret, timestamp, body, signature, now=time.time())
        except ImportError:  # the feature is still being written: receive without checking
            verify = None  # type: ignore[assignment]

        self._smtp_handler = _SmtpHandler(self.recorder, self.id_pattern)
        self.smtp_port = free_port()
        self._smtp = Controller(self._smtp_handler, hostname="127.0.0.1", port=self.smtp_port)
        self._smtp.start()
        handler = _webhook_handler(self.recorder, self.secrets.get, verify)
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._http.daemon_threads = True
        self.http_port = int(self._http.server_address[1])
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, name="webhook-sink", kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._http_thread.start()

    @property
    def smtp_errors(self) -> list[str]:
        return list(self._smtp_handler.errors) if self._smtp_handler else []

    def smtp_url(self, sender: str = "alerts@bench.test") -> str:
        return f"smtp://127.0.0.1:{self.smtp_port}?from={sender}&mode=insecure"

    def webhook_url(self, customer_id: str) -> str:
        return f"json://127.0.0.1:{self.http_port}/hook/{customer_id}"

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._smtp is not None:
            with contextlib.suppress(Exception):
                self._smtp.stop()
            self._smtp = None
