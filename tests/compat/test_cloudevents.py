"""OpenMeter's CloudEvents ingest at `POST /api/v1/events`."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from tests.compat.conftest import counted
from tests.conftest import WorkerProcess
from tests.factories import auth

CE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


def cloudevent(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "source": "tests",
        "type": "tokens",
        "subject": "acme",
        "data": {"value": 10, "model": "gpt"},
    }
    event.update(overrides)
    return event


async def post(client: AsyncTestClient[Any], body: Any, media: str, key: str | None) -> Any:
    headers = {"Content-Type": media, **(auth(key) if key else {})}
    return await client.post("/api/v1/events", content=json.dumps(body), headers=headers)


async def test_single_and_batch_are_counted_exactly_and_a_duplicate_once(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    one = cloudevent(data={"value": "2.5", "model": "gpt"}, time="2026-01-01T00:00:00Z")
    one.pop("time")  # default: now
    response = await post(client, one, CE, ingest_key)
    assert response.status_code == 204, response.text
    assert response.content == b""
    batch = [cloudevent(data={"value": v, "model": "gpt"}) for v in (1, 2, 3)]
    batch.append(cloudevent(type="requests", data=None))  # a count meter needs no value
    response = await post(client, batch, BATCH, ingest_key)
    assert response.status_code == 204, response.text
    # A retry of the single event, and the batch again: duplicates, counted once.
    assert (await post(client, one, CE, ingest_key)).status_code == 204
    assert (await post(client, batch, BATCH, ingest_key)).status_code == 204
    # Plain JSON that is a CloudEvent is accepted too (OpenMeter's JSON ingest).
    response = await post(client, cloudevent(data={"value": 4}), "application/json", ingest_key)
    assert response.status_code == 204, response.text
    assert await counted(pg, redis) == (6, "13.5")
    row = await pg.fetchrow("SELECT dimensions FROM usage_events WHERE quantity = 3")
    assert row is not None and json.loads(row[0]) == {"model": "gpt"}


async def test_invalid_event_is_a_problem_and_nothing_is_counted(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    good = cloudevent()
    for bad, field in (
        (cloudevent(subject="nobody"), "subject"),
        (cloudevent(type="unknown_meter"), "type"),
        (cloudevent(data={"model": "gpt"}), "data"),
        (cloudevent(subject=None), "subject"),
    ):
        response = await post(client, [good, bad], BATCH, ingest_key)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 400 and problem["title"] == "Bad Request"
        assert problem["errors"][0]["index"] == 1 and problem["errors"][0]["field"] == field
    response = await post(client, cloudevent(subject="nobody"), CE, ingest_key)
    assert response.status_code == 400
    assert response.json()["type"] == "about:blank"
    assert await counted(pg, redis) == (0, "0")


async def test_without_a_key_401_problem(client: AsyncTestClient[Any], catalog: None) -> None:
    response = await post(client, cloudevent(), CE, None)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["status"] == 401
    response = await post(client, cloudevent(), CE, "not-a-key")
    assert response.status_code == 401


async def test_configured_value_and_dimension_paths(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "PORTAL_CLOUDEVENTS_MAPPING",
        json.dumps({"tokens": {"value": "$.usage.total", "dimensions": {"model": "$.meta.model"}}}),
    )
    event = cloudevent(data={"usage": {"total": 42}, "meta": {"model": "claude"}, "value": 1})
    response = await post(client, event, CE, ingest_key)
    assert response.status_code == 204, response.text
    missing = cloudevent(data={"value": 1})  # the configured path is absent
    response = await post(client, missing, CE, ingest_key)
    assert response.status_code == 400 and "usage.total" in response.json()["detail"]
    assert await counted(pg, redis) == (1, "42")
    row = await pg.fetchrow("SELECT dimensions FROM usage_events")
    assert row is not None and json.loads(row[0]) == {"model": "claude"}
