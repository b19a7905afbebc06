"""Invoice lifecycle: approve (finalize, numbered, immutable) and void (and reissue).

Each change holds the customer's billing lock (see locks.py) for its whole transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing import announcements, documents
from portal.billing.credits import draw_credit, release_credit
from portal.billing.invoices import load_invoice, refresh_draft
from portal.billing.repository import adjustments as adjustment_store
from portal.billing.repository import invoices as invoice_store
from portal.billing.repository.locks import lock_customer
from portal.billing.schemas import InvoiceRow
from portal.catalog.service import get_customer
from portal.infrastructure.domain_errors import Conflict, Invalid
from portal.infrastructure.settings import Issuer, get_settings
from portal.ingest.repository import corrections as correction_store

INVOICE_SERIES = "INV"


async def next_number(session: AsyncSession, series: str) -> str:
    """The next gapless number of a document series ("INV-000042"), taken inside the
    caller's transaction: a rollback gives the number back."""
    return f"{series}-{await invoice_store.next_document_number(session, series):06d}"


async def locked_invoice(session: AsyncSession, invoice_id: int) -> InvoiceRow:
    """The invoice, read again after taking its customer's billing lock and its row lock,
    so that what the caller checks stays true until it commits."""
    invoice = await load_invoice(session, invoice_id)
    await lock_customer(session, invoice.customer_id)
    return await load_invoice(session, invoice_id, for_update=True)


async def approve(
    session: AsyncSession,
    invoice_id: int,
    *,
    approved_by: str,
    now: datetime,
    grace: timedelta,
    complete_through: datetime | None,
    issuer: Issuer | None = None,
) -> InvoiceRow:
    """Finalize a draft awaiting review: re-rate it one last time, number it, draw
    prepaid credit, keep who it is from and to (`issuer`: the settings' when None) and owe
    its email to the customer's billing contacts. Raises Conflict if it is not a draft or
    still in its grace period."""
    invoice = await locked_invoice(session, invoice_id)
    if invoice.status != "draft":
        raise Conflict(
            f"invoice {invoice.number or invoice.id} is {invoice.status}; only drafts are approved"
        )
    review_after = invoice.period_end + grace
    if now < review_after:
        raise Conflict(
            f"invoice {invoice.id} is not ready for review until {review_after.isoformat()} "
            "(its period plus the grace period for late events)"
        )
    customer = await get_customer(session, invoice.customer_id)
    assert customer is not None
    # Under the lock, no event of this customer is being persisted: this rating sees
    # every event persisted so far, and any later one will be recorded as late.
    await refresh_draft(session, customer, invoice.period, complete_through=complete_through)
    invoice = await load_invoice(session, invoice_id)
    number = await next_number(session, INVOICE_SERIES)
    if invoice.credits_applied > 0:
        await draw_credit(
            session,
            invoice.customer_id,
            invoice.id,
            invoice.credits_applied,
            usable_at=invoice.period_end,
            now=now,
        )
    await invoice_store.finalize_invoice(
        session, invoice.id, number=number, finalized_at=now, approved_by=approved_by
    )
    finalized = await load_invoice(session, invoice_id)
    await documents.issued(session, finalized, customer, issuer or get_settings().issuer)
    await announcements.invoice_finalized(session, finalized, now=now)
    return finalized


async def void(
    session: AsyncSession, invoice_id: int, *, reason: str, now: datetime, complete_through: datetime | None
) -> tuple[InvoiceRow, InvoiceRow | None]:
    """Void a finalized invoice and reissue its period as a new draft, rated afresh.

    Its credit is given back; its adjustments stay with it (the reissue includes their
    usage). Returns (voided invoice, reissued draft or None if no plan covers the period)."""
    invoice = await locked_invoice(session, invoice_id)
    if invoice.status != "finalized":
        raise Conflict(
            f"invoice {invoice.number or invoice.id} is {invoice.status}; only finalized "
            "invoices are voided (a draft is simply recomputed)"
        )
    if not reason.strip():
        raise Invalid("reason: say why the invoice is voided")
    if "\x00" in reason:
        raise Invalid("reason: must not contain NUL characters")
    await release_credit(session, invoice.id)
    await invoice_store.void_invoice(session, invoice.id, voided_at=now, reason=reason)
    await adjustment_store.settle_late_events_of(session, invoice.id, settled_at=now)
    # Corrections too: the reissued draft is rated on the corrected usage.
    await correction_store.settle_corrections_of(session, invoice.id, settled_at=now)
    customer = await get_customer(session, invoice.customer_id)
    assert customer is not None
    reissued_id = await refresh_draft(session, customer, invoice.period, complete_through=complete_through)
    reissued = None
    if reissued_id is not None:
        await invoice_store.set_replaces(session, reissued_id, invoice.id)
        reissued = await load_invoice(session, reissued_id)
    voided = await load_invoice(session, invoice_id)
    await announcements.invoice_voided(session, voided, reissued, now=now)
    return voided, reissued
