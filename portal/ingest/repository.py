"""Every query on ingest's tables, `event_ledger`, `usage_events`, `event_conflicts` and
`failed_events`; other modules call these functions, never the tables. (The monthly
partitions of `usage_events` are made by `portal/ingest/partitions.py`.)

Two kinds of caller. The persist worker writes on a bare asyncpg connection inside its
per-batch transaction: those functions are raw asyncpg SQL (unnest, COPY, executemany)
because they are the ingest hot path, one round trip per statement whatever the batch size.
The pages and operator tasks read and write on a session, with SQLAlchemy expressions,
except where a comment says why not. Reads select columns rather than whole models, so
nothing lands in the session's identity map. None of them commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import msgspec
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.infrastructure.db import values
from portal.ingest.events import AcceptedEvent, micros_to_datetime
from portal.ingest.models import EventConflict, EventLedgerEntry, FailedEvent, UsageEvent

# Only columns are read and written here, never objects a session would have to keep in step.
NO_SYNC = {"synchronize_session": False}

# A failed_events row as written: (message_id, customer_id, event_id, event as JSON text,
# received_at, reason).
FailedRecord = tuple[str, str, str, str, datetime, str]
# An event_conflicts row as written: (customer_id, event_id, event as JSON text, detected_by).
ConflictRecord = tuple[str, str, str, str]

# --- event_ledger


async def admit_to_ledger(
    conn: Any, events: Sequence[AcceptedEvent], event_times: Sequence[datetime], received_at: datetime
) -> set[tuple[str, str]]:
    """Insert a ledger entry per event (`event_times[i]` is `events[i]`'s time, UTC), on the
    persist transaction's asyncpg connection; the (customer id, event id) keys admitted, that
    is, not already in the ledger. `events` must hold each key once."""
    # Raw asyncpg: the ingest hot path, one unnest insert for the whole batch.
    admitted_rows = await conn.fetch(
        "INSERT INTO event_ledger (customer_id, event_id, fingerprint, event_time, received_at) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::timestamptz[], "
        "$5::timestamptz[]) ON CONFLICT DO NOTHING RETURNING customer_id, event_id",
        [e.customer_id for e in events],
        [e.event_id for e in events],
        [bytes.fromhex(e.fingerprint) for e in events],
        event_times,
        [received_at] * len(events),
    )
    return {(r["customer_id"], r["event_id"]) for r in admitted_rows}


async def ledger_fingerprints(conn: Any, events: Sequence[AcceptedEvent]) -> dict[tuple[str, str], str]:
    """(customer id, event id) → fingerprint (hex) of those of the events' keys the ledger
    holds, on the persist transaction's asyncpg connection."""
    # Raw asyncpg: the ingest hot path, one join against an unnest of the refused keys.
    known = await conn.fetch(
        "SELECT l.customer_id, l.event_id, l.fingerprint FROM event_ledger l "
        "JOIN unnest($1::text[], $2::text[]) AS k(customer_id, event_id) "
        "USING (customer_id, event_id)",
        [e.customer_id for e in events],
        [e.event_id for e in events],
    )
    return {(r["customer_id"], r["event_id"]): bytes(r["fingerprint"]).hex() for r in known}


async def prune_ledger(conn: Any, older_than: timedelta) -> None:
    """Forget ledger entries whose event time is more than `older_than` before now, on an
    asyncpg connection in the caller's transaction."""
    # Raw asyncpg: the maintenance actor runs on a bare asyncpg connection, not a session.
    await conn.execute("DELETE FROM event_ledger WHERE event_time < now() - $1::interval", older_than)


class LedgerEntry(NamedTuple):
    event_time: datetime
    received_at: datetime
    persisted_at: datetime


async def ledger_entry(session: AsyncSession, customer_id: str, event_id: str) -> LedgerEntry | None:
    """The event's ledger entry, None when the ledger does not hold it (never admitted, or
    pruned after the lateness window)."""
    statement = select(
        col(EventLedgerEntry.event_time),
        col(EventLedgerEntry.received_at),
        col(EventLedgerEntry.persisted_at),
    ).where(col(EventLedgerEntry.customer_id) == customer_id, col(EventLedgerEntry.event_id) == event_id)
    row: Any = (await session.execute(statement)).first()
    return LedgerEntry(*tuple(row)) if row else None


# --- usage_events

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
    *,
    event_time_of: dict[tuple[str, str], datetime],
    received_at: datetime,
    message_id: str,
) -> None:
    """Store the raw events (admitted by the ledger; `event_time_of` maps each (customer id,
    event id) to its event time, UTC) on the persist transaction's asyncpg connection. Their
    months' partitions must exist (`portal.ingest.partitions.ensure_partitions`)."""
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
                event_time_of[(e.customer_id, e.event_id)],
                hours.get(e.bucket) or hours.setdefault(e.bucket, micros_to_datetime(e.bucket * 1_000_000)),
                e.group_key,
                _json(e.dimensions),
                _json(e.metadata),
                received_at,
                message_id,
            )
            for e in events
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


# --- event_conflicts


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


# --- failed_events


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


# --- read as gauges and counts (status, /metrics, billing health, the bills' review)


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


async def failed_events_listing(session: AsyncSession, *, status: str, limit: int) -> list[tuple[Any, ...]]:
    """Failed events with `status`, newest first, at most `limit`: (id, message_id,
    customer_id, event_id, event, received_at, reason, failed_at, status)."""
    # Raw SQL: the admin API's listing (GET /v1/failed-events), as it has always read it.
    rows = await session.execute(
        text(
            "SELECT id, message_id, customer_id, event_id, event, received_at, reason, "
            "failed_at, status FROM failed_events WHERE status = :s "
            "ORDER BY failed_at DESC, id DESC LIMIT :l"
        ),
        {"s": status, "l": limit},
    )
    return [values(row) for row in rows]


async def persist_latency(
    session: AsyncSession, *, start: datetime, end: datetime, sample: int
) -> tuple[Any, ...]:
    """(events, p50 and p99 of persisted minus received, p50 and p99 of persisted minus
    event time; seconds, None when no event) over the newest `sample` ledger rows with an
    event time from a day before `start` to `end`, counting those persisted in [start, end)."""
    # Raw SQL: ordered-set aggregates (percentile_cont … WITHIN GROUP) over a bounded sample.
    # The ledger (unpartitioned, indexed by event time) holds the same three instants as the
    # raw events; reading at most `sample` of the newest keeps this bounded at any rate.
    return values(
        (
            await session.execute(
                text(
                    "SELECT count(*), "
                    "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM persisted_at - "
                    "received_at)), "
                    "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM persisted_at - "
                    "received_at)), "
                    "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM persisted_at - "
                    "event_time)), "
                    "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM persisted_at - "
                    "event_time)) "
                    "FROM (SELECT * FROM event_ledger WHERE event_time >= CAST(:start AS timestamptz) - "
                    "interval '1 day' "
                    "AND event_time < :end ORDER BY event_time DESC LIMIT :sample) recent "
                    "WHERE persisted_at >= :start AND persisted_at < :end"
                ),
                {"start": start, "end": end, "sample": sample},
            )
        ).one()
    )


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


async def conflicts_since(session: AsyncSession, customer_id: str, since: datetime) -> int:
    """How many of the customer's event ids were re-sent with other content since `since`."""
    # Raw SQL: a count beside its sibling above, kept as the review has always read it.
    result = await session.execute(
        text("SELECT count(*) FROM event_conflicts WHERE customer_id = :c AND detected_at >= :s"),
        {"c": customer_id, "s": since},
    )
    return int(result.scalar_one())
