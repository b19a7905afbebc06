"""Invoice and note documents: the PDF of an issued invoice or note, and the email that
carries it to the customer's billing contacts.

A draft is not a document (its numbers still move): asking for its PDF is a Conflict.
A void invoice is one, stamped VOID. When an invoice is finalized (`issued`), who it is
from and to is kept on it, and its email is owed: recorded in the same transaction, sent
by the `email_document` job after the commit (`document_email.py`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from litestar import Response
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.invoices import invoice_view, load_invoice
from portal.billing.pdf.parties import Parties, parties_now, parties_of
from portal.billing.pdf.render import due_date, invoice_pdf, note_pdf
from portal.billing.pdf.text import day_text, local_date, period_text
from portal.billing.repository import documents as document_store
from portal.billing.schemas import InvoiceRow
from portal.billing.views import AdjustmentView, InvoiceView
from portal.catalog.schemas import Customer
from portal.catalog.service import get_customer
from portal.http.downloads import attachment
from portal.infrastructure.broker import MAINTENANCE_QUEUE
from portal.infrastructure.domain_errors import Conflict, NotFound
from portal.infrastructure.jobs import after_commit
from portal.infrastructure.settings import Issuer

EMAIL_ACTOR = "email_document"
PDF = "application/pdf"


@dataclass(frozen=True, slots=True)
class Document:
    """A rendered document: its number, file name and bytes."""

    number: str
    filename: str
    content: bytes
    invoice: InvoiceView
    customer: Customer
    parties: Parties
    note: AdjustmentView | None = None


def download(document: Document) -> Response[bytes]:
    """The document as a download named by its number ("INV-000001.pdf")."""
    return attachment(document.content, media_type=PDF, filename=document.filename)


async def issued(session: AsyncSession, invoice: InvoiceRow, customer: Customer, issuer: Issuer) -> None:
    """The invoice was just finalized in this transaction: keep its parties, and owe its
    email (sent after the commit; nothing is sent if the transaction rolls back)."""
    assert invoice.number is not None
    await document_store.set_parties(session, invoice.id, parties_now(issuer, customer).to_json())
    await owe_email(session, number=invoice.number, customer_id=customer.id, invoice_id=invoice.id)


async def owe_email(
    session: AsyncSession, *, number: str, customer_id: str, invoice_id: int, adjustment_id: int | None = None
) -> None:
    if await document_store.owe_email(
        session, number=number, customer_id=customer_id, invoice_id=invoice_id, adjustment_id=adjustment_id
    ):
        after_commit(session, EMAIL_ACTOR, MAINTENANCE_QUEUE, customer_id, number)


async def _issued_view(session: AsyncSession, invoice_id: int) -> tuple[InvoiceView, Customer, InvoiceRow]:
    row = await load_invoice(session, invoice_id)
    if row.status == "draft":
        raise Conflict("a draft is not a document yet: its PDF exists once it is approved")
    customer = await get_customer(session, row.customer_id)
    assert customer is not None  # invoices reference their customer
    # The state of an issued invoice does not depend on the time: no clock is read.
    assert row.finalized_at is not None
    view = await invoice_view(session, row, now=row.finalized_at, grace=timedelta(0))
    return view, customer, row


async def parties_for(session: AsyncSession, invoice_id: int, issuer: Issuer, customer: Customer) -> Parties:
    return parties_of(await document_store.parties_of(session, invoice_id), issuer, customer)


@dataclass(frozen=True, slots=True)
class Facts:
    """What heads an invoice, on its page as on its PDF (dates in the customer's zone)."""

    title: str  # "Invoice INV-000001", "Draft for 1-31 Dec 2026" (an en dash)
    period: str  # the local days, see `period_text`
    parties: Parties
    issued_on: str | None  # None: a draft
    due_on: str | None


def draft_title(period: str) -> str:
    return f"Draft for {period}"


async def invoice_facts(
    session: AsyncSession, view: InvoiceView, customer: Customer, issuer: Issuer
) -> Facts:
    """The heading facts of an invoice: a draft's parties are today's; an issued one's
    are those it was issued with."""
    tz = customer.timezone
    period = period_text(view.period_start, view.period_end, tz)
    if view.number is None or view.finalized_at is None:
        return Facts(draft_title(period), period, parties_now(issuer, customer), None, None)
    parties = await parties_for(session, view.id, issuer, customer)
    return Facts(
        f"Invoice {view.number}",
        period,
        parties,
        day_text(local_date(view.finalized_at, tz)),
        due_date(view.finalized_at, tz, parties.payment_terms_days),
    )


async def invoice_document(session: AsyncSession, invoice_id: int, *, issuer: Issuer) -> Document:
    """The PDF of a finalized or void invoice. Raises NotFound (no such invoice) or
    Conflict (a draft)."""
    view, customer, _ = await _issued_view(session, invoice_id)
    parties = await parties_for(session, invoice_id, issuer, customer)
    assert view.number is not None
    # In a thread: drawing takes ~0.1 s (~0.3 s with CJK fonts to load), which the event
    # loop would otherwise spend not answering anyone else.
    content = await asyncio.to_thread(invoice_pdf, view, parties, customer.timezone)
    return Document(view.number, f"{view.number}.pdf", content, view, customer, parties)


async def note_document(session: AsyncSession, invoice_id: int, note_id: int, *, issuer: Issuer) -> Document:
    """The PDF of a credit or debit note of the invoice. Raises NotFound when the invoice
    has no such note."""
    view, customer, _ = await _issued_view(session, invoice_id)
    note = next((a for a in view.adjustments if a.id == note_id), None)
    if note is None:
        raise NotFound(f"invoice {view.number} has no note {note_id}")
    parties = await parties_for(session, invoice_id, issuer, customer)
    content = await asyncio.to_thread(note_pdf, note, view, parties, customer.timezone)
    return Document(note.number, f"{note.number}.pdf", content, view, customer, parties, note)
