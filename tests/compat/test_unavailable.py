"""When the ingestor cannot make events durable, every compat API answers 503 with
Retry-After, in its own error shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from portal.ingest.service import Ingestor, IngestUnavailable
from tests.compat.test_cloudevents import cloudevent
from tests.compat.test_lago import lago_event
from tests.compat.test_stripe import form
from tests.factories import auth


@pytest.fixture
def broker_down(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(self: Ingestor, raw_events: Any) -> Any:
        raise IngestUnavailable("the broker is unavailable")

    monkeypatch.setattr(Ingestor, "ingest", refuse)


async def test_503_in_each_shape(
    client: AsyncTestClient[Any], ingest_key: str, catalog: None, broker_down: None
) -> None:
    response = await client.post(
        "/api/v1/events",
        content=json.dumps(cloudevent()),
        headers={"Content-Type": "application/cloudevents+json", **auth(ingest_key)},
    )
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json()["status"] == 503 and response.json()["title"] == "Service Unavailable"

    response = await client.post(
        "/api/v1/events/batch", json={"events": [lago_event()]}, headers=auth(ingest_key)
    )
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json()["status"] == 503 and response.json()["error"] == "Service Unavailable"

    response = await client.post("/v1/billing/meter_events", data=form(), headers=auth(ingest_key))
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json()["error"]["type"] == "api_error"


async def test_openapi_schema_lists_the_compat_routes(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/events", "/api/v1/events/batch", "/v1/billing/meter_events"} <= set(paths)


async def test_garbage_key_is_401_on_every_route(client: AsyncTestClient[Any], catalog: None) -> None:
    for path in ("/api/v1/events", "/api/v1/events/batch", "/v1/billing/meter_events"):
        response = await client.post(path, content=b"{}", headers=auth("garbage"))
        assert response.status_code == 401, path
