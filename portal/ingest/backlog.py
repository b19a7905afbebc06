"""The persist backlog's bound: how far ingest may run ahead of the persist workers.

Accepted events wait in the broker until a worker has them in Postgres. When ingest takes
events faster than Postgres stores them (a burst, a worker down, Postgres down), that
backlog grows, and with the Redis broker it grows in Redis' memory and append-only file
(every rewrite of which copies all of it while ingest goes on). Nothing bounded it but the
machine's memory: a Postgres down for an hour at 5,000 events/s is 18 million events.

So each web process watches the backlog (a few broker reads a second) and, once it holds
`limit_events` or more, holds new ingest requests back for up to `wait_s` (a client that
waits for its answer thereby slows to the speed Postgres keeps) and then refuses them with
a 503 and Retry-After, before anything of them is read or counted: nothing accepted is
ever lost, and the broker stays within what the operator sized it for
(`PORTAL_INGEST_BACKLOG_EVENTS`, docs/decisions.md).

The broker counts messages; a message carries up to 5,000 events. The backlog in events
is estimated as the messages waiting times the events per message this process sent lately.
A process that has sent none yet (just started) counts one event per message, and takes
its first message's size as it is: an estimate that starts high would refuse every request,
and a process that refuses sends no message to correct it (a restarted web refused ingest
at a fortieth of its bound). One that starts low overshoots the bound by a few messages at
most before its own messages correct it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from portal.infrastructure.broker import INGEST_QUEUE, redis_queue_keys
from portal.infrastructure.rabbitmq_admin import RabbitmqAdmin

log = logging.getLogger(__name__)

# How many messages wait (queued, being persisted or waiting for a retry).
ReadMessages = Callable[[], Awaitable[int]]

# How often the backlog is read while ingest goes on. A process that took no ingest request
# for IDLE_S stops reading until the next one.
POLL_S = 0.2
IDLE_S = 30.0
# A read that takes longer is given up (the backlog is taken as unknown, not bounding).
READ_TIMEOUT_S = 0.5
# Weight of the newest message in the running events-per-message figure.
_SMOOTHING = 0.05


class BacklogFull(Exception):
    """The persist backlog stayed at its bound for the whole wait; nothing was read."""

    def __init__(self, waiting_events: int, limit_events: int) -> None:
        super().__init__(
            f"the persist backlog is full (about {waiting_events:,} events waiting for Postgres, "
            f"bound {limit_events:,})"
        )


def redis_broker_messages(broker: Redis, queue: str = INGEST_QUEUE) -> ReadMessages:
    """Messages of `queue` in Dramatiq's Redis broker: every one not acknowledged (waiting
    or being persisted) and every one waiting for a retry."""

    async def read() -> int:
        async with broker.pipeline(transaction=False) as pipe:
            keys = redis_queue_keys(queue)
            pipe.hlen(keys.messages)
            pipe.hlen(keys.delayed)
            unacked, delayed = await pipe.execute()
        return int(unacked) + int(delayed)

    return read


def rabbitmq_messages(url: str, queue: str = INGEST_QUEUE) -> ReadMessages:
    """Messages of `queue` ready in RabbitMQ, and of its delay queue (those being persisted
    are not visible over AMQP). One connection, opened on first use and again after a failure."""
    admin: RabbitmqAdmin | None = None
    # A read given up on (READ_TIMEOUT_S) goes on in its thread: the next waits for it.
    one_at_a_time = threading.Lock()

    def count() -> int:
        with one_at_a_time:
            return read_counts()

    def read_counts() -> int:
        nonlocal admin
        try:
            if admin is None:
                admin = RabbitmqAdmin(url)
            counts = admin.counts(queue)
        except Exception:
            if admin is not None:
                admin.close()
            admin = None
            raise
        return counts.ready + counts.delayed_ready

    async def read() -> int:
        return await asyncio.to_thread(count)

    return read


@dataclass(slots=True)
class PersistBacklog:
    """One web process's view of the persist backlog, and the door it keeps (`admit`)."""

    read_messages: ReadMessages
    limit_events: int  # 0: no bound
    wait_s: float
    poll_s: float = POLL_S
    events_per_message: float = 0.0  # 0: no message sent yet
    waiting_events: int = 0
    _below: asyncio.Event = field(default_factory=asyncio.Event)
    _poller: asyncio.Task[None] | None = None
    _last_asked: float = 0.0  # time.monotonic()
    _held: int = 0  # requests waiting for the backlog to fall below its bound
    # One read at a time (each poll would otherwise start another while one hangs).
    _reading: asyncio.Lock = field(default_factory=asyncio.Lock)
    _read_failing: bool = False

    async def admit(self) -> None:
        """Return at once while the backlog is below its bound; else wait up to `wait_s`
        for it to fall below, and raise BacklogFull if it does not."""
        if self.limit_events <= 0:
            return
        self._last_asked = time.monotonic()
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())
            await self._read()  # the first request after an idle spell sees a fresh figure
        if self.waiting_events < self.limit_events:
            return
        self._held += 1
        try:
            async with asyncio.timeout(self.wait_s):
                await self._below.wait()
        except TimeoutError:
            raise BacklogFull(self.waiting_events, self.limit_events) from None
        finally:
            self._held -= 1

    def note_message(self, events: int) -> None:
        """A persist message of `events` events was sent (by this process)."""
        if events <= 0:
            return
        if not self.events_per_message:
            self.events_per_message = float(events)
        else:
            self.events_per_message += (events - self.events_per_message) * _SMOOTHING

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    async def _poll(self) -> None:
        while self._held or time.monotonic() - self._last_asked < IDLE_S:
            await asyncio.sleep(self.poll_s)
            await self._read()

    async def _read(self) -> None:
        try:
            async with self._reading, asyncio.timeout(READ_TIMEOUT_S):
                messages = await self.read_messages()
        except Exception as exc:
            # The broker itself is down or unreachable: the hand-off finds out and answers
            # 503; refusing here as well would only hide which store failed.
            if not self._read_failing:
                log.warning("persist backlog unreadable, not bounding ingest meanwhile: %s", exc)
            self._read_failing = True
            messages = 0
        else:
            self._read_failing = False
        self.waiting_events = round(messages * (self.events_per_message or 1.0))
        if self.waiting_events < self.limit_events:
            self._below.set()
        else:
            self._below.clear()
