"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for load generation.

httpx costs far more CPU per request than the server under test spends on a single
event; on a 2-core machine that CPU is taken from the system being measured. This client
sends pre-built request bytes and parses only the status line, Content-Length (or a
chunked body) and the body, so its own cost stays small. It is no general client: no
redirects, no TLS, no pipelining, one request at a time per connection.
"""

from __future__ import annotations

import asyncio
import contextlib


class HttpError(Exception):
    """The server answered something this client cannot parse, or closed the connection."""


class HttpConnection:
    """One keep-alive connection; `post()` and `get()` reconnect once if the server closed it."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host = host
        self.port = port
        self._fixed = "".join(
            f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items()
        ).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST `body` (JSON) and return (status, response body)."""
        head = (
            f"POST {path} HTTP/1.1\r\n".encode()
            + self._fixed
            + b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
        )
        return await self._exchange(head, body)

    async def get(self, path: str) -> tuple[int, bytes]:
        """GET `path` and return (status, response body; empty for 204 and 304)."""
        return await self._exchange(f"GET {path} HTTP/1.1\r\n".encode() + self._fixed + b"\r\n", b"")

    async def _exchange(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        """Send one request and read its answer, reconnecting once if the server closed."""
        for attempt in (0, 1):
            if self._writer is None:
                await self.connect()
            assert self._reader is not None and self._writer is not None
            try:
                self._writer.write(head + body if len(body) < 16384 else head)
                if len(body) >= 16384:
                    self._writer.write(body)
                await self._writer.drain()
                return await self._read_response()
            except (ConnectionError, asyncio.IncompleteReadError, HttpError):
                await self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _read_response(self) -> tuple[int, bytes]:
        assert self._reader is not None
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError(f"bad status line {lines[0][:80]!r}")
        status = int(parts[1])
        length = -1
        chunked = False
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if status in (204, 304):  # no body, whatever the headers say
            body = b""
        elif chunked:
            body = await self._read_chunked()
        elif length >= 0:
            body = await self._reader.readexactly(length)
        else:
            body = await self._reader.read()
            close = True
        if close:
            await self.close()
        return status, body

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        out = bytearray()
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return bytes(out)
            out += await self._reader.readexactly(size)
            await self._reader.readexactly(2)
