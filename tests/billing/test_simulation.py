"""Pricing simulation: a customer's recorded usage rated on another plan equals the invoice
that plan really produces, beside the real invoice; nothing is written; bad input is a 422."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.billing import simulation
from portal.billing.simulation_schemas import SimulationRequest
from portal.infrastructure.db import create_engine, session_factory
from portal.infrastructure.settings import Settings
from tests.billing.conftest import ClosedPeriod, closed_period, create_plan, draft, month_of, subscribe
from tests.conftest import TABLES
from tests.factories import auth, make_customer, make_meter, roll_up_days

PLAN_A = {
    "id": "starter",
    "name": "Starter",
    "currency": "USD",
    "charges": [
        {"key": "base", "model": "flat", "amount": "10.00"},
        {"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.01"},
    ],
}
PLAN_B = {
    "id": "growth",
    "name": "Growth",
    "currency": "USD",
    "charges": [
        {"key": "base", "model": "flat", "amount": "25.00"},
        {
            "key": "calls",
            "model": "graduated",
            "meter": "api_calls",
            "includedQuantity": "100",
            "tiers": [{"upTo": "1000", "unitPrice": "0.02"}, {"upTo": None, "unitPrice": "0.01"}],
        },
    ],
    "discounts": [{"kind": "percentage", "percent": "10"}],
}


async def world(client: AsyncTestClient[Any], key: str, pg: Any) -> tuple[ClosedPeriod, str]:
    """Customers `a` (on Starter) and `b` (on Growth) with the same 1,500 API calls in a
    closed period; `eur` (billed in EUR, on a EUR plan) with none. Returns the period's month."""
    closed = closed_period("UTC")
    await make_meter(client, key, metric="api_calls")
    await create_plan(client, key, PLAN_A)
    await create_plan(client, key, PLAN_B)
    await create_plan(client, key, {**PLAN_A, "id": "euro", "currency": "EUR"})
    start = {"startDate": closed.start_date.isoformat(), "anchorDay": closed.anchor_day}
    for customer, plan_id, currency in (
        ("a", "starter", "USD"),
        ("b", "growth", "USD"),
        ("eur", "euro", "EUR"),
    ):
        await make_customer(client, key, id=customer, name=f"Customer {customer.upper()}", currency=currency)
        await subscribe(client, key, customer, planId=plan_id, **start)
    for customer in ("a", "b"):
        await pg.execute(
            "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
            "VALUES ($1, 'api_calls', $2, 1000, 1), ($1, 'api_calls', $3, 500, 1)",
            customer,
            closed.period.start + timedelta(hours=3),
            closed.period.end - timedelta(hours=1),
        )
        await roll_up_days(pg)
    return closed, month_of(closed.period, closed.tz)


async def simulate(client: AsyncTestClient[Any], key: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/simulations", headers=auth(key), json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_a_simulation_equals_the_invoice_the_other_plan_produces(
    client: AsyncTestClient[Any], admin_key: str, pg: Any
) -> None:
    # Given a on Starter (10.00 + 1,500 x 0.01 = 25.00) and b on Growth with the same usage
    closed, month = await world(client, admin_key, pg)
    # When a's period is simulated on Growth
    result = await simulate(client, admin_key, {"customerIds": ["a"], "periods": [month], "planId": "growth"})
    # Then it is b's real draft of the period: 25.00 + 1,000 x 0.02 + 400 x 0.01 = 49.00, less 10 %
    real = await draft(client, admin_key, "b", month)
    assert real["total"] == "44.10"
    [row] = result["rows"]
    assert row["simulated"]["lines"] == real["lines"]
    assert (row["simulated"]["subtotal"], row["simulated"]["discountTotal"], row["simulated"]["amount"]) == (
        "49.00",
        "4.90",
        "44.10",
    )
    # Beside a's own period (not invoiced yet: rated on Starter now), 19.10 (76.40 %) more
    assert row["actual"] == {
        "status": "not_invoiced",
        "invoiceId": None,
        "invoiceNumber": None,
        "invoicedTotal": None,
        "amount": "25.00",
    }
    assert (row["difference"], row["differencePercent"], row["outcome"]) == ("19.10", "76.40", "more")
    assert (row["customerName"], row["month"], row["periodStart"]) == (
        "Customer A",
        month,
        closed.period.start.isoformat().replace("+00:00", "Z"),
    )
    assert result["plan"] == {"id": "growth", "name": "Growth", "currency": "USD", "edited": False}
    assert result["summary"] == [
        {
            "currency": "USD",
            "periods": 1,
            "customers": 1,
            "actual": "25.00",
            "simulated": "44.10",
            "difference": "19.10",
            "differencePercent": "76.40",
            "customersPayingMore": 1,
            "customersPayingLess": 0,
            "customersPayingSame": 0,
        }
    ]


