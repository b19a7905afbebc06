"""Outgoing billing webhooks: endpoints, announcing events, sending and retrying deliveries,
replay. The SQL is in `portal.webhooks.repository`; nothing here commits.

`announce` is what other domains call: it writes the event and one pending delivery per
enabled endpoint subscribed to its type in the caller's transaction, and owes a delivery job
per delivery after that transaction commits (dropped if it rolls back; the sweep sends any
job that was lost). A delivery is sent at least once: a worker leases it, POSTs outside any
transaction and records the attempt; failures are retried on the schedule of
`Settings.webhook_retry_delays_ms`, then the delivery is failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from alerts.destinations import Network
from alerts.secrets import decrypt, encrypt, webhook_secret
from portal.infrastructure.broker import ALERTS_QUEUE
from portal.infrastructure.domain_errors import Conflict, Invalid, NotFound
from portal.infrastructure.jobs import after_commit
from portal.webhooks import repository
from portal.webhooks.events import API_VERSION, body, new_event_id
from portal.webhooks.schemas import (
    AttemptResult,
    Claimed,
    Delivery,
    Endpoint,
    EndpointCreate,
    EndpointUpdate,
    Event,
)
from portal.webhooks.urls import url_refusal

DELIVER_ACTOR = "deliver_webhook"
DELIVER_QUEUE = ALERTS_QUEUE


# --- announcing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Announcement:
    """One event to announce: its type, its data, and its customer (None: none)."""

    event_type: str
    data: dict[str, Any]
    customer_id: str | None


async def announce(
    session: AsyncSession,
    event_type: str,
    data: dict[str, Any],
    *,
    customer_id: str | None,
    now: datetime | None = None,
) -> str:
    """Record an event of `event_type` (one of portal.webhooks.events.EVENT_TYPES) with
    `data` (camelCase keys; Decimals become strings, datetimes ISO 8601 UTC) in the caller's
    transaction, with a pending delivery to each enabled endpoint subscribed to the type,
    sent after commit. `now` (UTC) is the event's createdAt (default: the clock). Returns
    the event id. Raises ValueError for an unknown type (a programming error)."""
    [event_id] = await announce_many(session, [Announcement(event_type, data, customer_id)], now=now)
    return event_id


async def announce_many(
    session: AsyncSession, announcements: Sequence[Announcement], *, now: datetime | None = None
) -> list[str]:
    """`announce` for many events at once (an invoice run's chunk of new drafts), in a few
    statements whatever their number; their ids, in order."""
    if not announcements:
        return []
    created_at = now or datetime.now(UTC)
    events = [(new_event_id(), a) for a in announcements]
    await repository.insert_events(
        session,
        [
            {
                "id": event_id,
                "type": a.event_type,
                "api_version": API_VERSION,
                "customer_id": a.customer_id,
                "body": body(event_id, a.event_type, a.data, created_at=created_at),
                "created_at": created_at,
            }
            for event_id, a in events
        ],
    )
    subscribed = await repository.enabled_endpoint_types(session)
    pairs = [
        (event_id, endpoint_id)
        for event_id, a in events
        for endpoint_id, types in subscribed
        if a.event_type in types
    ]
    for delivery_id in await repository.insert_deliveries(session, pairs, due=created_at):
        after_commit(session, DELIVER_ACTOR, DELIVER_QUEUE, delivery_id)
    return [event_id for event_id, _ in events]


# --- endpoints -----------------------------------------------------------------------------


async def _check_url(url: str, allow: tuple[Network, ...]) -> None:
    # In a thread: the host is resolved (DNS) to be judged.
    refusal = await asyncio.to_thread(url_refusal, url, allow)
    if refusal is not None:
        raise Invalid(refusal)


def _types(event_types: list[str]) -> list[str]:
    return list(dict.fromkeys(event_types))


async def create_endpoint(
    session: AsyncSession, data: EndpointCreate, *, secret_key: str, allow_networks: tuple[Network, ...]
) -> Endpoint:
    """Check and store an endpoint with a new signing secret, returned in this answer only.
    Raises Invalid for a URL the portal may not POST to (the reason is named)."""
    await _check_url(data.url, allow_networks)
    secret = webhook_secret()
    endpoint = await repository.insert_endpoint(
        session,
        url=data.url,
        description=data.description.strip(),
        event_types=_types(list(data.event_types)),
        enabled=data.enabled,
        signing_secret_encrypted=encrypt(secret_key, secret),
    )
    endpoint.signing_secret = secret
    return endpoint


async def list_endpoints(session: AsyncSession) -> list[Endpoint]:
    return await repository.endpoints(session)


async def get_endpoint(session: AsyncSession, endpoint_id: int) -> Endpoint:
    endpoint = await repository.endpoint_by_id(session, endpoint_id)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


async def update_endpoint(
    session: AsyncSession,
    endpoint_id: int,
    data: EndpointUpdate,
    *,
    now: datetime,
    allow_networks: tuple[Network, ...],
) -> Endpoint:
    """Change what `data` names. Raises NotFound, Invalid (a refused URL)."""
    changes: dict[str, Any] = {}
    if data.url is not None:
        await _check_url(data.url, allow_networks)
        changes["url"] = data.url
    if data.event_types is not None:
        changes["event_types"] = _types(list(data.event_types))
    if data.description is not None:
        changes["description"] = data.description.strip()
    if data.enabled is not None:
        changes["enabled"] = data.enabled
    endpoint = await repository.update_endpoint(session, endpoint_id, now=now, **changes)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


async def delete_endpoint(session: AsyncSession, endpoint_id: int, *, now: datetime) -> None:
    """Stop sending to the endpoint for good; its deliveries stay readable, and those still
    pending fail at their next attempt."""
    if not await repository.delete_endpoint(session, endpoint_id, now=now):
        raise NotFound(f"no webhook endpoint {endpoint_id}")


# --- reading -------------------------------------------------------------------------------


async def list_events(
    session: AsyncSession,
    *,
    event_type: str | None,
    customer_id: str | None,
    limit: int = 100,
    before: str | None = None,
) -> list[Event]:
    """Newest first; `before` (an event id) starts after that event. Invalid for an id no
    event has (it has no place in the order)."""
    older_than = None
    if before is not None:
        older_than = await repository.event_position(session, before)
        if older_than is None:
            raise Invalid(f"before: no webhook event {before!r}; pass the id of the last event of a page")
    return await repository.events(
        session, event_type=event_type, customer_id=customer_id, limit=limit, older_than=older_than
    )


async def get_event(session: AsyncSession, event_id: str) -> Event:
    event = await repository.event_by_id(session, event_id)
    if event is None:
        raise NotFound(f"no webhook event {event_id!r}")
    return event


async def list_deliveries(
    session: AsyncSession,
    *,
    endpoint_id: int | None = None,
    event_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
    before: int | None = None,
) -> list[Delivery]:
    """Newest first (by id); `before` starts below that id."""
    return await repository.deliveries(
        session, endpoint_id=endpoint_id, event_id=event_id, status=status, limit=limit, before_id=before
    )


async def get_delivery(session: AsyncSession, delivery_id: int) -> Delivery:
    found = await repository.deliveries(session, delivery_id=delivery_id, limit=1)
    if not found:
        raise NotFound(f"no webhook delivery {delivery_id}")
    return found[0]


async def replay(session: AsyncSession, delivery_id: int, *, now: datetime) -> Delivery:
    """Send the delivery's event to its endpoint again, as a new delivery (same body, same
    event id; its own attempts and retries), after commit. Raises NotFound, Conflict when
    the endpoint is deleted or disabled."""
    original = await get_delivery(session, delivery_id)
    endpoint = await repository.endpoint_by_id(session, original.endpoint_id)
    if endpoint is None:
        raise Conflict(f"delivery {delivery_id}: its endpoint was deleted; nothing can be sent to it")
    if not endpoint.enabled:
        raise Conflict(f"delivery {delivery_id}: its endpoint is disabled; enable it to replay")
    replay_id = await repository.insert_replay(session, delivery_id, due=now)
    assert replay_id is not None
    after_commit(session, DELIVER_ACTOR, DELIVER_QUEUE, replay_id)
    return await get_delivery(session, replay_id)


# --- sending (the worker's side) ------------------------------------------------------------


async def claim(
    session: AsyncSession, delivery_id: int, *, now: datetime, lease: timedelta
) -> Claimed | None:
    """Lease a pending delivery that is due and not being sent (None: nothing to do now).
    A delivery whose endpoint was deleted or disabled since is failed here, unsent."""
    claimed = await repository.claim_delivery(session, delivery_id, now=now, until=now + lease)
    if claimed is not None and claimed.usable is not None:
        await repository.mark_failed(session, delivery_id, now=now, error=claimed.usable)
        return None
    return claimed


def signing_secret(claimed: Claimed, *, secret_key: str) -> str:
    return decrypt(secret_key, claimed.signing_secret_encrypted)


async def record(
    session: AsyncSession,
    claimed: Claimed,
    result: AttemptResult,
    *,
    started_at: datetime,
    now: datetime,
    retry_delays_ms: tuple[int, ...],
) -> int | None:
    """Record one attempt. Returns the delay (ms) before the next attempt, or None when the
    delivery is settled (delivered, or failed after attempt len(retry_delays_ms) + 1)."""
    await repository.insert_attempt(
        session,
        delivery_id=claimed.delivery_id,
        attempt=claimed.attempt,
        started_at=started_at,
        duration_ms=result.duration_ms,
        http_status=result.http_status,
        error=result.error,
    )
    if result.ok:
        await repository.mark_delivered(session, claimed.delivery_id, now=now)
        return None
    if claimed.attempt > len(retry_delays_ms):
        await repository.mark_failed(session, claimed.delivery_id, now=now, error=result.error)
        return None
    delay = retry_delays_ms[claimed.attempt - 1]
    await repository.schedule_retry(
        session, claimed.delivery_id, at=now + timedelta(milliseconds=delay), error=result.error
    )
    return delay


async def busy_until(session: AsyncSession, delivery_id: int) -> datetime | None:
    """When a pending delivery may next be claimed (its lease's end or its next attempt);
    None when it is settled. Raises NotFound if it does not exist (yet)."""
    schedule = await repository.delivery_schedule(session, delivery_id)
    if schedule is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    status, leased_until, next_attempt_at = schedule
    if status != "pending":
        return None
    return max(t for t in (leased_until, next_attempt_at) if t is not None)


async def due_deliveries(session: AsyncSession, *, now: datetime, limit: int = 1000) -> list[int]:
    """Pending deliveries nobody is sending that are due (the sweep's safety net)."""
    return await repository.due_delivery_ids(session, now=now, limit=limit)
