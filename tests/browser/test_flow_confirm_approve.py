"""An account manager approves a draft from its invoice page, through the confirmation:
opened from the review queue, cancelled once (nothing changes), then approved; the
customer then sees the numbered invoice."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import httpx
from playwright.async_api import Page, expect
from redis.asyncio import Redis

from portal.pages.formatting import period_text
from tests.browser.helpers import (
    SIMPLE_PLANS,
    add_customer,
    api_post,
    closed_period_draft,
    login,
    page_text,
    screenshot,
)
from tests.factories import make_meter
from tests.pages.helpers import make_user

MAX = "max@vendor.test"
CUSTOMER_USER = "carol@acme.test"


async def test_manager_confirms_before_an_invoice_is_approved(
    page: Page,
    api: httpx.AsyncClient,
    admin_key: str,
    ingest_key: str,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    # Given acme's closed period: 3,500 calls → EUR 49.00 + 2,500 x 0.002 = EUR 54.00
    await add_customer(api, admin_key, "acme")
    await make_meter(api, admin_key, metric="api_calls", unit="call", group_by=["region"])  # type: ignore[arg-type]
    await api_post(api, admin_key, "/v1/plans", SIMPLE_PLANS["EUR"])
    draft = await closed_period_draft(api, admin_key, ingest_key, redis, "acme", [("eu", 3500)])
    period = period_text(
        datetime.fromisoformat(draft["periodStart"]),
        datetime.fromisoformat(draft["periodEnd"]),
        "Europe/Berlin",
    )
    await make_user(pg, MAX, role="account_manager", assigned=("acme",), name="Max Mustermann")
    await make_user(pg, CUSTOMER_USER, role="customer", customer_id="acme", name="Carol")

    # When the manager opens it from the queue and asks to approve it
    await login(page, MAX)
    await page.goto("/portal/review")
    await page.locator(f"#invoice-{draft['id']}").get_by_role("link", name="Open").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Draft for {period}")
    review = page.locator("section.staff-actions")
    await review.get_by_role("button", name="Approve").click()

    # Then the confirmation names the customer, the period and the total
    await expect(page.get_by_role("heading", level=1)).to_have_text("Approve this invoice?")
    assert (
        await page_text(page, "#confirm-question")
        == f"Approve the invoice for Acme Inc, {period}, EUR 54.00?"
    )
    await screenshot(page, "flow-approve-confirm")

    # Cancel leaves it a draft, back on its page
    await page.get_by_role("link", name="Cancel").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Draft for {period}")
    await expect(page.locator("#invoice-number")).to_have_text(
        "None yet: a draft is numbered when it is approved"
    )
    assert await pg.fetchval("SELECT status FROM invoices WHERE id = $1", draft["id"]) == "draft"

    # Approving numbers it; while the answer is on its way the button says so and takes no
    # second click
    await page.locator("section.staff-actions").get_by_role("button", name="Approve").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Approve this invoice?")
    # What the button showed once the form was sent, kept across the navigation (the
    # listener runs after portal.js's, and its timer after the one that disables).
    await page.evaluate(
        """() => document.addEventListener("submit", () => setTimeout(() => {
            const b = document.querySelector("form.confirm button[type=submit]");
            const shown = [b.textContent, b.getAttribute("aria-busy"), b.disabled];
            sessionStorage.setItem("busy", JSON.stringify(shown));
        }, 0))"""
    )
    await page.get_by_role("button", name="Approve and issue").click()
    await expect(page.get_by_role("status")).to_have_text("Invoice INV-000001 was approved and numbered.")
    assert await page.evaluate("() => sessionStorage.getItem('busy')") == '["Working…","true",true]'
    await expect(page.get_by_role("heading", level=1)).to_have_text("Invoice INV-000001")
    await expect(page.locator("#invoice-total")).to_have_text("EUR 54.00")

    # And the customer sees it, without the staff actions
    await page.get_by_role("button", name="Sign out").click()
    await login(page, CUSTOMER_USER)
    await page.goto(f"/portal/invoices/{draft['id']}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Invoice INV-000001")
    await expect(page.locator("#invoice-total")).to_have_text("EUR 54.00")
    await expect(page.locator("section.staff-actions")).to_have_count(0)
