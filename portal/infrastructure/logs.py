"""Structured logs: one JSON object per line, with the request, customer and message ids
bound where they are known, and secrets masked.

Every process role configures this once at start (`configure()`): the web and scheduler
from the CLI, the worker from `workers/main.py`. Standard-library loggers (ours, uvicorn's,
Dramatiq's) go through the same renderer, so every line is JSON. `PORTAL_LOG_FORMAT=console`
gives readable lines for a person at a terminal.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

# Keys whose values are never logged, whatever logs them.
_SECRET_KEYS = re.compile(r"(authorization|api_?key|password|secret|token|destination|cookie)", re.I)
# Bearer tokens and URL credentials inside free text (an exception message, say).
_SECRET_TEXT = re.compile(r"(Bearer\s+)\S+|(://[^:/@\s]+:)[^@\s]+@|(up_(?:ingest|admin)_)[A-Za-z0-9_\-]+")

REQUEST_ID_HEADER = "x-request-id"


def _masked(match: re.Match[str]) -> str:
    bearer, credentials, key = match.groups()
    return f"{bearer}***" if bearer else f"{credentials}***@" if credentials else f"{key}***"


def mask_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: mask secret-looking keys and secrets inside text values."""
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key):
            event[key] = "***"
        elif isinstance(value, str):
            event[key] = _SECRET_TEXT.sub(_masked, value)
    return event


def processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_secrets,
    ]


def configure(*, role: str, stream: Any = None) -> None:
    """Route every logger of this process through the structured renderer."""
    # Empty is unset, as for every setting (portal/infrastructure/settings.py checks them).
    console = (os.environ.get("PORTAL_LOG_FORMAT") or "json").strip() == "console"
    renderer: Any = structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=processors(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((os.environ.get("PORTAL_LOG_LEVEL") or "INFO").strip().upper())
    # The PDF renderer's font subsetting logs every glyph table it prunes at INFO (hundreds
    # of lines per invoice PDF): only its warnings are worth an operator's screen.
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(role=role)


def current_request_id() -> str | None:
    """The request id bound by `request_ids` for the request being served (None outside one)."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


_CUSTOMER_PATH = re.compile(r"^/(?:v1|portal)/customers/([^/]+)")


def new_request_id() -> str:
    """A request id for a request that brought none: 32 hex digits, as `uuid4().hex` gave
    (whose UUID object cost ~2% of an entitlement check's CPU)."""
    return secrets.token_hex(16)


def request_ids(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: bind a request id (the caller's X-Request-ID, or a new one) and the
    customer id of customer routes to every log line of the request; echo the id back."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        headers: Any = scope.get("headers") or []
        given = dict(headers).get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")
        request_id = given if re.fullmatch(r"[A-Za-z0-9._\-]{1,100}", given) else new_request_id()
        bound: dict[str, str] = {"request_id": request_id}
        customer = _CUSTOMER_PATH.match(scope.get("path", ""))
        if customer:
            bound["customer_id"] = customer.group(1)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                start: Any = message
                echo = (REQUEST_ID_HEADER.encode(), request_id.encode())
                start["headers"] = [*start.get("headers", []), echo]
            await send(message)

        with structlog.contextvars.bound_contextvars(**bound):
            await app(scope, receive, send_with_id)

    return middleware
