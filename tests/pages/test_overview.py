"""The customer list and a customer's live usage page."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest
from redis.asyncio import Redis

from portal.infrastructure.paths import STATIC_DIR
from tests.clock import BOUNDARIES, Boundary, recent_boundaries, set_clock
from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter, roll_up_days
from tests.pages.helpers import HTMX, Client, hidden, make_user, sign_in

HTMX_PATH = "vendor/htmx-2.0.11/htmx.min.js"
ADMIN = "ada@vendor.test"


def total(html: str, value: str) -> str:
    return f'<data class="total" value="{value}">{value}</data>'


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


async def on_payg(client: Client, admin_key: str) -> None:
    """Acme on a EUR 5.00 flat fee plus EUR 0.25 per call, anchored on today's date by the
    app's clock (so the period began at local midnight that day)."""
    plan = {
        "id": "pay-as-you-go",
        "name": "PAYG",
        "currency": "EUR",
        "charges": [
            {"key": "base", "model": "flat", "amount": "5.00"},
            {"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.25"},
        ],
    }
    assert (await client.post("/v1/plans", headers=auth(admin_key), json=plan)).status_code == 201
    assert (
        await client.post(
            "/v1/customers/acme/subscriptions", headers=auth(admin_key), json={"planId": "pay-as-you-go"}
        )
    ).status_code == 201


async def staff(pg: asyncpg.Connection, client: Client) -> str:
    """An admin, signed in; returns the session's CSRF token."""
    await make_user(pg, ADMIN, role="admin")
    return await sign_in(client, ADMIN)


# --- customers ----------------------------------------------------------------------------


@pytest.mark.parametrize("boundary", BOUNDARIES)
async def test_customer_page_shows_the_customer_and_its_period(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
    boundary: Boundary,
) -> None:
    await make_customer(client, admin_key, name="Acme Inc", timezone=boundary.tz)
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    await staff(pg, client)
    set_clock(client, boundary.at)
    page = await client.get("/portal/customers/acme")
    assert page.status_code == 200
    assert "<h1>Acme Inc</h1>" in page.text
    # The period is the local calendar month of the clock, shown in the customer's zone.
    local = boundary.local()
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    after = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    zone = local.tzname()
    assert re.search(
        rf"<strong>1 {first:%b} {first.year} 00:00 {zone}</strong> to\s*"
        rf"<strong>1 {after:%b} {after.year} 00:00 {zone}</strong> \({boundary.tz}\)",
        page.text,
    )
    assert total(page.text, "0") in page.text
    assert "No usage yet this period." in page.text
    assert 'hx-get="/portal/customers/acme/usage"' in page.text
    assert f'src="/static/{HTMX_PATH}?v=' in page.text


