"""The CSV exports' reads: invoices, their lines and their notes, for one filter."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.billing.models import Adjustment, Invoice, InvoiceLine


def _exported(
    statement: Any,
    *,
    customer_id: str | None,
    status: str | None,
    period_from: datetime | None,
    period_to: datetime | None,
    issued_only: bool,
) -> Any:
    """`statement` limited to the invoices an export covers: each filter that is not None
    applies; `period_from`/`period_to` bound the period start, [from, to)."""
    if customer_id is not None:
        statement = statement.where(col(Invoice.customer_id) == customer_id)
    if period_from is not None:
        statement = statement.where(col(Invoice.period_start) >= period_from)
    if period_to is not None:
        statement = statement.where(col(Invoice.period_start) < period_to)
    if status is not None:
        statement = statement.where(col(Invoice.status) == status)
    if issued_only:
        statement = statement.where(col(Invoice.status) != "draft")
    return statement


async def exported_invoices(session: AsyncSession, **scope: Any) -> list[tuple[Any, ...]]:
    """(id, number, customer id, currency, status, period start, period end, subtotal,
    discount total, credits applied, total, finalized at, computed at) of the invoices in
    `scope` (see `_exported`), by period start, customer, id."""
    statement = select(
        col(Invoice.id),
        col(Invoice.number),
        col(Invoice.customer_id),
        col(Invoice.currency),
        col(Invoice.status),
        col(Invoice.period_start),
        col(Invoice.period_end),
        col(Invoice.subtotal),
        col(Invoice.discount_total),
        col(Invoice.credits_applied),
        col(Invoice.total),
        col(Invoice.finalized_at),
        col(Invoice.computed_at),
    ).order_by(col(Invoice.period_start), col(Invoice.customer_id), col(Invoice.id))
    return [tuple(row) for row in await session.execute(_exported(statement, **scope))]


async def exported_notes(session: AsyncSession, **scope: Any) -> list[tuple[Any, ...]]:
    """(note number, kind, invoice id, invoice number, customer id, currency, invoice status,
    period start, period end, subtotal delta, discount delta, amount, created at) of the notes
    on the invoices in `scope`, by note id."""
    statement = (
        select(
            col(Adjustment.number),
            col(Adjustment.kind),
            col(Invoice.id),
            col(Invoice.number),
            col(Invoice.customer_id),
            col(Invoice.currency),
            col(Invoice.status),
            col(Invoice.period_start),
            col(Invoice.period_end),
            col(Adjustment.subtotal_delta),
            col(Adjustment.discount_delta),
            col(Adjustment.amount),
            col(Adjustment.created_at),
        )
        .join(Invoice, col(Invoice.id) == col(Adjustment.invoice_id))
        .order_by(col(Adjustment.id))
    )
    return [tuple(row) for row in await session.execute(_exported(statement, **scope))]


async def exported_lines(session: AsyncSession, **scope: Any) -> list[tuple[Any, ...]]:
    """(invoice id, invoice number, customer id, currency, position, kind, charge key, meter,
    description, quantity, unit price, amount, plan id, segment start, segment end, share of
    the period) of the lines of the invoices in `scope`, by period start, customer, invoice, position."""
    statement = (
        select(
            col(Invoice.id),
            col(Invoice.number),
            col(Invoice.customer_id),
            col(Invoice.currency),
            col(InvoiceLine.position),
            col(InvoiceLine.kind),
            col(InvoiceLine.charge_key),
            col(InvoiceLine.meter),
            col(InvoiceLine.description),
            col(InvoiceLine.quantity),
            col(InvoiceLine.unit_price),
            col(InvoiceLine.amount),
            col(InvoiceLine.plan_id),
            col(InvoiceLine.segment_start),
            col(InvoiceLine.segment_end),
            col(InvoiceLine.proration),
        )
        .join(Invoice, col(Invoice.id) == col(InvoiceLine.invoice_id))
        .order_by(
            col(Invoice.period_start), col(Invoice.customer_id), col(Invoice.id), col(InvoiceLine.position)
        )
    )
    return [tuple(row) for row in await session.execute(_exported(statement, **scope))]


async def exported_note_lines(session: AsyncSession, **scope: Any) -> list[tuple[Any, ...]]:
    """(invoice id, invoice number, note number, customer id, currency, note lines) of the
    notes on the invoices in `scope`, by note id."""
    statement = (
        select(
            col(Invoice.id),
            col(Invoice.number),
            col(Adjustment.number),
            col(Invoice.customer_id),
            col(Invoice.currency),
            col(Adjustment.lines),
        )
        .join(Invoice, col(Invoice.id) == col(Adjustment.invoice_id))
        .order_by(col(Adjustment.id))
    )
    return [tuple(row) for row in await session.execute(_exported(statement, **scope))]
