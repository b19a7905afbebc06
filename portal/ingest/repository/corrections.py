"""Queries of event corrections: the ledger lock that serializes them, the raw event they
change, and `event_corrections` itself. None commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.ingest.models import EventCorrection, EventLedgerEntry, UsageEvent

NO_SYNC = {"synchronize_session": False}


class RecordedEvent(NamedTuple):
    """The raw event a correction changes, as it stands now."""

    metric_name: str
    quantity: Decimal
    event_time: datetime
    hour: datetime
    group_key: str
    dimensions: dict[str, Any]
    cancelled_at: datetime | None


async def lock_ledger_entry(session: AsyncSession, customer_id: str, event_id: str) -> datetime | None:
    """Lock the event's ledger entry for this transaction: corrections of one event run one
    at a time (and the persist worker's admission of it has committed). Returns the event's
    time (the partition its raw row is in); None: no entry."""
    statement = (
        select(col(EventLedgerEntry.event_time))
        .where(col(EventLedgerEntry.customer_id) == customer_id, col(EventLedgerEntry.event_id) == event_id)
        .with_for_update()
    )
    event_time: datetime | None = (await session.execute(statement)).scalar_one_or_none()
    return event_time


async def recorded_event(
    session: AsyncSession, customer_id: str, event_id: str, event_time: datetime | None = None
) -> RecordedEvent | None:
    """The event's raw row (the first persisted), None when it is not stored yet."""
    statement = (
        select(
            col(UsageEvent.metric_name),
            col(UsageEvent.quantity),
            col(UsageEvent.event_time),
            col(UsageEvent.hour),
            col(UsageEvent.group_key),
            col(UsageEvent.dimensions),
            col(UsageEvent.cancelled_at),
        )
        .where(col(UsageEvent.customer_id) == customer_id, col(UsageEvent.event_id) == event_id)
        .order_by(col(UsageEvent.persisted_at))
        .limit(1)
    )
    if event_time is not None:  # the partition it is in
        statement = statement.where(col(UsageEvent.event_time) == event_time)
    row: Any = (await session.execute(statement)).first()
    return RecordedEvent(*tuple(row)) if row else None


async def change_event(
    session: AsyncSession,
    customer_id: str,
    event_id: str,
    event_time: datetime,
    *,
    quantity: Decimal | None = None,
    cancelled_at: datetime | None = None,
) -> None:
    """Set the raw event's new quantity, or mark it cancelled."""
    values: dict[str, Any] = {}
    if quantity is not None:
        values["quantity"] = quantity
    if cancelled_at is not None:
        values["cancelled_at"] = cancelled_at
    statement = (
        update(UsageEvent)
        .where(
            col(UsageEvent.customer_id) == customer_id,
            col(UsageEvent.event_id) == event_id,
            col(UsageEvent.event_time) == event_time,
        )
        .values(**values)
        .execution_options(**NO_SYNC)
    )
    await session.execute(statement)


class HourAggregate(NamedTuple):
    """What the hour's remaining events of one group come to (count 0: none remain)."""

    events: int
    maximum: Decimal | None
    latest_value: Decimal | None
    latest_at: datetime | None
    latest_event_id: str | None


async def hour_aggregate(
    session: AsyncSession, customer_id: str, metric_name: str, hour: datetime, group_key: str
) -> HourAggregate:
    """The max and the latest (by event time, then id) of the hour's events in one group
    that are not cancelled: what a max or latest hour is recomputed from."""
    where = (
        col(UsageEvent.customer_id) == customer_id,
        col(UsageEvent.metric_name) == metric_name,
        col(UsageEvent.hour) == hour,
        col(UsageEvent.group_key) == group_key,
        col(UsageEvent.cancelled_at).is_(None),
        # The events of a local hour lie within it: the bounds let Postgres skip partitions.
        col(UsageEvent.event_time) >= hour,
        col(UsageEvent.event_time) < hour + timedelta(hours=1),
    )
    count, maximum = (
        await session.execute(select(func.count(), func.max(col(UsageEvent.quantity))).where(*where))
    ).one()
    latest: Any = (
        await session.execute(
            select(col(UsageEvent.quantity), col(UsageEvent.event_time), col(UsageEvent.event_id))
            .where(*where)
            .order_by(col(UsageEvent.event_time).desc(), col(UsageEvent.event_id).desc())
            .limit(1)
        )
    ).first()
    return HourAggregate(
        int(count),
        maximum,
        latest[0] if latest else None,
        latest[1] if latest else None,
        latest[2] if latest else None,
    )


async def groups_still_holding(
    session: AsyncSession, customer_id: str, metric_name: str, hour: datetime, unique_by: str, value: str
) -> set[str]:
    """The groups whose not-cancelled events of the hour still carry this distinct value."""
    statement = (
        select(col(UsageEvent.group_key))
        .distinct()
        .where(
            col(UsageEvent.customer_id) == customer_id,
            col(UsageEvent.metric_name) == metric_name,
            col(UsageEvent.hour) == hour,
            col(UsageEvent.cancelled_at).is_(None),
            col(UsageEvent.event_time) >= hour,
            col(UsageEvent.event_time) < hour + timedelta(hours=1),
            col(UsageEvent.dimensions)[unique_by].astext == value,
        )
    )
    return {str(g) for g in (await session.scalars(statement)).all()}


async def insert_correction(session: AsyncSession, **fields: Any) -> int:
    statement = insert(EventCorrection).values(**fields).returning(col(EventCorrection.id))
    correction_id: Any = (await session.execute(statement)).scalar_one()
    return int(correction_id)


async def corrections_of_event(
    session: AsyncSession, customer_id: str, event_id: str
) -> list[EventCorrection]:
    statement = (
        select(EventCorrection)
        .where(col(EventCorrection.customer_id) == customer_id, col(EventCorrection.event_id) == event_id)
        .order_by(col(EventCorrection.id))
    )
    return list((await session.scalars(statement)).all())


async def correction_by_id(
    session: AsyncSession, customer_id: str, correction_id: int
) -> EventCorrection | None:
    statement = select(EventCorrection).where(
        col(EventCorrection.customer_id) == customer_id, col(EventCorrection.id) == correction_id
    )
    return (await session.scalars(statement)).first()


async def unsettled_corrections(session: AsyncSession, invoice_id: int) -> list[EventCorrection]:
    """The corrections of a finalized invoice's period still waiting for their note."""
    statement = (
        select(EventCorrection)
        .where(col(EventCorrection.invoice_id) == invoice_id, col(EventCorrection.settled_at).is_(None))
        .order_by(col(EventCorrection.id))
    )
    return list((await session.scalars(statement)).all())


async def settle_corrections_of(
    session: AsyncSession, invoice_id: int, *, settled_at: datetime, adjustment_id: int | None = None
) -> None:
    statement = (
        update(EventCorrection)
        .where(col(EventCorrection.invoice_id) == invoice_id, col(EventCorrection.settled_at).is_(None))
        .values(settled_at=settled_at, adjustment_id=adjustment_id)
        .execution_options(**NO_SYNC)
    )
    await session.execute(statement)


async def invoices_with_unsettled_corrections(session: AsyncSession, *, older_than: timedelta) -> list[int]:
    statement = (
        select(col(EventCorrection.invoice_id))
        .distinct()
        .where(
            col(EventCorrection.invoice_id).is_not(None),
            col(EventCorrection.settled_at).is_(None),
            col(EventCorrection.created_at) < func.now() - older_than,
        )
    )
    return [int(i) for i in (await session.scalars(statement)).all() if i is not None]


async def customers_with_event(session: AsyncSession, event_id: str, metric_name: str) -> list[str]:
    """The customers whose stored events of this meter carry this id, for an API that names
    an event by its id alone (Stripe's meter event adjustments)."""
    statement = (
        select(col(UsageEvent.customer_id))
        .distinct()
        .where(col(UsageEvent.event_id) == event_id, col(UsageEvent.metric_name) == metric_name)
    )
    return sorted(str(c) for c in (await session.scalars(statement)).all())


async def correction_kinds(
    session: AsyncSession, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """(customer id, event id) → 'cancel' for the listed events that were cancelled, 'amend'
    for those only amended; events never corrected are left out. For a page of events."""
    if not keys:
        return {}
    statement = select(
        col(EventCorrection.customer_id), col(EventCorrection.event_id), col(EventCorrection.kind)
    ).where(tuple_(col(EventCorrection.customer_id), col(EventCorrection.event_id)).in_(list(keys)))
    kinds: dict[tuple[str, str], str] = {}
    for customer_id, event_id, kind in (await session.execute(statement)).all():
        key = (str(customer_id), str(event_id))
        if kinds.get(key) != "cancel":
            kinds[key] = str(kind)
    return kinds
