"""Real local servers for delivery tests (alerts, password links): an SMTP server (aiosmtpd) and an HTTP
receiver (http.server), each on 127.0.0.1 and a free port, each collecting what it got.

Both are function-scoped: a fresh server on a fresh port per test, so a late retry from
one test (a worker's, say) cannot land in the next test's collection. Both are safe to
read from the test thread while their own threads write (lists guarded by a lock; read
through the copying properties). Neither needs the database: pure tests can use them.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.conftest import ALERT_HTTP_PORT, ALERT_SMTP_PORT


def free_port() -> int:
    """A port nothing listens on right now (bound, read, released): also what a test uses
    for an unreachable destination."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `predicate` (sync) until it returns something truthy; fails the test after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# --- SMTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpServer:
    """`.port`; `.messages` (ReceivedMail, in arrival order); `.logins` ((user, password)
    pairs that authenticated). `.users` empty accepts any login, else only those pairs;
    addresses in `.refuse` are refused at RCPT (550). AUTH is offered without TLS: it is a
    test server on the loopback."""

    host: str
    port: int
    users: dict[str, str] = field(default_factory=dict)
    refuse: set[str] = field(default_factory=set)
    _messages: list[ReceivedMail] = field(default_factory=list)
    _logins: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._lock:
            return list(self._messages)

    @property
    def logins(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._logins)

    def wait_for_messages(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMail]:
        wait_for(lambda: len(self.messages) >= count, timeout=timeout, what=f"{count} message(s) by SMTP")
        return self.messages

    # aiosmtpd handler hooks
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self._lock:
            self._messages.append(
                ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content))
            )
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        ok = not self.users or self.users.get(user) == password
        if ok:
            with self._lock:
                self._logins.append((user, password))
        # handled=False: aiosmtpd then answers 535 itself (its default assumes we did).
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(host="127.0.0.1", port=free_port())
    controller = Controller(
        server,
        hostname=server.host,
        port=server.port,
        authenticator=server.authenticate,
        auth_required=False,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


# --- HTTP --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # names as sent; look up with .header() for any case
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """`.port`, `.url` (http://127.0.0.1:port); `.requests` (ReceivedRequest, in arrival
    order). Answers 200 with body `ok` (what Slack's webhooks answer), or, for a path in
    `.fail_paths` (path without query → status), that status; for a path in `.fail_first`
    (→ n), 500 to its first n requests and then the usual answer; for a path in
    `.slow_paths` (→ seconds), only after that long."""

    host: str
    port: int = 0
    fail_paths: dict[str, int] = field(default_factory=dict)
    fail_first: dict[str, int] = field(default_factory=dict)
    slow_paths: dict[str, float] = field(default_factory=dict)
    _requests: list[ReceivedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedRequest]:
        wait_for(lambda: len(self.requests) >= count, timeout=timeout, what=f"{count} request(s) by HTTP")
        return self.requests

    def _record(self, request: ReceivedRequest) -> tuple[int, float]:
        path = request.path.split("?", 1)[0]
        with self._lock:
            self._requests.append(request)
            if self.fail_first.get(path, 0) > 0:
                self.fail_first[path] -= 1
                return 500, self.slow_paths.get(path, 0.0)
            return self.fail_paths.get(path, 200), self.slow_paths.get(path, 0.0)


def _handler(receiver: HttpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            received = ReceivedRequest(self.command, self.path, dict(self.headers.items()), body)
            status, delay = receiver._record(received)
            time.sleep(delay)
            answer = b"ok" if status < 300 else b"failed"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the test reads .requests

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (a timeout test) breaks the pipe: expected, not news


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(host="127.0.0.1")
    server = _QuietServer((receiver.host, 0), _handler(receiver))
    receiver.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="http-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- the sinks the test workers send to (ports fixed in tests/conftest.py) ----------------


@pytest.fixture(scope="session")
def mail_sink() -> Iterator[SmtpServer]:
    server = SmtpServer(host="127.0.0.1", port=ALERT_SMTP_PORT)
    controller = Controller(
        server, hostname=server.host, port=server.port, auth_required=False, auth_require_tls=False
    )
    controller.start()
    yield server
    controller.stop()


@pytest.fixture(scope="session")
def hook_sink() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(host="127.0.0.1", port=ALERT_HTTP_PORT)
    server = _QuietServer((receiver.host, receiver.port), _handler(receiver))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()
