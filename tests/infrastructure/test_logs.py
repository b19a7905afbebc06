"""Structured logs: JSON lines with the bound ids, and no secrets."""

from __future__ import annotations

import io
import json
import logging
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
