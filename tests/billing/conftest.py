"""Billing test data: a closed period that is ready for review, built through the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from litestar.testing import AsyncTestClient

from portal.infrastructure.periods import BillingPeriod, local_date, period_for, previous_period
from tests.factories import auth


@dataclass(frozen=True, slots=True)
class ClosedPeriod:
    """The customer's last period that has ended more than the grace period ago (24 h)
    and started less than the accepted lateness ago (35 days), so events may still arrive
    for it: anchor day = the day three days ago."""

    tz: str
    anchor_day: int
    period: BillingPeriod

    @property
    def start_date(self) -> date:
        return local_date(self.period.start.timestamp(), self.tz)

    def ms(self, at: datetime) -> int:
        return int(at.timestamp() * 1000)


def closed_period(tz: str, now: datetime | None = None) -> ClosedPeriod:
    now = now or datetime.now(UTC)
    three_days_ago = now - timedelta(days=3)
    anchor = local_date(three_days_ago.timestamp(), tz).day
    current = period_for(three_days_ago, tz, anchor)
    return ClosedPeriod(tz, anchor, previous_period(current, tz, anchor))


async def create_plan(client: AsyncTestClient[Any], key: str, plan: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/plans", headers=auth(key), json=plan)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def subscribe(client: AsyncTestClient[Any], key: str, customer: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/v1/customers/{customer}/subscriptions", headers=auth(key), json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def draft(
    client: AsyncTestClient[Any], key: str, customer: str, period: str | None = None
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/customers/{customer}/invoices",
        headers=auth(key),
        json={} if period is None else {"period": period},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def month_of(period: BillingPeriod, tz: str) -> str:
    start = local_date(period.start.timestamp(), tz)
    return f"{start.year:04d}-{start.month:02d}"


def lines_by_key(invoice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {line["chargeKey"]: line for line in invoice["lines"]}
