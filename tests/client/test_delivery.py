"""The client against the real server (uvicorn in a subprocess, a real worker, Postgres):
exact counts in `usage_events` after size and interval flushes, a server restart, a slow
server, 503s, a killed process with a spool, rejections and a refused key."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from portal.client import (
    AsyncUsageClient,
    AuthenticationError,
    DeliveryError,
    EventRejected,
    RetryPolicy,
    UsageClient,
    UsageClientError,
)
from tests.client.conftest import Canned, FaultProxy, Forward, ServerProcess, distinct_ids, usage_totals
from tests.conftest import ROOT, WorkerProcess, wait_until_persisted

pytestmark = pytest.mark.usefixtures("catalog")

FAST = RetryPolicy(base=0.05, cap=0.5, max_attempts=None, max_elapsed=90)


async def wait_for_stats(client: UsageClient | AsyncUsageClient, done: int, timeout: float = 30.0) -> None:
    """Poll until the server answered for `done` events (no flush called)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = client.stats
        if stats.sent + stats.duplicates + stats.rejected >= done:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the client answered for {client.stats} of {done} events")


async def persisted(pg: asyncpg.Connection, redis: Redis, expected: int) -> tuple[int, str]:
    """Totals once the server has persisted everything it accepted."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        await wait_until_persisted(redis)
        totals = await usage_totals(pg)
        if totals[0] >= expected:
            break
        await asyncio.sleep(0.1)
    return await usage_totals(pg)


# -- (1) size and interval -------------------------------------------------------------


async def test_records_flushed_by_size_and_interval_arrive_exactly(
    server: ServerProcess,
    ingest_key: str,
    worker: WorkerProcess,
    pg: asyncpg.Connection,
    redis: Redis,
) -> None:
    client = UsageClient(server.url, ingest_key, batch_size=50, flush_interval=0.2, retry=FAST)
    ids = [
        client.record("acme", "api_calls", Decimal("1.25"), dimensions={"region": "eu"}) for _ in range(237)
    ]
    # 4 batches go by size; the last 37 only by the interval (no flush, no close yet).
    await wait_for_stats(client, 237)
    stats = client.stats
    assert (stats.sent, stats.duplicates, stats.rejected, stats.buffered) == (237, 0, 0, 0)
    client.close()
    assert await persisted(pg, redis, 237) == (237, str(Decimal("1.25") * 237))
    assert await distinct_ids(pg) == 237
    assert set(ids) == {r["event_id"] for r in await pg.fetch("SELECT event_id FROM usage_events")}


async def test_a_full_batch_larger_than_the_portal_takes_is_split_before_it_is_sent(
    server: ServerProcess,
    ingest_key: str,
    worker: WorkerProcess,
    pg: asyncpg.Connection,
    redis: Redis,
) -> None:
    """1,000 valid events of ~5.4 KB each (20 dimensions of 256 characters) come to more
    than the 5 MiB a batch may have. The portal answers 413 before reading such a body and
    closes the connection, which urllib sees as a reset, not a 413: the client split
    nothing then and retried the same batch for ever, holding back every later event."""
    client = UsageClient(server.url, ingest_key, flush_interval=0.2, retry=FAST)
    wide = {f"d{k:02d}": chr(ord("a") + k) * 256 for k in range(20)}
    for _ in range(1000):
        client.record("acme", "api_calls", 2, dimensions=wide)
    client.record("acme", "api_calls", Decimal("0.5"))  # behind them in the buffer
    client.flush()
    stats = client.stats
    assert (stats.sent, stats.rejected, stats.buffered) == (1001, 0, 0)
    assert stats.retried == 0  # nothing was sent that the portal had to refuse
    client.close()
    assert await persisted(pg, redis, 1001) == (1001, "2000.5")


async def test_async_client_flushes_by_size_and_interval(
    server: ServerProcess,
    ingest_key: str,
    worker: WorkerProcess,
    pg: asyncpg.Connection,
    redis: Redis,
) -> None:
    async with AsyncUsageClient(
        server.url, ingest_key, batch_size=40, flush_interval=0.2, retry=FAST
    ) as client:
        for i in range(130):
            client.record("acme", "api_calls", str(i % 3), timestamp=int(time.time() * 1000))
        await wait_for_stats(client, 130)
        assert client.stats.sent == 130
    assert await persisted(pg, redis, 130) == (130, str(sum(i % 3 for i in range(130))))


# -- (2) server restart ----------------------------------------------------------------


async def test_server_restarted_mid_stream_gets_every_event_once(
    server: ServerProcess,
    ingest_key: str,
    worker: WorkerProcess,
    pg: asyncpg.Connection,
    redis: Redis,
) -> None:
    client = UsageClient(server.url, ingest_key, batch_size=25, flush_interval=0.1, retry=FAST, timeout=2)
    for _ in range(150):
        client.record("acme", "api_calls", 1)
    await asyncio.to_thread(server.stop)
    for _ in range(150):  # the server is down: these wait (and batches are retried)
        client.record("acme", "api_calls", 2)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(server.start)
    await asyncio.to_thread(client.close)
    stats = client.stats
    assert stats.sent + stats.duplicates == 300 and stats.rejected == 0 and stats.buffered == 0
    assert stats.retried >= 1  # batches met the stopped server
    assert await persisted(pg, redis, 300) == (300, "450")
    assert await distinct_ids(pg) == 300


# -- (3) a slow server -------------------------------------------------------------------


async def test_a_server_slower_than_the_timeout_gets_a_resend_that_is_a_duplicate(
    proxy: FaultProxy,
    ingest_key: str,
    worker: WorkerProcess,
    pg: asyncpg.Connection,
    redis: Redis,
) -> None:
    second = threading.Event()

    def plan(n: int) -> Canned | Forward:
        if n == 0:
            return Forward(hold=second)  # the server has the batch; its answer comes too late
        second.set()
        return Forward()

    proxy.plan = plan
    client = UsageClient(proxy.url, ingest_key, flush_interval=3600, retry=FAST, timeout=0.5)
    for _ in range(40):
        client.record("acme", "api_calls", 3)
    await asyncio.to_thread(client.flush)
    stats = client.stats
    assert stats.retried >= 1
    assert (stats.sent, stats.duplicates, stats.buffered) == (0, 40, 0)
    assert proxy.forwarded >= 2
    await asyncio.to_thread(client.close)
    assert await persisted(pg, redis, 40) == (40, "120")


# -- (4) 503 for a while -----------------------------------------------------------------


async def test_503_and_429_for_a_while_then_success(
    proxy: FaultProxy,
    ingest_key: str,
    worker: WorkerProcess,
    pg: asyncpg.Connection,
    redis: Redis,
) -> None:
    answers = [Canned(503, retry_after="0"), Canned(429, retry_after="0"), Canned(500), Canned(503)]
    proxy.plan = lambda n: answers[n] if n < len(answers) else Forward()
    client = UsageClient(proxy.url, ingest_key, flush_interval=3600, retry=FAST)
    for _ in range(25):
        client.record("acme", "api_calls", 1)
    await asyncio.to_thread(client.flush)
    stats = client.stats
    assert (stats.sent, stats.retried, stats.duplicates) == (25, 4, 0)
    assert proxy.requests == 5 and proxy.forwarded == 1
    client.close()
    assert await persisted(pg, redis, 25) == (25, "25")


async def test_retry_budget_spent_then_the_next_flush_delivers(
    proxy: FaultProxy,
    ingest_key: str,
    worker: WorkerProcess,
    pg: asyncpg.Connection,
    redis: Redis,
) -> None:
    down = True
    proxy.plan = lambda n: Canned(503, retry_after="0") if down else Forward()
    client = UsageClient(
        proxy.url, ingest_key, flush_interval=3600, retry=RetryPolicy(base=0.01, cap=0.05, max_attempts=3)
    )
    for _ in range(10):
        client.record("acme", "api_calls", 1)
    with pytest.raises(DeliveryError):
        await asyncio.to_thread(client.flush)
    assert proxy.requests == 3 and client.stats.buffered == 10
    down = False
    await asyncio.to_thread(client.close)
    assert client.stats.sent == 10
    assert await persisted(pg, redis, 10) == (10, "10")


# -- (5) a killed process with a spool -----------------------------------------------------

RECORDER = textwrap.dedent("""
    import sys, time
    from portal.client import UsageClient, RetryPolicy
    url, key, spool, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    client = UsageClient(url, key, batch_size=100, flush_interval=3600, spool_path=spool,
                         retry=RetryPolicy(base=0.05, cap=0.5))
    for i in range(count):
        client.record("acme", "api_calls", 1, dimensions={"n": str(i)})
    print("recorded", flush=True)
    time.sleep(3600)
