"""A customer downloads the PDF of an issued invoice from its page, on a phone-sized screen."""

from __future__ import annotations

import io
import re

import asyncpg
import httpx
import pypdf
from playwright.async_api import Page, expect
from redis.asyncio import Redis

from tests.browser.helpers import api_post, closed_period_draft, login, screenshot
from tests.browser.test_flows_customer import CARA, acme_on_a_plan

ACME_DETAILS = {
    "legalName": "Acme Industries GmbH",
    "billingAddress": ["Friedrichstraße 68", "10117 Berlin", "Germany"],
    "taxId": "DE287654321",
    "billingEmails": ["accounts-payable@acme.example"],
}


async def test_customer_downloads_the_pdf_of_an_issued_invoice(
    page: Page,
    api: httpx.AsyncClient,
    admin_key: str,
    ingest_key: str,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    # Given acme with billing details and an approved invoice: 12,500 calls (1,000 included,
    # 11,500 x EUR 0.002 = EUR 23.00) plus the EUR 49.00 fee
    await acme_on_a_plan(api, admin_key, pg, subscribe=False)
    details = await api.put(
        "/v1/customers/acme/billing-details",
        headers={"Authorization": f"Bearer {admin_key}"},
        json=ACME_DETAILS,
    )
    assert details.status_code == 200, details.text
    draft = await closed_period_draft(
        api, admin_key, ingest_key, redis, "acme", [("eu", 4000), ("us", 6500), ("ap", 2000)]
    )
    await api_post(api, admin_key, f"/v1/invoices/{draft['id']}/approve", {}, expected=200)

    # When Cara opens it on a phone
    await page.set_viewport_size({"width": 390, "height": 844})
    await login(page, CARA)
    await page.goto(f"/portal/invoices/{draft['id']}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Invoice INV-000001")
    bill_to = page.locator("#invoice-bill-to")
    await expect(bill_to).to_contain_text("Acme Industries GmbH")
    await expect(bill_to).to_contain_text("Tax id: DE287654321")
    await expect(page.locator("#invoice-due")).to_have_text(re.compile(r"^\d{1,2} [A-Z][a-z]{2} \d{4}$"))
    # Then the amounts are on screen without scrolling sideways
    total = page.locator("#invoice-lines tr.line-usage td.num").last
    await expect(total).to_have_text("EUR 23.00")
    # (below the fold is fine: what matters is that it is not off to the right)
    box = await total.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390

    # And the PDF link downloads INV-000001.pdf, the invoice read back from it
    async with page.expect_download() as caught:
        await page.locator("#invoice-pdf").click()
    download = await caught.value
    assert download.suggested_filename == "INV-000001.pdf"
    path = await download.path()
    content = path.read_bytes()
    assert content.startswith(b"%PDF")
    lines = pypdf.PdfReader(io.BytesIO(content)).pages[0].extract_text().splitlines()
    assert "Invoice number INV-000001" in lines
    assert "Acme Industries GmbH" in lines
    assert "API calls 12,500 0.002 23.00" in lines
    assert "Total EUR 72.00" in lines

    await page.get_by_role("link", name="Printable view").click()
    await expect(page.locator("#invoice-total")).to_have_text("EUR 72.00")
    await screenshot(page, "flow-invoice-print")
