"""Clients that never finish sending a request are dropped (slowloris).

uvicorn times out a keep-alive connection idling *between* requests, but not one that
opens and sends nothing, nor a request whose headers or body trickle in forever: a few
thousand such connections held every file descriptor of a web process, and with them
sign-in and ingest for everyone. This HTTP protocol (uvicorn's httptools one, `uvicorn.run(
http=...)`) gives each request a deadline to arrive: its headers within
`HEADERS_WITHIN_S` of the connection or the request's first byte (answered 408 and
closed), then its body within `BODY_WITHIN_S` (closed: the app sees the client leave).
A request that has arrived is never timed here, however long the answer takes.

A request only notes its deadline (two attribute writes); one sweep a second per server
closes the connections past theirs. A timer per request would cost each request a few
microseconds of heap work on the loop, on a path that serves thousands a second.

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
# How often a server looks for connections past their deadline (so a deadline is kept to
# within this much).
SWEEP_EVERY_S = 1.0

_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 36\r\nconnection: close\r\n\r\nthe request did not arrive in time.\n"
)


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request's arrival."""

    # The loop time by which the request being received must have arrived (None: nothing
    # is being received), and whether its headers are still awaited (then it gets a 408).
    _due: float | None = None
    _awaiting_headers: bool = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._due, self._awaiting_headers = self.loop.time() + HEADERS_WITHIN_S, True
        state: Any = self.server_state
        if getattr(state, "deadline_sweep", None) is None:  # the server's first connection
            state.deadline_sweep = self.loop.call_later(SWEEP_EVERY_S, _sweep, self.loop, state)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._awaiting_headers:  # a later request on a kept-alive connection
            self._due, self._awaiting_headers = self.loop.time() + HEADERS_WITHIN_S, True

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._due, self._awaiting_headers = self.loop.time() + BODY_WITHIN_S, False

    def on_message_complete(self) -> None:
        self._due, self._awaiting_headers = None, False
        super().on_message_complete()

    def too_slow(self) -> None:
        """Past its deadline: a 408 if no answer has started on the connection, then closed."""
        self._due = None
        transport: Any = self.transport
        if transport is None or transport.is_closing():
            return
        if self._awaiting_headers and (self.cycle is None or self.cycle.response_complete):
            transport.write(_TIMEOUT_408)
        self._awaiting_headers = False
        transport.close()


def _sweep(loop: asyncio.AbstractEventLoop, state: Any) -> None:
    """Close the server's connections past their deadline; again in `SWEEP_EVERY_S` while
    it has any."""
    now = loop.time()
    late = [
        c
        for c in state.connections
        if isinstance(c, DeadlineHttpToolsProtocol) and c._due is not None and now >= c._due
    ]
    for connection in late:
        connection.too_slow()
    # With no connection left the sweep stops; the next connection starts it again.
    state.deadline_sweep = loop.call_later(SWEEP_EVERY_S, _sweep, loop, state) if state.connections else None