""")


def record_then_die(command: list[str]) -> bytes:
    """Run the recorder until it says it recorded everything, then SIGKILL it."""
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stdout.close()
    return line


async def test_a_killed_process_resends_its_spool_after_restart(
    server: ServerProcess,
    ingest_key: str,
    worker: WorkerProcess,
    pg: asyncpg.Connection,
    redis: Redis,
    tmp_path: Path,
) -> None:
    spool = tmp_path / "usage.spool"
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    # Full batches may be sent (or in flight) when it dies; 50 or more are not.
    assert (
        await asyncio.to_thread(
            record_then_die, [sys.executable, str(script), server.url, ingest_key, str(spool), "250"]
        )
        == b"recorded"
    )

    client = UsageClient(server.url, ingest_key, flush_interval=3600, spool_path=spool, retry=FAST)
    loaded = client.stats.buffered
    assert 50 <= loaded <= 250
    await asyncio.to_thread(client.close)
    stats = client.stats
    assert stats.sent + stats.duplicates == loaded and stats.buffered == 0
    assert spool.read_text() == ""
    assert await persisted(pg, redis, 250) == (250, "250")
    assert await distinct_ids(pg) == 250


EXITER = textwrap.dedent("""
    import sys
    from portal.client import UsageClient
    client = UsageClient(sys.argv[1], sys.argv[2], flush_interval=3600)
    for i in range(7):
        client.record("acme", "api_calls", 1)
    print("recorded", flush=True)
