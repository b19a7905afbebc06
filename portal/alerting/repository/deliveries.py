"""Queries on `alert_deliveries` and `alert_delivery_attempts`: pending deliveries written
with their firing, claimed under a lease, settled after each attempt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Text, case, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from portal.alerting.models import AlertChannel as ChannelRow
from portal.alerting.models import AlertDelivery as DeliveryRow
from portal.alerting.models import AlertDeliveryAttempt as AttemptRow
from portal.alerting.repository.common import NO_SYNC, ids, jsonb_notice
from portal.alerting.schemas import Attempt, Delivery
from portal.infrastructure.db import values

_DELIVERY = (
    col(DeliveryRow.id),
    col(DeliveryRow.firing_id),
    col(DeliveryRow.channel_id),
    col(ChannelRow.name),
    col(DeliveryRow.customer_id),
    col(DeliveryRow.status),
    col(DeliveryRow.attempts),
    # Only a pending delivery has a next attempt.
    case((col(DeliveryRow.status) == "pending", col(DeliveryRow.next_attempt_at))),
    col(DeliveryRow.last_error),
    col(DeliveryRow.masked_destination),
    col(DeliveryRow.created_at),
    col(DeliveryRow.sent_at),
    col(DeliveryRow.failed_at),
)


def _delivery(row: Any) -> Delivery:
    return Delivery(*values(row))


async def insert_firing_deliveries(
    session: AsyncSession, *, firing_id: int, customer_id: str, channel_ids: list[int], notice_json: str
) -> list[int]:
    """A pending delivery of the firing's notice to each of `channel_ids` still enabled,
    by channel; their ids."""
    source = (
        select(
            literal(firing_id, BigInteger),
            col(ChannelRow.id),
            literal(customer_id, Text),
            jsonb_notice(notice_json),
            col(ChannelRow.destination_masked),
        )
        .where(col(ChannelRow.id).in_(channel_ids), col(ChannelRow.disabled_at).is_(None))
        .order_by(col(ChannelRow.id))
    )
    statement = (
        insert(DeliveryRow)
        .from_select(["firing_id", "channel_id", "customer_id", "notice", "masked_destination"], source)
        .returning(col(DeliveryRow.id))
    )
    return ids(await session.scalars(statement))


@dataclass(frozen=True, slots=True)
class RecentTests:
    """Test notices of the last window, by the database's clock (the one that stamped
    them): to the channel's destination (whichever channel of the customer had it: a channel
    deleted and added again is the same address) and to all the customer's channels, and in
    how many seconds the oldest of each leaves the window."""

    to_destination: int
    to_customer: int
    destination_frees_in_s: float
    customer_frees_in_s: float


async def recent_test_deliveries(
    session: AsyncSession, customer_id: str, channel_id: int, *, within: timedelta
) -> RecentTests:
    destination = (
        select(col(ChannelRow.destination_masked))
        .where(col(ChannelRow.id) == channel_id, col(ChannelRow.customer_id) == customer_id)
        .scalar_subquery()
    )
    same = col(DeliveryRow.masked_destination) == destination
    frees = func.extract("epoch", func.min(col(DeliveryRow.created_at)) + within - func.now())
    statement = select(
        func.count().filter(same),
        func.count(),
        func.extract("epoch", func.min(col(DeliveryRow.created_at)).filter(same) + within - func.now()),
        frees,
    ).where(
        col(DeliveryRow.customer_id) == customer_id,
        col(DeliveryRow.firing_id).is_(None),
        col(DeliveryRow.created_at) > func.now() - within,
    )
    row: Any = (await session.execute(statement)).one()
    return RecentTests(int(row[0]), int(row[1]), float(row[2] or 0), float(row[3] or 0))


async def insert_test_delivery(
    session: AsyncSession, customer_id: str, channel_id: int, notice_json: str
) -> int | None:
    """A pending delivery without a firing to the customer's enabled channel; its id, or None
    for no such channel."""
    source = select(
        col(ChannelRow.id),
        col(ChannelRow.customer_id),
        jsonb_notice(notice_json),
        col(ChannelRow.destination_masked),
    ).where(
        col(ChannelRow.id) == channel_id,
        col(ChannelRow.customer_id) == customer_id,
        col(ChannelRow.disabled_at).is_(None),
    )
    statement = (
        insert(DeliveryRow)
        .from_select(["channel_id", "customer_id", "notice", "masked_destination"], source)
        .returning(col(DeliveryRow.id))
    )
    row: Any = (await session.execute(statement)).first()
    return None if row is None else int(row[0])


async def claim_delivery(
    session: AsyncSession, delivery_id: int, *, now: datetime, until: datetime
) -> tuple[int, Any, int] | None:
    """Count an attempt and lease the delivery until `until`, if it is pending, due at `now`
    and not leased; (attempt, notice, channel id), or None.

    The row is taken with FOR UPDATE SKIP LOCKED: of workers claiming at once, one gets it and
    the others move on at once, instead of waiting to find the lease taken."""
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
        .returning(col(DeliveryRow.attempts), col(DeliveryRow.notice), col(DeliveryRow.channel_id))
        .execution_options(**NO_SYNC)
    )
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    attempt, notice, channel_id = values(row)
    return int(attempt), notice, int(channel_id)


async def insert_attempt(
    session: AsyncSession,
    *,
    delivery_id: int,
    attempt: int,
    ok: bool,
    error: str | None,
    masked_destination: str,
    started_at: datetime,
) -> None:
    # The delivery's customer, copied (the table is keyed by customer: migration 0008).
    customer = select(col(DeliveryRow.customer_id)).where(col(DeliveryRow.id) == delivery_id)
    statement = insert(AttemptRow).values(
        customer_id=customer.scalar_subquery(),
        delivery_id=delivery_id,
        attempt=attempt,
        ok=ok,
        error=error,
        masked_destination=masked_destination,
        started_at=started_at,
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


async def mark_sent(session: AsyncSession, delivery_id: int, *, now: datetime) -> None:
    await _settle(session, delivery_id, status="sent", sent_at=now, last_error=None)


async def mark_failed(session: AsyncSession, delivery_id: int, *, now: datetime, error: str | None) -> None:
    await _settle(session, delivery_id, status="failed", failed_at=now, last_error=error)


async def schedule_retry(session: AsyncSession, delivery_id: int, *, at: datetime, error: str | None) -> None:
    """Release the lease; the delivery is due again at `at`."""
    await _settle(session, delivery_id, next_attempt_at=at, last_error=error)


async def delivery_schedule(
    session: AsyncSession, delivery_id: int
) -> tuple[str, datetime | None, datetime | None] | None:
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


def _deliveries() -> Any:
    return (
        select(*_DELIVERY)
        .select_from(DeliveryRow)
        .join(ChannelRow, col(ChannelRow.id) == col(DeliveryRow.channel_id))
    )


async def deliveries_listing(
    session: AsyncSession,
    *,
    customer_id: str | None,
    status: str | None,
    limit: int,
    before_id: int | None = None,
) -> list[Delivery]:
    """The newest `limit` deliveries (by id), of one customer and in one status when given;
    only ids below `before_id` when given (paging)."""
    statement = _deliveries()
    if customer_id is not None:
        statement = statement.where(col(DeliveryRow.customer_id) == customer_id)
    if status is not None:
        statement = statement.where(col(DeliveryRow.status) == status)
    if before_id is not None:
        statement = statement.where(col(DeliveryRow.id) < before_id)
    statement = statement.order_by(col(DeliveryRow.id).desc()).limit(limit)
    return [_delivery(row) for row in await session.execute(statement)]


async def delivery_by_id(session: AsyncSession, delivery_id: int) -> Delivery | None:
    """The delivery with its attempts, oldest first; None for no such delivery."""
    row = (await session.execute(_deliveries().where(col(DeliveryRow.id) == delivery_id))).first()
    if row is None:
        return None
    delivery = _delivery(row)
    statement = (
        select(
            col(AttemptRow.attempt),
            col(AttemptRow.ok),
            col(AttemptRow.error),
            col(AttemptRow.masked_destination),
            col(AttemptRow.started_at),
            col(AttemptRow.finished_at),
        )
        .where(col(AttemptRow.delivery_id) == delivery_id)
        .order_by(col(AttemptRow.id))
    )
    delivery.attempt_log = [Attempt(*values(a)) for a in await session.execute(statement)]
    return delivery


async def firings_deliveries(session: AsyncSession, firing_ids: list[int]) -> dict[int, list[Delivery]]:
    """The deliveries of each of `firing_ids` (in the order they were made), in one read:
    the customer page shows ten firings on every poll."""
    by_firing: dict[int, list[Delivery]] = {fid: [] for fid in firing_ids}
    if not firing_ids:
        return by_firing
    statement = (
        _deliveries()
        .where(col(DeliveryRow.firing_id).in_(firing_ids))
        .order_by(col(DeliveryRow.firing_id), col(DeliveryRow.id))
    )
    for row in await session.execute(statement):
        delivery = _delivery(row)
        if delivery.firing_id is not None:  # always, by the query
            by_firing[delivery.firing_id].append(delivery)
    return by_firing


async def delivery_counts(session: AsyncSession) -> tuple[int, int]:
    """(pending, failed): how many deliveries are in each status."""
    status = col(DeliveryRow.status)
    statement = select(
        func.count().filter(status == "pending"), func.count().filter(status == "failed")
    ).select_from(DeliveryRow)
    pending, failed = (await session.execute(statement)).one()
    return int(pending), int(failed)
