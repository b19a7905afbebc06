"""Pages before batches: a person waiting for a page goes ahead of a batch being ingested
in the same web process.

A web process serves both (as `usage-portal up` runs it), on one event loop. Batch ingest
is CPU work in slices of ~1.5 ms (decoding and validating 200 events, building a batch's
live-store calls); a dashboard poll re-enters the loop a dozen times (session, customer,
preview, alerts, live usage, template), and each time it could wait behind a slice. With
ingest at half its maximum that added ~12 ms to the poll's p99 (bench/dashboard.py: p99
20 ms with the viewers on a web process of their own, 32-34 ms sharing it).

So between two slices a batch first lets the pages being worked on finish
(`Deferral.wait`): a page then waits behind at most the one slice that was running when it
arrived. A batch gives way for at most `BATCH_DEFERRAL_S` in all, so however many pages
come (a flood of login pages, say) a batch is only ever that much later, and ingest is
never starved. A page counts from when its request has been read whole to when its answer
starts: what the server does for it, never how slowly a client sends or reads (a client
trickling a body in cannot hold batches back).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from portal.infrastructure import metrics

# The most a batch gives way to pages, in all (a poll's own work takes ~3-10 ms).
BATCH_DEFERRAL_S = 0.02

Message = dict[str, Any]


class Foreground:
    """The pages this process is working on, and waits for background work until none."""

    def __init__(self, batch_deferral_s: float = BATCH_DEFERRAL_S) -> None:
        self.batch_deferral_s = batch_deferral_s
        self.in_flight = 0
        self._idle: asyncio.Future[None] | None = None  # resolved when the last page ends

    def begin(self) -> None:
        self.in_flight += 1

    def end(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._idle is not None:
            if not self._idle.done():
                self._idle.set_result(None)
            self._idle = None

    def deferral(self) -> Deferral:
        """A batch's allowance of waiting for pages (`batch_deferral_s` in all)."""
        return Deferral(self, self.batch_deferral_s)

    async def until_idle(self, timeout_s: float) -> None:
        """Wait until no page is being worked on, or `timeout_s` has passed."""
        if self._idle is None:
            self._idle = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s):
                # Shielded: one waiter timing out must not cancel what the others wait on.
                await asyncio.shield(self._idle)
        except TimeoutError:
            pass

    async def serve(
        self,
        app: Callable[[Any, Any, Any], Awaitable[None]],
        scope: Any,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        """Run the ASGI `app` for a page request, counted from when its body has been read
        whole (at once for a request without one) to when its answer starts."""
        counted = False
        answered = False  # once the answer has started, the rest is the client's pace

        def start() -> None:
            nonlocal counted
            if not counted and not answered:
                counted = True
                self.begin()

        def stop() -> None:
            nonlocal counted
            if counted:
                counted = False
                self.end()

        async def read() -> Message:
            stop()  # waiting for the client is not work for the page
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                start()
            return message

        async def answer(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                stop()
            await send(message)

        if scope.get("method") in ("GET", "HEAD"):
            start()
        try:
            await app(scope, read, answer)
        finally:
            stop()


class Deferral:
    """One batch's waits for pages, `budget_s` in all."""

    def __init__(self, foreground: Foreground, budget_s: float) -> None:
        self._foreground = foreground
        self._left_s = budget_s

    async def wait(self) -> None:
        """Let what is ready run; then, while pages are being worked on and the allowance
        lasts, wait for them to finish."""
        await asyncio.sleep(0)
        if not self._foreground.in_flight or self._left_s <= 0:
            return
        began = time.monotonic()
        await self._foreground.until_idle(self._left_s)
        waited = time.monotonic() - began
        self._left_s -= waited
        metrics.INGEST_PAGE_WAIT_SECONDS.inc(waited)
