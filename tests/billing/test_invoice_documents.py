"""Invoice and note documents: the PDF read back as text, its download (API and portal,
who may), the billing details it is addressed with, and the email that carries it."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
import pypdf
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.billing.catalog_file import apply_catalog
from portal.billing.document_email import send_document_email
from portal.billing.manual_adjustments import add_manual_adjustment
from portal.billing.pdf.parties import BillTo, Parties, Seller
from portal.billing.pdf.render import invoice_pdf, note_pdf
from portal.billing.pdf.text import period_text
from portal.billing.views import AdjustmentLineView, AdjustmentView, InvoiceView, LineView, TierView
from portal.cli.demo import demo_catalog
from portal.infrastructure.db import create_engine, session_factory, transaction
from portal.infrastructure.settings import Issuer, Settings
from tests.billing.conftest import closed_period, create_plan, draft, month_of, subscribe
from tests.conftest import RUNNING_WORKERS, WorkerProcess, wait_for
from tests.factories import auth, make_customer
from tests.pages.helpers import Client, hidden, make_user, sign_in
from tests.sinks import SmtpServer

BERLIN = "Europe/Berlin"
DEC_START = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # 1 Dec 2026 00:00 CET
JAN_START = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)  # 1 Jan 2027 00:00 CET
ISSUED = datetime(2027, 1, 2, 9, 30, tzinfo=UTC)
PARTIES = Parties(
    issuer=Seller(
        "Meterly GmbH", ["Torstraße 1", "10119 Berlin", "Germany"], "DE123456789", "billing@meterly.example"
    ),
    bill_to=BillTo("Acme Incorporated", ["Hauptstraße 5", "80331 München"], "DE811111111", "acme"),
    payment_terms_days=30,
    payment_instructions="IBAN DE89 3704 0044 0532 0130 00",
)


def text_of(pdf: bytes) -> str:
    assert pdf.startswith(b"%PDF-")
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def line(position: int, kind: str, description: str, amount: str, **fields: Any) -> LineView:
    values: dict[str, Any] = {
        "position": position,
        "kind": kind,
        "charge_key": description.lower(),
        "meter": None,
        "description": description,
        "quantity": "1",
        "included_quantity": "0",
        "billable_quantity": "1",
        "unit_price": None,
        "tiers": [],
        "proration": "1",
        "amount": amount,
        "plan_id": "growth",
        "segment_start": DEC_START,
        "segment_end": JAN_START,
    }
    values.update(fields)
    return LineView(**values)


def invoice(**fields: Any) -> InvoiceView:
    values: dict[str, Any] = {
        "id": 7,
        "number": "INV-000001",
        "customer_id": "acme",
        "currency": "EUR",
        "state": "finalized",
        "period_start": DEC_START,
        "period_end": JAN_START,
        "review_after": JAN_START + timedelta(days=1),
        "subtotal": "644.00",
        "discount_total": "64.40",
        "credits_applied": "0.00",
        "total": "579.60",
        "lines": [
            line(0, "flat", "Platform fee", "49.00"),
            line(
                1,
                "usage",
                "API calls",
                "595.00",
                meter="api_calls",
                quantity="1500000",
                billable_quantity="1500000",
                tiers=[
                    TierView("0", "10000", "10000", "0", "0", "0.00"),
                    TierView("10000", "1000000", "990000", "0.0005", "0", "495.00"),
                    TierView("1000000", None, "500000", "0.0002", "0", "100.00"),
                ],
            ),
            line(2, "discount", "Annual commitment", "-64.40", unit_price="10"),
        ],
        "adjustments": [],
        "adjusted_total": "579.60",
        "computed_at": ISSUED,
        "complete_through": ISSUED,
        "finalized_at": ISSUED,
        "approved_by": "ada@vendor.test",
        "voided_at": None,
        "void_reason": None,
        "replaces_id": None,
        "replaced_by_id": None,
    }
    values.update(fields)
    return InvoiceView(**values)


# --- the document itself (pure) ---------------------------------------------------------


def test_an_invoice_pdf_reads_as_the_invoice() -> None:
    # Given a finalized EUR invoice with a tiered charge and a discount
    # When it is printed
    pdf = invoice_pdf(invoice(), PARTIES, BERLIN)
    text = text_of(pdf)
    # Then the text read back is the invoice, word for word
    lines = text.splitlines()
    assert lines[0] == "Invoice INV-000001"
    for expected in (
        "Meterly GmbH",
        "Torstraße 1",
        "10119 Berlin",
        "Tax id: DE123456789",
        "billing@meterly.example",
        "Acme Incorporated",
        "Hauptstraße 5",
        "80331 München",
        "Tax id: DE811111111",
        "Account: acme",
        "Invoice number INV-000001",
        "Issue date 2 Jan 2027",
        "Service period 1–31 Dec 2026",
        "Due date 1 Feb 2027",
        "Payment terms Net 30",
        "Platform fee 49.00",
        "API calls 1,500,000 tiered 595.00",
        "    0 to 10,000 10,000 0.00 0.00",
        "    10,000 to 1,000,000 990,000 0.0005 495.00",
        "    above 1,000,000 500,000 0.0002 100.00",
        "Annual commitment 10% -64.40",
        "Subtotal EUR 644.00",
        "Discounts EUR -64.40",
        "Prepaid credit applied EUR 0.00",
        "Total EUR 579.60",
        "Amount due: EUR 579.60 by 1 Feb 2027",
        "IBAN DE89 3704 0044 0532 0130 00",
    ):
        assert expected in lines, expected
    assert "VOID" not in text
    # And the same invoice always gives the same bytes (no clock is read)
    assert invoice_pdf(invoice(), PARTIES, BERLIN) == pdf


def test_a_void_invoice_is_stamped_and_rupees_print() -> None:
    # Given an INR invoice that was voided
    voided = invoice(
        currency="INR",
        state="void",
        subtotal="4100.00",
        discount_total="0.00",
        total="4100.00",
        adjusted_total="4100.00",
        lines=[line(0, "flat", "Platform fee", "4100.00")],
        voided_at=ISSUED + timedelta(days=3),
        void_reason="Billed to the wrong entity",
    )
    # When it is printed (in Kolkata)
    text = text_of(invoice_pdf(voided, PARTIES, "Asia/Kolkata"))
    # Then it is stamped VOID with why, and owes nothing; the rupee sign prints
    lines = text.splitlines()
    assert "VOID: voided on 5 Jan 2027. Billed to the wrong entity" in lines
    assert "VOID" in lines  # the stamp across the page
    assert "Total INR 4,100.00" in lines
    assert "Nothing is due on a void invoice." in lines
    assert not any(entry.startswith("Due date") for entry in lines)
    assert "₹" not in text  # nothing is due, so no amount due is printed
    due = invoice(
        currency="INR",
        total="4100.00",
        adjusted_total="4100.00",
        lines=[line(0, "flat", "Platform fee", "4100.00")],
    )
    assert "Amount due: INR 4,100.00 by 1 Feb 2027" in text_of(invoice_pdf(due, PARTIES, "Asia/Kolkata"))


def credit_note(lines: list[AdjustmentLineView]) -> AdjustmentView:
    """CN-000001: EUR 12.50 credited on INV-000001 for duplicate events."""
    return AdjustmentView(
        id=3,
        invoice_id=7,
        number="CN-000001",
        kind="credit",
        amount="-12.50",
        subtotal_delta="-12.50",
        discount_delta="0.00",
        lines=lines,
        reason="Duplicate events from a retried batch",
        event_count=0,
        event_ids=[],
        created_at=datetime(2027, 1, 10, 12, 0, tzinfo=UTC),
    )


def test_a_credit_note_names_the_invoice_it_corrects() -> None:
    # Given a credit note on INV-000001 for usage that was billed twice
    note = credit_note(
        [AdjustmentLineView("usage", "calls", "api_calls", "API calls", DEC_START, "-25000", "-12.50")]
    )
    # When it is printed
    lines = text_of(note_pdf(note, invoice(), PARTIES, BERLIN)).splitlines()
    # Then it reads as a credit note against that invoice
    assert lines[0] == "Credit note CN-000001"
    for expected in (
        "Note number CN-000001",
        "Issue date 10 Jan 2027",
        "Corrects invoice INV-000001",
        "Service period 1–31 Dec 2026",
        "Duplicate events from a retried batch",
        "API calls -25,000 -12.50",
        "Total credited EUR -12.50",
        "EUR 12.50 is credited against invoice INV-000001.",
        "Acme Incorporated",
    ):
        assert expected in lines, expected
    assert not any(entry.startswith("Due date") for entry in lines)


def test_a_draft_is_not_a_document() -> None:
    with pytest.raises(ValueError, match="a draft is not a document"):
        invoice_pdf(invoice(number=None, state="draft", finalized_at=None), PARTIES, BERLIN)


def test_periods_read_as_days() -> None:
    assert period_text(DEC_START, JAN_START, BERLIN) == "1–31 Dec 2026"
    assert period_text(DEC_START + timedelta(days=14), JAN_START + timedelta(days=14), BERLIN) == (
        "15 Dec 2026 – 14 Jan 2027"
    )
    nov_15 = datetime(2026, 11, 14, 23, 0, tzinfo=UTC)
    assert period_text(nov_15, nov_15 + timedelta(days=30), BERLIN) == "15 Nov – 14 Dec 2026"


# --- through the API and the portal -------------------------------------------------------

PLAN = {
    "id": "growth",
    "name": "Growth",
    "currency": "EUR",
    "charges": [{"key": "base", "model": "flat", "amount": "49.00", "description": "Platform fee"}],
}
DETAILS = {
    "legalName": "Acme Incorporated GmbH",
    "billingAddress": ["Hauptstraße 5", "80331 München", "Germany"],
    "taxId": "DE811111111",
    "billingEmails": ["ap@acme.test", "cfo@acme.test"],
}


async def issued_invoice(client: Client, key: str) -> dict[str, Any]:
    """acme (EUR, Berlin) with billing details, and INV-000001 for its closed period."""
    closed = closed_period(BERLIN)
    await make_customer(client, key, id="acme", name="Acme", timezone=BERLIN, currency="EUR")
    await make_customer(client, key, id="globex", name="Globex", timezone=BERLIN, currency="EUR")
    set_details = await client.put("/v1/customers/acme/billing-details", headers=auth(key), json=DETAILS)
    assert set_details.status_code == 200, set_details.text
    await create_plan(client, key, PLAN)
    await subscribe(
        client,
        key,
        "acme",
        planId="growth",
        startDate=closed.start_date.isoformat(),
        anchorDay=closed.anchor_day,
    )
    drafted = await draft(client, key, "acme", month_of(closed.period, BERLIN))
    approved = await client.post(f"/v1/invoices/{drafted['id']}/approve", headers=auth(key), json={})
    assert approved.status_code == 200, approved.text
    return dict(approved.json())


async def test_billing_details_are_validated_and_audited(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await make_customer(client, admin_key, id="acme", name="Acme", timezone=BERLIN, currency="EUR")
    path = "/v1/customers/acme/billing-details"
    for hostile in (
        {"billingEmails": ["not-an-address"]},
        {"billingEmails": ["a@b.test", "A@b.test"]},
        {"billingEmails": [f"x{i}@acme.test" for i in range(11)]},
        {"billingEmails": ["Ann <ann@acme.test>"]},
        {"billingAddress": ["line\nbreak"]},
        {"billingAddress": ["x" * 121]},
        {"billingAddress": ["1", "2", "3", "4", "5", "6", "7"]},
        {"legalName": "   "},
        {"taxId": "x\x00"},
        {"legalName": 5},
    ):
        answer = await client.put(path, headers=auth(admin_key), json=hostile)
        assert answer.status_code == 422, (hostile, answer.text)
    assert (
        await client.put("/v1/customers/nobody/billing-details", headers=auth(admin_key), json={})
    ).status_code == 404
    before = await client.get("/v1/customers/acme", headers=auth(admin_key))
    assert before.json()["billingEmails"] == []

    answer = await client.put(path, headers=auth(admin_key), json=DETAILS)
    assert answer.status_code == 200, answer.text
    assert {k: answer.json()[k] for k in DETAILS} == DETAILS
    entry = await pg.fetchrow("SELECT actor, action, object_id, detail FROM audit_log")
    assert (entry["action"], entry["object_id"]) == ("customer.billing_details", "acme")
    assert entry["actor"].startswith("key:")
    assert '"cfo@acme.test"' in entry["detail"]


async def test_the_pdf_downloads_from_the_api(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    # Given an approved invoice
    issued = await issued_invoice(client, admin_key)
    # When the API is asked for its PDF
    answer = await client.get(f"/v1/invoices/{issued['id']}/pdf", headers=auth(admin_key))
    # Then it is the invoice, named by its number, addressed with the billing details
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.headers["content-disposition"] == 'attachment; filename="INV-000001.pdf"'
    lines = text_of(answer.content).splitlines()
    issue_day = datetime.fromisoformat(issued["finalizedAt"]).astimezone(ZoneInfo(BERLIN)).date()
    due_day = issue_day + timedelta(days=30)
    assert "Invoice number INV-000001" in lines
    assert f"Issue date {issue_day.day} {issue_day:%b %Y}" in lines
    assert f"Due date {due_day.day} {due_day:%b %Y}" in lines
    assert "Acme Incorporated GmbH" in lines and "80331 München" in lines and "Tax id: DE811111111" in lines
    assert "Platform fee 49.00" in lines
    assert "Total EUR 49.00" in lines
    # And it needs the admin key; a draft has no PDF (409), an unknown invoice none (404)
    assert (await client.get(f"/v1/invoices/{issued['id']}/pdf")).status_code == 401
    current = await draft(client, admin_key, "acme")
    assert (await client.get(f"/v1/invoices/{current['id']}/pdf", headers=auth(admin_key))).status_code == 409
    assert (await client.get("/v1/invoices/999999/pdf", headers=auth(admin_key))).status_code == 404


async def test_the_pdf_keeps_the_details_it_was_issued_with(client: Client, admin_key: str) -> None:
    issued = await issued_invoice(client, admin_key)
    moved = {**DETAILS, "billingAddress": ["Neue Straße 1", "10115 Berlin"]}
    assert (
        await client.put("/v1/customers/acme/billing-details", headers=auth(admin_key), json=moved)
    ).status_code == 200
    lines = text_of(
        (await client.get(f"/v1/invoices/{issued['id']}/pdf", headers=auth(admin_key))).content
    ).splitlines()
    assert "80331 München" in lines and "10115 Berlin" not in lines


async def test_the_customer_downloads_their_own_pdf_only(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    issued = await issued_invoice(client, admin_key)
    current = await draft(client, admin_key, "acme")
    await make_user(pg, "user@globex.test", customer_id="globex")
    await sign_in(client, "user@globex.test")
    # Another customer's invoice: the same 404 as one that does not exist
    assert (await client.get(f"/portal/invoices/{issued['id']}/pdf")).status_code == 404
    assert (await client.get("/portal/invoices/999999/pdf")).status_code == 404

    await make_user(pg, "user@acme.test", customer_id="acme")
    await sign_in(client, "user@acme.test")
    page = await client.get(f"/portal/invoices/{issued['id']}")
    assert f'href="/portal/invoices/{issued["id"]}/pdf"' in page.text
    assert 'id="invoice-bill-to"><strong>Acme Incorporated GmbH</strong><br>Hauptstraße 5' in page.text
    assert "<h1>Invoice INV-000001</h1>" in page.text
    answer = await client.get(f"/portal/invoices/{issued['id']}/pdf")
    assert answer.status_code == 200
    assert answer.headers["content-disposition"] == 'attachment; filename="INV-000001.pdf"'
    assert "Total EUR 49.00" in text_of(answer.content).splitlines()
    assert (await client.get(f"/portal/invoices/{current['id']}/pdf")).status_code == 404  # a draft


# --- the email ---------------------------------------------------------------------------


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=2)
    yield session_factory(engine)
    await engine.dispose()


async def test_finalizing_emails_the_pdf_to_the_billing_contacts_once(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    smtp_server: SmtpServer,
) -> None:
    # No worker may take the email job first (one left running by an earlier test in this
    # process would send it, and this test's sends would find it "already" sent).
    for running in list(RUNNING_WORKERS):
        running.stop()
    # Given an invoice just approved: its email is owed, in the approving transaction
    issued = await issued_invoice(client, admin_key)
    owed = await pg.fetchrow("SELECT status, invoice_id FROM document_emails WHERE number = 'INV-000001'")
    assert (owed["status"], owed["invoice_id"]) == ("pending", issued["id"])
    mail = dataclasses.replace(
        settings,
        smtp_url=f"smtp://127.0.0.1:{smtp_server.port}?from=invoices@meterly.test&mode=insecure",
        issuer=Issuer(name="Meterly GmbH", email="billing@meterly.test"),
    )
    now = datetime(2027, 1, 2, 9, 30, tzinfo=UTC)
    # When the job sends it, and runs again (a retry)
    assert await send_document_email(sessions, mail, "acme", "INV-000001", now=now) == "sent"
    assert await send_document_email(sessions, mail, "acme", "INV-000001", now=now) == "already"
    # Then the billing contacts got it once, the PDF attached
    [received] = smtp_server.messages
    assert sorted(received.rcpt_tos) == ["ap@acme.test", "cfo@acme.test"]
    message = received.message
    assert message["Subject"].startswith("Invoice INV-000001 from Usage Portal: EUR 49.00 due ")
    assert message["To"] == "ap@acme.test, cfo@acme.test"
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == "INV-000001.pdf"
    assert "Invoice number INV-000001" in text_of(attachment.get_content()).splitlines()
    assert f"/portal/invoices/{issued['id']}" in message.get_body(("plain",)).get_content()
    row = await pg.fetchrow("SELECT status, attempts, recipients, sent_at FROM document_emails")
    assert (row["status"], row["attempts"], row["recipients"]) == (
        "sent",
        1,
        ["ap@acme.test", "cfo@acme.test"],
    )
    assert row["sent_at"] == now


async def test_without_smtp_the_email_is_recorded_as_not_sent(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # No worker may take the email job first (one left running by an earlier test would send
    # it through the test SMTP server): this test is the sender.
    for running in list(RUNNING_WORKERS):
        running.stop()
    await issued_invoice(client, admin_key)  # approving answered 200: never an error for the approver
    quiet = dataclasses.replace(settings, smtp_url=None)
    now = datetime(2027, 1, 2, 9, 30, tzinfo=UTC)
    assert await send_document_email(sessions, quiet, "acme", "INV-000001", now=now) == "not_sent"
    row = await pg.fetchrow("SELECT status, error FROM document_emails")
    assert row["status"] == "not_sent"
    assert row["error"] == "the portal has no SMTP server configured (PORTAL_SMTP_URL)"


async def test_the_catalog_file_sets_billing_details(
    client: Client, admin_key: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Given the example catalog applied once
    catalog = demo_catalog(date(2026, 11, 1))
    now = datetime(2026, 11, 24, tzinfo=UTC)
    async with transaction(sessions) as session:
        await apply_catalog(session, catalog, now=now)
    acme = (await client.get("/v1/customers/acme", headers=auth(admin_key))).json()
    assert acme["legalName"] == "Acme Industries GmbH"
    assert acme["billingAddress"] == ["Friedrichstraße 68", "10117 Berlin", "Germany"]
    assert acme["billingEmails"] == ["accounts-payable@acme.example", "finance@acme.example"]
    # When it is applied again, then with a new billing contact for acme
    async with transaction(sessions) as session:
        again = await apply_catalog(session, catalog, now=now)
    assert again.unchanged["customers"] == len(catalog.customers) == 5
    moved = msgspec.structs.replace(catalog.customers[0], billing_emails=["ap@acme.example"])
    changed_file = msgspec.structs.replace(catalog, customers=[moved, *catalog.customers[1:]])
    async with transaction(sessions) as session:
        changed = await apply_catalog(session, changed_file, now=now)
    # Then only that change is made (billing details are the one part of a customer that may change)
    assert (changed.changed["customers"], changed.unchanged["customers"]) == (1, 4)
    acme = (await client.get("/v1/customers/acme", headers=auth(admin_key))).json()
    assert acme["billingEmails"] == ["ap@acme.example"]


async def test_an_admin_edits_billing_details_on_the_customers_page(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await make_customer(client, admin_key, id="acme", name="Acme", timezone=BERLIN, currency="EUR")
    await make_user(pg, "ada@vendor.test", role="admin")
    await sign_in(client, "ada@vendor.test")
    listing = await client.get("/portal/admin/customers")
    assert 'href="/portal/admin/customers/acme/billing">Add<' in listing.text
    form = await client.get("/portal/admin/customers/acme/billing")
    assert form.status_code == 200
    csrf = hidden(form.text, "csrf_token")
    path = "/portal/admin/customers/acme/billing"
    # A mistake: the form comes back (422) naming the field, the values kept, nothing saved
    wrong = await client.post(
        path,
        data={
            "csrf_token": csrf,
            "legalName": "Acme GmbH",
            "billingAddress": "",
            "taxId": "",
            "billingEmails": "ap@",
        },
    )
    assert wrong.status_code == 422
    assert "Billing contacts: email addresses such as ap@example.com" in wrong.text
    assert 'value="Acme GmbH"' in wrong.text
    assert await pg.fetchval("SELECT legal_name FROM customers") is None
    # Then right: saved, audited as the admin
    saved = await client.post(
        path,
        data={
            "csrf_token": csrf,
            "legalName": "Acme GmbH",
            "billingAddress": "Hauptstraße 5\r\n80331 München\r\n",
            "taxId": "DE811111111",
            "billingEmails": "ap@acme.test\ncfo@acme.test",
        },
    )
    assert saved.status_code == 200  # after the redirect to the page
    assert "Billing details saved." in saved.text
    row = await pg.fetchrow("SELECT legal_name, billing_address, tax_id, billing_emails FROM customers")
    assert tuple(row) == (
        "Acme GmbH",
        ["Hauptstraße 5", "80331 München"],
        "DE811111111",
        ["ap@acme.test", "cfo@acme.test"],
    )
    audit = await pg.fetchrow("SELECT actor, action, object_id FROM audit_log")
    assert tuple(audit) == ("ada@vendor.test", "customer.billing_details", "acme")
    assert (await client.get("/portal/admin/customers/nobody/billing")).status_code == 404


async def test_the_worker_emails_the_invoice_after_the_approval_commits(
    client: Client, admin_key: str, pg: asyncpg.Connection, worker: WorkerProcess, mail_sink: SmtpServer
) -> None:
    # Given a worker running and the portal's SMTP server (the one alert emails go to)
    before = len(mail_sink.messages)
    # When an invoice is approved
    await issued_invoice(client, admin_key)
    # Then the job sent after the commit emails it to the billing contacts, and records it
    await wait_for(
        lambda: pg.fetchval("SELECT status = 'sent' FROM document_emails"), what="the invoice email sent"
    )
    mine = [m for m in mail_sink.messages[before:] if "ap@acme.test" in m.rcpt_tos]
    assert len(mine) == 1
    assert mine[0].message["Subject"].startswith("Invoice INV-000001 from Usage Portal: EUR 49.00 due ")


async def test_a_manual_credit_note_has_its_pdf_and_no_empty_table(
    client: Client, admin_key: str, pg: asyncpg.Connection, sessions: async_sessionmaker[AsyncSession]
) -> None:
    # Given an issued invoice and a goodwill credit note on it
    issued = await issued_invoice(client, admin_key)
    async with transaction(sessions) as session:
        note_id, number, _ = await add_manual_adjustment(
            session, issued["id"], kind="credit", amount="5.00", reason="Goodwill for the outage on 3 Dec"
        )
    assert number == "CN-000001"
    # Then its PDF downloads (API and portal), and its email is owed like the invoice's
    answer = await client.get(
        f"/v1/invoices/{issued['id']}/adjustments/{note_id}/pdf", headers=auth(admin_key)
    )
    assert answer.headers["content-disposition"] == 'attachment; filename="CN-000001.pdf"'
    lines = text_of(answer.content).splitlines()
    assert lines[0] == "Credit note CN-000001"
    assert "Corrects invoice INV-000001" in lines and "Total credited EUR -5.00" in lines
    assert "Goodwill for the outage on 3 Dec" in lines
    owed = await pg.fetch("SELECT number, adjustment_id FROM document_emails ORDER BY number")
    assert [(r["number"], r["adjustment_id"]) for r in owed] == [("CN-000001", note_id), ("INV-000001", None)]
    await make_user(pg, "user@acme.test", customer_id="acme")
    await sign_in(client, "user@acme.test")
    page = await client.get(f"/portal/invoices/{issued['id']}")
    assert "Credit note CN-000001: EUR -5.00" in page.text
    assert "What changed, per line" not in page.text  # a manual note has no lines
    assert f'href="/portal/invoices/{issued["id"]}/notes/{note_id}/pdf"' in page.text
    download = await client.get(f"/portal/invoices/{issued['id']}/notes/{note_id}/pdf")
    assert download.status_code == 200 and download.content == answer.content
    assert (await client.get(f"/portal/invoices/{issued['id']}/notes/{note_id + 1}/pdf")).status_code == 404


async def test_a_void_invoice_still_downloads_stamped_void(client: Client, admin_key: str) -> None:
    issued = await issued_invoice(client, admin_key)
    voided = await client.post(
        f"/v1/invoices/{issued['id']}/void", headers=auth(admin_key), json={"reason": "Wrong legal entity"}
    )
    assert voided.status_code == 200, voided.text
    answer = await client.get(f"/v1/invoices/{issued['id']}/pdf", headers=auth(admin_key))
    assert answer.status_code == 200
    lines = text_of(answer.content).splitlines()
    assert "VOID" in lines and "Nothing is due on a void invoice." in lines
    assert any(
        entry.startswith("VOID: voided on ") and entry.endswith("Wrong legal entity") for entry in lines
    )


def test_an_invoice_with_a_credit_note_asks_for_what_is_left() -> None:
    # Given INV-000001 (EUR 579.60) with a EUR 12.50 credit note
    note = credit_note([])
    credited = invoice(adjustments=[note], adjusted_total="567.10")
    # When the invoice is printed
    lines = text_of(invoice_pdf(credited, PARTIES, BERLIN)).splitlines()
    # Then it names the note and asks for the total after it, as the invoice page does
    assert "Total EUR 579.60" in lines
    assert "Total after adjustments: EUR 567.10" in lines
    assert "Amount due: EUR 567.10 by 1 Feb 2027" in lines
