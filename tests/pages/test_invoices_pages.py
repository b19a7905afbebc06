"""A customer's invoices: list, detail, printable view, CSV; drafts are for staff only."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from typing import Any

import asyncpg
import pypdf
from redis.asyncio import Redis

from tests.billing.conftest import closed_period, create_plan, draft, month_of, subscribe
from tests.conftest import WorkerProcess, wait_for, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter
from tests.pages.helpers import Client, make_user, sign_in

TZ = "Asia/Kolkata"
PLAN = {
    "id": "metered",
    "name": "Metered",
    "currency": "USD",
    "charges": [
        {"key": "base", "model": "flat", "amount": "10.00", "description": "Platform fee"},
        {
            "key": "calls",
            "model": "graduated",
            "meter": "api_calls",
            "includedQuantity": "100",
            "description": "API calls",
            "tiers": [{"upTo": "1000", "unitPrice": "0.01"}, {"upTo": None, "unitPrice": "0.005"}],
        },
    ],
}


async def invoices_world(
    client: Client, key: str, name: str = "Acme Inc", plan: dict[str, Any] = PLAN
) -> tuple[dict[str, Any], dict[str, Any]]:
    """acme (USD) on `plan` with INV-000001 for its closed period and a draft for the
    current one."""
    closed = closed_period(TZ)
    await make_customer(client, key, id="acme", name=name, timezone=TZ, currency="USD")
    await make_customer(client, key, id="globex", name="Globex", timezone=TZ, currency="USD")
    await make_meter(client, key)
    await create_plan(client, key, plan)
    await subscribe(
        client,
        key,
        "acme",
        planId=plan["id"],
        startDate=closed.start_date.isoformat(),
        anchorDay=closed.anchor_day,
    )
    invoice = await draft(client, key, "acme", month_of(closed.period, TZ))
    approved = await client.post(f"/v1/invoices/{invoice['id']}/approve", headers=auth(key), json={})
    assert approved.status_code == 200, approved.text
    current = await draft(client, key, "acme")
    return dict(approved.json()), current


async def as_customer(pg: asyncpg.Connection, client: Client, customer: str = "acme") -> None:
    await make_user(pg, f"user@{customer}.test", customer_id=customer)
    await sign_in(client, f"user@{customer}.test")


async def as_admin(pg: asyncpg.Connection, client: Client) -> None:
    await make_user(pg, "ada@vendor.test", role="admin")
    await sign_in(client, "ada@vendor.test")


async def test_customer_sees_issued_invoices_and_the_upcoming_one(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    finalized, current = await invoices_world(client, admin_key)
    await as_customer(pg, client)
    page = await client.get("/portal/customers/acme/invoices")
    assert page.status_code == 200, page.text
    assert f'<a href="/portal/invoices/{finalized["id"]}">INV-000001</a>' in page.text
    assert f'/portal/invoices/{current["id"]}"' not in page.text  # drafts are staff-only
    assert ">Draft<" not in page.text
    assert '<td class="num" data-label="Total">USD 10.00</td>' in page.text
    assert '<th scope="col">Service period</th>' in page.text and "IST" in page.text
    assert 'id="upcoming-so-far">USD 10.00<' in page.text  # the flat fee; no usage yet

    draft_page = await client.get(f"/portal/invoices/{current['id']}")
    assert draft_page.status_code == 404
    assert "There is no invoice you can see." in draft_page.text
    assert (await client.get(f"/portal/invoices/{current['id']}/print")).status_code == 404


async def test_invoice_detail_shows_lines_tiers_and_totals(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    finalized, _ = await invoices_world(client, admin_key)
    await as_customer(pg, client)
    page = await client.get(f"/portal/invoices/{finalized['id']}")
    assert page.status_code == 200, page.text
    assert "<h1>Invoice INV-000001</h1>" in page.text
    assert '<th scope="row">Platform fee</th>' in page.text
    calls = re.search(r'<tr class="line-usage">(.*?)</tr>', page.text, re.S)
    assert calls is not None
    cells = re.findall(r'<td class="num" data-label="[^"]+">([^<]*)</td>', calls.group(1))
    assert cells == ["0", "tiered", "USD 0.00"]
    assert "100 included, 0 billable" in calls.group(1)
    assert 'id="invoice-total">USD 10.00<' in page.text
    assert "Usage counted through" not in page.text  # only drafts have one
    assert f'href="/portal/invoices/{finalized["id"]}/print"' in page.text

    printable = await client.get(f"/portal/invoices/{finalized['id']}/print")
    assert printable.status_code == 200
    assert "<nav" not in printable.text and "Sign out" not in printable.text
    assert "css/customer.css" in printable.text
    assert 'id="invoice-total">USD 10.00<' in printable.text


async def test_staff_see_drafts_with_complete_through(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    _, current = await invoices_world(client, admin_key)
    await as_admin(pg, client)
    listing = await client.get("/portal/customers/acme/invoices")
    period = re.escape("Draft for ") + r"\d{1,2}[^<]* \d{4}"
    assert re.search(f'<a href="/portal/invoices/{current["id"]}">{period}</a>', listing.text)
    page = await client.get(f"/portal/invoices/{current['id']}")
    assert page.status_code == 200, page.text
    assert re.search(f"<h1>{period}</h1>", page.text)
    assert "<dt>Usage counted through</dt>" in page.text
    assert "Draft — awaiting review" not in page.text  # the current period is still open
    assert "Draft — period still open" in page.text


async def test_csv_of_a_customers_invoices(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    await invoices_world(client, admin_key)
    await as_customer(pg, client)
    export = await client.get("/portal/customers/acme/invoices.csv")
    assert export.status_code == 200
    rows = list(csv.reader(io.StringIO(export.text)))
    assert rows[0][:4] == ["document", "kind", "invoice_id", "invoice_number"]
    assert [(r[0], r[6], r[12]) for r in rows[1:]] == [("INV-000001", "finalized", "10.00")]


async def test_other_customers_and_unknown_invoices_are_404(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    finalized, current = await invoices_world(client, admin_key)
    await as_customer(pg, client, "globex")
    for path in (
        f"/portal/invoices/{finalized['id']}",
        f"/portal/invoices/{finalized['id']}/print",
        f"/portal/invoices/{current['id']}",
        "/portal/customers/acme/invoices",
        "/portal/customers/acme/invoices.csv",
        "/portal/invoices/999999",
    ):
        response = await client.get(path)
        assert response.status_code == 404, path
    own = await client.get("/portal/customers/globex/invoices")
    assert own.status_code == 200
    assert "No invoices yet." in own.text


async def test_customer_name_is_escaped_on_invoices(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    finalized, _ = await invoices_world(client, admin_key, name="<script>alert(1)</script>")
    await as_customer(pg, client)
    for path in (
        "/portal/customers/acme/invoices",
        f"/portal/invoices/{finalized['id']}",
        f"/portal/invoices/{finalized['id']}/print",
    ):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "<script>alert(1)</script>" not in page.text


async def issued_with_late_calls(
    client: Client, admin_key: str, ingest_key: str, redis: Redis, name: str = "Acme Inc"
) -> tuple[dict[str, Any], int]:
    """acme (USD, on PLAN) with INV-000001 issued for its closed period's 1,500 calls
    (USD 22.00), and the instant (ms) those calls were made, for late events to follow."""
    closed = closed_period(TZ)
    await make_customer(client, admin_key, id="acme", name=name, timezone=TZ, currency="USD")
    await make_meter(client, admin_key)
    await create_plan(client, admin_key, PLAN)
    await subscribe(
        client,
        admin_key,
        "acme",
        planId="metered",
        startDate=closed.start_date.isoformat(),
        anchorDay=closed.anchor_day,
    )
    during = closed.ms(closed.period.start + timedelta(hours=2))
    sent = await client.post(
        "/v1/events/batch",
        headers=auth(ingest_key),
        json={"events": [event(quantity=1500, timestamp=during)]},
    )
    assert sent.status_code == 202, sent.text
    await wait_until_persisted(redis)
    invoice = await draft(client, admin_key, "acme", month_of(closed.period, TZ))
    approved = await client.post(f"/v1/invoices/{invoice['id']}/approve", headers=auth(admin_key), json={})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["number"], approved.json()["total"]) == ("INV-000001", "22.00")
    return dict(approved.json()), during


async def test_tiers_and_a_late_event_debit_note_with_its_line_deltas(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    invoice, during = await issued_with_late_calls(client, admin_key, ingest_key, redis)
    late = await client.post(
        "/v1/events/batch",
        headers=auth(ingest_key),
        json={"events": [event(quantity=100, timestamp=during, event_id="late-1")]},
    )
    assert late.status_code == 202, late.text

    async def adjusted() -> bool | None:
        view = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth(admin_key))).json()
        return True if view["adjustments"] else None

    await wait_for(adjusted, what="the automatic adjustment")
    await as_customer(pg, client)
    page = await client.get(f"/portal/invoices/{invoice['id']}")
    assert page.status_code == 200, page.text
    # 1,500 calls, 100 included, 1,400 billable: 1,000 at 0.01 and 400 at 0.005.
    calls = re.search(r'<tr class="line-usage">(.*?)</tr>', page.text, re.S)
    assert calls is not None
    assert re.findall(r'<td class="num" data-label="[^"]+">([^<]*)</td>', calls.group(1)) == [
        "1,500",
        "tiered",
        "USD 12.00",
    ]
    assert "100 included, 1,400 billable" in calls.group(1)
    tiers = re.findall(r'<tr class="tier">(.*?)</tr>', page.text, re.S)
    assert len(tiers) == 2
    assert ">0 to 1,000</th>" in tiers[0]
    assert (
        '<td class="num" data-label="Quantity">1,000</td><td class="num" data-label="Unit price">0.01</td>'
        '<td class="num" data-label="Amount">USD 10.00</td>' in tiers[0]
    )
    assert ">above 1,000</th>" in tiers[1]
    assert "Debit note DN-000001: USD 0.50" in page.text
    assert '<td class="num">100</td><td class="num">USD 0.50</td>' in page.text
    assert "1 late event" in page.text
    assert 'id="invoice-total">USD 22.00<' in page.text
    assert 'id="invoice-adjusted-total">USD 22.50<' in page.text


async def test_invoice_page_writes_deductions_as_the_pdf_does(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    # Given an issued invoice whose plan takes 10% off (the platform fee of USD 10.00)
    plan = {**PLAN, "id": "discounted", "discounts": [{"kind": "percentage", "percent": "10"}]}
    issued, _ = await invoices_world(client, admin_key, plan=plan)
    await as_customer(pg, client)

    # When the customer opens it
    page = await client.get(f"/portal/invoices/{issued['id']}")

    # Then the discount and the (unused) credit read as deductions, as in the PDF, and the
    # total is what is left
    assert page.status_code == 200, page.text
    totals = re.search(r'<table class="data totals" id="invoice-totals">(.*?)</table>', page.text, re.S)
    assert totals is not None
    rows = re.findall(r'<th scope="row">([^<]*)</th><td class="num"[^>]*>([^<]*)</td>', totals.group(1))
    assert rows == [
        ("Subtotal", "USD 10.00"),
        ("Discounts", "USD -1.00"),
        ("Prepaid credit applied", "USD 0.00"),
        ("Total", "USD 9.00"),
    ]
    pdf = await client.get(f"/portal/invoices/{issued['id']}/pdf")
    assert pdf.status_code == 200, pdf.text
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
    for row in rows:
        assert " ".join(row) in text.splitlines(), row
