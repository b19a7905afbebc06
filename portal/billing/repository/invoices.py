"""Every query on `invoices`, `invoice_lines` and `document_numbers`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.billing.models import Invoice

# --- invoices


async def finalized_number_after(session: AsyncSession, customer_id: str, at: datetime) -> str | None:
    """The number of the customer's latest finalized invoice whose period ends after `at`."""
    statement = (
        select(col(Invoice.number))
        .where(
            col(Invoice.customer_id) == customer_id,
            col(Invoice.status) == "finalized",
            col(Invoice.period_end) > at,
        )
        .order_by(col(Invoice.period_end).desc())
        .limit(1)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else row[0]
