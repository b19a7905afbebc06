"""An account manager in a real browser, end to end: approves the drafts awaiting review
(numbered INV-000001 and INV-000002), adds a credit note and voids an invoice, each with a
reason the audit trail shows; replays an event the worker could not store, and the
customer's billed usage grows by exactly its quantity."""

from __future__ import annotations

import asyncpg
import httpx
from playwright.async_api import Page, expect
from redis.asyncio import Redis

from tests.browser.helpers import (
    SIMPLE_PLANS,
    add_customer,
    api_post,
    closed_period_draft,
    login,
    page_text,
    send_events,
)
from tests.conftest import wait_for, wait_until_persisted
from tests.factories import auth, event, make_meter
from tests.pages.helpers import make_user

MAX = "max@vendor.test"


async def manager_of(pg: asyncpg.Connection, *customers: str) -> None:
    await make_user(pg, MAX, role="account_manager", assigned=customers, name="Max Mustermann")


async def test_manager_approves_adds_a_credit_note_and_voids_with_reasons(
    page: Page,
    api: httpx.AsyncClient,
    admin_key: str,
    ingest_key: str,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    await add_customer(api, admin_key, "acme")
    await add_customer(api, admin_key, "globex")
    await make_meter(api, admin_key, metric="api_calls", unit="call", group_by=["region"])  # type: ignore[arg-type]
    for plan in SIMPLE_PLANS.values():
        await api_post(api, admin_key, "/v1/plans", plan)
    # acme: 3,500 calls → EUR 49.00 + 2,500 x 0.002 = EUR 54.00; globex: 1,000 (all included).
    acme = await closed_period_draft(api, admin_key, ingest_key, redis, "acme", [("eu", 3500)])
    globex = await closed_period_draft(api, admin_key, ingest_key, redis, "globex", [("us", 1000)])
    await manager_of(pg, "acme", "globex")

    await login(page, MAX)
    await page.get_by_role("navigation", name="Portal").get_by_role("link", name="Bill review").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Bill review")
    queue = page.locator("table.review tbody tr")
    await expect(queue).to_have_count(2)
    acme_row = page.locator(f"#invoice-{acme['id']}")
    await expect(acme_row.locator("td.num").first).to_have_text("EUR 54.00")
    await expect(acme_row).to_contain_text("First invoice")
    await expect(page.get_by_text("No finalized invoices yet.")).to_be_visible()

    # Each approval goes through its confirmation page.
    await acme_row.get_by_role("button", name="Approve").click()
    await expect(page.locator("#confirm-total")).to_have_text("EUR 54.00")
    await page.get_by_role("button", name="Approve and issue").click()
    await expect(page.get_by_role("status")).to_have_text("Invoice INV-000001 was approved and numbered.")
    await page.locator(f"#invoice-{globex['id']}").get_by_role("button", name="Approve").click()
    await page.get_by_role("button", name="Approve and issue").click()
    await expect(page.get_by_role("status")).to_have_text("Invoice INV-000002 was approved and numbered.")
    await expect(page.get_by_text("No drafts are waiting.")).to_be_visible()
    cards = page.locator("article.invoice-card")
    await expect(cards).to_have_count(2)
    card = page.locator(f"article#invoice-{acme['id']}")
    await expect(card.get_by_role("heading", level=3)).to_have_text("INV-000001 · Acme Inc acme")
    assert f"total EUR 54.00 · approved by {MAX}" in await page_text(page, f"article#invoice-{acme['id']}")

    # A credit note without a reason is not sent: the browser asks for the required reason.
    await card.get_by_label("Amount (EUR)").fill("4.50")
    reason = card.get_by_label("Reason", exact=True).first
    await card.get_by_role("button", name="Add note").click()
    await expect(reason).to_be_focused()
    assert await reason.evaluate("el => el.validity.valueMissing")
    await expect(page.get_by_role("status")).to_have_text("Invoice INV-000002 was approved and numbered.")
    await reason.fill("Goodwill: API outage on the 3rd")
    await card.get_by_role("button", name="Add note").click()
    # A confirmation names the signed amount and what is due after it; nothing is issued yet.
    await expect(page.get_by_role("heading", level=1)).to_have_text("Issue this credit note?")
    await expect(page.locator("#confirm-amount")).to_have_text("EUR -4.50")
    await expect(page.locator("#confirm-due")).to_have_text("EUR 49.50")
    await page.get_by_role("button", name="Issue the credit note").click()
    await expect(page.get_by_role("status")).to_have_text("A note was added to invoice INV-000001.")
    card = page.locator(f"article#invoice-{acme['id']}")
    shown = await page_text(page, f"article#invoice-{acme['id']}")
    assert "total EUR 54.00 · now EUR 49.50 with notes" in shown
    await card.locator("details.trail summary").click()
    await expect(card.locator("details.trail summary")).to_have_text("History (2)")
    trail = card.locator("details.trail li")
    await expect(trail.nth(0)).to_contain_text(f"invoice.approve by {MAX}")
    await expect(trail.nth(1)).to_contain_text(f"invoice.adjust by {MAX}")
    await expect(trail.nth(1)).to_contain_text("“Goodwill: API outage on the 3rd”")

    # The customer sees the credit note on the invoice.
    await card.get_by_role("link", name="INV-000001").click()
    await expect(page.locator("#invoice-adjusted-total")).to_have_text("EUR 49.50")
    await expect(page.locator("article.adjustment h3")).to_have_text("Credit note CN-000001: EUR -4.50")
    await page.go_back()

    # Voiding globex's invoice reissues its period as a draft, back in the queue.
    card = page.locator(f"article#invoice-{globex['id']}")
    await card.get_by_label("Reason", exact=True).last.fill("Billed to the wrong entity")
    await card.get_by_role("button", name="Void").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Void this invoice?")
    await expect(page.get_by_label("Reason (kept in the audit log and shown on the invoice)")).to_have_value(
        "Billed to the wrong entity"
    )
    await page.get_by_role("button", name="Void and reissue").click()
    await expect(page.get_by_role("status")).to_have_text(
        "Invoice INV-000002 was voided; its period is reissued as a new draft."
    )
    await expect(page.locator("article.invoice-card")).to_have_count(1)
    await expect(queue).to_have_count(1)
    await expect(queue.first).to_contain_text("Globex Corporation")
    await expect(queue.first.locator("td.num").first).to_have_text("USD 49.00")

    await page.get_by_role("link", name="The whole audit log").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    rows = page.locator("main table tbody tr")
    await expect(rows).to_have_count(4)
    texts = [" ".join(t.split()) for t in await rows.all_inner_texts()]
    assert [t.split(" ", 5)[-1] for t in texts] == [
        f"{MAX} invoice.void Invoice INV-000002 Globex Corporation globex Billed to the wrong entity",
        f"{MAX} invoice.adjust Invoice INV-000001 Acme Inc acme Goodwill: API outage on the 3rd",
        f"{MAX} invoice.approve Invoice INV-000002 Globex Corporation globex –",
        f"{MAX} invoice.approve Invoice INV-000001 Acme Inc acme –",
    ], texts


async def billed_calls(api: httpx.AsyncClient, admin_key: str) -> str:
    response = await api.get(
        "/v1/customers/acme/usage",
        headers=auth(admin_key),
        params={"metric": "api_calls", "source": "billed"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["total"])


async def test_manager_replays_a_failed_event_and_it_is_billed(
    page: Page,
    api: httpx.AsyncClient,
    admin_key: str,
    ingest_key: str,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    await add_customer(api, admin_key, "acme")
    await make_meter(api, admin_key, metric="api_calls", unit="call", group_by=["region"])  # type: ignore[arg-type]
    await send_events(api, ingest_key, [event(event_id="ok-1", quantity=5)])
    await wait_until_persisted(redis)
    # The store refuses this one (as during a failed migration): the worker retries, then
    # records it as failed.
    await pg.execute("""
        CREATE FUNCTION refuse_ledger() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'ledger is read-only for maintenance'; END $$;
        CREATE TRIGGER refuse_ledger BEFORE INSERT ON event_ledger
            FOR EACH ROW EXECUTE FUNCTION refuse_ledger();
    """)
    try:
        await send_events(
            api, ingest_key, [event(event_id="lost-7", quantity=7, dimensions={"region": "eu"})]
        )
        await wait_until_persisted(redis)
    finally:
        await pg.execute("DROP TRIGGER refuse_ledger ON event_ledger; DROP FUNCTION refuse_ledger()")
    assert await pg.fetchval("SELECT status FROM failed_events WHERE event_id = 'lost-7'") == "failed"
    assert await billed_calls(api, admin_key) == "5"
    await manager_of(pg, "acme")

    await login(page, MAX)
    await page.get_by_role("navigation", name="Portal").get_by_role("link", name="Failed events").click()
    rows = page.locator("main table tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator("td").nth(2)).to_have_text("lost-7api_calls × 7, 1 dimension")
    await expect(rows.first.locator("td.reason")).to_contain_text("ledger is read-only for maintenance")
    await rows.first.get_by_role("button", name="Replay").click()
    await expect(page.get_by_role("status")).to_have_text(
        "Event queued again; it shows under Events once stored."
    )
    await expect(page.get_by_text("No failed events: every accepted event was stored.")).to_be_visible()

    async def counted() -> bool:
        return await billed_calls(api, admin_key) == "12"

    await wait_for(counted, timeout=15, what="the replayed event in the billed usage")
    await page.get_by_label("Status").select_option("replayed")
    await page.get_by_role("button", name="Show").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator("td").last).to_contain_text("Replayed")

    # Its path: stored now, counted in its hour.
    await page.goto("/portal/events/acme/lost-7")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Event lost-7")
    assert "quantity 7" in await page_text(page)
    await page.goto("/portal/audit")
    entries = page.locator("main table tbody tr")
    await expect(entries).to_have_count(1)
    await expect(entries.first.locator("td").nth(1)).to_have_text(MAX)
    await expect(entries.first.locator("td").nth(2)).to_have_text("failed_event.replay")
