"""Queries on `failed_events`: events the workers gave up on, later replayed or discarded."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, DateTime, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.infrastructure.db import values
from portal.ingest.models import FailedEvent

# Only columns are read and written here, never objects a session would have to keep in step.
NO_SYNC = {"synchronize_session": False}

# A failed_events row as written: (message_id, customer_id, event_id, event as JSON text,
# received_at, reason).
FailedRecord = tuple[str, str, str, str, datetime, str]


async def insert_failed_events(conn: Any, records: Sequence[FailedRecord]) -> None:
    """Keep events that could not be persisted, on an asyncpg connection in the caller's
    transaction; a (message, customer, event) kept already stays as it is."""
    # Raw asyncpg: written by the persist worker's split, on its bare asyncpg connection.
    await conn.executemany(
        "INSERT INTO failed_events (message_id, customer_id, event_id, event, received_at, reason) "
        "VALUES ($1, $2, $3, $4::jsonb, $5, $6) "
        "ON CONFLICT (message_id, customer_id, event_id) DO NOTHING",
        records,
    )


async def failed_keys_of_message(conn: Any, message_id: str) -> set[tuple[str, str]]:
    """(customer id, event id) of the events kept for this message id (as stored), on an
    asyncpg connection."""
    # Raw asyncpg: read by the persist worker's split, on its bare asyncpg connection.
    found = await conn.fetch(
        "SELECT customer_id, event_id FROM failed_events WHERE message_id = $1", message_id
    )
    return {(r["customer_id"], r["event_id"]) for r in found}


async def failed_event_key(session: AsyncSession, failed_id: int) -> tuple[str, str] | None:
    """(customer id, event id) of a failed event, None when there is none of that id."""
    statement = select(col(FailedEvent.customer_id), col(FailedEvent.event_id)).where(
        col(FailedEvent.id) == failed_id
    )
    row: Any = (await session.execute(statement)).first()
    return (str(row[0]), str(row[1])) if row else None


async def failed_to_replay(session: AsyncSession, ids: Sequence[int] | None) -> list[tuple[int, str, Any]]:
    """(id, message id, stored event) of the failed events still 'failed' among `ids` (all of
    them when None), by id, locked FOR UPDATE until the caller's transaction ends."""
    statement = (
        select(col(FailedEvent.id), col(FailedEvent.message_id), col(FailedEvent.event))
        .where(col(FailedEvent.status) == "failed")
        .order_by(col(FailedEvent.id))
        .with_for_update()
    )
    if ids is not None:
        statement = statement.where(col(FailedEvent.id).in_(list(ids)))
    rows: Any = await session.execute(statement)
    return [(int(i), str(m), event) for i, m, event in rows]


async def mark_replayed(session: AsyncSession, ids: Sequence[int]) -> None:
    """Mark these failed events replayed, now."""
    statement = (
        update(FailedEvent)
        .where(col(FailedEvent.id).in_(list(ids)))
        .values(status="replayed", resolved_at=func.now())
        .execution_options(**NO_SYNC)
    )
    await session.execute(statement)


async def mark_discarded(session: AsyncSession, failed_id: int) -> bool:
    """Mark the failed event discarded, now, if it is still 'failed'; whether it was."""
    statement = (
        update(FailedEvent)
        .where(col(FailedEvent.id) == failed_id, col(FailedEvent.status) == "failed")
        .values(status="discarded", resolved_at=func.now())
        .returning(col(FailedEvent.id))
        .execution_options(**NO_SYNC)
    )
    return (await session.execute(statement)).first() is not None


class FailedAttempt(NamedTuple):
    id: int
    reason: str
    failed_at: datetime
    status: str
    resolved_at: datetime | None


async def failed_of_event(session: AsyncSession, customer_id: str, event_id: str) -> list[FailedAttempt]:
    """Every time this event was kept as failed (one per message that carried it), by id."""
    statement = (
        select(
            col(FailedEvent.id),
            col(FailedEvent.reason),
            col(FailedEvent.failed_at),
            col(FailedEvent.status),
            col(FailedEvent.resolved_at),
        )
        .where(col(FailedEvent.customer_id) == customer_id, col(FailedEvent.event_id) == event_id)
        .order_by(col(FailedEvent.id))
    )
    rows: Any = await session.execute(statement)
    return [FailedAttempt(*tuple(row)) for row in rows]


class FailedListed(NamedTuple):
    id: int
    customer_id: str
    event_id: str
    reason: str
    received_at: datetime
    failed_at: datetime
    status: str
    resolved_at: datetime | None
    metric_name: str  # "" when the stored event has none
    quantity: str  # as sent, "" when none
    timestamp_ms: int | None
    dimensions: int  # how many
    stored: Any = None  # the stored event's `wire` entry: its copy to replay, if any


