"""Invoice runs over many customers: created, refreshed, finalized ones left alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.billing.run import run_current_periods, run_ended_periods, run_invoices
from portal.infrastructure.db import create_engine, session_factory
from portal.infrastructure.domain_errors import Invalid
from portal.infrastructure.settings import Settings
from tests.billing.conftest import closed_period, create_plan, draft, month_of, subscribe
from tests.factories import auth, make_customer, make_meter, roll_up_days

FLAT = {
    "id": "flat",
    "name": "Flat",
    "currency": "USD",
    "charges": [
        {"key": "base", "model": "flat", "amount": "10.00"},
        {"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.01"},
    ],
}


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=2)
    yield session_factory(engine)
    await engine.dispose()


async def test_a_run_counts_what_it_did_for_each_customer(
    client: AsyncTestClient[Any],
    admin_key: str,
    sessions: async_sessionmaker[AsyncSession],
    pg: Any,
) -> None:
    closed = closed_period("UTC")
    await make_meter(client, admin_key, metric="api_calls")
    await create_plan(client, admin_key, FLAT)
    for customer in ("a", "b", "c"):
        await make_customer(client, admin_key, id=customer, currency="USD")
    await make_customer(client, admin_key, id="no-plan", currency="USD")
    for customer in ("a", "b", "c"):
        await subscribe(
            client,
            admin_key,
            customer,
            planId="flat",
            startDate=closed.start_date.isoformat(),
            anchorDay=closed.anchor_day,
        )
    month = month_of(closed.period, closed.tz)
    finalized = await draft(client, admin_key, "c", month)
    assert (
        await client.post(f"/v1/invoices/{finalized['id']}/approve", headers=auth(admin_key), json={})
    ).status_code == 200
    # Usage stored straight into the aggregate the run reads (the pipeline is tested elsewhere).
    await pg.execute(
        "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
        "VALUES ('a', 'api_calls', $1, 250, 1)",
        closed.period.start + timedelta(hours=3),
    )
    await roll_up_days(pg)
    seen: list[tuple[int, int]] = []
    now = datetime.now(UTC)

    first = await run_invoices(sessions, month=month, now=now, progress=lambda d, t: seen.append((d, t)))
    assert (
        first.customers,
        first.created,
        first.refreshed,
        first.skipped_finalized,
        first.without_subscription,
        first.errors,
    ) == (4, 2, 0, 1, 1, [])
    assert first.totals == {"USD": Decimal("22.50")}  # a: 10.00 + 2.50, b: 10.00
    assert seen == [(3, 3)]
    second = await run_invoices(sessions, month=month, now=now)
    assert (second.created, second.refreshed, second.skipped_finalized) == (0, 2, 1)
    assert await pg.fetchval("SELECT count(*) FROM invoices") == 3


async def test_the_scheduled_run_drafts_each_customers_last_ended_period(
    client: AsyncTestClient[Any],
    admin_key: str,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    closed = closed_period("Asia/Kolkata")
    await make_meter(client, admin_key, metric="api_calls")
    await create_plan(client, admin_key, FLAT)
    await make_customer(client, admin_key, id="a", timezone=closed.tz, currency="USD")
    await subscribe(
        client,
        admin_key,
        "a",
        planId="flat",
        startDate=closed.start_date.isoformat(),
        anchorDay=closed.anchor_day,
    )
    summary = await run_ended_periods(sessions, now=datetime.now(UTC))
    assert (summary.created, summary.errors) == (1, [])
    queue = (await client.get("/v1/review-queue", headers=auth(admin_key))).json()
    assert [
        (item["invoice"]["customerId"], item["invoice"]["periodStart"], item["invoice"]["total"])
        for item in queue
    ] == [("a", closed.period.start.isoformat().replace("+00:00", "Z"), "10.00")]


async def test_the_scheduled_run_keeps_each_customers_running_period_drafted(
    client: AsyncTestClient[Any],
    admin_key: str,
    sessions: async_sessionmaker[AsyncSession],
    pg: Any,
) -> None:
    await make_meter(client, admin_key, metric="api_calls")
    await create_plan(client, admin_key, FLAT)
    await make_customer(client, admin_key, id="a", timezone="UTC", currency="USD")
    await subscribe(client, admin_key, "a", planId="flat")  # from today: the running period
    now = datetime.now(UTC)
    await pg.execute(
        "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
        "VALUES ('a', 'api_calls', $1, 300, 1)",
        now.replace(minute=0, second=0, microsecond=0),
    )
    await roll_up_days(pg)
    first = await run_current_periods(sessions, now=now)
    assert (first.created, first.refreshed, first.errors) == (1, 0, [])
    assert first.totals == {"USD": Decimal("13.00")}  # 10.00 + 300 x 0.01
    again = await run_current_periods(sessions, now=now)
    assert (again.created, again.refreshed) == (0, 1)
    row = await pg.fetchrow("SELECT status, period_start <= $1 AND period_end > $1 FROM invoices", now)
    assert tuple(row) == ("draft", True)


async def test_a_run_for_a_month_that_has_not_started_is_refused(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(Invalid, match="2999-01 has not started"):
        await run_invoices(sessions, month="2999-01", now=datetime.now(UTC))
    with pytest.raises(Invalid, match="expected YYYY-MM"):
        await run_invoices(sessions, month="last month", now=datetime.now(UTC))


async def test_the_largest_accepted_usage_is_billed_exactly_beside_other_customers(
    client: AsyncTestClient[Any],
    admin_key: str,
    sessions: async_sessionmaker[AsyncSession],
    pg: Any,
) -> None:
    # Given a customer whose period holds usage far beyond 10^19 units at 1.00 a unit,
    closed = closed_period("UTC")
    await make_meter(client, admin_key, metric="api_calls")
    await create_plan(
        client,
        admin_key,
        {
            **FLAT,
            "id": "dear",
            "charges": [{"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "1.00"}],
        },
    )
    await create_plan(client, admin_key, FLAT)
    for customer, plan in (("a-huge", "dear"), ("b-small", "flat")):
        await make_customer(client, admin_key, id=customer, currency="USD")
        await subscribe(
            client,
            admin_key,
            customer,
            planId=plan,
            startDate=closed.start_date.isoformat(),
            anchorDay=closed.anchor_day,
        )
    await pg.execute(
        "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
        "VALUES ('a-huge', 'api_calls', $1, $2, 3)",
        closed.period.start + timedelta(hours=3),
        Decimal("299999999999999999999.999999999997"),
    )
    await roll_up_days(pg)
    # When the run drafts both in one chunk,
    summary = await run_invoices(sessions, month=month_of(closed.period, closed.tz), now=datetime.now(UTC))
    # Then both are drafted, the huge one to the cent.
    assert (summary.created, summary.errors) == (2, [])
    totals = dict(await pg.fetch("SELECT customer_id, total FROM invoices"))
    assert totals == {"a-huge": Decimal("300000000000000000000.00"), "b-small": Decimal("10.00")}
