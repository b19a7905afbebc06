"""Every query on `adjustments` and `late_events`: what changed after an invoice was
finalized."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from portal.billing.models import Adjustment, Invoice, LateEvent
from portal.billing.repository import NO_SYNC

# --- adjustments: numbered debit and credit notes

# At most this many late event ids are listed with a note (the count says how many there were).
EVENT_IDS_SHOWN = 100


async def insert_adjustment(
    session: AsyncSession,
    *,
    invoice_id: int,
    number: str,
    kind: str,
    subtotal_delta: Decimal,
    discount_delta: Decimal,
    amount: Decimal,
    lines: list[dict[str, Any]],
    reason: str,
) -> int:
    """Store a note (amounts exact, in the currency's units; `lines` JSON builtins); its id."""
    statement = (
        insert(Adjustment)
        .values(
            # The invoice's customer, copied (the table is keyed by customer: migration 0008).
            customer_id=select(col(Invoice.customer_id))
            .where(col(Invoice.id) == invoice_id)
            .scalar_subquery(),
            invoice_id=invoice_id,
            number=number,
            kind=kind,
            subtotal_delta=subtotal_delta,
            discount_delta=discount_delta,
            amount=amount,
            lines=lines,
            reason=reason,
        )
        .returning(col(Adjustment.id))
    )
    adjustment_id: Any = (await session.execute(statement)).scalar_one()
    return int(adjustment_id)


async def adjustment_lines(session: AsyncSession, invoice_id: int) -> list[list[dict[str, Any]]]:
    """The per-line deltas of each of the invoice's notes, in no particular order."""
    statement = select(col(Adjustment.lines)).where(col(Adjustment.invoice_id) == invoice_id)
    found: Any = (await session.scalars(statement)).all()
    return [list(lines) for lines in found]


async def adjustments_with_events(session: AsyncSession, invoice_id: int) -> list[tuple[Any, ...]]:
    """The invoice's notes by id: (id, invoice id, number, kind, amount, subtotal delta,
    discount delta, lines, reason, created at, how many late events, the first
    EVENT_IDS_SHOWN of their ids by event time or None)."""
    event_ids = func.array_agg(
        aggregate_order_by(col(LateEvent.event_id), col(LateEvent.event_time), col(LateEvent.event_id))
    ).filter(col(LateEvent.event_id).is_not(None))
    statement = (
        select(
            col(Adjustment.id),
            col(Adjustment.invoice_id),
            col(Adjustment.number),
            col(Adjustment.kind),
            col(Adjustment.amount),
            col(Adjustment.subtotal_delta),
            col(Adjustment.discount_delta),
            col(Adjustment.lines),
            col(Adjustment.reason),
            col(Adjustment.created_at),
            func.count(col(LateEvent.event_id)),
            event_ids[1:EVENT_IDS_SHOWN],
        )
        .outerjoin(LateEvent, col(LateEvent.adjustment_id) == col(Adjustment.id))
        .where(col(Adjustment.invoice_id) == invoice_id)
        .group_by(col(Adjustment.id), col(Adjustment.customer_id))
        .order_by(col(Adjustment.id))
    )
    return [tuple(row) for row in await session.execute(statement)]


async def adjusted_invoice_ids(session: AsyncSession, customer_id: str | None) -> list[int]:
    """The invoices that have notes (of the customer, when one is given), in no particular order."""
    statement = select(col(Adjustment.invoice_id)).distinct()
    if customer_id is not None:
        statement = statement.join(Invoice, col(Invoice.id) == col(Adjustment.invoice_id)).where(
            col(Invoice.customer_id) == customer_id
        )
    return [int(i) for i in (await session.scalars(statement)).all()]


async def note_totals(session: AsyncSession) -> list[tuple[str, str, int, Decimal]]:
    """(kind, currency, how many, sum of amounts) of all notes, by kind then currency."""
    statement = (
        select(col(Adjustment.kind), col(Invoice.currency), func.count(), func.sum(col(Adjustment.amount)))
        .join(Invoice, col(Invoice.id) == col(Adjustment.invoice_id))
        .group_by(col(Adjustment.kind), col(Invoice.currency))
        .order_by(col(Adjustment.kind), col(Invoice.currency))
    )
    rows: Any = await session.execute(statement)
    return [(str(kind), str(currency), int(count), total) for kind, currency, count, total in rows]


async def note_sums_by_currency(
    session: AsyncSession, *, start: datetime, end: datetime
) -> list[tuple[str, Decimal]]:
    """(currency, sum of amounts) of the notes on invoices finalized in [start, end), by currency."""
    statement = (
        select(col(Invoice.currency), func.sum(col(Adjustment.amount)))
        .join(Invoice, col(Invoice.id) == col(Adjustment.invoice_id))
        .where(col(Invoice.finalized_at) >= start, col(Invoice.finalized_at) < end)
        .group_by(col(Invoice.currency))
        .order_by(col(Invoice.currency))
    )
    rows: Any = await session.execute(statement)
    return [(str(currency), total) for currency, total in rows]


# --- late_events


async def unsettled_late_event_count(session: AsyncSession, invoice_id: int) -> int:
    statement = (
        select(func.count())
        .select_from(LateEvent)
        .where(col(LateEvent.invoice_id) == invoice_id, col(LateEvent.settled_at).is_(None))
    )
    count: Any = (await session.execute(statement)).scalar_one()
    return int(count)


async def noteless_late_event_count(session: AsyncSession, invoice_id: int) -> int:
    """The invoice's late events settled without a note (they changed no amount then): a
    later note's re-rating counts their usage too."""
    statement = (
        select(func.count())
        .select_from(LateEvent)
        .where(
            col(LateEvent.invoice_id) == invoice_id,
            col(LateEvent.settled_at).is_not(None),
            col(LateEvent.adjustment_id).is_(None),
        )
    )
    count: Any = (await session.execute(statement)).scalar_one()
    return int(count)


async def unsettled_late_events_total(session: AsyncSession) -> int:
    """How many late events, of all invoices, wait for their adjustment."""
    statement = select(func.count()).select_from(LateEvent).where(col(LateEvent.settled_at).is_(None))
    count: Any = (await session.execute(statement)).scalar_one()
    return int(count)


async def invoices_with_unsettled_late_events(session: AsyncSession, *, older_than: timedelta) -> list[int]:
    """Invoices with late events recorded more than `older_than` ago and still unsettled."""
    statement = (
        select(col(LateEvent.invoice_id))
        .distinct()
        .where(col(LateEvent.settled_at).is_(None), col(LateEvent.recorded_at) < func.now() - older_than)
    )
    return [int(i) for i in (await session.scalars(statement)).all()]


async def settle_late_events_of(
    session: AsyncSession, invoice_id: int, *, settled_at: datetime, adjustment_id: int | None = None
) -> None:
    """Mark the invoice's unsettled late events settled, by the note `adjustment_id`, or by
    none (nothing changed the amount, or the invoice was voided: its reissue counts them).
    A note also takes the events settled earlier without one: its quantities include theirs."""
    statement = (
        update(LateEvent)
        .where(col(LateEvent.invoice_id) == invoice_id, col(LateEvent.settled_at).is_(None))
        .values(settled_at=settled_at, adjustment_id=adjustment_id)
        .execution_options(**NO_SYNC)
    )
    await session.execute(statement)
    if adjustment_id is not None:
        await session.execute(
            update(LateEvent)
            .where(col(LateEvent.invoice_id) == invoice_id, col(LateEvent.adjustment_id).is_(None))
            .values(adjustment_id=adjustment_id)
            .execution_options(**NO_SYNC)
        )


async def late_event_trace(session: AsyncSession, customer_id: str, event_id: str) -> tuple[Any, ...] | None:
    """(invoice id, invoice number, recorded at, settled at, note number or None) when the
    event was recorded as late, else None."""
    note = aliased(Adjustment)
    statement = (
        select(
            col(LateEvent.invoice_id),
            col(Invoice.number),
            col(LateEvent.recorded_at),
            col(LateEvent.settled_at),
            col(note.number),
        )
        .join(Invoice, col(Invoice.id) == col(LateEvent.invoice_id))
        .outerjoin(note, col(note.id) == col(LateEvent.adjustment_id))
        .where(col(LateEvent.customer_id) == customer_id, col(LateEvent.event_id) == event_id)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else tuple(row)


async def insert_late_events(conn: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    """Record late events on the persist transaction's asyncpg connection `conn`: each row is
    (invoice id, customer id, event id, metric name, quantity, event time); those recorded
    already are skipped.

    Raw asyncpg, not the session: it runs inside the ingest worker's per-batch transaction,
    on the connection that holds it, in one batched round trip."""
    await conn.executemany(
        "INSERT INTO late_events (invoice_id, customer_id, event_id, metric_name, quantity, event_time) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        rows,
    )


async def notes_sum(session: AsyncSession, invoice_id: int) -> Decimal:
    """What the invoice's notes add to its total (credit notes negative), exactly."""
    statement = select(func.coalesce(func.sum(col(Adjustment.amount)), 0)).where(
        col(Adjustment.invoice_id) == invoice_id
    )
    total: Any = (await session.execute(statement)).scalar_one()
    return Decimal(total)
