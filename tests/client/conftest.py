"""A real HTTP server for the client (uvicorn in a subprocess, stoppable and restartable
on the same port), the catalog it needs, and a fault-injecting proxy in front of it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncpg
import pytest

from portal.infrastructure.settings import Settings
from tests.conftest import ROOT, TEST_ENV, _free_port


def server_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TEST_ENV)
    env.update(
        {
            "DATABASE_URL": settings.database_url or "",
            "REDIS_URL": settings.redis_url or "",
            "BROKER_URL": settings.broker_url or "",
            "PORTAL_DATA_DIR": str(settings.data_dir),
        }
    )
    return env


class ServerProcess:
    """`uvicorn --factory portal.app:create_app` on a fixed port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="client-server-", suffix=".log")[1])

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "portal.app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=server_env(self.settings),
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("the server did not start in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def server_process(settings: Settings) -> Iterator[ServerProcess]:
    process = ServerProcess(settings)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def server(server_process: ServerProcess) -> ServerProcess:
    if not server_process.running():
        server_process.start()
    return server_process


def admin_post(base_url: str, key: str, path: str, body: dict[str, object]) -> int:
    request = urllib.request.Request(
        base_url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{path}: {exc.code} {exc.read()!r}") from exc


@pytest.fixture
def catalog(server: ServerProcess, admin_key: str) -> None:
    """Customer `acme` and the sum meter `api_calls`."""
    assert (
        admin_post(
            server.url,
            admin_key,
            "/v1/customers",
            {"id": "acme", "name": "Acme Inc", "timezone": "UTC", "currency": "EUR"},
        )
        == 201
    )
    assert (
        admin_post(
            server.url,
            admin_key,
            "/v1/meters",
            {"metricName": "api_calls", "aggregation": "sum", "unit": "call", "groupBy": []},
        )
        == 201
    )


async def usage_totals(pg: asyncpg.Connection) -> tuple[int, str]:
    row = await pg.fetchrow("SELECT count(*) AS n, coalesce(sum(quantity), 0) AS total FROM usage_events")
    assert row is not None
    return int(row["n"]), format(row["total"].normalize(), "f")


async def distinct_ids(pg: asyncpg.Connection) -> int:
    return int(await pg.fetchval("SELECT count(DISTINCT event_id) FROM usage_events"))


# -- the fault injector ---------------------------------------------------------------


@dataclass
class Canned:
    """Answer this instead of forwarding."""

    status: int
    body: bytes = b'{"detail": "injected"}'
    retry_after: str | None = None


@dataclass
class Forward:
    """Forward; with `hold`, wait for that event before answering (the client may have
    given up by then: the server has the batch anyway)."""

    hold: threading.Event | None = None


Plan = Callable[[int], "Canned | Forward"]


class FaultProxy:
    """A local HTTP server in front of the real one; `plan(n)` decides what the n-th
    request (0-based) gets. Counts requests and what was forwarded."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.plan: Plan = lambda n: Forward()
        self.requests = 0
        self.forwarded = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with proxy.lock:
                    number = proxy.requests
                    proxy.requests += 1
                action = proxy.plan(number)
                if isinstance(action, Canned):
                    self._answer(action.status, action.body, action.retry_after)
                    return
                request = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=body,
                    method="POST",
                    headers={
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() in ("authorization", "content-type")
                    },
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, data = response.status, response.read()
                except urllib.error.HTTPError as exc:
                    status, data = exc.code, exc.read()
                with proxy.lock:
                    proxy.forwarded += 1
                if action.hold is not None:
                    action.hold.wait(30)
                with contextlib.suppress(OSError):  # the client may have given up
                    self._answer(status, data, None)

            def _answer(self, status: int, body: bytes, retry_after: str | None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(server.url)
    fault_proxy.start()
    yield fault_proxy
    fault_proxy.stop()
