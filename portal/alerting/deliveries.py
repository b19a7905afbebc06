"""Delivery records: claiming one to send, recording each attempt, retrying, listing.

A delivery is sent at least once: a worker claims it with a lease, sends outside any
transaction, then records the attempt. A worker that dies mid-send leaves the lease to
expire, and the delivery is sent again (receivers dedupe on the notice id). Failures are
retried after `alert_retry_delays_ms`, then the delivery is marked failed for good. The
SQL, and the claim's row locking, are in `portal.alerting.repository`; nothing here commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from alerts.delivery import SendOutcome
from alerts.messages import Notice
from portal.alerting import repository
from portal.alerting.channels import Destination, destination
from portal.alerting.firings import notice_from_json, notice_json
from portal.alerting.schemas import Delivery, Firing
from portal.infrastructure.domain_errors import Invalid, NotFound


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: int
    attempt: int
    notice: Notice
    destination: Destination


async def claim(
    session: AsyncSession, delivery_id: int, *, now: datetime, lease: timedelta, secret_key: str
) -> Claimed | None:
    """Take a pending delivery that is due and not being sent by someone else (None: nothing
    to do now). Counts the attempt and leases it until `now + lease`."""
    claimed = await repository.claim_delivery(session, delivery_id, now=now, until=now + lease)
    if claimed is None:
        return None
    attempt, notice, channel_id = claimed
    return Claimed(
        delivery_id,
        attempt,
        notice_from_json(notice),
        await destination(session, channel_id, secret_key=secret_key),
    )


async def record(
    session: AsyncSession,
    claimed: Claimed,
    outcome: SendOutcome,
    *,
    started_at: datetime,
    now: datetime,
    retry_delays_ms: tuple[int, ...],
) -> int | None:
    """Record one attempt. Returns the delay (ms) before the next attempt, or None when
    the delivery is settled (sent, or failed after its last attempt)."""
    await repository.insert_attempt(
        session,
        delivery_id=claimed.delivery_id,
        attempt=claimed.attempt,
        ok=outcome.ok,
        error=outcome.error,
        masked_destination=outcome.masked_destination,
        started_at=started_at,
    )
    if outcome.ok:
        await repository.mark_sent(session, claimed.delivery_id, now=now)
        return None
    if claimed.attempt > len(retry_delays_ms):
        await repository.mark_failed(session, claimed.delivery_id, now=now, error=outcome.error)
        return None
    delay = retry_delays_ms[claimed.attempt - 1]
    await repository.schedule_retry(
        session, claimed.delivery_id, at=now + timedelta(milliseconds=delay), error=outcome.error
    )
    return delay


async def busy_until(session: AsyncSession, delivery_id: int) -> datetime | None:
    """When another sender's lease on a pending delivery ends (None: not pending, or not
    leased). Raises NotFound if the delivery does not exist (yet)."""
    schedule = await repository.delivery_schedule(session, delivery_id)
    if schedule is None:
        raise NotFound(f"no delivery {delivery_id}")
    status, leased_until, next_attempt_at = schedule
    if status != "pending":
        return None
    times: list[datetime] = [t for t in (leased_until, next_attempt_at) if t is not None]
    return max(times)


async def due_deliveries(session: AsyncSession, *, now: datetime, limit: int = 1000) -> list[int]:
    """Pending deliveries nobody is sending that are due (the sweep's safety net)."""
    return await repository.due_delivery_ids(session, now=now, limit=limit)


async def create_test_delivery(
    session: AsyncSession, customer_id: str, channel_id: int, notice: Notice
) -> int:
    """A one-off test notice to one channel (no firing); sent like any other delivery."""
    delivery_id = await repository.insert_test_delivery(session, customer_id, channel_id, notice_json(notice))
    if delivery_id is None:
        raise NotFound(f"no channel {channel_id} for customer {customer_id}")
    return delivery_id


async def list_deliveries(
    session: AsyncSession,
    *,
    customer_id: str | None,
    status: str | None,
    limit: int = 100,
    before: int | None = None,
) -> list[Delivery]:
    """Newest first (by id); `before` starts below that id."""
    return await repository.deliveries_listing(
        session, customer_id=customer_id, status=status, limit=limit, before_id=before
    )


async def get_delivery(session: AsyncSession, delivery_id: int) -> Delivery:
    delivery = await repository.delivery_by_id(session, delivery_id)
    if delivery is None:
        raise NotFound(f"no delivery {delivery_id}")
    return delivery


async def list_firings(
    session: AsyncSession, customer_id: str, *, limit: int = 50, before: int | None = None
) -> list[Firing]:
    """The customer's most recent notices, each with its deliveries; `before` (one of the
    customer's firings) starts after it. Invalid for any other id."""
    older_than = None
    if before is not None:
        older_than = await repository.firing_position(session, customer_id, before)
        if older_than is None:
            raise Invalid(f"before: {customer_id!r} has no alert firing {before}")
    return await repository.recent_firings(session, customer_id, limit=limit, older_than=older_than)
