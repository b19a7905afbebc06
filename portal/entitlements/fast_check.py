"""`POST /v1/entitlements/check`, the short way: an ordinary request answered before
Litestar's per-request machinery runs.

A check sits in an application's request path, so its cost is per request, not per answer:
py-spy on the web processes under single checks (bench/entitlements.py) put ~60% of their
CPU in Litestar's routing, guards, signature model, body extraction and response building
for a check whose own work (a cached profile, one HMGET, the answer) is a fraction of that
(2,964 checks/s on 2 cores with no ingest, 566 µs of web CPU each). `PortalApp.__call__`
(portal/app.py) hands this module the requests for that one path first.

The short way answers only what it is sure of, and answers it byte for byte as the
documented route would (the same structs, the same encoder, the same headers;
tests/entitlements/test_fast_check.py compares both ways): a POST with no query string, a
known key whose scope allows checks, and a JSON body of at most `MAX_BODY` bytes that
decodes as `ChecksIn`. Everything else (no key, a bad body, a store that cannot be reached)
goes on to the Litestar route with the body read so far, which refuses or answers it the one
documented way.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from portal.entitlements import service
from portal.entitlements.routes import OUTAGE_STATE, OUTAGES, outage_message
from portal.entitlements.schemas import ChecksIn, ChecksOut
from portal.infrastructure.http_errors import StoreUnavailable
from portal.infrastructure.logs import REQUEST_ID_HEADER, new_request_id
from portal.keys.guard import allows, bearer_token
from portal.state import PortalState

CHECK_PATH = "/v1/entitlements/check"
# Enough for the API's 10,000 checks of ordinary names; a larger body takes the documented
# route, whose 5 MiB bound and 413 apply as to any other.
MAX_BODY = 1024 * 1024

_REQUEST_ID = REQUEST_ID_HEADER.encode()
_REQUEST_ID_SHAPE = re.compile(rb"[A-Za-z0-9._\-]{1,100}")
_DECODER = msgspec.json.Decoder(ChecksIn)
_ENCODER = msgspec.json.Encoder()

Scope = dict[str, Any]
Receive = Any
Send = Any


def wants(scope: Scope) -> bool:
    """Whether `scope` is a request the short way may try."""
    return (
        scope["type"] == "http"
        and scope["path"] == CHECK_PATH
        and scope["method"] == "POST"
        and not scope.get("query_string")
    )


def _replay(messages: list[dict[str, Any]], receive: Receive) -> Receive:
    """A `receive` that gives the messages already read, in order, then whatever follows."""
    pending = list(messages)

    async def replayed() -> dict[str, Any]:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _read_body(receive: Receive) -> tuple[list[dict[str, Any]], bytes | None]:
    """The messages read and the body (None: larger than MAX_BODY, or the client left)."""
    messages: list[dict[str, Any]] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if size > MAX_BODY:
            return messages, None
        if not message.get("more_body", False):
            if len(messages) == 1:
                return messages, message.get("body", b"")
            return messages, b"".join(m.get("body", b"") for m in messages)


def _headers_fit(scope: Scope) -> tuple[str, bytes] | None:
    """(bearer token, request id) when the headers are ordinary for a check, else None."""
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
        elif lowered == _REQUEST_ID and not request_id:
            request_id = value
    if not token:
        return None
    if not _REQUEST_ID_SHAPE.fullmatch(request_id):
        request_id = new_request_id().encode()
    return token, request_id


async def answer(portal: PortalState, scope: Scope, receive: Receive, send: Send) -> Receive | None:
    """Answer the check in `scope`, or return the `receive` with which the documented route
    reads the same body (None: answered)."""
    fit = _headers_fit(scope)
    if fit is None:
        return receive
    token, request_id = fit
    messages, body = await _read_body(receive)
    rest = _replay(messages, receive)
    if body is None:
        return rest
    try:
        key = await portal.keys.resolve(token)
    except StoreUnavailable:
        return rest
    if key is None or not allows(key, "ingest"):
        return rest
    try:
        checks = _DECODER.decode(body)
    except (msgspec.DecodeError, ValueError):
        return rest
    try:
        results = await service.check(portal.entitlements, checks.checks, now=portal.now())
    except OUTAGES as exc:  # the route answers 503 with this, without a second timeout
        scope.setdefault("state", {})[OUTAGE_STATE] = outage_message(exc)
        return rest
    payload = _ENCODER.encode(ChecksOut(results))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (_REQUEST_ID, request_id),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload, "more_body": False})
    return None