""")


async def test_events_buffered_at_interpreter_exit_are_sent(
    server: ServerProcess,
    ingest_key: str,
    worker: WorkerProcess,
    pg: asyncpg.Connection,
    redis: Redis,
    tmp_path: Path,
) -> None:
    script = tmp_path / "exiter.py"
    script.write_text(EXITER)
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script), server.url, ingest_key],
        cwd=ROOT,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert await persisted(pg, redis, 7) == (7, "7")


# -- (6) validation errors -------------------------------------------------------------------


async def test_rejected_events_go_to_on_error_and_are_not_retried(
    proxy: FaultProxy,
    ingest_key: str,
    worker: WorkerProcess,
    pg: asyncpg.Connection,
    redis: Redis,
) -> None:
    errors: list[tuple[dict[str, Any], UsageClientError]] = []
    client = UsageClient(
        proxy.url,
        ingest_key,
        flush_interval=3600,
        retry=FAST,
        on_error=lambda event, error: errors.append((event, error)),
    )
    good = [client.record("acme", "api_calls", 2) for _ in range(3)]
    unknown = client.record("acme", "nope", 1)
    too_old = client.record("acme", "api_calls", 1, timestamp="2001-01-01T00:00:00Z")
    await asyncio.to_thread(client.flush)  # 202 with two rejections
    only_bad = client.record("ghost", "api_calls", 1)
    await asyncio.to_thread(client.flush)  # 422: every event rejected
    client.close()
    assert proxy.requests == 2
    assert [event["eventId"] for event, _ in errors] == [unknown, too_old, only_bad]
    assert all(isinstance(error, EventRejected) for _, error in errors)
    assert "unknown meter" in str(errors[0][1]) and "customer" in str(errors[2][1])
    stats = client.stats
    assert (stats.sent, stats.rejected, stats.retried, stats.buffered) == (3, 3, 0, 0)
    assert await persisted(pg, redis, 3) == (3, "6")
    assert {r["event_id"] for r in await pg.fetch("SELECT event_id FROM usage_events")} == set(good)


# -- (7) a refused key -------------------------------------------------------------------------


async def test_a_refused_key_is_reported_and_not_retried(proxy: FaultProxy) -> None:
    client = UsageClient(proxy.url, "not-a-key", flush_interval=3600, retry=FAST)
    client.record("acme", "api_calls", 1)
    with pytest.raises(AuthenticationError) as raised:
        await asyncio.to_thread(client.flush)
    assert raised.value.status in (401, 403)
    with pytest.raises(AuthenticationError):
        client.record("acme", "api_calls", 1)
    with pytest.raises(AuthenticationError):
        client.close()
    assert proxy.requests == 1
    assert client.stats.retried == 0 and client.stats.buffered == 1
