"""Queries on `webhook_endpoints`, `webhook_events`, `webhook_deliveries` and
`webhook_delivery_attempts`. Nothing here commits."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from portal.infrastructure.db import values
from portal.webhooks.models import WebhookDelivery as DeliveryRow
from portal.webhooks.models import WebhookDeliveryAttempt as AttemptRow
from portal.webhooks.models import WebhookEndpoint as EndpointRow
from portal.webhooks.models import WebhookEvent as EventRow
from portal.webhooks.schemas import Attempt, Claimed, Delivery, Endpoint, Event

# Only columns are read and written here, never objects a session would have to keep in step.
NO_SYNC = {"synchronize_session": False}

_ENDPOINT = (
    col(EndpointRow.id),
    col(EndpointRow.url),
    col(EndpointRow.description),
    col(EndpointRow.event_types),
    col(EndpointRow.enabled),
    col(EndpointRow.created_at),
    col(EndpointRow.updated_at),
)


def _ids(found: Any) -> list[int]:
    """A result's single column of ids, as ints."""
    return [int(i) for i in found.all()]


def _first_id(result: Any) -> int | None:
    row = result.first()
    return None if row is None else int(row[0])


def _endpoint(row: Any) -> Endpoint:
    id_, url, description, types, enabled, created, updated = values(row)
    return Endpoint(int(id_), url, description, list(types), bool(enabled), created, updated)


# --- endpoints ---------------------------------------------------------------------------


async def insert_endpoint(
    session: AsyncSession,
    *,
    url: str,
    description: str,
    event_types: list[str],
    enabled: bool,
    signing_secret_encrypted: bytes,
) -> Endpoint:
    statement = (
        insert(EndpointRow)
        .values(
            url=url,
            description=description,
            event_types=event_types,
            enabled=enabled,
            signing_secret_encrypted=signing_secret_encrypted,
        )
        .returning(*_ENDPOINT)
    )
    return _endpoint((await session.execute(statement)).one())


async def endpoints(session: AsyncSession) -> list[Endpoint]:
    """Every endpoint not deleted, oldest first."""
    statement = select(*_ENDPOINT).where(col(EndpointRow.deleted_at).is_(None)).order_by(col(EndpointRow.id))
    return [_endpoint(row) for row in await session.execute(statement)]


async def endpoint_by_id(session: AsyncSession, endpoint_id: int) -> Endpoint | None:
    statement = select(*_ENDPOINT).where(
        col(EndpointRow.id) == endpoint_id, col(EndpointRow.deleted_at).is_(None)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else _endpoint(row)


async def update_endpoint(
    session: AsyncSession, endpoint_id: int, *, now: datetime, **changes: Any
) -> Endpoint | None:
    """Change the given columns of an endpoint not deleted; None for no such endpoint."""
    statement = (
        update(EndpointRow)
        .where(col(EndpointRow.id) == endpoint_id, col(EndpointRow.deleted_at).is_(None))
        .values(updated_at=now, **changes)
        .returning(*_ENDPOINT)
        .execution_options(**NO_SYNC)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else _endpoint(row)


async def delete_endpoint(session: AsyncSession, endpoint_id: int, *, now: datetime) -> bool:
    statement = (
        update(EndpointRow)
        .where(col(EndpointRow.id) == endpoint_id, col(EndpointRow.deleted_at).is_(None))
        .values(deleted_at=now, enabled=False, updated_at=now)
        .returning(col(EndpointRow.id))
        .execution_options(**NO_SYNC)
    )
    return (await session.execute(statement)).first() is not None


async def enabled_endpoint_types(session: AsyncSession) -> list[tuple[int, frozenset[str]]]:
    """(id, event types) of every enabled endpoint not deleted, by id."""
    statement = (
        select(col(EndpointRow.id), col(EndpointRow.event_types))
        .where(col(EndpointRow.enabled), col(EndpointRow.deleted_at).is_(None))
        .order_by(col(EndpointRow.id))
    )
    found: Any = await session.execute(statement)
    return [(int(i), frozenset(types)) for i, types in found]


# --- events and deliveries -----------------------------------------------------------------


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
    return _ids(await session.scalars(statement))


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
    return _first_id(await session.execute(statement))


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
    return _ids(await session.scalars(statement))


# --- reading -------------------------------------------------------------------------------


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


async def events(
    session: AsyncSession, *, event_type: str | None, customer_id: str | None, limit: int
) -> list[Event]:
    """The newest events first, of one type and one customer when given."""
    statement = select(*_EVENT).order_by(col(EventRow.created_at).desc(), col(EventRow.id)).limit(limit)
    if event_type is not None:
        statement = statement.where(col(EventRow.type) == event_type)
    if customer_id is not None:
        statement = statement.where(col(EventRow.customer_id) == customer_id)
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
) -> list[Delivery]:
    """Deliveries, newest first, each with its attempts (oldest first)."""
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


async def delivery_counts(session: AsyncSession) -> dict[int, dict[str, int]]:
    """Per endpoint, how many deliveries are pending, delivered and failed."""
    statement = select(col(DeliveryRow.endpoint_id), col(DeliveryRow.status), func.count()).group_by(
        col(DeliveryRow.endpoint_id), col(DeliveryRow.status)
    )
    counts: dict[int, dict[str, int]] = {}
    for endpoint_id, status, count in await session.execute(statement):
        counts.setdefault(int(endpoint_id), {})[str(status)] = int(count)
    return counts
