"""The short way in: the hottest API requests answered before Litestar's per-request work.

An entitlement check sits in an application's request path and a single event is one
request per event, so their cost is per request: py-spy on the web processes put ~60% of a
check's CPU in Litestar's routing, guards, signature model, body extraction and response
building, around work of its own that was a fraction of that (bench/entitlements.py:
2,964 checks/s on 2 cores with no ingest, 566 µs of web CPU each).

`PortalApp.__call__` (portal/app.py) offers an ordinary `POST` to the path's short way
(`SHORT_WAYS`) first. A short way answers only what it is sure of, byte for byte as its
documented route would (the same structs, encoder and headers; tests compare both ways): a
known key whose scope allows the route, a JSON body within its bound, no query string.
Everything else (no key, a bad body, an unexpected failure) goes on to the Litestar route
with the body read so far, which refuses or answers it the one documented way. A store that
failed is told to the route through the scope's state (`OUTAGE_STATE`), which then answers
503 at once rather than waiting out a second timeout.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from portal.infrastructure.logs import REQUEST_ID_HEADER, new_request_id
from portal.keys.guard import allows, bearer_token
from portal.state import PortalState

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# A short way's store failure, as the 503 message its route answers with.
OUTAGE_STATE = "short_way_outage"

_REQUEST_ID = REQUEST_ID_HEADER.encode()
_REQUEST_ID_SHAPE = re.compile(rb"[A-Za-z0-9._\-]{1,100}")


@dataclass(frozen=True, slots=True)
class Caller:
    """An ordinary request's body and the request id to echo."""

    body: bytes
    request_id: bytes


def wants(scope: Scope) -> bool:
    """Whether `scope` is of the kind a short way may try (then by its path)."""
    return scope["type"] == "http" and scope["method"] == "POST" and not scope.get("query_string")


def outage(scope: Scope, message: str) -> None:
    """Tell the route that the store failed the short way (it answers 503 with `message`)."""
    scope.setdefault("state", {})[OUTAGE_STATE] = message


def told_outage(scope: Mapping[str, Any]) -> str | None:
    """What the short way found down, for the route to answer 503 with (None: nothing)."""
    told: str | None = scope.get("state", {}).get(OUTAGE_STATE)
    return told


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives the messages already read, in order, then whatever follows."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _read_body(receive: Receive, max_body: int) -> tuple[list[Message], bytes | None]:
    """The messages read and the body (None: larger than `max_body`, or the client left)."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if size > max_body:
            return messages, None
        if not message.get("more_body", False):
            if len(messages) == 1:
                return messages, message.get("body", b"")
            return messages, b"".join(m.get("body", b"") for m in messages)


def _headers_fit(scope: Scope) -> tuple[str, bytes] | None:
    """(bearer token, request id) when the headers are ordinary for a JSON POST, else None."""
    token = ""
    request_id = b""
    for name, value in scope["headers"]:
        lowered = name.lower()
        if lowered == b"authorization" and not token:
            token = bearer_token(value.decode("latin-1"))
            if not token:
                return None
        elif lowered == b"content-type" and not value.lower().startswith(b"application/json"):
            return None
        elif lowered == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            return None  # the Litestar way refuses it (request_checks: 415)
        elif lowered == _REQUEST_ID:  # the last one, as `request_ids` takes it
            request_id = value
    if not token:
        return None
    if not _REQUEST_ID_SHAPE.fullmatch(request_id):
        request_id = new_request_id().encode()
    return token, request_id


async def admit(
    portal: PortalState, scope: Scope, receive: Receive, *, scope_needed: str, max_body: int
) -> tuple[Caller | None, Receive]:
    """The caller when the request is ordinary (its key allowed, its body whole within
    `max_body`), and the `receive` with which the route reads the same body otherwise."""
    fit = _headers_fit(scope)
    if fit is None:
        return None, receive
    token, request_id = fit
    messages, body = await _read_body(receive, max_body)
    rest = _replay(messages, receive)
    if body is None:
        return None, rest
    try:
        key = await portal.keys.resolve(token)
    except Exception:  # StoreUnavailable above all: the guard answers it, its way
        return None, rest
    if key is None or not allows(key, scope_needed):
        return None, rest
    return Caller(body, request_id), rest


def logged(caller: Caller) -> contextlib.AbstractContextManager[Any]:
    """The request id on every log line of the work, as `request_ids` binds it on the
    Litestar way (portal/infrastructure/logs.py)."""
    return structlog.contextvars.bound_contextvars(request_id=caller.request_id.decode("latin-1"))


async def send_json(send: Send, status: int, payload: bytes, caller: Caller) -> None:
    """The answer, with the headers Litestar gives a JSON answer (and the request id)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (_REQUEST_ID, caller.request_id),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})
