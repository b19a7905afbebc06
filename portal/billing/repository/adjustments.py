"""Every query on `adjustments` and `late_events`: what changed after an invoice was
finalized."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.billing.models import LateEvent
from portal.billing.repository import NO_SYNC

# --- late_events


async def settle_late_events_of(session: AsyncSession, invoice_id: int, *, settled_at: datetime) -> None:
    """Mark the invoice's unsettled late events settled without a note (it was voided: the
    reissue counts them)."""
    statement = (
        update(LateEvent)
        .where(col(LateEvent.invoice_id) == invoice_id, col(LateEvent.settled_at).is_(None))
        .values(settled_at=settled_at)
        .execution_options(**NO_SYNC)
    )
    await session.execute(statement)
