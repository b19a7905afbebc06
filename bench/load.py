"""The load generator: event bodies, one request with its retries, and the closed- and
open-loop drivers, counting what the 202 answers say in `LoadStats`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bench.config import BATCH_PATH, REGIONS
from bench.httpclient import HttpConnection
from bench.stack import Catalog


class EventFactory:
    """Unique, valid events as JSON text, cheaply: a few string formats per event.

    Event ids are `<tag><run>-<unique part>`, so each phase's rows are found in
    `event_ledger` by prefix. The unique part is random (like the UUIDs clients usually
    send, which land all over the ledger's primary-key index) followed by a sequence
    number (which makes it unique), or only the sequence number (`sequential`, the
    friendliest case for the index). Timestamps spread over the last two hours (several
    local hours per customer); 60 % sum events (with a region), 30 % count, 10 % max.
    """

    def __init__(self, catalog: Catalog, seed: int = 1, *, random_ids: bool = True) -> None:
        self.catalog = catalog
        self.rng = random.Random(seed)
        self.seq = 0
        self.random_ids = random_ids
        self._heads: list[str] = []
        for customer in catalog.customers:
            for metric, weight in ((catalog.sum_meter, 6), (catalog.count_meter, 3), (catalog.max_meter, 1)):
                self._heads += [f'"customerId":"{customer}","metricName":"{metric}",'] * weight

    def prefix(self, tag: str) -> str:
        return f"{tag}{self.catalog.run}-"

    def _events(self, tag: str, n: int) -> Iterator[str]:
        rng = self.rng
        now_ms = int(time.time() * 1000)
        prefix = self.prefix(tag)
        heads = self._heads
        for _ in range(n):
            self.seq += 1
            unique = f"{rng.getrandbits(64):016x}{self.seq:08x}" if self.random_ids else f"{self.seq:09d}"
            yield (
                f'{{"eventId":"{prefix}{unique}","timestamp":'
                f"{now_ms - int(rng.random() * 7_200_000)},{heads[int(rng.random() * len(heads))]}"
                f'"quantity":{int(rng.random() * 5000) / 100},'
                f'"dimensions":{{"region":"{REGIONS[self.seq & 3]}","tier":"pro"}},'
                f'"metadata":{{"source":"bench","version":"1"}}}}'
            )

    def batch(self, tag: str, n: int) -> bytes:
        return ('{"events":[' + ",".join(self._events(tag, n)) + "]}").encode()

    def single(self, tag: str) -> bytes:
        return next(self._events(tag, 1)).encode()


class _Answer(msgspec.Struct):
    accepted: int
    duplicates: int
    rejected: list[Any]


_decode_answer = msgspec.json.Decoder(_Answer).decode


@dataclass(slots=True)
class LoadStats:
    """What the load generator saw during one phase."""

    started_wall: float = 0.0
    ended_wall: float = 0.0
    started_mono: float = 0.0
    requests: int = 0
    events_sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    sample_errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (t since start, accepted)
    late_sends: int = 0
    extra_connections: int = 0
    loadgen_cpu_s: float = 0.0
    _cpu0: float = 0.0

    @property
    def elapsed(self) -> float:
        return self.ended_wall - self.started_wall

    def begin(self) -> None:
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        self._cpu0 = time.process_time()

    def end(self) -> None:
        self.ended_wall = time.time()
        self.loadgen_cpu_s = time.process_time() - self._cpu0


async def send(
    conn: HttpConnection,
    path: str,
    body: bytes,
    events: int,
    stats: LoadStats,
    give_up_at: float,
    since: float | None = None,
) -> None:
    """One request; a 503 is retried (as a client must) until `give_up_at`. Latency runs
    from `since` (perf_counter) when given: an open loop's scheduled moment, so time spent
    waiting for a connection counts, as it would for a client."""
    while True:
        started = time.perf_counter() if since is None else since
        try:
            status, payload = await conn.post(path, body)
        except Exception as exc:  # connection trouble: counted as status 0, retried
            stats.statuses[0] += 1
            if len(stats.sample_errors) < 3:
                stats.sample_errors.append(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.1)
            if time.monotonic() > give_up_at:
                return
            continue
        latency = time.perf_counter() - started
        stats.requests += 1
        stats.statuses[status] += 1
        if status == 202:
            answer = _decode_answer(payload)
            stats.events_sent += events
            stats.accepted += answer.accepted
            stats.duplicates += answer.duplicates
            stats.rejected += len(answer.rejected)
            if answer.rejected and len(stats.sample_errors) < 3:
                stats.sample_errors.append(f"rejected: {answer.rejected[:2]}")
            stats.latencies.append(latency)
            stats.timeline.append((time.monotonic() - stats.started_mono, answer.accepted))
            return
        if len(stats.sample_errors) < 3:
            stats.sample_errors.append(f"{status}: {payload[:300]!r}")
        if status == 503 and time.monotonic() < give_up_at:
            await asyncio.sleep(0.2)
            continue
        return


async def open_connections(ports: list[int], key: str, n: int) -> list[HttpConnection]:
    """`n` keep-alive connections, spread round-robin over `ports`.

    Opened one by one, 20 ms apart: uvicorn's worker processes share one listening
    socket and each accepts every connection pending when it wakes, so connections
    opened at once all land on one process."""
    conns = []
    for i in range(n):
        conn = HttpConnection("127.0.0.1", ports[i % len(ports)], {"Authorization": f"Bearer {key}"})
        await conn.connect()
        conns.append(conn)
        await asyncio.sleep(0.02)
    return conns


async def closed_loop(
    conns: list[HttpConnection],
    path: str,
    make_body: Callable[[], bytes],
    events_per_body: int,
    duration: float,
    stats: LoadStats,
) -> None:
    """Each connection sends its next request as soon as the previous one is answered."""
    stats.begin()
    deadline = time.monotonic() + duration

    async def run(conn: HttpConnection) -> None:
        while time.monotonic() < deadline:
            await send(conn, path, make_body(), events_per_body, stats, deadline + 30)

    await asyncio.gather(*(run(c) for c in conns))
    stats.end()


async def open_loop(
    ports: list[int],
    key: str,
    make_body: Callable[[], bytes],
    events_per_body: int,
    rate: float,
    duration: float,
    stats: LoadStats,
    path: str = BATCH_PATH,
    max_connections: int = 512,
) -> None:
    """Requests on a fixed schedule (`rate` events/s) whatever the answers take; a free
    connection is taken from a pool, or a new one opened if all are busy (up to
    `max_connections`; beyond that a request waits for one). Each request's latency runs
    from its scheduled moment, so a fixed `rate` of single events gives the latency a client
    sees at that load, waiting included, rather than at saturation."""
    pool: list[HttpConnection] = await open_connections(ports, key, 4)
    opened = len(pool)
    freed = asyncio.Condition()
    interval = events_per_body / rate
    tasks: set[asyncio.Task[None]] = set()

    async def fire(body: bytes, scheduled: float) -> None:
        nonlocal opened
        async with freed:
            if not pool and opened >= max_connections:
                await freed.wait_for(lambda: bool(pool))
            if pool:
                conn = pool.pop()
            else:
                opened += 1
                stats.extra_connections += 1
                port = ports[stats.extra_connections % len(ports)]
                conn = HttpConnection("127.0.0.1", port, {"Authorization": f"Bearer {key}"})
        try:
            await send(conn, path, body, events_per_body, stats, time.monotonic() + 30, since=scheduled)
        finally:
            async with freed:
                pool.append(conn)
                freed.notify()

    stats.begin()
    start = time.monotonic()
    start_perf = time.perf_counter()
    k = 0
    while start + k * interval < start + duration:
        body = make_body()
        delay = start + k * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -interval:
            stats.late_sends += 1
        task = asyncio.create_task(fire(body, start_perf + k * interval))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        k += 1
    await asyncio.gather(*tasks)
    stats.end()
    await asyncio.gather(*(c.close() for c in pool))
