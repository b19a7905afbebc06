"""Slow clients (slowloris) against the web's HTTP protocol, on a real uvicorn server: a
request must arrive within its deadlines, and nothing else is timed.

The deadlines are shortened here (the product's are 10 s for headers, 60 s for a body);
the server, its sockets and the protocol are the ones `usage-portal web` runs (its sweep
runs every 0.1 s here, every second there)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from portal.http import slow_clients
from portal.http.slow_clients import DeadlineHttpToolsProtocol

HEADERS_S = 0.6
BODY_S = 1.2
# What the app saw: each request's body, or that its client left.
SEEN: list[str] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            SEEN.append("disconnected")
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    SEEN.append(body.decode() or "-")
    if scope["path"] == "/slow":  # an answer that takes longer than both deadlines
        await asyncio.sleep(BODY_S + HEADERS_S)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[int]:
    monkeypatch.setattr(slow_clients, "HEADERS_WITHIN_S", HEADERS_S)
    monkeypatch.setattr(slow_clients, "BODY_WITHIN_S", BODY_S)
    monkeypatch.setattr(slow_clients, "SWEEP_EVERY_S", 0.1)
    SEEN.clear()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=DeadlineHttpToolsProtocol, log_config=None, lifespan="off"
    )
    served = uvicorn.Server(config)
    task = asyncio.create_task(served.serve())
    for _ in range(1000):  # up to 10 s
        if served.started:
            break
        await asyncio.sleep(0.01)
    yield port
    served.should_exit = served.force_exit = True  # a failed test may leave clients open
    await task


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _closed_after(reader: asyncio.StreamReader, within: float) -> tuple[bytes, float]:
    """Everything the server sent until it closed the connection, and when it closed."""
    started = time.monotonic()
    received = await asyncio.wait_for(reader.read(), timeout=within)
    return received, time.monotonic() - started


async def _get(port: int, path: str = "/") -> bytes:
    reader, writer = await _open(port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return answer


async def test_headers_that_never_end_are_answered_408_and_closed(server: int) -> None:
    reader, writer = await _open(server)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    answer, after = await _closed_after(reader, within=5)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert HEADERS_S * 0.9 <= after < HEADERS_S + 1.5
    assert SEEN == []  # the app never saw it


async def test_a_connection_that_sends_nothing_is_closed(server: int) -> None:
    reader, _ = await _open(server)
    answer, after = await _closed_after(reader, within=5)
    assert answer.startswith(b"HTTP/1.1 408") and after < HEADERS_S + 1.5


async def test_a_body_that_stalls_is_cut_and_the_app_sees_the_client_leave(server: int) -> None:
    reader, writer = await _open(server)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf")
    answer, after = await _closed_after(reader, within=5)
    assert answer == b"" and BODY_S * 0.9 <= after < BODY_S + 1.5
    await asyncio.sleep(0.1)
    assert SEEN == ["disconnected"]


async def test_requests_that_arrive_are_never_timed_however_long_the_answer(server: int) -> None:
    # A slow answer, and a kept-alive connection idle between requests, stay served
    assert (await _get(server, "/slow")).endswith(b"ok")
    reader, writer = await _open(server)
    for _ in range(2):
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        assert head.startswith(b"HTTP/1.1 200") and await reader.readexactly(2) == b"ok"
        await asyncio.sleep(HEADERS_S + 0.3)  # past the header deadline, within keep-alive
    writer.close()
    assert SEEN == ["-", "hello", "hello"]


async def test_others_are_served_while_many_clients_stall(server: int) -> None:
    stalled = [await _open(server) for _ in range(200)]
    for _, writer in stalled:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    assert (await _get(server)).endswith(b"ok")
    # And every stalled one is gone after the deadline
    results = await asyncio.gather(*(_closed_after(reader, within=5) for reader, _ in stalled))
    assert all(answer.startswith(b"HTTP/1.1 408") for answer, _ in results)