async def test_every_customer_compared_with_its_finalized_invoice_and_an_edited_copy(
    client: AsyncTestClient[Any], admin_key: str, pg: Any
) -> None:
    # Given a's invoice finalized (25.00) and b's period drafted (44.10)
    closed, month = await world(client, admin_key, pg)
    invoice = await draft(client, admin_key, "a", month)
    approved = await client.post(f"/v1/invoices/{invoice['id']}/approve", headers=auth(admin_key), json={})
    assert approved.status_code == 200, approved.text
    b_draft = await draft(client, admin_key, "b", month)
    # When every customer's periods from the period's first day are simulated on Starter
    # with calls at 0.02 (an edited copy, never stored)
    edited = {
        **PLAN_A,
        "id": "starter-2",
        "charges": [PLAN_A["charges"][0], {**PLAN_A["charges"][1], "unitPrice": "0.02"}],  # type: ignore[index,dict-item]
    }
    day = closed.start_date.isoformat()
    result = await simulate(client, admin_key, {"from": day, "to": day, "plan": edited})
    # Then a would pay 10.00 + 30.00 = 40.00 instead of its finalized 25.00; b 40.00 instead
    # of its draft's 44.10; eur, billed in EUR, is not one of "every customer" of a USD plan
    rows = {r["customerId"]: r for r in result["rows"]}
    assert rows["a"]["actual"] == {
        "status": "finalized",
        "invoiceId": invoice["id"],
        "invoiceNumber": "INV-000001",
        "invoicedTotal": "25.00",
        "amount": "25.00",
    }
    assert rows["b"]["actual"] == {
        "status": "draft",
        "invoiceId": b_draft["id"],
        "invoiceNumber": None,
        "invoicedTotal": "44.10",
        "amount": "44.10",
    }
    assert [
        (r["simulated"]["amount"], r["difference"], r["differencePercent"], r["outcome"])
        for r in rows.values()
    ] == [
        ("40.00", "15.00", "60.00", "more"),
        ("40.00", "-4.10", "-9.30", "less"),
    ]
    assert result["skipped"] == []
    summary = result["summary"][0]
    assert (summary["actual"], summary["simulated"], summary["difference"]) == ("69.10", "80.00", "10.90")
    assert (summary["customersPayingMore"], summary["customersPayingLess"]) == (1, 1)
    assert result["plan"]["edited"] is True
    assert (await client.get("/v1/plans/starter-2", headers=auth(admin_key))).status_code == 404


async def row_counts(pg: Any) -> dict[str, int]:
    return {table: int(await pg.fetchval(f"SELECT count(*) FROM {table}")) for table in TABLES}


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=1)
    yield session_factory(engine)
    await engine.dispose()


async def test_a_simulation_writes_nothing(
    client: AsyncTestClient[Any], admin_key: str, pg: Any, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, month = await world(client, admin_key, pg)
    before = await row_counts(pg)
    await simulate(client, admin_key, {"periods": [month], "planId": "growth"})
    assert await row_counts(pg) == before
    # The service's transaction is read-only and never got a transaction id (a write takes one)
    async with sessions() as session, session.begin():
        request = SimulationRequest(customer_ids=["a"], periods=[month], plan_id="growth")
        view = await simulation.simulate(session, request, now=datetime.now(UTC))
        assert [r.simulated.amount for r in view.rows] == ["44.10"]
        assert (await session.execute(text("SELECT pg_current_xact_id_if_assigned()"))).scalar() is None
        with pytest.raises(DBAPIError, match="read-only transaction"):
            await session.execute(text("DELETE FROM hourly_usage"))
    assert await row_counts(pg) == before


def _next_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:])
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


