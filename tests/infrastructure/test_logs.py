"""Structured logs: JSON lines with the bound ids, and no secrets."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from litestar.testing import AsyncTestClient

from portal.infrastructure.logs import configure


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    configure(role="web", stream=stream)
    yield stream
    root.handlers[:], root.level = saved_handlers, saved_level
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_a_log_line_is_json_with_the_bound_ids_and_no_secrets(log_stream: io.StringIO) -> None:
    with structlog.contextvars.bound_contextvars(request_id="r-1", customer_id="acme", message_id="m-9"):
        logging.getLogger("portal.test").warning(
            "sending to %s with Bearer up_admin_abcdefghijklmnopqrstuvwxyz012345",
            "json://user:hunter2@hooks.example/x",
        )
        structlog.get_logger("portal.test").info("delivered", destination="mailto://a:pw@b", attempt=2)
    first, second = (json.loads(line) for line in log_stream.getvalue().splitlines())
    assert (first["request_id"], first["customer_id"], first["message_id"], first["role"]) == (
        "r-1",
        "acme",
        "m-9",
        "web",
    )
    assert first["level"] == "warning" and first["logger"] == "portal.test"
    assert "hunter2" not in first["event"] and "abcdefghij" not in first["event"]
    assert first["event"] == "sending to json://user:***@hooks.example/x with Bearer ***"
    assert (second["event"], second["destination"], second["attempt"]) == ("delivered", "***", 2)


async def test_every_answer_carries_a_request_id(client: AsyncTestClient[Any]) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert given.headers["x-request-id"] == "trace-42"
    made = await client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32
    odd = await client.get("/healthz", headers={"X-Request-ID": "no spaces <please>"})
    assert odd.headers["x-request-id"] != "no spaces <please>"


def test_a_served_web_process_keeps_the_json_lines_after_the_app_is_built() -> None:
    # Litestar's own logging config replaced the root handler with a plain-text one, so the
    # web's lines were neither JSON nor masked. In a subprocess: the root logger is global.
    script = (
        "import logging\n"
        "from portal.app import create_app\n"
        "create_app()\n"
        "secret = 'Bearer up_admin_abcdefghijklmnopqrstuvwxyz012345'\n"
        "logging.getLogger('portal.probe').warning('sent with %s', secret)\n"
    )
    env = {**os.environ, "PORTAL_LOG_ROLE": "web", "PORTAL_LOG_FORMAT": "json"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    [line] = [json.loads(text) for text in done.stderr.splitlines() if "portal.probe" in text]
    assert (line["role"], line["level"], line["logger"]) == ("web", "warning", "portal.probe")
    assert "abcdefghijklmnopqrstuvwxyz012345" not in line["event"]
