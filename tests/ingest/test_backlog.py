"""The persist backlog's bound (portal/ingest/backlog.py): with the worker stopped, accepted
events pile up in the real broker; at the bound, ingest holds requests back, then refuses
them with a 503 and Retry-After having counted nothing, and takes them again once the worker
has caught up. Run on the Redis broker here and on RabbitMQ in tests/rabbitmq."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.ingest.backlog import BacklogFull, PersistBacklog, redis_broker_messages
from tests.conftest import WorkerProcess, wait_for, wait_until_persisted
from tests.factories import auth, event, usage_totals
from tests.ingest.test_pipeline import catalog

__all__ = ["catalog"]


def batch(quantity: int, size: int = 1000) -> dict[str, Any]:
    return {"events": [event(quantity=quantity) for _ in range(size)]}


@pytest.fixture
def bounded(client: AsyncTestClient[Any]) -> Iterator[PersistBacklog]:
    """This app's backlog, bounded at 2,500 events (two and a half 1000-event batches),
    read every 50 ms, holding requests back for 0.3 s."""
    backlog = client.app.state.portal.ingestor.backlog
    assert backlog is not None
    saved = (backlog.limit_events, backlog.wait_s, backlog.poll_s)
    backlog.limit_events, backlog.wait_s, backlog.poll_s = 2500, 0.3, 0.05
    yield backlog
    backlog.limit_events, backlog.wait_s, backlog.poll_s = saved


async def test_at_its_bound_ingest_refuses_with_a_503_counts_nothing_and_takes_events_again_once_persisted(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    bounded: PersistBacklog,
) -> None:
    headers = auth(ingest_key)
    await _fill_to_the_bound(client, headers, worker, bounded, quantities=(1, 2, 3))

    refused = await client.post("/v1/events/batch", json=batch(4), headers=headers)
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "2"
    assert "persist backlog is full" in refused.json()["detail"]
    assert "nothing was accepted, retry later" in refused.json()["detail"]
    # A single event, the short way or the route's: the same refusal.
    single = await client.post("/v1/events", content=json.dumps(event(quantity=5)), headers=headers)
    assert single.status_code == 503 and "persist backlog is full" in single.json()["detail"]
    live = (
        await client.get("/v1/customers/acme/usage?metric=api_calls&source=live", headers=auth(admin_key))
    ).json()
    assert live["total"] == "6000"  # 1000 x (1 + 2 + 3): nothing of the refused requests

    worker.start()
    await wait_until_persisted(redis, timeout=60)
    await wait_for(lambda: _below(bounded), timeout=10, what="the backlog to drain")
    again = await client.post("/v1/events/batch", json=batch(4), headers=headers)
    assert again.status_code == 202 and again.json()["accepted"] == 1000
    await wait_until_persisted(redis, timeout=60)
    assert await usage_totals(client, admin_key) == {"live": "10000", "billed": "10000"}


async def test_a_request_held_back_at_the_bound_is_taken_once_the_worker_catches_up(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    bounded: PersistBacklog,
) -> None:
    headers = auth(ingest_key)
    await _fill_to_the_bound(client, headers, worker, bounded, quantities=(1, 1, 1))
    bounded.wait_s = 60.0  # long enough for a worker to start and catch up
    # The test client runs the app in its own thread and blocks this loop until it answers:
    # the worker starts from a timer thread while the request is held back.
    starter = threading.Timer(1.0, worker.start)
    starter.start()
    started = time.monotonic()
    answer = await client.post("/v1/events/batch", json=batch(2), headers=headers)
    starter.join()
    assert time.monotonic() - started >= 1.0  # held back, not refused, until the worker ran
    assert answer.status_code == 202 and answer.json()["accepted"] == 1000
    await wait_until_persisted(redis, timeout=60)
    assert await usage_totals(client, admin_key) == {"live": "5000", "billed": "5000"}


async def test_a_broker_that_cannot_be_read_leaves_ingest_unbounded() -> None:
    # Nothing listens on port 1: the hand-off will say the broker is down, not the bound.
    broker = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    backlog = PersistBacklog(redis_broker_messages(broker), limit_events=1, wait_s=5.0)
    try:
        await asyncio.wait_for(backlog.admit(), timeout=2)
        assert backlog.waiting_events == 0
    finally:
        await backlog.close()
        await broker.aclose()


def test_the_events_per_message_follow_the_messages_sent() -> None:
    async def never() -> int:
        raise AssertionError("not read")

    backlog = PersistBacklog(never, limit_events=10, wait_s=0.0)
    for _ in range(200):
        backlog.note_message(20)
    assert round(backlog.events_per_message) == 20
    backlog.note_message(0)  # an empty message teaches nothing
    assert round(backlog.events_per_message) == 20


async def _fill_to_the_bound(
    client: AsyncTestClient[Any],
    headers: dict[str, str],
    worker: WorkerProcess,
    bounded: PersistBacklog,
    *,
    quantities: tuple[int, ...],
) -> None:
    """With the worker stopped, a 1000-event batch per quantity, all taken and left in the
    broker, until this process has read a backlog at its bound."""
    worker.stop()
    for quantity in quantities:
        taken = await client.post("/v1/events/batch", json=batch(quantity), headers=headers)
        assert taken.status_code == 202 and taken.json()["accepted"] == 1000
    await wait_for(
        lambda: _at_least(bounded, bounded.limit_events), timeout=10, what="the backlog to be read"
    )


async def _at_least(backlog: PersistBacklog, events: int) -> bool:
    return backlog.waiting_events >= events


async def _below(backlog: PersistBacklog) -> bool:
    return backlog.waiting_events < backlog.limit_events


async def test_a_process_that_sent_nothing_yet_does_not_refuse_on_a_guess() -> None:
    # A web restarted while 1,000 small messages wait: it must not take them for 1,000,000
    # events (it refused at a fortieth of the bound, and a process that refuses sends no
    # message to learn from)
    async def thousand() -> int:
        return 1000

    backlog = PersistBacklog(thousand, limit_events=2500, wait_s=0.0)
    try:
        await backlog.admit()
        assert backlog.waiting_events == 1000  # one event a message until it knows better
        backlog.note_message(20)  # its first message is taken as it is
        assert backlog.events_per_message == 20
        with pytest.raises(BacklogFull):
            await backlog._read()  # 1,000 x 20 = 20,000 events now: over the bound
            await backlog.admit()
    finally:
        await backlog.close()
