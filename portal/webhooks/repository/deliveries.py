"""Queries that write `webhook_events`, `webhook_deliveries` and `webhook_delivery_attempts`:
events with their pending deliveries, claimed under a lease, settled after each attempt."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from portal.infrastructure.db import values
from portal.webhooks.models import WebhookDelivery as DeliveryRow
from portal.webhooks.models import WebhookDeliveryAttempt as AttemptRow
from portal.webhooks.models import WebhookEndpoint as EndpointRow
from portal.webhooks.models import WebhookEvent as EventRow
from portal.webhooks.repository.common import NO_SYNC, first_id, ids
from portal.webhooks.schemas import Claimed


async def insert_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Events (id, type, api_version, customer_id, body, created_at), in one statement."""
    await session.execute(insert(EventRow).values(rows))


async def insert_deliveries(
    session: AsyncSession, pairs: list[tuple[str, int]], *, due: datetime
) -> list[int]:
    """A pending delivery per (event id, endpoint id), due at `due`; their ids, in order."""
    if not pairs:
        return []
    statement = (
        insert(DeliveryRow)
        .values([{"event_id": e, "endpoint_id": p, "next_attempt_at": due} for e, p in pairs])
        .returning(col(DeliveryRow.id))
        .execution_options(**NO_SYNC)
    )
    return ids(await session.scalars(statement))


async def insert_replay(session: AsyncSession, delivery_id: int, *, due: datetime) -> int | None:
    """A new pending delivery of the same event to the same endpoint, due at `due`; its id,
    or None for no such delivery."""
    source = select(
        col(DeliveryRow.event_id),
        col(DeliveryRow.endpoint_id),
        literal(delivery_id, BigInteger),
        literal(due),
    ).where(col(DeliveryRow.id) == delivery_id)
    statement = (
        insert(DeliveryRow)
        .from_select(["event_id", "endpoint_id", "replay_of_id", "next_attempt_at"], source)
        .returning(col(DeliveryRow.id))
    )
    return first_id(await session.execute(statement))


async def claim_delivery(
    session: AsyncSession, delivery_id: int, *, now: datetime, until: datetime
) -> Claimed | None:
    """Count an attempt and lease the delivery until `until`, if it is pending, due at `now`
    and not leased; what a sender needs, or None.

    The row is taken with FOR UPDATE SKIP LOCKED: of workers claiming at once, one gets it
    and the others move on, and the lease keeps the next ones off while it is being sent."""
    candidate = aliased(DeliveryRow, name="candidate")
    claimable = (
        select(col(candidate.id))
        .where(
            col(candidate.id) == delivery_id,
            col(candidate.status) == "pending",
            col(candidate.next_attempt_at) <= now,
            or_(col(candidate.leased_until).is_(None), col(candidate.leased_until) < now),
        )
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        update(DeliveryRow)
        .where(col(DeliveryRow.id) == claimable)
        .values(attempts=col(DeliveryRow.attempts) + 1, leased_until=until)
        .returning(col(DeliveryRow.attempts), col(DeliveryRow.event_id), col(DeliveryRow.endpoint_id))
        .execution_options(**NO_SYNC)
    )
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    attempt, event_id, endpoint_id = values(row)
    details = (
        await session.execute(
            select(
                col(EventRow.body),
                col(EndpointRow.url),
                col(EndpointRow.signing_secret_encrypted),
                col(EndpointRow.enabled),
                col(EndpointRow.deleted_at),
            )
            .select_from(DeliveryRow)
            .join(EventRow, col(EventRow.id) == col(DeliveryRow.event_id))
            .join(EndpointRow, col(EndpointRow.id) == col(DeliveryRow.endpoint_id))
            .where(col(DeliveryRow.id) == delivery_id)
        )
    ).one()
    body, url, secret, enabled, deleted_at = values(details)
    usable = (
        "the endpoint was deleted"
        if deleted_at is not None
        else None
        if enabled
        else "the endpoint is disabled"
    )
    return Claimed(
        int(delivery_id), int(attempt), str(event_id), body, int(endpoint_id), url, bytes(secret), usable
    )


async def insert_attempt(
    session: AsyncSession,
    *,
    delivery_id: int,
    attempt: int,
    started_at: datetime,
    duration_ms: int,
    http_status: int | None,
    error: str | None,
) -> None:
    statement = insert(AttemptRow).values(
        delivery_id=delivery_id,
        attempt=attempt,
        started_at=started_at,
        duration_ms=duration_ms,
        http_status=http_status,
        error=error,
    )
    await session.execute(statement)


async def _settle(session: AsyncSession, delivery_id: int, **changes: Any) -> None:
    statement = (
        update(DeliveryRow)
        .where(col(DeliveryRow.id) == delivery_id)
        .values(leased_until=None, **changes)
        .execution_options(**NO_SYNC)
    )
    await session.execute(statement)


async def mark_delivered(session: AsyncSession, delivery_id: int, *, now: datetime) -> None:
    await _settle(session, delivery_id, status="delivered", delivered_at=now, last_error=None)


async def mark_failed(session: AsyncSession, delivery_id: int, *, now: datetime, error: str | None) -> None:
    await _settle(session, delivery_id, status="failed", failed_at=now, last_error=error)


async def schedule_retry(session: AsyncSession, delivery_id: int, *, at: datetime, error: str | None) -> None:
    """Release the lease; the delivery is due again at `at`."""
    await _settle(session, delivery_id, next_attempt_at=at, last_error=error)


async def delivery_schedule(
    session: AsyncSession, delivery_id: int
) -> tuple[str, datetime | None, datetime] | None:
    """(status, leased until, next attempt at) of the delivery; None for no such delivery."""
    statement = select(
        col(DeliveryRow.status), col(DeliveryRow.leased_until), col(DeliveryRow.next_attempt_at)
    ).where(col(DeliveryRow.id) == delivery_id)
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    status, leased_until, next_attempt_at = values(row)
    return status, leased_until, next_attempt_at


async def due_delivery_ids(session: AsyncSession, *, now: datetime, limit: int) -> list[int]:
    """Pending deliveries due at `now` and not leased, the longest due first."""
    statement = (
        select(col(DeliveryRow.id))
        .where(
            col(DeliveryRow.status) == "pending",
            col(DeliveryRow.next_attempt_at) <= now,
            or_(col(DeliveryRow.leased_until).is_(None), col(DeliveryRow.leased_until) < now),
        )
        .order_by(col(DeliveryRow.next_attempt_at))
        .limit(limit)
    )
    return ids(await session.scalars(statement))
