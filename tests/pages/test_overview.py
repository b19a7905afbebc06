"""The customer list and a customer's live usage page."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

import asyncpg
import pytest
from redis.asyncio import Redis

from portal.infrastructure.paths import STATIC_DIR
from tests.clock import BOUNDARIES, Boundary, recent_boundaries, set_clock
from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter
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
    assert "12,400 of 10,000 call included — 124%; 2,400 billable" in panel.text
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
    assert labels == ["EUR 6.38 of the EUR 8.00 budget — 79%", "5.5 call of the 4 call budget — 137%"]
    assert '<progress id="budget-2" max="4" value="4"' in panel
    assert "Calls &lt;b&gt;cap&lt;/b&gt;" in panel and "<b>cap</b>" not in panel
