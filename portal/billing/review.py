"""The review queue: drafts whose period and grace period have passed, each with what an
account manager should look at before approving it."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.invoices import summary_of
from portal.billing.repository import invoices as invoice_store
from portal.billing.schemas import InvoiceRow
from portal.billing.views import ReviewItem, money_text
from portal.ingest import repository as ingest_repository
from portal.live import repository as live_repository


def change_flags(
    total: Decimal,
    previous: Decimal | None,
    factor: Decimal,
) -> tuple[Decimal | None, list[str]]:
    """(total / previous, flags) for a period-over-period change (pure).

    A change of more than `factor` times up or down is flagged; so is a first bill
    after a zero one, since no ratio describes it."""
    if previous is None:
        return None, ["first_invoice"]
    if previous == 0:
        return None, (["large_change"] if total != 0 else [])
    ratio = total / previous
    flagged = ratio > factor or ratio < 1 / factor
    return ratio, (["large_change"] if flagged else [])


async def _previous_total(session: AsyncSession, invoice: InvoiceRow) -> Decimal | None:
    """What the customer's previous finalized period came to, adjustments included."""
    return await invoice_store.previous_finalized_total(session, invoice.customer_id, invoice.period_start)


async def _data_health(session: AsyncSession, invoice: InvoiceRow) -> list[tuple[str, str]]:
    """(flag, note) for what makes the period's usage doubtful."""
    found = []
    failed = await ingest_repository.failed_events_in_period(
        session, invoice.customer_id, invoice.period_start, invoice.period_end
    )
    if failed:
        found.append(
            (
                "failed_events",
                f"{failed} event(s) in this period failed to persist; replay them before approving",
            )
        )
    drift = await live_repository.latest_drift_count(session, invoice.customer_id)
    if drift:
        found.append(
            ("drift", f"the last reconcile found the live view off for {drift} meter(s) of this customer")
        )
    conflicts = await ingest_repository.conflicts_since(session, invoice.customer_id, invoice.period_start)
    if conflicts:
        found.append(
            ("conflicts", f"{conflicts} event id(s) were re-sent with different content and refused")
        )
    return found


async def review_queue(
    session: AsyncSession,
    *,
    now: datetime,
    grace: timedelta,
    change_factor: Decimal,
    limit: int = 200,
    customers_sql: str | None = None,
    customers_params: dict[str, Any] | None = None,
) -> list[ReviewItem]:
    """Drafts awaiting review, oldest period first, with flags: large_change (more than
    `change_factor` times up or down vs the customer's previous period), first_invoice,
    failed_events (events of the period the workers could not persist), drift (the last
    reconcile found the live view and Postgres apart for the customer), conflicts (event
    ids re-used with other content).

    `customers_sql` (a subquery of customer ids, with `customers_params`) limits the queue
    to the customers someone may see, before the limit applies."""
    drafts = await invoice_store.drafts_due(
        session,
        due_at=now,
        grace=grace,
        limit=limit,
        customers_sql=customers_sql,
        customers_params=customers_params,
    )
    out = []
    for invoice in drafts:
        cur = invoice.currency
        previous = await _previous_total(session, invoice)
        ratio, flags = change_flags(invoice.total, previous, change_factor)
        notes = []
        if "large_change" in flags:
            notes.append(
                f"total {money_text(invoice.total, cur)} against "
                f"{money_text(previous or Decimal(0), cur)} last period"
            )
        for flag, note in await _data_health(session, invoice):
            flags.append(flag)
            notes.append(note)
        out.append(
            ReviewItem(
                summary_of(invoice, invoice.total, now=now, grace=grace),
                None if previous is None else money_text(previous, cur),
                None if ratio is None else format(ratio.quantize(Decimal("0.01")), "f"),
                flags,
                notes,
            )
        )
    return out