async def failed_page(
    session: AsyncSession,
    *,
    visible: str,
    params: dict[str, Any],
    status: str,
    customer_id: str | None,
    limit: int,
    offset: int,
) -> tuple[list[FailedListed], int]:
    """One page of the failed events in `status` of the customers in `visible` (a raw SQL
    subquery of customer ids bound by `params`), latest failure first, with how many there
    are in all; only `customer_id`'s when it is given."""
    # Raw SQL: a report over the stored event's jsonb fields (counting its dimensions needs a
    # set-returning function), limited by the pages' raw scope subquery.
    rows: Any = await session.execute(
        text(
            "SELECT f.id, f.customer_id, f.event_id, f.reason, f.received_at, f.failed_at, f.status, "
            "f.resolved_at, "
            "COALESCE(f.event->>'metricName', ''), COALESCE(f.event->>'quantity', ''), "
            "(f.event->>'timestamp')::bigint, "
            "(SELECT count(*) FROM jsonb_object_keys(COALESCE(f.event->'dimensions', '{}'::jsonb))), "
            "CASE WHEN f.event->'wire' IS NOT NULL THEN jsonb_build_object('wire', f.event->'wire') "
            "ELSE '{}'::jsonb END, "
            "count(*) OVER () "
            f"FROM failed_events f WHERE f.customer_id IN {visible} AND f.status = :s "
            "AND (CAST(:c AS text) IS NULL OR f.customer_id = :c) "
            "ORDER BY f.failed_at DESC, f.id DESC LIMIT :limit OFFSET :offset"
        ),
        {**params, "s": status, "c": customer_id, "limit": limit, "offset": offset},
    )
    found: list[FailedListed] = []
    total = 0
    for *row, count in (tuple(r) for r in rows):
        found.append(FailedListed(*row))
        total = int(count)
    return found, total


async def failed_events_outstanding(session: AsyncSession) -> tuple[int, datetime | None]:
    """How many failed events wait (status 'failed'), and when the oldest failed (None: none)."""
    # Raw SQL: a gauge, kept as status and the data gauges have always read it.
    failed, oldest = values(
        (
            await session.execute(
                text("SELECT count(*), min(failed_at) FROM failed_events WHERE status = 'failed'")
            )
        ).one()
    )
    return int(failed), oldest


# The statuses a failed event can have (the table's check constraint).
FAILED_EVENT_STATUSES = ("failed", "replayed", "discarded")

# Where a failed event sits in the listing's order: (failed_at, id). failed_at is the
# writing transaction's start, so ids of concurrent writers do not follow it.
FailedPosition = tuple[datetime, int]


async def failed_event_position(session: AsyncSession, failed_id: int) -> FailedPosition | None:
    """(failed_at, id) of a failed event, whatever its status now, the key
    `failed_events_listing` pages by; None when there is none of that id."""
    statement = select(col(FailedEvent.failed_at), col(FailedEvent.id)).where(
        col(FailedEvent.id) == failed_id
    )
    row: Any = (await session.execute(statement)).first()
    return None if row is None else (row[0], int(row[1]))


async def failed_events_listing(
    session: AsyncSession, *, status: str, limit: int, older_than: FailedPosition | None = None
) -> list[tuple[Any, ...]]:
    """Failed events with `status`, newest first (failed_at, then id), at most `limit`, only
    those after `older_than` in that order when given: (id, message_id, customer_id,
    event_id, event, received_at, reason, failed_at, status)."""
    # Raw SQL: the admin API's listing (GET /v1/failed-events), as it has always read it.
    older_at, older_id = older_than if older_than is not None else (None, None)
    rows = await session.execute(
        text(
            "SELECT id, message_id, customer_id, event_id, event, received_at, reason, "
            "failed_at, status FROM failed_events WHERE status = :s "
            "AND (CAST(:oid AS bigint) IS NULL OR (failed_at, id) < (:oat, :oid)) "
            "ORDER BY failed_at DESC, id DESC LIMIT :l"
        ).bindparams(bindparam("oat", type_=DateTime(timezone=True)), bindparam("oid", type_=BigInteger)),
        {"s": status, "l": limit, "oat": older_at, "oid": older_id},
    )
    return [values(row) for row in rows]


async def failed_events_in_period(
    session: AsyncSession, customer_id: str, start: datetime, end: datetime
) -> int:
    """How many of the customer's events still failed (not replayed or discarded) have an
    event time (its own `timestamp`, ms) in [start, end)."""
    # Raw SQL: the event time is read out of the stored JSON body.
    result = await session.execute(
        text(
            "SELECT count(*) FROM failed_events WHERE customer_id = :c AND status = 'failed' "
            "AND to_timestamp((event->>'timestamp')::bigint / 1000.0) >= :s "
            "AND to_timestamp((event->>'timestamp')::bigint / 1000.0) < :e"
        ),
        {"c": customer_id, "s": start, "e": end},
    )
    return int(result.scalar_one())
