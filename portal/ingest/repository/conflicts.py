"""Queries on `event_conflicts`: eventIds re-used with other content."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.ingest.models import EventConflict

# An event_conflicts row as written: (customer_id, event_id, event as JSON text, detected_by).
ConflictRecord = tuple[str, str, str, str]


async def insert_conflicts(conn: Any, records: Sequence[ConflictRecord]) -> None:
    """Record refused re-uses of event ids, on the persist transaction's asyncpg connection."""
    # Raw asyncpg: the ingest hot path (persist and its split), one batched round trip.
    await conn.executemany(
        "INSERT INTO event_conflicts (customer_id, event_id, event, detected_by) "
        "VALUES ($1, $2, $3::jsonb, $4)",
        records,
    )


class ConflictSeen(NamedTuple):
    detected_at: datetime
    detected_by: str
    event: dict[str, Any]


async def conflicts_of_event(session: AsyncSession, customer_id: str, event_id: str) -> list[ConflictSeen]:
    """Every refused re-use of this event id, oldest first."""
    statement = (
        select(col(EventConflict.detected_at), col(EventConflict.detected_by), col(EventConflict.event))
        .where(col(EventConflict.customer_id) == customer_id, col(EventConflict.event_id) == event_id)
        .order_by(col(EventConflict.id))
    )
    rows: Any = await session.execute(statement)
    return [ConflictSeen(*tuple(row)) for row in rows]


async def conflicts_since(session: AsyncSession, customer_id: str, since: datetime) -> int:
    """How many of the customer's event ids were re-sent with other content since `since`."""
    # Raw SQL: a count beside its sibling above, kept as the review has always read it.
    result = await session.execute(
        text("SELECT count(*) FROM event_conflicts WHERE customer_id = :c AND detected_at >= :s"),
        {"c": customer_id, "s": since},
    )
    return int(result.scalar_one())
