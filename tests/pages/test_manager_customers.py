"""The account managers' customers table: numbers, sort, filters, paging, bad parameters,
and who sees which customers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from tests.clock import BOUNDARIES, Boundary, set_clock
from tests.factories import auth, make_customer, make_meter, roll_up_days
from tests.pages.helpers import Client, make_user, sign_in

ADMIN = "ada@vendor.test"


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def invoice(
    pg: asyncpg.Connection,
    customer: str,
    start: datetime,
    end: datetime,
    total: str,
    status: str = "draft",
    number: str | None = None,
) -> int:
    invoice_id: int = await pg.fetchval(
        "INSERT INTO invoices (customer_id, period_start, period_end, currency, status, number, subtotal, "
        "total, computed_at) VALUES ($1, $2, $3, 'EUR', $4, $5, $6, $6, $7) RETURNING id",
        customer,
        start,
        end,
        status,
        number,
        Decimal(total),
        datetime(2026, 11, 24, 9, 30, tzinfo=UTC),
    )
    return invoice_id


async def fire_alert(pg: asyncpg.Connection, customer: str, at: datetime) -> None:
    rule = await pg.fetchval(
        "INSERT INTO alert_rules (customer_id, name, basis, levels) "
        "VALUES ($1, 'spend', 'absolute', '{100}') RETURNING id",
        customer,
    )
    await pg.execute(
        "INSERT INTO alert_firings (rule_id, customer_id, period_start, period_end, level, "
        "kind, threshold, value, notice, fired_at) VALUES ($1, $2, $3::timestamptz, "
        "$3::timestamptz + interval '1 month', 100, "
        "'crossing', 100, 120, '{}', $3::timestamptz + interval '1 hour')",
        rule,
        customer,
        at,
    )


async def on_flat_plan(client: Client, admin_key: str, customer: str, amount: str, start: datetime) -> None:
    """`customer` on its own plan of one flat fee (`amount` in its currency) plus EUR/USD/…
    0.01 a call, billed by calendar month from `start` (the first of a month, UTC)."""
    currency = (await client.get(f"/v1/customers/{customer}", headers=auth(admin_key))).json()["currency"]
    plan = {
        "id": f"{customer}-plan",
        "name": f"{customer} plan",
        "currency": currency,
        "charges": [
            {"key": "base", "model": "flat", "amount": amount, "description": "Platform fee"},
            {"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.01"},
        ],
    }
    assert (await client.post("/v1/plans", headers=auth(admin_key), json=plan)).status_code == 201
    subscribed = await client.post(
        f"/v1/customers/{customer}/subscriptions",
        headers=auth(admin_key),
        json={"planId": plan["id"], "startDate": start.date().isoformat(), "anchorDay": 1},
    )
    assert subscribed.status_code == 201, subscribed.text


# Where the world is built when a test does not say: mid-month, mid-day.
MID_MONTH = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


async def world(
    client: Client, admin_key: str, pg: asyncpg.Connection, now: datetime = MID_MONTH
) -> datetime:
    """At `now` (the app's clock is set to it): acme spends EUR 120.92 this period (a 120.50
    fee and 42 calls at 0.01) against 100.00 + a 0.50 note last period, one alert; globex:
    EUR 10.00 against 20.00; initech: no plan."""
    set_clock(client, now)
    start = month_start(now.astimezone(UTC))  # the customers' zone
    previous = month_start(start - timedelta(days=1))
    await make_customer(client, admin_key, id="acme", name="Acme Inc")
    await make_customer(client, admin_key, id="globex", name="Globex")
    await make_customer(client, admin_key, id="initech", name="<script>alert(1)</script>")
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    await on_flat_plan(client, admin_key, "acme", "120.50", start)
    await on_flat_plan(client, admin_key, "globex", "10.00", start)
    old = await invoice(pg, "acme", previous, start, "100.00", "finalized", "INV-000001")
    await pg.execute(
        "INSERT INTO adjustments (customer_id, invoice_id, number, kind, subtotal_delta, discount_delta, "
        "amount, lines, reason) SELECT customer_id, id, 'DN-000001', 'debit', 0.5, 0, 0.5, '[]', 'late' "
        "FROM invoices WHERE id = $1",
        old,
    )
    await invoice(pg, "globex", previous, start, "20.00", "finalized", "INV-000002")
    await fire_alert(pg, "acme", start)
    await fire_alert(pg, "globex", previous)  # last period: not counted
    await pg.execute(
        "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
        "VALUES ('acme', 'api_calls', $1::timestamptz, 40, 3), "
        "('acme', 'api_calls', $1::timestamptz + interval '1 hour', 2, 1), "
        "('acme', 'api_calls', $2, 1000, 1)",
        start,
        previous,
    )
    await roll_up_days(pg)
    return now


def customer_order(html: str) -> list[str]:
    return re.findall(r'<a href="/portal/customers/([^"]+)">', html)


@pytest.mark.parametrize("boundary", BOUNDARIES)
async def test_table_shows_this_periods_numbers(
    client: Client, admin_key: str, pg: asyncpg.Connection, boundary: Boundary
) -> None:
    await world(client, admin_key, pg, boundary.at)
    await make_user(pg, ADMIN, role="admin")
    await sign_in(client, ADMIN)
    page = await client.get("/portal/customers")
    assert page.status_code == 200
    assert customer_order(page.text) == ["initech", "acme", "globex"]  # by name: "<script…" sorts first
    assert "API calls: <strong>42</strong> calls" in page.text
    assert '<data value="120.92">EUR 120.92</data>' in page.text  # 120.50 + 42 x 0.01
    assert '<data value="10.00">EUR 10.00</data>' in page.text
    assert "120.3 %" in page.text  # 120.92 against 100.00 + 0.50: 120.318…, half up
    assert ">50.0 %<" in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>alert(1)" not in page.text
    assert "No plan this period" in page.text and "No usage yet" in page.text


@pytest.mark.parametrize("boundary", BOUNDARIES)
async def test_without_a_draft_the_period_is_the_customers_month_at_the_clock(
    client: Client, admin_key: str, pg: asyncpg.Connection, boundary: Boundary
) -> None:
    # Given: no draft; 5 calls in the first hour of the customer's local month, 7 in the
    # last hour of the month before
    set_clock(client, boundary.at)
    await make_customer(client, admin_key, id="acme", timezone=boundary.tz)
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    first_hour = boundary.local().replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
    await pg.executemany(
        "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
        "VALUES ('acme', 'api_calls', $1, $2, 1)",
        [(first_hour, Decimal(5)), (first_hour - timedelta(hours=1), Decimal(7))],
    )
    await roll_up_days(pg)
    await make_user(pg, ADMIN, role="admin")
    await sign_in(client, ADMIN)
    # When: the table is shown
    page = await client.get("/portal/customers")
    # Then: this period is the local month of the clock's instant
    assert page.status_code == 200
    assert "API calls: <strong>5</strong> calls" in page.text
    assert "No plan this period" in page.text


async def test_sort_filter_and_search_are_in_the_url(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await world(client, admin_key, pg)
    await make_user(pg, ADMIN, role="admin")
    await sign_in(client, ADMIN)
    by_spend = await client.get("/portal/customers", params={"sort": "spend"})
    assert customer_order(by_spend.text) == ["acme", "globex", "initech"]
    ascending = await client.get("/portal/customers", params={"sort": "spend", "order": "asc"})
    assert customer_order(ascending.text) == ["globex", "acme", "initech"]  # no spend: last either way
    by_change = await client.get("/portal/customers", params={"sort": "change"})
    assert customer_order(by_change.text) == ["acme", "globex", "initech"]
    with_alerts = await client.get("/portal/customers", params={"alerts": "1"})
    assert customer_order(with_alerts.text) == ["acme"]
    search = await client.get("/portal/customers", params={"q": "GLOB"})
    assert customer_order(search.text) == ["globex"]
    wildcard = await client.get("/portal/customers", params={"q": "%"})
    assert customer_order(wildcard.text) == []
    assert "No customer matches these filters." in wildcard.text
    # The spend header flips to ascending when it is already the sort, and shows the sort.
    assert 'href="/portal/customers?sort=spend&amp;order=asc"' in by_spend.text
    assert re.search(
        r'<th scope="col" class="num" aria-sort="descending"><a href="[^"]+" class="sort current">'
        r'Spend so far <span class="arrow" aria-hidden="true">▼</span></a></th>',
        by_spend.text,
    )
    assert 'aria-sort="ascending"' in ascending.text and "▲" in ascending.text
    assert by_spend.text.count("aria-sort=") == 1


async def test_spend_is_the_customer_pages_cost_so_far_rated_now(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    # Given: acme's world, and 1,000 more calls stored after any draft was rated
    now = await world(client, admin_key, pg)
    await pg.execute(
        "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
        "VALUES ('acme', 'api_calls', $1, 1000, 1)",
        now.replace(minute=0) - timedelta(hours=1),
    )
    await roll_up_days(pg)
    await make_user(pg, ADMIN, role="admin")
    await sign_in(client, ADMIN)
    # When: the table and the customer's page are shown
    table = (await client.get("/portal/customers")).text
    overview = (await client.get("/portal/customers/acme")).text
    # Then: both say EUR 130.92 (120.50 + 1,042 calls x 0.01)
    cost = re.search(r'<data class="total" id="cost-so-far" value="([^"]+)">', overview)
    assert cost is not None and cost.group(1) == "130.92"
    assert '<data value="130.92">EUR 130.92</data>' in table


async def test_sorting_by_spend_never_compares_currencies(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    # Given: EUR 120.92 and 10.00, INR 1,799.00, USD 100.00, and a customer without a plan
    now = await world(client, admin_key, pg)
    await make_customer(client, admin_key, id="hooli", name="Hooli", currency="USD")
    await make_customer(client, admin_key, id="initrode", name="Initrode", currency="INR")
    await on_flat_plan(client, admin_key, "hooli", "100.00", month_start(now))
    await on_flat_plan(client, admin_key, "initrode", "1799.00", month_start(now))
    await make_user(pg, ADMIN, role="admin")
    await sign_in(client, ADMIN)
    # When: sorted by spend, biggest first, then smallest first
    down = await client.get("/portal/customers", params={"sort": "spend"})
    up = await client.get("/portal/customers", params={"sort": "spend", "order": "asc"})
    # Then: by currency (EUR, INR, USD), then by amount; no plan last either way
    assert customer_order(down.text) == ["acme", "globex", "initrode", "hooli", "initech"]
    assert customer_order(up.text) == ["globex", "acme", "initrode", "hooli", "initech"]
    assert '<data value="1799.00">INR 1,799.00</data>' in down.text


async def test_bad_parameters_are_named(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    await make_user(pg, ADMIN, role="admin")
    await sign_in(client, ADMIN)
    for params, named in (
        ({"sort": "cost"}, "sort: “cost” is not one of name, spend, change, alerts"),
        ({"order": "up"}, "order: “up”"),
        ({"page": "0"}, "page: “0”"),
        ({"alerts": "yes"}, "alerts: “yes”"),
        ({"anomalies": "2"}, "anomalies: “2”"),
    ):
        page = await client.get("/portal/customers", params=params)
        assert page.status_code == 422, params
        assert named in page.text


async def test_paging_counts_every_customer(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    await pg.executemany(
        "INSERT INTO customers (id, name, timezone, currency) VALUES ($1, $1, 'UTC', 'EUR')",
        [(f"c{i:03d}",) for i in range(60)],
    )
    await make_user(pg, ADMIN, role="admin")
    await sign_in(client, ADMIN)
    first = await client.get("/portal/customers")
    assert len(customer_order(first.text)) == 50
    assert "Page 1 of 2 (60 in all)" in first.text
    assert 'href="/portal/customers?page=2"' in first.text
    second = await client.get("/portal/customers", params={"page": "2"})
    assert customer_order(second.text) == [f"c{i:03d}" for i in range(50, 60)]
    beyond = await client.get("/portal/customers", params={"page": "3"})
    assert "There is no page 3." in beyond.text


async def test_anomaly_column_and_filter(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    now = await world(client, admin_key, pg)
    # globex: 1 call an hour for eight days, then 100 in the last settled hour (a spike).
    settled = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    await pg.execute(
        "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
        "SELECT 'globex', 'api_calls', h, CASE WHEN h = $1::timestamptz THEN 100 ELSE 1 END, 1 "
        "FROM generate_series($1::timestamptz - interval '8 days' + interval '1 hour', $1::timestamptz, "
        "interval '1 hour') AS h",
        settled,
    )
    await roll_up_days(pg)
    await make_user(pg, ADMIN, role="admin")
    await sign_in(client, ADMIN)
    page = await client.get("/portal/customers", params={"anomalies": "1"})
    assert page.status_code == 200
    assert customer_order(page.text) == ["globex"]
    assert re.search(r'<span class="badge warn">[1-9]\d*</span>', page.text)
    assert 'name="anomalies" value="1" checked' in page.text


async def test_account_manager_sees_only_assigned_customers(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await world(client, admin_key, pg)
    await make_user(pg, "max@vendor.test", role="account_manager", assigned=("globex",))
    await sign_in(client, "max@vendor.test")
    page = await client.get("/portal/customers", params={"sort": "spend"})
    assert customer_order(page.text) == ["globex"]
    assert "Acme" not in page.text
    assert customer_order((await client.get("/portal/customers", params={"q": "acme"})).text) == []


async def test_customer_user_gets_403(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    await make_customer(client, admin_key, id="acme")
    await make_user(pg, "cu@acme.test", role="customer", customer_id="acme")
    await sign_in(client, "cu@acme.test")
    assert (await client.get("/portal/customers")).status_code == 403
