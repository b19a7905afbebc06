"""Reads of events and deliveries with their attempts, for the API and the pages."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.infrastructure.db import values
from portal.webhooks.models import WebhookDelivery as DeliveryRow
from portal.webhooks.models import WebhookDeliveryAttempt as AttemptRow
from portal.webhooks.models import WebhookEndpoint as EndpointRow
from portal.webhooks.models import WebhookEvent as EventRow
from portal.webhooks.schemas import Attempt, Delivery, Event


def _event(row: Any) -> Event:
    id_, type_, version, customer_id, created_at, body = values(row)
    return Event(id_, type_, version, customer_id, created_at, json.loads(body))


_EVENT = (
    col(EventRow.id),
    col(EventRow.type),
    col(EventRow.api_version),
    col(EventRow.customer_id),
    col(EventRow.created_at),
    col(EventRow.body),
)


# Where an event sits in the listing's order: (created_at, id). Event ids are random
# (`evt_` + hex), so the id alone cannot say what is older; it breaks ties in created_at
# (the events of one change share it).
EventPosition = tuple[datetime, str]


async def event_position(session: AsyncSession, event_id: str) -> EventPosition | None:
    """(created_at, id) of the event, the key `events` pages by; None for no such event."""
    statement = select(col(EventRow.created_at), col(EventRow.id)).where(col(EventRow.id) == event_id)
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    created_at, id_ = values(row)
    return created_at, id_


async def events(
    session: AsyncSession,
    *,
    event_type: str | None,
    customer_id: str | None,
    limit: int,
    older_than: EventPosition | None = None,
) -> list[Event]:
    """The newest events first (created_at, then id, both descending), of one type and one
    customer when given; only those after `older_than` in that order when given (the
    position of the last event of the previous page)."""
    created_at, id_ = col(EventRow.created_at), col(EventRow.id)
    statement = select(*_EVENT).order_by(created_at.desc(), id_.desc()).limit(limit)
    if event_type is not None:
        statement = statement.where(col(EventRow.type) == event_type)
    if customer_id is not None:
        statement = statement.where(col(EventRow.customer_id) == customer_id)
    if older_than is not None:
        statement = statement.where(tuple_(created_at, id_) < tuple_(*older_than))
    return [_event(row) for row in await session.execute(statement)]


async def event_by_id(session: AsyncSession, event_id: str) -> Event | None:
    row = (await session.execute(select(*_EVENT).where(col(EventRow.id) == event_id))).first()
    return None if row is None else _event(row)


_DELIVERY = (
    col(DeliveryRow.id),
    col(DeliveryRow.event_id),
    col(EventRow.type),
    col(EventRow.customer_id),
    col(DeliveryRow.endpoint_id),
    col(EndpointRow.url),
    col(DeliveryRow.replay_of_id),
    col(DeliveryRow.status),
    col(DeliveryRow.attempts),
    col(DeliveryRow.next_attempt_at),
    col(DeliveryRow.last_error),
    col(DeliveryRow.created_at),
    col(DeliveryRow.delivered_at),
    col(DeliveryRow.failed_at),
)


async def deliveries(
    session: AsyncSession,
    *,
    endpoint_id: int | None = None,
    event_id: str | None = None,
    status: str | None = None,
    delivery_id: int | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[Delivery]:
    """Deliveries, newest first (by id), each with its attempts (oldest first); only ids
    below `before_id` when given (paging)."""
    statement = (
        select(*_DELIVERY)
        .join(EventRow, col(EventRow.id) == col(DeliveryRow.event_id))
        .join(EndpointRow, col(EndpointRow.id) == col(DeliveryRow.endpoint_id))
        .order_by(col(DeliveryRow.id).desc())
        .limit(limit)
    )
    if endpoint_id is not None:
        statement = statement.where(col(DeliveryRow.endpoint_id) == endpoint_id)
    if event_id is not None:
        statement = statement.where(col(DeliveryRow.event_id) == event_id)
    if status is not None:
        statement = statement.where(col(DeliveryRow.status) == status)
    if delivery_id is not None:
        statement = statement.where(col(DeliveryRow.id) == delivery_id)
    if before_id is not None:
        statement = statement.where(col(DeliveryRow.id) < before_id)
    found = []
    for row in await session.execute(statement):
        (
            id_,
            event,
            type_,
            customer,
            endpoint,
            url,
            replay_of,
            status_,
            count,
            next_at,
            error,
            created,
            done,
            failed,
        ) = values(row)
        found.append(
            Delivery(
                int(id_),
                event,
                type_,
                customer,
                int(endpoint),
                url,
                replay_of,
                status_,
                int(count),
                next_at if status_ == "pending" else None,
                error,
                created,
                done,
                failed,
            )
        )
    if found:
        attempts = await session.execute(
            select(
                col(AttemptRow.delivery_id),
                col(AttemptRow.attempt),
                col(AttemptRow.started_at),
                col(AttemptRow.duration_ms),
                col(AttemptRow.http_status),
                col(AttemptRow.error),
            )
            .where(col(AttemptRow.delivery_id).in_([d.id for d in found]))
            .order_by(col(AttemptRow.delivery_id), col(AttemptRow.attempt), col(AttemptRow.id))
        )
        by_id = {d.id: d for d in found}
        for found_attempt in attempts:
            owner, attempt, started_at, duration_ms, http_status, error = values(found_attempt)
            by_id[int(owner)].attempts.append(Attempt(attempt, started_at, duration_ms, http_status, error))
    return found
