from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter, usage_totals


async def test_event_flows_to_live_and_billed(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
) -> None:
    await make_customer(client, admin_key)
    await make_meter(client, admin_key)
    response = await client.post(
        "/v1/events/batch",
        headers=auth(ingest_key),
        json={"events": [event(quantity=2), event(quantity="3.5")]},
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    await wait_until_persisted(redis)
    assert await usage_totals(client, admin_key) == {"live": "5.5", "billed": "5.5"}


async def test_ingest_survives_redis_forgetting_its_scripts(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    redis: Redis,
) -> None:
    await make_customer(client, admin_key)
    await make_meter(client, admin_key)
    first = await client.post("/v1/events", headers=auth(ingest_key), json=event(quantity=1))
    assert first.status_code == 202
    await redis.script_flush()  # as after a Redis restart
    again = await client.post("/v1/events", headers=auth(ingest_key), json=event(quantity=2))
    assert again.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    live = await client.get(
        "/v1/customers/acme/usage", headers=auth(admin_key), params={"metric": "api_calls"}
    )
    assert live.json()["total"] == "3"
