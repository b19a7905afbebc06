"""Stripe's meter events at `POST /v1/billing/meter_events` (form-encoded)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from tests.compat.conftest import counted
from tests.conftest import WorkerProcess
from tests.factories import auth

PATH = "/v1/billing/meter_events"


def form(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_name": "tokens",
        "payload[stripe_customer_id]": "acme",
        "payload[value]": "7",
        "identifier": uuid.uuid4().hex,
        "timestamp": str(int(time.time())),
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def test_events_are_counted_exactly_and_a_duplicate_once(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    one = form(**{"payload[model]": "gpt"})
    response = await client.post(PATH, data=one, headers=auth(ingest_key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "billing.meter_event" and body["event_name"] == "tokens"
    assert body["identifier"] == one["identifier"] and body["livemode"] is False
    assert body["payload"] == {"stripe_customer_id": "acme", "value": "7", "model": "gpt"}
    assert body["timestamp"] == int(one["timestamp"])
    # A retry with the same identifier: 200, counted once.
    assert (await client.post(PATH, data=one, headers=auth(ingest_key))).status_code == 200
    # Without identifier or timestamp: one is generated, now is used.
    response = await client.post(
        PATH,
        data=form(identifier=None, timestamp=None, **{"payload[value]": "0.5"}),
        headers=auth(ingest_key),
    )
    assert response.status_code == 200, response.text
    assert response.json()["identifier"]
    assert await counted(pg, redis) == (2, "7.5")


async def test_invalid_event_is_a_400_and_nothing_is_counted(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    for bad, param in (
        (form(**{"payload[stripe_customer_id]": "nobody"}), "payload[stripe_customer_id]"),
        (form(**{"payload[value]": None}), "payload[value]"),
        (form(**{"payload[value]": "abc"}), "payload[value]"),
        (form(event_name="nope"), "event_name"),
        (form(timestamp=str(int(time.time()) - 90 * 86400)), "timestamp"),
    ):
        response = await client.post(PATH, data=bad, headers=auth(ingest_key))
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param, error
        assert error["message"]
    assert await counted(pg, redis) == (0, "0")


async def test_without_a_key_401(client: AsyncTestClient[Any], catalog: None) -> None:
    response = await client.post(PATH, data=form())
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
