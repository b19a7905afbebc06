"""Clients that never finish sending a request are dropped (slowloris).

uvicorn times out a keep-alive connection idling *between* requests, but not one that
opens and sends nothing, nor a request whose headers or body trickle in forever: a few
thousand such connections held every file descriptor of a web process, and with them
sign-in and ingest for everyone. This HTTP protocol (uvicorn's httptools one, `uvicorn.run(
http=...)`) gives each request a deadline to arrive: its headers within
`HEADERS_WITHIN_S` of the connection or the request's first byte (answered 408 and
closed), then its body within `BODY_WITHIN_S` (closed: the app sees the client leave).
A request that has arrived is never timed here, however long the answer takes.

A flood of connections faster than they time out is a volume attack for the network in
front of the portal (a reverse proxy's connection limits), as docs/decisions.md says.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# A browser or client sends its headers in one packet; 10 s is generous even on a phone.
HEADERS_WITHIN_S = 10.0
# The largest body (5 MiB, a batch) at ~90 kB/s: slower than any client we serve.
BODY_WITHIN_S = 60.0

_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 36\r\nconnection: close\r\n\r\nthe request did not arrive in time.\n"
)


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request's arrival."""

    _deadline: asyncio.TimerHandle | None = None
    _awaiting_headers: bool = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(HEADERS_WITHIN_S, headers=True)  # a connection that never sends a byte

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._awaiting_headers:  # a later request on a kept-alive connection
            self._arm(HEADERS_WITHIN_S, headers=True)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(BODY_WITHIN_S, headers=False)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float, *, headers: bool) -> None:
        self._disarm()
        self._awaiting_headers = headers
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._awaiting_headers = False

    def _too_slow(self) -> None:
        self._deadline = None
        transport: Any = self.transport
        if transport is None or transport.is_closing():
            return
        if self._awaiting_headers and (self.cycle is None or self.cycle.response_complete):
            transport.write(_TIMEOUT_408)  # no answer has started on this connection
        self._awaiting_headers = False
        transport.close()
