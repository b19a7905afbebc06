"""Pages before batches: a person waiting for a page goes ahead of a batch being ingested
in the same web process.

A web process serves both (as `usage-portal up` runs it), on one event loop. Batch ingest
is CPU work in slices of ~1.5 ms (decoding and validating 200 events, building a batch's
live-store calls); a dashboard poll re-enters the loop a dozen times (session, customer,
preview, alerts, live usage, template), and each time it could wait behind a slice. With
ingest at half its maximum that added ~12 ms to the poll's p99 (bench/dashboard.py: p99
20 ms with the viewers on a web process of their own, 32-34 ms sharing it).

So between two slices a batch first lets the pages in flight finish (`Foreground.wait`),
for at most `MAX_DEFER_S` each time: a page then waits behind at most the one slice that
was running when it arrived, and ingest is never starved, only slowed while pages are
being served. Nothing is refused or reordered within a request; an ingest request's answer
comes a few milliseconds later while someone is looking at a page.
"""

from __future__ import annotations

import asyncio

# The longest a batch's slice waits for pages (a page's own work takes ~3-10 ms); past it
# the batch goes on, so even pages arriving without a break cannot hold ingest back.
MAX_DEFER_S = 0.02


class Foreground:
    """How many pages this process is serving, and a wait for background work until none."""

    def __init__(self, max_defer_s: float = MAX_DEFER_S) -> None:
        self.max_defer_s = max_defer_s
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

    async def wait(self) -> None:
        """Let what is ready run, then wait while pages are in flight (at most `max_defer_s`)."""
        await asyncio.sleep(0)
        if not self.in_flight:
            return
        if self._idle is None:
            self._idle = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self.max_defer_s):
                # Shielded: one waiter timing out must not cancel what the others wait on.
                await asyncio.shield(self._idle)
        except TimeoutError:
            pass
