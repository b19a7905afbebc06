"""Queries on `usage_events`, the raw events in monthly partitions: COPY by the persist
transaction, and the event explorer's reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import msgspec
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.ingest.events import AcceptedEvent, micros_to_datetime
from portal.ingest.models import UsageEvent

# The COPY's columns, in the order of the records `copy_usage_events` builds.
USAGE_EVENT_COLUMNS = [
    "customer_id",
    "event_id",
    "metric_name",
    "product_id",
    "quantity",
    "event_time",
    "hour",
    "group_key",
    "dimensions",
    "metadata",
    "received_at",
    "message_id",
]

_encode = msgspec.json.Encoder().encode


def _json(value: Any) -> str:
    return _encode(value).decode()


async def copy_usage_events(
    conn: Any,
    events: Sequence[AcceptedEvent],
    event_times: Sequence[datetime],
    *,
    received_at: datetime,
    message_id: str,
) -> None:
    """Store the raw events (admitted by the ledger; `event_times[i]` is `events[i]`'s time,
    UTC) on the persist transaction's asyncpg connection. Their months' partitions must exist
    (`portal.ingest.partitions.ensure_partitions`)."""
    hours: dict[int, datetime] = {}
    # Raw asyncpg: the ingest hot path, COPY is the cheapest way to write many rows.
    await conn.copy_records_to_table(
        "usage_events",
        columns=USAGE_EVENT_COLUMNS,
        records=[
            (
                e.customer_id,
                e.event_id,
                e.metric_name,
                e.product_id,
                e.quantity,
                event_time,
                hours.get(e.bucket) or hours.setdefault(e.bucket, micros_to_datetime(e.bucket * 1_000_000)),
                e.group_key,
                _json(e.dimensions),
                _json(e.metadata),
                received_at,
                message_id,
            )
            for e, event_time in zip(events, event_times, strict=True)
        ],
    )


class EventRow(NamedTuple):
    customer_id: str
    event_id: str
    metric_name: str
    quantity: Any  # Decimal
    event_time: datetime
    received_at: datetime
    persisted_at: datetime
    dimensions: dict[str, Any]


async def events_page(
    session: AsyncSession,
    *,
    visible: str,
    params: dict[str, Any],
    customer_id: str | None,
    metric_name: str | None,
    event_id: str | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    offset: int,
) -> list[EventRow]:
    """Stored events of the customers in `visible` (a raw SQL subquery of customer ids bound
    by `params`, see portal.pages.manager.common.visible_ids), newest event time first; each
    filter that is given must match (`start` inclusive, `end` exclusive)."""
    # The scope is raw SQL: the same subquery limits the pages' raw report queries.
    statement = (
        select(
            col(UsageEvent.customer_id),
            col(UsageEvent.event_id),
            col(UsageEvent.metric_name),
            col(UsageEvent.quantity),
            col(UsageEvent.event_time),
            col(UsageEvent.received_at),
            col(UsageEvent.persisted_at),
            col(UsageEvent.dimensions),
        )
        .where(text(f"usage_events.customer_id IN {visible}"))
        .order_by(col(UsageEvent.event_time).desc(), col(UsageEvent.customer_id), col(UsageEvent.event_id))
        .limit(limit)
        .offset(offset)
    )
    if customer_id is not None:
        statement = statement.where(col(UsageEvent.customer_id) == customer_id)
    if metric_name is not None:
        statement = statement.where(col(UsageEvent.metric_name) == metric_name)
    if event_id is not None:
        statement = statement.where(col(UsageEvent.event_id) == event_id)
    if start is not None:
        statement = statement.where(col(UsageEvent.event_time) >= start)
    if end is not None:
        statement = statement.where(col(UsageEvent.event_time) < end)
    rows: Any = await session.execute(statement, params)
    return [EventRow(*tuple(row)) for row in rows]


class StoredEvent(NamedTuple):
    metric_name: str
    quantity: Any  # Decimal
    event_time: datetime
    hour: datetime
    group_key: str
    dimensions: dict[str, Any]
    metadata: dict[str, Any]
    received_at: datetime
    persisted_at: datetime
    message_id: str


async def stored_event(session: AsyncSession, customer_id: str, event_id: str) -> StoredEvent | None:
    """The event's raw row (the first persisted, should there be more), None when not stored."""
    statement = (
        select(
            col(UsageEvent.metric_name),
            col(UsageEvent.quantity),
            col(UsageEvent.event_time),
            col(UsageEvent.hour),
            col(UsageEvent.group_key),
            col(UsageEvent.dimensions),
            col(UsageEvent.metadata_),
            col(UsageEvent.received_at),
            col(UsageEvent.persisted_at),
            col(UsageEvent.message_id),
        )
        .where(col(UsageEvent.customer_id) == customer_id, col(UsageEvent.event_id) == event_id)
        .order_by(col(UsageEvent.persisted_at))
        .limit(1)
    )
    row: Any = (await session.execute(statement)).first()
    return StoredEvent(*tuple(row)) if row else None