async def test_customer_name_is_escaped(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    await make_customer(client, admin_key, name="<script>alert(1)</script>")
    await staff(pg, client)
    for path in ("/portal/customers/acme",):
        page = await client.get(path)
        assert page.status_code == 200
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "<script>alert(1)</script>" not in page.text


async def test_unknown_customer_is_404(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    await staff(pg, client)
    page = await client.get("/portal/customers/nobody")
    assert page.status_code == 404
    assert "There is no customer “nobody” you can see." in page.text
    partial = await client.get("/portal/customers/nobody/usage", headers=HTMX)
    assert partial.status_code == 404


async def test_pages_are_not_cached_and_run_only_own_scripts(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    await make_customer(client, admin_key)
    await staff(pg, client)
    page = await client.get("/portal/customers/acme")
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self';" in page.headers["content-security-policy"]
    assert "unsafe" not in page.headers["content-security-policy"]
    # Error pages too (answered by exception handlers, which no controller shapes): they show
    # the signed-in person in their header, and must not be framed or cached either
    for path in ("/portal/customers/nope", "/portal/no-such-page", "/portal/events?page=x"):
        error = await client.get(path)
        assert error.status_code in (404, 422), (path, error.status_code)
        assert error.headers.get("cache-control") == "no-store", path
        assert "frame-ancestors 'none'" in error.headers["content-security-policy"], path
        assert error.headers["x-content-type-options"] == "nosniff", path
        assert error.headers.get_list("content-security-policy") == [page.headers["content-security-policy"]]


# --- live usage ---------------------------------------------------------------------------


@pytest.mark.parametrize("boundary", recent_boundaries())
async def test_partial_shows_the_exact_new_total(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    boundary: Boundary,
) -> None:
    await make_customer(client, admin_key, timezone=boundary.tz)
    set_clock(client, boundary.at)
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    await staff(pg, client)
    before = await client.get("/portal/customers/acme/usage", headers=HTMX)
    assert before.status_code == 200
    assert total(before.text, "0") in before.text

    sent = await client.post(
        "/v1/events/batch",
        headers=auth(ingest_key),
        json={
            "events": [
                event(quantity=2, timestamp=ms(boundary.at)),
                event(quantity="3.5", timestamp=ms(boundary.at)),
            ]
        },
    )
    assert sent.status_code == 202, sent.text
    await wait_until_persisted(redis)

    after = await client.get("/portal/customers/acme/usage", headers=HTMX)
    assert after.status_code == 200
    assert total(after.text, "5.5") in after.text
    bars = re.findall(r'<rect class="bar"[^>]*><title>([^<]+)</title></rect>', after.text)
    assert len(bars) == 1 and bars[0].endswith(": 5.5 calls"), bars
    assert re.search(r'<td class="num">5.5</td>', after.text)
    assert "<html" not in after.text  # a fragment, not a page


@pytest.mark.parametrize("boundary", recent_boundaries())
async def test_partial_shows_the_cost_so_far_from_the_customers_plan(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    boundary: Boundary,
) -> None:
    await make_customer(client, admin_key, timezone=boundary.tz, currency="EUR")
    set_clock(client, boundary.at)
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    await on_payg(client, admin_key)
    sent = await client.post(
        "/v1/events/batch",
        headers=auth(ingest_key),
        json={
            "events": [
                event(quantity=2, timestamp=ms(boundary.at)),
                event(quantity="3.5", timestamp=ms(boundary.at)),
            ]
        },
    )
    assert sent.status_code == 202, sent.text
    await wait_until_persisted(redis)
    await staff(pg, client)

    panel = await client.get("/portal/customers/acme/usage", headers=HTMX)
    so_far = re.search(r'<data class="total" id="cost-so-far" value="([^"]+)">', panel.text)
    assert so_far is not None and so_far.group(1) == "6.38"  # 5.00 + 5.5 x 0.25 = 6.375, half up
    assert 'id="cost-projected"' in panel.text and "EUR" in panel.text


async def test_partial_answers_204_while_nothing_changed(
    client: Client,
    admin_key: str,
    ingest_key: str,
    pg: asyncpg.Connection,
) -> None:
    await make_customer(client, admin_key)
    await make_meter(client, admin_key)
    await staff(pg, client)
    seen = hidden((await client.get("/portal/customers/acme/usage", headers=HTMX)).text, "seen")
    unchanged = await client.get("/portal/customers/acme/usage", headers=HTMX, params={"seen": seen})
    if unchanged.status_code == 200:  # the "complete through" minute turned in between
        seen = hidden(unchanged.text, "seen")
        unchanged = await client.get("/portal/customers/acme/usage", headers=HTMX, params={"seen": seen})
    assert unchanged.status_code == 204
    assert unchanged.content == b""

    sent = await client.post(
        "/v1/events/batch", headers=auth(ingest_key), json={"events": [event(quantity=7)]}
    )
    assert sent.status_code == 202, sent.text
    changed = await client.get("/portal/customers/acme/usage", headers=HTMX, params={"seen": seen})
    assert changed.status_code == 200
    assert total(changed.text, "7") in changed.text


async def test_vendored_htmx_matches_its_recorded_checksum(client: Client) -> None:
    served = await client.get(f"/static/{HTMX_PATH}")
    assert served.status_code == 200
    digest = hashlib.sha256(served.content).hexdigest()
    assert f"`{digest}`" in (STATIC_DIR / "VENDORED.md").read_text()
    assert b'version:"2.0.11"' in served.content


# --- plan charges -------------------------------------------------------------------------


@pytest.mark.parametrize("boundary", recent_boundaries())
async def test_panel_shows_usage_against_the_included_quantity(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    boundary: Boundary,
) -> None:
    await make_customer(client, admin_key, timezone=boundary.tz, currency="EUR")
    set_clock(client, boundary.at)
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    plan = {
        "id": "included",
        "name": "Included",
        "currency": "EUR",
        "charges": [
            {
                "key": "calls",
                "model": "per_unit",
                "meter": "api_calls",
                "unitPrice": "0.001",
                "includedQuantity": "10000",
                "description": "API <b>calls</b>",
            }
        ],
    }
    assert (await client.post("/v1/plans", headers=auth(admin_key), json=plan)).status_code == 201
    assert (
        await client.post(
            "/v1/customers/acme/subscriptions", headers=auth(admin_key), json={"planId": "included"}
        )
    ).status_code == 201
    sent = await client.post(
        "/v1/events/batch",
        headers=auth(ingest_key),
        json={"events": [event(quantity=12400, timestamp=ms(boundary.at))]},
    )
    assert sent.status_code == 202, sent.text
    await wait_until_persisted(redis)
    await staff(pg, client)

    panel = await client.get("/portal/customers/acme/usage", headers=HTMX)
    assert '<progress id="charge-1" max="10000" value="10000"' in panel.text
    assert "First 10,000 calls included; 12,400 so far — 124%; 2,400 calls charged" in panel.text
    assert "EUR 2.40 so far" in panel.text
    assert "API &lt;b&gt;calls&lt;/b&gt;" in panel.text
    assert 'href="/portal/customers/acme/meters/api_calls">' in panel.text
    assert 'class="charge over"' in panel.text


@pytest.mark.parametrize("boundary", recent_boundaries())
async def test_panel_shows_spend_and_meter_budgets_used_exactly(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    boundary: Boundary,
) -> None:
    await make_customer(client, admin_key, timezone=boundary.tz, currency="EUR")
    set_clock(client, boundary.at)
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    await on_payg(client, admin_key)
    for rule in (
        {"name": "Monthly spend", "basis": "budget", "budget": "8", "levels": ["100"]},
        {
            "name": "Calls <b>cap</b>",
            "metricName": "api_calls",
            "basis": "budget",
            "budget": "4",
            "levels": ["100"],
        },
    ):
        response = await client.post("/v1/customers/acme/alert-rules", headers=auth(admin_key), json=rule)
        assert response.status_code == 201, response.text
    sent = await client.post(
        "/v1/events/batch",
        headers=auth(ingest_key),
        json={
            "events": [
                event(quantity=2, timestamp=ms(boundary.at)),
                event(quantity="3.5", timestamp=ms(boundary.at)),
            ]
        },
    )
    assert sent.status_code == 202, sent.text
    await wait_until_persisted(redis)
    await staff(pg, client)

    panel = (await client.get("/portal/customers/acme/usage", headers=HTMX)).text
    labels = re.findall(r'<p class="charge-label" id="budget-\d-label">([^<]*)</p>', panel)
    # Spend so far 6.38 (5.00 + 5.5 x 0.25, half up) of 8; 5.5 calls of 4: over, capped bar.
    assert labels == ["EUR 6.38 of the EUR 8.00 budget — 79%", "5.5 calls of the 4 calls budget — 137%"]
    assert '<progress id="budget-2" max="4" value="4"' in panel
    assert "Calls &lt;b&gt;cap&lt;/b&gt;" in panel and "<b>cap</b>" not in panel


# --- the upcoming invoice -------------------------------------------------------------------

# Mid-period: the plan began at midnight (anchor day 24), so 12 of the period's 30 days x 24
# hours have passed: usage is projected at 60 times what is stored so far.
NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


async def on_committed_plan(client: Client, admin_key: str, pg: asyncpg.Connection, calls: int) -> None:
    """Acme (EUR, UTC) from midnight on a EUR 20.00 platform fee, API calls graduated (first
    10,000 free, then EUR 0.0004), a EUR 50.00 minimum commitment and 10% off, with EUR 12.00
    of prepaid credit, a spend budget of EUR 100.00 and `calls` calls stored at 05:00."""
    set_clock(client, NOON)
    await make_customer(client, admin_key, name="Acme Inc")
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    await make_meter(client, admin_key, metric="storage_gb", unit="GB")  # on no plan of acme's
    plan = {
        "id": "committed",
        "name": "Committed",
        "currency": "EUR",
        "minimumCommitment": "50.00",
        "discounts": [{"kind": "percentage", "percent": "10"}],
        "charges": [
            {"key": "base", "model": "flat", "amount": "20.00", "description": "Platform fee"},
            {
                "key": "calls",
                "model": "graduated",
                "meter": "api_calls",
                "tiers": [{"upTo": "10000", "unitPrice": "0"}, {"unitPrice": "0.0004"}],
            },
        ],
    }
    assert (await client.post("/v1/plans", headers=auth(admin_key), json=plan)).status_code == 201
    for path, body in (
        ("subscriptions", {"planId": "committed"}),
        ("credits", {"amount": "12.00"}),
        ("alert-rules", {"name": "Monthly spend", "basis": "budget", "budget": "100", "levels": ["100"]}),
    ):
        response = await client.post(f"/v1/customers/acme/{path}", headers=auth(admin_key), json=body)
        assert response.status_code == 201, response.text
    await pg.execute(
        "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
        "VALUES ('acme', 'api_calls', $1, $2, 1)",
        NOON.replace(hour=5),
        calls,
    )
    await roll_up_days(pg)


def invoice_rows(html: str) -> list[tuple[str, str]]:
    """(item, amount) of each line of the upcoming invoice, as shown."""
    rows = re.findall(
        r'<tr class="line line-\w+">\s*<th scope="row">\s*<span class="line-name">([^<]+)</span>.*?'
        r'<data class="line-amount" value="([^"]+)">',
        html,
        re.S,
    )
    return [(name, amount) for name, amount in rows]


async def test_upcoming_invoice_lines_add_up_to_the_cost_so_far(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    # Given: 12,968 calls so far on the committed plan
    await on_committed_plan(client, admin_key, pg, calls=12968)
    await make_user(pg, "cu@acme.test", role="customer", customer_id="acme")
    await sign_in(client, "cu@acme.test")
    # When: the customer opens the overview
    page = (await client.get("/portal/customers/acme")).text
    # Then: fee 20.00 + calls 2,968 x 0.0004 = 1.1872 → 1.19; 21.19 is below the 50.00
    # minimum: 28.81 added; 10% of 50.00 off; 12.00 of credit: 33.00, the cost so far
    assert invoice_rows(page) == [
        ("Platform fee", "20.00"),
        ("API calls", "1.19"),
        ("Minimum commitment EUR 50.00: EUR 28.81 added", "28.81"),
        ("10% discount", "-5.00"),
        ("Prepaid credit applied", "-12.00"),
    ]
    assert sum(Decimal(amount) for _, amount in invoice_rows(page)) == Decimal("33.00")
    assert '<data class="total" id="cost-so-far" value="33.00">33.00</data>' in page
    assert '<data id="upcoming-total" value="33.00">EUR 33.00</data>' in page
    assert '<span class="line-quantity">12,968 calls</span>' in page
    assert "<li>first 10,000 calls free: 10,000 calls</li>" in page
    assert "<li>above 10,000 calls at EUR 0.0004 each: 2,968 calls = EUR 1.1872</li>" in page
    assert "<li>Charges came to EUR 21.19, below the plan&#39;s minimum commitment</li>" in page
    # The metered card agrees with its line.
    assert "EUR 1.19 so far" in page
    assert "First 10,000 calls free; 12,968 so far — 129%; 2,968 calls charged" in page


async def test_a_free_first_tier_is_never_called_billable(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    # Given: 2,968 calls, all inside the free first tier
    await on_committed_plan(client, admin_key, pg, calls=2968)
    await make_user(pg, "cu@acme.test", role="customer", customer_id="acme")
    await sign_in(client, "cu@acme.test")
    # When: the customer opens the overview
    page = (await client.get("/portal/customers/acme")).text
    # Then: the card says what is free, beside EUR 0.00
    assert "EUR 0.00 so far" in page
    assert "First 10,000 calls free; 2,968 so far — 29%" in page
    assert '<progress id="charge-1" max="10000" value="2968"' in page
    assert "billable" not in page and "none included" not in page


async def test_customer_sees_only_the_plans_meters_and_no_api_paths(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    # Given: acme's plan charges for API calls; storage_gb is a meter of another plan
    await on_committed_plan(client, admin_key, pg, calls=5)
    await make_user(pg, "cu@acme.test", role="customer", customer_id="acme")
    await sign_in(client, "cu@acme.test")
    # When: the customer opens the overview
    page = (await client.get("/portal/customers/acme")).text
    # Then: only API calls are shown, and help points to the Alerts tab, not to the API
    assert 'id="meter-api_calls"' in page and "storage_gb" not in page
    assert "/v1/" not in page and "POST" not in page
    assert 'tab. <a href="/portal/customers/acme/alerts">' not in page  # the link sits in the sentence
    assert '<a href="/portal/customers/acme/alerts">Alerts</a> tab.' in page
    # And staff see the other meter, marked as hidden from the customer
    await staff(pg, client)
    staff_page = (await client.get("/portal/customers/acme")).text
    assert 'class="meter off-plan" id="meter-storage_gb"' in staff_page
    assert "Not on the customer's plan (hidden from the customer)" in staff_page


async def test_budget_warns_when_the_projection_is_over_it(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    # Given: 12,968 calls by noon: 778,080 projected (x 60): 20.00 + 768,080 x 0.0004 =
    # 327.23, less 10% (32.72) and 12.00 of credit: EUR 282.51 against a 100.00 budget
    await on_committed_plan(client, admin_key, pg, calls=12968)
    await make_user(pg, "cu@acme.test", role="customer", customer_id="acme")
    await sign_in(client, "cu@acme.test")
    # When: the customer opens the overview
    page = (await client.get("/portal/customers/acme")).text
    # Then: the budget card says so in words, not only in colour
    assert '<data class="total" id="cost-projected" value="282.51">282.51</data>' in page
    assert "EUR 33.00 of the EUR 100.00 budget — 33%" in page
    assert (
        '<p class="budget-warning" id="budget-1-warning"><strong><span aria-hidden="true">⚠</span> '
        "Heading over budget:</strong> Projected EUR 282.51 — 282% of the EUR 100.00 budget</p>"
    ) in page
    assert 'aria-describedby="budget-1-label budget-1-warning"' in page


async def test_after_a_plan_change_each_card_of_a_meter_names_its_plan_and_days(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await make_customer(client, admin_key, timezone="UTC", currency="EUR")
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    for plan_id, name, price in (("starter", "Starter", "0.002"), ("pro", "Pro", "0.001")):
        plan = {
            "id": plan_id,
            "name": name,
            "currency": "EUR",
            "charges": [{"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": price}],
        }
        assert (await client.post("/v1/plans", headers=auth(admin_key), json=plan)).status_code == 201
    subscriptions = "/v1/customers/acme/subscriptions"
    assert (
        await client.post(subscriptions, headers=auth(admin_key), json={"planId": "starter"})
    ).status_code == 201
    changed = await client.post(
        subscriptions, headers=auth(admin_key), json={"planId": "pro", "effective": "immediate"}
    )
    assert changed.status_code == 201, changed.text
    await staff(pg, client)

    panel = (await client.get("/portal/customers/acme/usage", headers=HTMX)).text
    names = re.findall(r'<p class="charge-name">\s*<a [^>]*>([^<]*)</a>', panel)
    assert len(names) == 2, panel
    assert names[0].startswith("API calls (Starter, ") and names[1].startswith("API calls (Pro, "), names


@pytest.mark.parametrize(("anchor", "noted"), [(1, True), (5, False)], ids=["mid-period", "from-its-start"])
async def test_a_plan_begun_mid_period_says_usage_before_it_is_not_billed(
    client: Client, admin_key: str, pg: asyncpg.Connection, anchor: int, noted: bool
) -> None:
    """The usage panel counts the period from its start; a bill from the subscription's.
    Begun on the 5th of a period from the 1st, the difference is said, not left to puzzle."""
    set_clock(client, datetime(2026, 3, 10, 12, tzinfo=UTC))
    await make_customer(client, admin_key, timezone="UTC", currency="EUR")
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    plan = {
        "id": "calls",
        "name": "Calls",
        "currency": "EUR",
        "charges": [{"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.01"}],
    }
    assert (await client.post("/v1/plans", headers=auth(admin_key), json=plan)).status_code == 201
    subscribed = await client.post(
        "/v1/customers/acme/subscriptions",
        headers=auth(admin_key),
        json={"planId": "calls", "startDate": "2026-03-05", "anchorDay": anchor},
    )
    assert subscribed.status_code == 201, subscribed.text
    await staff(pg, client)
    panel = (await client.get("/portal/customers/acme/usage", headers=HTMX)).text
    assert ('id="billed-from"' in panel) is noted
    if noted:
        assert re.search(r"Your plan started on <strong>[^<]*5 Mar 2026[^<]*</strong>", panel), panel
