"""Small keyword-only builders for test data, through the real API."""

from __future__ import annotations

import time
import uuid
from typing import Any

from litestar.testing import AsyncTestClient


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def make_customer(
    client: AsyncTestClient[Any],
    key: str,
    *,
    id: str = "acme",
    name: str = "Acme Inc",
    timezone: str = "UTC",
    currency: str = "EUR",
) -> dict[str, Any]:
    response = await client.post(
        "/v1/customers",
        headers=auth(key),
        json={"id": id, "name": name, "timezone": timezone, "currency": currency},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def make_meter(
    client: AsyncTestClient[Any],
    key: str,
    *,
    metric: str = "api_calls",
    aggregation: str = "sum",
    unit: str = "call",
    group_by: list[str] | None = None,
    unique_by: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metricName": metric,
        "aggregation": aggregation,
        "unit": unit,
        "groupBy": group_by or [],
    }
    if unique_by:
        body["uniqueBy"] = unique_by
    response = await client.post("/v1/meters", headers=auth(key), json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def event(
    *,
    customer: str = "acme",
    metric: str = "api_calls",
    quantity: Any = 1,
    event_id: str | None = None,
    timestamp: Any = None,
    dimensions: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventId": event_id if event_id is not None else uuid.uuid4().hex,
        "timestamp": timestamp if timestamp is not None else int(time.time() * 1000),
        "customerId": customer,
        "metricName": metric,
        "quantity": quantity,
        "dimensions": dimensions or {},
    }
    body.update(extra)
    return body


async def usage_totals(
    client: AsyncTestClient[Any], key: str, metric: str = "api_calls", customer: str = "acme"
) -> dict[str, str]:
    """The period's total of `metric` as the usage API answers it from the live view and
    from Postgres: {"live": ..., "billed": ...}."""
    totals = {}
    for source in ("live", "billed"):
        usage = await client.get(
            f"/v1/customers/{customer}/usage",
            headers=auth(key),
            params={"metric": metric, "source": source},
        )
        assert usage.status_code == 200, usage.text
        totals[source] = str(usage.json()["total"])
    return totals


async def roll_up_days(pg: Any) -> None:
    """After usage stored straight into hourly_usage (a test that skips the pipeline): its
    days in daily_usage, as the persist transaction keeps them (bills read whole days there)."""
    from portal.usage.repository import rebuild_days

    await rebuild_days(pg)
