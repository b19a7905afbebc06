"""Queries on `event_ledger`: one row per accepted (customer, eventId) with its fingerprint,
the dedup guard; admitted by the persist transaction, pruned after the lateness window."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.infrastructure.db import values
from portal.ingest.events import AcceptedEvent
from portal.ingest.models import EventLedgerEntry


def message_key(message_id: str) -> int:
    """The ledger's compact name of a persist message (64 bits of a hash of its id): what
    tells an event this message admitted on an earlier delivery from one another message
    admitted. 0 is kept for entries made before the ledger recorded it."""
    key = int.from_bytes(hashlib.blake2b(message_id.encode(), digest_size=8).digest(), "big", signed=True)
    return key or 1


async def admit_to_ledger(
    conn: Any,
    events: Sequence[AcceptedEvent],
    event_times: Sequence[datetime],
    received_at: datetime,
    message: int,
) -> int:
    """Insert a ledger entry per event (`event_times[i]` is `events[i]`'s time, UTC), made by
    message `message` (`message_key`), on the persist transaction's asyncpg connection; how
    many were admitted, that is, not already in the ledger (when fewer than all, `ledger_holdings`
    tells which). `events` must hold each key once."""
    # Raw asyncpg: the ingest hot path, one unnest insert for the whole batch. It answers a
    # count, not the admitted keys: almost always every event is new, and returning thousands
    # of keys only to find that costs the worker more than the insert.
    admitted: int = await conn.fetchval(
        "WITH admitted AS (INSERT INTO event_ledger (customer_id, event_id, fingerprint, event_time, "
        "received_at, message_key) SELECT *, $6::bigint FROM unnest($1::text[], $2::text[], "
        "$3::bytea[], $4::timestamptz[], $5::timestamptz[]) ON CONFLICT DO NOTHING RETURNING 1) "
        "SELECT count(*) FROM admitted",
        [e.customer_id for e in events],
        [e.event_id for e in events],
        [bytes.fromhex(e.fingerprint) for e in events],
        event_times,
        [received_at] * len(events),
        message,
    )
    return admitted


class LedgerHolding(NamedTuple):
    fingerprint: str  # hex
    message: int  # the message that admitted it (`message_key`), 0 if not recorded
    admitted_now: bool  # by this transaction


async def ledger_holdings(conn: Any, events: Sequence[AcceptedEvent]) -> dict[tuple[str, str], LedgerHolding]:
    """(customer id, event id) → what the ledger holds for those of the events' keys it
    holds, on the persist transaction's asyncpg connection, after `admit_to_ledger` in the
    same transaction."""
    # Raw asyncpg: the ingest hot path, one join against an unnest of the keys. An entry this
    # transaction made has its transaction id as xmin (the persist transaction uses no
    # savepoints). Not `persisted_at = now()`: two deliveries of one message whose
    # transactions began in the same microsecond both took the events for their own, and
    # the second counted them again (seen once in CI: 12.5 billed for 6.25).
    known = await conn.fetch(
        "SELECT l.customer_id, l.event_id, l.fingerprint, l.message_key, "
        "(l.xmin = pg_current_xact_id()::xid) AS admitted_now FROM event_ledger l "
        "JOIN unnest($1::text[], $2::text[]) AS k(customer_id, event_id) "
        "USING (customer_id, event_id)",
        [e.customer_id for e in events],
        [e.event_id for e in events],
    )
    return {
        (r["customer_id"], r["event_id"]): LedgerHolding(
            bytes(r["fingerprint"]).hex(), r["message_key"], r["admitted_now"]
        )
        for r in known
    }


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
