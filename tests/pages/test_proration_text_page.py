"""A period the subscription only partly covers: its prorated lines say which days they cover,
on the invoice page and in its PDF, and the minimum true-up writes its amounts as money."""

from __future__ import annotations

import io
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

import asyncpg
import pypdf

from portal.billing.pdf.text import period_text
from portal.infrastructure.periods import zone
from tests.billing.conftest import closed_period, create_plan, draft, month_of, subscribe
from tests.factories import auth, make_customer
from tests.pages.helpers import Client
from tests.pages.test_invoices_pages import as_customer

TOKYO = "Asia/Tokyo"
PLAN = {
    "id": "committed",
    "name": "Committed",
    "currency": "JPY",
    "minimumCommitment": "20000",
    "charges": [{"key": "base", "model": "flat", "amount": "3000", "description": "Platform fee"}],
}


def yen(value: Decimal) -> Decimal:
    return value.quantize(Decimal(1), rounding=ROUND_HALF_UP)


async def test_a_partly_covered_period_names_its_days(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    # Given a JPY customer whose subscription began 10 days into its last closed period
    closed = closed_period(TOKYO)
    began = closed.start_date + timedelta(days=10)
    await make_customer(client, admin_key, id="acme", name="Acme KK", timezone=TOKYO, currency="JPY")
    await create_plan(client, admin_key, PLAN)
    await subscribe(
        client,
        admin_key,
        "acme",
        planId="committed",
        startDate=began.isoformat(),
        anchorDay=closed.anchor_day,
    )
    drafted = await draft(client, admin_key, "acme", month_of(closed.period, TOKYO))
    approved = await client.post(f"/v1/invoices/{drafted['id']}/approve", headers=auth(admin_key), json={})
    assert approved.status_code == 200, approved.text
    start = datetime.combine(began, time(0), zone(TOKYO)).astimezone(UTC)
    end = closed.period.end
    covered = (end - start).days
    days = (end - closed.period.start).days
    share = Decimal(covered) / Decimal(days)
    fee, minimum = yen(3000 * share), yen(20000 * share)
    when = f"for {period_text(start, end, TOKYO)} ({covered} of {days} days)"
    # The stored amounts are the exact share's, rounded once
    lines = {line["kind"]: line for line in approved.json()["lines"]}
    assert (lines["flat"]["amount"], lines["minimum"]["amount"]) == (str(fee), str(minimum - fee))
    minimum_words = f"Minimum commitment true-up (minimum JPY {minimum:,}, prorated from JPY 20,000)"
    assert lines["minimum"]["description"] == minimum_words

    # When the customer opens the invoice and its PDF
    await as_customer(pg, client)
    page = await client.get(f"/portal/invoices/{drafted['id']}")
    assert page.status_code == 200, page.text
    pdf = await client.get(f"/portal/invoices/{drafted['id']}/pdf")
    assert pdf.status_code == 200
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)

    # Then each prorated line says which days it covers, never the raw share
    assert f'<th scope="row">Platform fee <span class="note">{when}</span>' in page.text
    assert f'<th scope="row">{minimum_words} <span class="note">{when}</span>' in page.text
    assert "prorated ×" not in page.text and "prorated ×" not in text
    # (the description column wraps long descriptions: read the table as running text)
    running = " ".join(text.split())
    assert f"Platform fee {when} {fee:,}" in running
    # (the true-up's quantity 1 and unit price, the prorated minimum, before its amount)
    assert f"{minimum_words} {when} 1 {minimum:,} {minimum - fee:,}" in running