async def test_running_and_uncovered_periods_are_left_out_with_the_reason(
    client: AsyncTestClient[Any], admin_key: str, pg: Any
) -> None:
    _, month = await world(client, admin_key, pg)
    running = _next_month(month)
    earlier = f"{int(month[:4]) - 1:04d}-{month[5:]}"
    result = await simulate(
        client,
        admin_key,
        {"customerIds": ["a", "eur"], "periods": [earlier, month, running], "planId": "starter"},
    )
    assert [(r["month"], r["difference"], r["outcome"]) for r in result["rows"]] == [(month, "0.00", "same")]
    usd_plan = "the customer is billed in EUR; the plan is priced in USD"
    assert result["skipped"] == [
        {"customerId": "a", "month": earlier, "reason": "no subscription in this period"},
        {"customerId": "a", "month": running, "reason": "the period has not ended yet"},
        {"customerId": "eur", "month": None, "reason": usd_plan},
    ]


TODAY = datetime.now(UTC).date()


def _body(**fields: Any) -> dict[str, Any]:
    return {"customerIds": ["a"], "periods": ["2026-01"], "planId": "starter", **fields}


HOSTILE: list[tuple[str, dict[str, Any], str]] = [
    ("unknown-customer", _body(customerIds=["a", "nobody"]), "customerIds: no customer 'nobody'"),
    ("unknown-plan", _body(planId="nope"), "planId: no plan 'nope'"),
    (
        "unknown-meter",
        {**_body(planId=None), "plan": {**PLAN_A, "charges": [{**PLAN_A["charges"][1], "meter": "gb"}]}},  # type: ignore[index,dict-item]
        "charge calls.meter: no meter 'gb'",
    ),
    ("future-month", _body(periods=["2999-01"]), "periods: 2999-01 has not started yet"),
    ("malformed-month", _body(periods=["2026-13"]), "periods"),
    ("month-twice", _body(periods=["2026-01", "2026-01"]), "a month is named twice"),
    ("no-plan", _body(planId=None), "planId: give either planId"),
    ("plan-and-plan-id", {**_body(), "plan": PLAN_A}, "planId: give either planId"),
    ("months-and-dates", _body(**{"from": "2026-01-01", "to": "2026-02-01"}), "not both"),
    ("to-before-from", _body(periods=None, **{"from": "2026-02-01", "to": "2026-01-01"}), "is before from"),
    (
        "future-to",
        _body(periods=None, **{"from": str(TODAY - timedelta(days=9)), "to": str(TODAY + timedelta(days=9))}),
        "is in the future",
    ),
    ("too-many-customers", _body(customerIds=[f"c{i}" for i in range(501)]), "customerIds"),
    ("no-customers", _body(customerIds=[]), "customerIds"),
]


@pytest.mark.parametrize(("body", "told"), [(b, t) for _, b, t in HOSTILE], ids=[n for n, _, _ in HOSTILE])
async def test_hostile_input_is_a_422_naming_the_problem(
    client: AsyncTestClient[Any], admin_key: str, body: dict[str, Any], told: str
) -> None:
    await make_meter(client, admin_key, metric="api_calls")
    await create_plan(client, admin_key, PLAN_A)
    await make_customer(client, admin_key, id="a", currency="USD")
    body = {k: v for k, v in body.items() if v is not None}
    response = await client.post("/v1/simulations", headers=auth(admin_key), json=body)
    assert response.status_code == 422, response.text
    assert told in f"{response.json().get('detail', '')} {response.json().get('extra', '')}"


async def test_more_customer_periods_than_one_request_may_rate_is_a_422(
    client: AsyncTestClient[Any], admin_key: str, pg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, month = await world(client, admin_key, pg)
    monkeypatch.setattr(simulation, "MAX_ROWS", 1)
    response = await client.post(
        "/v1/simulations", headers=auth(admin_key), json={"periods": [month], "planId": "starter"}
    )
    assert response.status_code == 422, response.text
    assert "2 customer periods asked for; at most 1 per simulation" in response.json()["detail"]
