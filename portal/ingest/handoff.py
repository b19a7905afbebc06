"""Handing accepted batches to the broker, coalesced.

Each broker write is fsynced (an event is acknowledged only once durable), so one write
per request would cap single-event ingest at the disk's fsync rate and give the workers
one Postgres transaction per event. Instead, requests that arrive while a write is in
flight are merged into the next message: group commit at the edge. Every request still
gets its answer only after the message that carries its events is in the broker.

Under load, a write also waits a moment (`linger_s`) for more events when it holds only a
few: single-event requests otherwise go out a few per message, and every message costs a
broker round trip here and a Postgres transaction in a worker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Enqueue = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(slots=True)
class _Pending:
    hold: str  # the request's batch id in live:inflight
    accepted_ms: int
    events: list[list[Any]]
    conflicts: list[list[Any]]
    done: asyncio.Future[None]


@dataclass(slots=True)
class BatchHandoff:
    """Merges concurrent submissions into broker messages of at most `max_events`.

    At most `max_writers` messages are being written at once; submissions arriving
    meanwhile wait and go together in the next message.
    """

    enqueue: Enqueue
    max_events: int = 5000
    # One write at a time: parallel writers only split the same requests into more, smaller
    # messages (one per single-event request at 1,000 requests/s with 4 writers), each a
    # broker round trip and fsync here and a Postgres transaction in a worker. Bench, single
    # events: web 1,348 -> 1,127 µs/request, worker 525 -> 420; 1000-event batches: web
    # 21 -> 18 µs/event, batch latency p50 437 -> 296 ms.
    max_writers: int = 1
    # A write that would carry fewer than `linger_events` events waits up to `linger_s`
    # seconds for more (less once that many are pending), but only while busy: when the
    # previous write ended less than `busy_s` ago. An idle portal answers without the wait;
    # 1000-event batches never wait. Bench, single events: 1,132 -> 1,282 requests/s, web
    # 853 -> 765 µs/request, worker 369 -> 248; p99 at 1,000 requests/s 172 -> 62 ms.
    linger_s: float = 0.003
    linger_events: int = 50
    busy_s: float = 0.05
    # Told the size of each message sent (the persist backlog's events per message).
    on_message: Callable[[int], None] | None = None
    _pending: list[_Pending] = field(default_factory=list)
    _pending_events: int = 0
    _enough: asyncio.Future[None] | None = None  # set once `linger_events` are pending
    _last_write_end: float = float("-inf")  # time.monotonic()
    _writers: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)  # kept from the GC

    async def submit(
        self, hold: str, accepted_ms: int, events: list[list[Any]], conflicts: list[list[Any]]
    ) -> None:
        """Return once a message carrying these events is in the broker; raise what the
        broker raised otherwise (nothing of this submission was queued then)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(hold, accepted_ms, events, conflicts, done))
        self._pending_events += len(events) + len(conflicts)
        enough = self._enough
        if enough is not None and self._pending_events >= self.linger_events and not enough.done():
            enough.set_result(None)
        if self._writers < self.max_writers:
            self._writers += 1
            task = asyncio.get_running_loop().create_task(self._write())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await done

    def _take(self) -> list[_Pending]:
        taken: list[_Pending] = []
        size = 0
        while self._pending:
            head = self._pending[0]
            weight = len(head.events) + len(head.conflicts)
            if taken and size + weight > self.max_events:
                break
            taken.append(self._pending.pop(0))
            size += weight
        self._pending_events -= size
        return taken

    async def _linger(self) -> None:
        """Wait up to `linger_s` for `linger_events` pending events, if busy and short of them."""
        busy = time.monotonic() - self._last_write_end < self.busy_s
        if not busy or self._pending_events >= self.linger_events or self._enough is not None:
            return
        self._enough = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self.linger_s):
                await self._enough
        except TimeoutError:
            pass
        finally:
            self._enough = None

    async def _write(self) -> None:
        try:
            while self._pending:
                if self.linger_s > 0:
                    await self._linger()
                taken = self._take()
                message = merge(taken)
                try:
                    await self.enqueue(message)
                except Exception as exc:
                    for item in taken:
                        if not item.done.done():
                            item.done.set_exception(exc)
                else:
                    if self.on_message is not None:
                        self.on_message(len(message["events"]) + len(message["conflicts"]))
                    for item in taken:
                        if not item.done.done():
                            item.done.set_result(None)
                finally:
                    self._last_write_end = time.monotonic()
        finally:
            self._writers -= 1


def merge(items: list[_Pending]) -> dict[str, Any]:
    """One persist message for several accepted batches. `holds` are the batches' entries
    in live:inflight, released by the worker once the message is in Postgres."""
    return {
        "id": uuid.uuid4().hex,
        "holds": [item.hold for item in items],
        # How many of `events` each hold's batch brought, in order: the worker settles the
        # live view batch by batch (workers/ingest.py).
        "heldEvents": [len(item.events) for item in items],
        "acceptedAt": min(item.accepted_ms for item in items),
        "events": [row for item in items for row in item.events],
        "conflicts": [row for item in items for row in item.conflicts],
        # The ingest counts these events live: the worker takes out the copies the ledger
        # refuses (workers/ingest.py). Messages without it (replays) are left as they are.
        "countedLive": True,
    }


def holds(batch: dict[str, Any]) -> list[str]:
    """The live:inflight entries a persist message releases."""
    return [str(h) for h in batch.get("holds") or [batch["id"]]]
