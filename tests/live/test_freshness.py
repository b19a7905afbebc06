"""`completeThrough` tells the truth: every event accepted before it is in Postgres; and
live keys outlive every read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.infrastructure.redis_client import keys_matching
from portal.infrastructure.settings import Settings
from portal.live import redis_keys as live_keys
from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter


def _at(answer: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(answer["completeThrough"]).replace("Z", "+00:00"))


async def test_complete_through_waits_for_unpersisted_batches(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    redis: Redis,
    settings: Settings,
) -> None:
    from tests.conftest import RUNNING_WORKERS

    for running in RUNNING_WORKERS:
        running.stop()  # nothing persists while no worker runs
    await make_customer(client, admin_key)
    await make_meter(client, admin_key)
    response = await client.post("/v1/events", headers=auth(ingest_key), json=event(quantity=3))
    assert response.status_code == 202
    [(_, accepted_ms)] = await redis.zrange(live_keys.INFLIGHT_KEY, 0, -1, withscores=True)
    url = "/v1/customers/acme/usage"
    params = {"metric": "api_calls", "source": "billed"}
    pending = (await client.get(url, headers=auth(admin_key), params=params)).json()
    assert pending["total"] == "0"
    assert _at(pending).timestamp() * 1000 <= accepted_ms  # the batch is not complete yet

    worker = WorkerProcess(settings)
    worker.start()
    try:
        await wait_until_persisted(redis)
    finally:
        worker.stop()
    done = (await client.get(url, headers=auth(admin_key), params=params)).json()
    assert done["total"] == "3"
    assert _at(done).timestamp() * 1000 > accepted_ms


async def test_live_keys_outlive_every_read(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    settings: Settings,
) -> None:
    await make_customer(client, admin_key)
    await make_meter(client, admin_key, metric="seats", aggregation="unique_count", unique_by="user")
    await client.post(
        "/v1/events", headers=auth(ingest_key), json=event(metric="seats", dimensions={"user": "ann"})
    )
    await wait_until_persisted(redis)
    horizon = live_keys.live_horizon(settings.accepted_lateness).total_seconds()
    counted = await keys_matching(redis, "lu:*") + await keys_matching(redis, "ls:*")
    assert len(counted) == 2
    for key in counted:
        ttl = await redis.ttl(key)
        # Expiry is anchored to the hour's start, so at most an hour of it has passed.
        assert horizon - 3600 - 60 <= ttl <= horizon, key
    # Markers are kept one to two marker windows, not for the lateness window.
    markers = await keys_matching(redis, "ld:*")
    assert len(markers) == 1
    # The hash of the window the event fell in expires at the end of the window after it: one
    # to two windows after it was written (read from the key's own slot, so it holds however
    # close to a window's end the test runs).
    window = int(settings.dedup_marker_window.total_seconds())
    slot = int(markers[0].rsplit(":", 1)[1])
    expire_at = await redis.expiretime(markers[0])
    assert expire_at == live_keys.markers_expire_at(slot, settings.dedup_marker_window)
    assert expire_at - slot * window == 2 * window
