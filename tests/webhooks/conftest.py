"""Webhook test data, built through the API: a customer on a flat plan with a closed period
ready for review, and an endpoint pointing at a local receiver."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.billing.conftest import ClosedPeriod, closed_period, create_plan, draft, month_of, subscribe
from tests.factories import auth, make_customer

FLAT = {
    "id": "flat",
    "name": "Flat",
    "currency": "USD",
    "charges": [{"key": "base", "model": "flat", "amount": "49.00", "description": "Platform fee"}],
}


async def closed_customer(client: AsyncTestClient[Any], key: str, customer: str = "acme") -> ClosedPeriod:
    """`customer` (Europe/Berlin) on plan flat (49.00 USD), its last period ready for review."""
    closed = closed_period("Europe/Berlin")
    await make_customer(client, key, id=customer, timezone=closed.tz, currency="USD")
    await create_plan(client, key, FLAT)
    await subscribe(
        client,
        key,
        customer,
        planId="flat",
        startDate=closed.start_date.isoformat(),
        anchorDay=closed.anchor_day,
    )
    return closed


async def draft_of(
    client: AsyncTestClient[Any], key: str, closed: ClosedPeriod, customer: str = "acme"
) -> dict[str, Any]:
    return await draft(client, key, customer, month_of(closed.period, closed.tz))


async def endpoint(client: AsyncTestClient[Any], key: str, url: str, types: list[str]) -> dict[str, Any]:
    response = await client.post(
        "/v1/webhook-endpoints",
        headers=auth(key),
        json={"url": url, "eventTypes": types, "description": "ERP"},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def events(client: AsyncTestClient[Any], key: str, **query: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/webhook-events", headers=auth(key), params=query)
    assert response.status_code == 200, response.text
    return list(response.json())


async def deliveries(client: AsyncTestClient[Any], key: str, **query: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/webhook-deliveries", headers=auth(key), params=query)
    assert response.status_code == 200, response.text
    return list(response.json())
