"""Lago's events API at `POST /api/v1/events` and `POST /api/v1/events/batch`."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from tests.compat.conftest import counted
from tests.conftest import WorkerProcess
from tests.factories import auth


def lago_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "transaction_id": uuid.uuid4().hex,
        "external_subscription_id": "acme",
        "code": "tokens",
        "timestamp": time.time(),
        "properties": {"value": 5, "model": "gpt"},
    }
    event.update(overrides)
    return event


async def test_single_and_batch_are_counted_exactly_and_a_duplicate_once(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    one = lago_event(timestamp=str(int(time.time())), properties={"value": "1.25", "model": "gpt"})
    response = await client.post("/api/v1/events", json={"event": one}, headers=auth(ingest_key))
    assert response.status_code == 200, response.text
    echoed = response.json()["event"]
    assert echoed["transaction_id"] == one["transaction_id"] and echoed["code"] == "tokens"
    assert echoed["external_subscription_id"] == "acme"
    batch = [lago_event(properties={"value": v}) for v in (2, 3)]
    batch.append(
        lago_event(code="requests", external_subscription_id=None, external_customer_id="acme", properties={})
    )
    response = await client.post("/api/v1/events/batch", json={"events": batch}, headers=auth(ingest_key))
    assert response.status_code == 200, response.text
    assert [e["transaction_id"] for e in response.json()["events"]] == [e["transaction_id"] for e in batch]
    # Retries: duplicates are answered as success and counted once.
    assert (
        await client.post("/api/v1/events", json={"event": one}, headers=auth(ingest_key))
    ).status_code == 200
    assert (
        await client.post("/api/v1/events/batch", json={"events": batch}, headers=auth(ingest_key))
    ).status_code == 200
    assert await counted(pg, redis) == (4, "7.25")


async def test_invalid_event_is_a_422_and_nothing_is_counted(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    response = await client.post(
        "/api/v1/events", json={"event": lago_event(code="nope")}, headers=auth(ingest_key)
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["status"] == 422 and body["error"] == "Unprocessable Entity"
    assert body["code"] == "validation_errors" and "code" in body["error_details"]
    batch = [lago_event(), lago_event(transaction_id=None), lago_event(external_subscription_id="x")]
    response = await client.post("/api/v1/events/batch", json={"events": batch}, headers=auth(ingest_key))
    assert response.status_code == 422, response.text
    details = response.json()["error_details"]
    assert details == {
        "1": {"transaction_id": ["value_is_mandatory"]},
        "2": {"external_subscription_id": [details["2"]["external_subscription_id"][0]]},
    }
    # The same transaction id with other content is refused, as Lago does.
    first = lago_event()
    assert (
        await client.post("/api/v1/events", json={"event": first}, headers=auth(ingest_key))
    ).status_code == 200
    response = await client.post(
        "/api/v1/events", json={"event": {**first, "properties": {"value": 99}}}, headers=auth(ingest_key)
    )
    assert response.status_code == 422
    assert response.json()["error_details"] == {"transaction_id": ["value_already_exist"]}
    assert await counted(pg, redis) == (1, "5")


async def test_without_a_key_401(client: AsyncTestClient[Any], catalog: None) -> None:
    response = await client.post("/api/v1/events/batch", json={"events": [lago_event()]})
    assert response.status_code == 401
    assert response.json()["status"] == 401 and response.json()["error"] == "Unauthorized"
    response = await client.post("/api/v1/events", json={"event": lago_event()})
    assert response.status_code == 401 and response.json()["error"] == "Unauthorized"


async def test_field_name_mapping_and_a_reused_id_in_a_batch(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORTAL_LAGO_MAPPING", json.dumps({"tokens": {"value": "total"}}))
    first = lago_event(properties={"total": "6", "model": "gpt"})
    response = await client.post("/api/v1/events", json={"event": first}, headers=auth(ingest_key))
    assert response.status_code == 200, response.text
    # A batch with a new event and a reused transaction id: the reuse is found at hand-off,
    # after the new event was counted; the 422 names it.
    reused = {**first, "properties": {"total": "60"}}
    fresh = lago_event(properties={"total": "1"})
    response = await client.post(
        "/api/v1/events/batch", json={"events": [fresh, reused]}, headers=auth(ingest_key)
    )
    assert response.status_code == 422, response.text
    assert response.json()["error_details"] == {"1": {"transaction_id": ["value_already_exist"]}}
    assert await counted(pg, redis) == (2, "7")
    row = await pg.fetchrow("SELECT dimensions FROM usage_events WHERE quantity = 6")
    assert row is not None and json.loads(row[0]) == {"model": "gpt"}
