"""`UsageClient.check`, `cancel` and `amend` against the real server process: the check flips
with what the same client recorded, a cached answer says its age, no answer raises, and a
correction changes the totals once."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request
from decimal import Decimal

import asyncpg
import pytest
from redis.asyncio import Redis

from portal.client import AsyncUsageClient, Correction, CorrectionRefused, EntitlementUnavailable, UsageClient
from tests.client.conftest import ServerProcess
from tests.conftest import WorkerProcess, wait_until_persisted

pytestmark = pytest.mark.usefixtures("catalog")


def set_limit(base_url: str, key: str, limit: str) -> None:
    body = {"limits": [{"meter": "api_calls", "limit": limit, "enforcement": "hard"}]}
    request = urllib.request.Request(
        base_url + "/v1/customers/acme/limits",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


async def test_check_flips_at_the_limit_and_caches_briefly(
    server: ServerProcess, admin_key: str, ingest_key: str, worker: WorkerProcess
) -> None:
    set_limit(server.url, admin_key, "10")
    fresh = UsageClient(server.url, ingest_key, check_cache_seconds=0, flush_interval=60)
    cached = UsageClient(server.url, ingest_key, check_cache_seconds=60, flush_interval=60)
    try:
        first = fresh.check("acme", "api_calls")
        assert (first.allowed, first.used, first.limit, first.remaining, first.cached) == (
            True,
            Decimal(0),
            Decimal(10),
            Decimal(10),
            False,
        )
        assert first.lag_ms == 0 and first.period_start is not None
        assert cached.check("acme", "api_calls").cached is False
        for _ in range(9):
            fresh.record("acme", "api_calls", Decimal("1.0"))
        fresh.flush()
        nine = fresh.check("acme", "api_calls", quantity=1)
        assert (nine.allowed, nine.used, nine.remaining) == (True, Decimal(9), Decimal(1))
        assert fresh.check("acme", "api_calls", quantity="1.5").allowed is False
        fresh.record("acme", "api_calls", 1)
        fresh.flush()
        ten = fresh.check("acme", "api_calls")
        assert (ten.allowed, ten.used, ten.remaining, ten.exceeded) == (False, Decimal(10), Decimal(0), True)
        # The cached client still holds its first answer, and says how old it is.
        stale = cached.check("acme", "api_calls")
        assert (stale.cached, stale.allowed, stale.used) == (True, True, Decimal(0))
        assert stale.lag_ms > 0
        (many,) = cached.check_many([("acme", "api_calls", 10)])
        assert (many.cached, many.allowed, many.used) == (False, False, Decimal(10))
        # More questions than the portal takes in one request (10,000): asked in two
        lots = fresh.check_many([("acme", "api_calls", q) for q in range(10_001)])
        assert len(lots) == 10_001 and {(a.used, a.error) for a in lots} == {(Decimal(10), None)}
        async with AsyncUsageClient(server.url, ingest_key) as aio:
            assert (await aio.check("acme", "api_calls")).allowed is False
            (unknown,) = await aio.check_many([("nobody", "api_calls", None)])
            assert (unknown.allowed, unknown.error) == (False, "unknown customer 'nobody'")
    finally:
        fresh.close()
        cached.close()


def test_no_answer_raises_entitlement_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = UsageClient(f"http://127.0.0.1:{port}", "key", flush_interval=60, timeout=1)
    try:
        with pytest.raises(EntitlementUnavailable):
            client.check("acme", "api_calls")
    finally:
        client.close()


async def test_a_cancel_right_after_flush_waits_until_the_event_is_recorded(
    server: ServerProcess, ingest_key: str, own_worker: WorkerProcess, pg: asyncpg.Connection
) -> None:
    """docs/client.md: flush, then cancel. With no worker recording the event yet, the
    portal answers 409 "not recorded yet" with Retry-After; the client asks again as told
    (it had raised CorrectionRefused at once), and the cancel lands once the event is in."""
    own_worker.stop()
    client = UsageClient(server.url, ingest_key, flush_interval=60)
    try:
        wrong = client.record("acme", "api_calls", Decimal("40"))
        client.flush()
        request = urllib.request.Request(
            f"{server.url}/v1/events/{wrong}/cancel",
            data=json.dumps({"customerId": "acme", "reason": "x"}).encode(),
            headers={"Authorization": f"Bearer {ingest_key}", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as not_yet:
            await asyncio.to_thread(urllib.request.urlopen, request, timeout=10)
        assert not_yet.value.code == 409 and not_yet.value.headers["Retry-After"] == "1"
        assert "not recorded yet" in not_yet.value.read().decode()

        answers: list[object] = []
        waiting = threading.Thread(target=lambda: answers.append(client.cancel("acme", wrong, "load test")))
        waiting.start()
        await asyncio.sleep(1.5)
        assert answers == []  # still asking
        own_worker.start()
        await asyncio.to_thread(waiting.join, 40)
        assert not waiting.is_alive()
        [cancelled] = answers
        assert isinstance(cancelled, Correction) and cancelled.quantity_before == Decimal(40)
    finally:
        client.close()
    assert await pg.fetchval("SELECT count(*) FROM event_corrections") == 1


async def test_cancel_and_amend_through_the_client(
    server: ServerProcess, ingest_key: str, worker: WorkerProcess, redis: Redis, pg: asyncpg.Connection
) -> None:
    client = UsageClient(server.url, ingest_key, flush_interval=60)
    try:
        wrong = client.record("acme", "api_calls", Decimal("40"))
        typo = client.record("acme", "api_calls", Decimal("3"))
        client.flush()
        await wait_until_persisted(redis)
        cancelled = client.cancel("acme", wrong, "sent by the load test")
        assert (cancelled.kind, cancelled.quantity_before, cancelled.quantity_after) == (
            "cancel",
            Decimal(40),
            None,
        )
        amended = client.amend("acme", typo, Decimal("3.5"), "rounding bug")
        assert (amended.quantity_before, amended.quantity_after) == (Decimal(3), Decimal("3.5"))
        assert client.check("acme", "api_calls").used == Decimal("3.5")
        with pytest.raises(CorrectionRefused) as refused:
            client.cancel("acme", wrong, "again")
        assert refused.value.status == 409 and "cancelled already" in refused.value.detail
        with pytest.raises(CorrectionRefused) as unknown:
            client.cancel("acme", "never/sent?", "x")
        assert unknown.value.status == 404
    finally:
        client.close()
    assert await pg.fetchval("SELECT sum(value) FROM hourly_usage") == Decimal("3.5")
