"""A customer reads the invoice their period would produce so far, on a desktop and on a
phone: its lines add up exactly to the "Cost so far" the page shows."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import httpx
from playwright.async_api import Page, expect

from tests.browser.helpers import ACCESSIBILITY, api_post, login, screenshot
from tests.factories import make_meter, roll_up_days
from tests.pages.helpers import make_user

DANA = "dana@upcoming.test"
# Its own id (the live server caches the catalog for a few seconds across tests).
CUSTOMER = {"id": "upcoming-co", "name": "Upcoming Ltd", "timezone": "UTC", "currency": "USD"}
PLAN = {
    "id": "committed-usd",
    "name": "Committed (USD)",
    "currency": "USD",
    "minimumCommitment": "100.00",
    "discounts": [{"kind": "percentage", "percent": "10"}],
    "charges": [
        {"key": "platform", "model": "flat", "amount": "10.00", "description": "Platform fee"},
        {
            "key": "calls",
            "model": "graduated",
            "meter": "api_calls",
            "description": "API calls",
            "tiers": [{"upTo": "10000", "unitPrice": "0"}, {"unitPrice": "0.0004"}],
        },
    ],
}


def amount_of(text: str) -> Decimal:
    """'USD 1,234.50' or '-USD 5.00'-style text as shown, back to a number."""
    sign = -1 if "-" in text else 1
    digits = text.replace("USD", "").replace(",", "").replace("-", "").strip()
    return sign * Decimal(digits)


async def test_upcoming_invoice_adds_up_to_the_cost_so_far_on_desktop_and_phone(
    page: Page, api: httpx.AsyncClient, admin_key: str, pg: asyncpg.Connection
) -> None:
    # Given: a customer on a committed plan since midnight, with USD 5.00 of prepaid
    # credit and 12,968 calls stored this hour
    await api_post(api, admin_key, "/v1/customers", CUSTOMER)
    await make_meter(api, admin_key, metric="api_calls", unit="call")  # type: ignore[arg-type]
    await api_post(api, admin_key, "/v1/plans", PLAN)
    await api_post(api, admin_key, "/v1/customers/upcoming-co/subscriptions", {"planId": PLAN["id"]})
    await api_post(api, admin_key, "/v1/customers/upcoming-co/credits", {"amount": "5.00"})
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    await pg.execute(
        "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
        "VALUES ('upcoming-co', 'api_calls', $1, 12968, 1)",
        hour,
    )
    await roll_up_days(pg)
    await make_user(pg, DANA, customer_id="upcoming-co", name="Dana Ito")

    # When: the customer signs in and reads the overview
    await login(page, DANA)
    await page.goto("/portal/customers/upcoming-co")
    invoice = page.get_by_role("region", name="Upcoming invoice so far")
    await expect(invoice).to_be_visible()

    # Then: the lines are the bill's (10.00 + 1.19, 88.81 up to the minimum, 10% off, the
    # credit) and they add up exactly to the cost so far shown above them
    names = await invoice.locator("tr.line .line-name").all_inner_texts()
    assert names == [
        "Platform fee",
        "API calls",
        "Minimum commitment USD 100.00: USD 88.81 added",
        "10% discount",
        "Prepaid credit applied",
    ]
    amounts = [amount_of(t) for t in await invoice.locator("tr.line data.line-amount").all_inner_texts()]
    assert amounts == [
        Decimal("10.00"),
        Decimal("1.19"),
        Decimal("88.81"),
        Decimal("-10.00"),
        Decimal("-5.00"),
    ]
    cost = amount_of(await page.locator("#cost-so-far").inner_text())
    assert sum(amounts) == cost == Decimal("85.00")
    assert amount_of(await invoice.locator("#upcoming-total").inner_text()) == cost
    await expect(
        page.get_by_text("First 10,000 calls free; 12,968 so far — 129%; 2,968 calls charged")
    ).to_be_visible()
    await screenshot(page, "flow-upcoming-invoice")

    # And on a 390 px phone nothing makes the page wider than the screen
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.reload()
    await expect(invoice).to_be_visible()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await expect(page.locator("#cost-so-far")).to_be_in_viewport()
    await screenshot(page, "mobile-upcoming-invoice")
    assert ACCESSIBILITY["flow-upcoming-invoice"] == ACCESSIBILITY["mobile-upcoming-invoice"] == []
