"""What billing announces to webhook endpoints (portal/webhooks, docs/webhooks.md), each in
the transaction of the change: the data of `invoice.drafted`, `invoice.finalized`,
`invoice.voided`, `adjustment.created` and `credit.low`.

Money is `{"amount": "12.50", "currency": "EUR"}` with the currency's decimals; field names
are the API's (camelCase)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.schemas import InvoiceRow
from portal.billing.views import money_text
from portal.webhooks.service import Announcement, announce, announce_many

if TYPE_CHECKING:  # invoices.py imports this module
    from portal.billing.invoices import PeriodToRate

# Prepaid credit is low once what is left of the grants an invoice may draw falls below this
# share of what they granted: announced once per crossing (when an invoice draws it under).
CREDIT_LOW_SHARE = Decimal("0.2")


def money(amount: Decimal, currency: str) -> dict[str, str]:
    currency = currency.strip()
    return {"amount": money_text(amount, currency), "currency": currency}


def invoice_data(invoice: InvoiceRow) -> dict[str, Any]:
    """An invoice as the events carry it (its state when the event was written)."""
    status = {"draft": "draft", "finalized": "finalized", "void": "void"}.get(invoice.status, invoice.status)
    return {
        "invoiceId": invoice.id,
        "number": invoice.number,
        "customerId": invoice.customer_id,
        "status": status,
        "periodStart": invoice.period_start,
        "periodEnd": invoice.period_end,
        "subtotal": money(invoice.subtotal, invoice.currency),
        "discountTotal": money(invoice.discount_total, invoice.currency),
        "creditsApplied": money(invoice.credits_applied, invoice.currency),
        "total": money(invoice.total, invoice.currency),
    }


async def invoices_drafted(
    session: AsyncSession, drafts: Sequence[tuple[int, PeriodToRate, Decimal]], *, now: datetime | None = None
) -> None:
    """Drafts created for periods, (invoice id, what was rated, its total) each; not each
    time a draft is re-rated. In a few statements for a whole chunk of an invoice run."""
    await announce_many(
        session,
        [
            Announcement(
                "invoice.drafted",
                {
                    "invoiceId": invoice_id,
                    "customerId": item.customer_id,
                    "status": "draft",
                    "periodStart": item.period.start,
                    "periodEnd": item.period.end,
                    "total": money(total, item.currency),
                },
                item.customer_id,
            )
            for invoice_id, item, total in drafts
        ],
        now=now,
    )


async def invoice_finalized(session: AsyncSession, invoice: InvoiceRow, *, now: datetime) -> None:
    data = invoice_data(invoice) | {"finalizedAt": invoice.finalized_at, "approvedBy": invoice.approved_by}
    await announce(session, "invoice.finalized", data, customer_id=invoice.customer_id, now=now)


async def invoice_voided(
    session: AsyncSession, invoice: InvoiceRow, reissued: InvoiceRow | None, *, now: datetime
) -> None:
    data = invoice_data(invoice) | {
        "voidedAt": invoice.voided_at,
        "voidReason": invoice.void_reason,
        "reissuedInvoiceId": None if reissued is None else reissued.id,
    }
    await announce(session, "invoice.voided", data, customer_id=invoice.customer_id, now=now)


async def adjustment_created(
    session: AsyncSession,
    invoice: InvoiceRow,
    *,
    adjustment_id: int,
    number: str,
    kind: str,
    amount: Decimal,
    reason: str,
    origin: Literal["manual", "late_events", "event_corrections"],
    now: datetime | None = None,
) -> None:
    """A credit note (`amount` negative: less is owed) or debit note on `invoice`."""
    await announce(
        session,
        "adjustment.created",
        {
            "adjustmentId": adjustment_id,
            "number": number,
            "kind": kind,
            "origin": origin,
            "invoiceId": invoice.id,
            "invoiceNumber": invoice.number,
            "customerId": invoice.customer_id,
            "amount": money(amount, invoice.currency),
            "reason": reason,
        },
        customer_id=invoice.customer_id,
        now=now,
    )


def credit_crossed_low(granted: Decimal, before: Decimal, after: Decimal) -> bool:
    """Whether drawing `before - after` takes what is left of `granted` below its low mark
    (CREDIT_LOW_SHARE of it): once per crossing, never while it stays low (pure)."""
    if granted <= 0:
        return False
    mark = granted * CREDIT_LOW_SHARE
    return before >= mark > after


async def credit_low(
    session: AsyncSession,
    *,
    customer_id: str,
    currency: str,
    granted: Decimal,
    remaining: Decimal,
    invoice_id: int,
    now: datetime | None = None,
) -> None:
    await announce(
        session,
        "credit.low",
        {
            "customerId": customer_id,
            "remaining": money(remaining, currency),
            "granted": money(granted, currency),
            "threshold": money(granted * CREDIT_LOW_SHARE, currency),
            "invoiceId": invoice_id,
        },
        customer_id=customer_id,
        now=now,
    )
