"""Delivery records: claiming one to send, recording each attempt, retrying, listing.

A delivery is sent at least once: a worker claims it with a lease, sends outside any
transaction, then records the attempt. A worker that dies mid-send leaves the lease to
expire, and the delivery is sent again (receivers dedupe on the notice id). Failures are
retried after `alert_retry_delays_ms`, then the delivery is marked failed for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.delivery import SendOutcome
from alerts.messages import Notice
from portal.alerting.channels import Destination, destination
from portal.alerting.firings import notice_from_json, notice_json
from portal.alerting.schemas import Attempt, Delivery, Firing
from portal.db import values
from portal.problems import NotFound
from portal.usage.combine import exact


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
    row = (
        await session.execute(
            text(
                "UPDATE alert_deliveries SET attempts = attempts + 1, leased_until = :until "
                "WHERE id = (SELECT id FROM alert_deliveries WHERE id = :id AND status = 'pending' "
                "AND next_attempt_at <= :now AND (leased_until IS NULL OR leased_until < :now) "
                "FOR UPDATE SKIP LOCKED) RETURNING attempts, notice, channel_id"
            ),
            {"id": delivery_id, "now": now, "until": now + lease},
        )
    ).first()
    if row is None:
        return None
    attempt, notice, channel_id = values(row)
    return Claimed(
        delivery_id,
        int(attempt),
        notice_from_json(notice),
        await destination(session, int(channel_id), secret_key=secret_key),
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
    await session.execute(
        text(
            "INSERT INTO alert_delivery_attempts (delivery_id, attempt, ok, error, masked_destination, "
            "started_at) VALUES (:d, :a, :ok, :e, :m, :s)"
        ),
        {
            "d": claimed.delivery_id,
            "a": claimed.attempt,
            "ok": outcome.ok,
            "e": outcome.error,
            "m": outcome.masked_destination,
            "s": started_at,
        },
    )
    if outcome.ok:
        await session.execute(
            text(
                "UPDATE alert_deliveries SET status = 'sent', sent_at = :now, leased_until = NULL, "
                "last_error = NULL WHERE id = :d"
            ),
            {"d": claimed.delivery_id, "now": now},
        )
        return None
    if claimed.attempt > len(retry_delays_ms):
        await session.execute(
            text(
                "UPDATE alert_deliveries SET status = 'failed', failed_at = :now, leased_until = NULL, "
                "last_error = :e WHERE id = :d"
            ),
            {"d": claimed.delivery_id, "now": now, "e": outcome.error},
        )
        return None
    delay = retry_delays_ms[claimed.attempt - 1]
    await session.execute(
        text(
            "UPDATE alert_deliveries SET next_attempt_at = :next, leased_until = NULL, last_error = :e "
            "WHERE id = :d"
        ),
        {"d": claimed.delivery_id, "next": now + timedelta(milliseconds=delay), "e": outcome.error},
    )
    return delay


async def busy_until(session: AsyncSession, delivery_id: int) -> datetime | None:
    """When another sender's lease on a pending delivery ends (None: not pending, or not
    leased). Raises NotFound if the delivery does not exist (yet)."""
    row = (
        await session.execute(
            text("SELECT status, leased_until, next_attempt_at FROM alert_deliveries WHERE id = :id"),
            {"id": delivery_id},
        )
    ).first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    status, leased_until, next_attempt_at = values(row)
    if status != "pending":
        return None
    times: list[datetime] = [t for t in (leased_until, next_attempt_at) if t is not None]
    return max(times)


async def due_deliveries(session: AsyncSession, *, now: datetime, limit: int = 1000) -> list[int]:
    """Pending deliveries nobody is sending that are due (the sweep's safety net)."""
    rows = await session.execute(
        text(
            "SELECT id FROM alert_deliveries WHERE status = 'pending' AND next_attempt_at <= :now "
            "AND (leased_until IS NULL OR leased_until < :now) ORDER BY next_attempt_at LIMIT :limit"
        ),
        {"now": now, "limit": limit},
    )
    return [int(values(r)[0]) for r in rows]


async def create_test_delivery(
    session: AsyncSession, customer_id: str, channel_id: int, notice: Notice
) -> int:
    """A one-off test notice to one channel (no firing); sent like any other delivery."""
    row = (
        await session.execute(
            text(
                "INSERT INTO alert_deliveries (channel_id, customer_id, notice, masked_destination) "
                "SELECT id, customer_id, CAST(:n AS jsonb), destination_masked FROM alert_channels "
                "WHERE id = :ch AND customer_id = :c AND disabled_at IS NULL RETURNING id"
            ),
            {"n": notice_json(notice), "ch": channel_id, "c": customer_id},
        )
    ).first()
    if row is None:
        raise NotFound(f"no channel {channel_id} for customer {customer_id}")
    return int(values(row)[0])


_DELIVERY = (
    "d.id, d.firing_id, d.channel_id, ch.name, d.customer_id, d.status, d.attempts, "
    "CASE WHEN d.status = 'pending' THEN d.next_attempt_at END, d.last_error, d.masked_destination, "
    "d.created_at, d.sent_at, d.failed_at"
)


def _delivery(row: Any) -> Delivery:
    return Delivery(*values(row))


async def list_deliveries(
    session: AsyncSession, *, customer_id: str | None, status: str | None, limit: int = 100
) -> list[Delivery]:
    rows = await session.execute(
        text(
            f"SELECT {_DELIVERY} FROM alert_deliveries d JOIN alert_channels ch ON ch.id = d.channel_id "
            "WHERE (CAST(:c AS text) IS NULL OR d.customer_id = :c) "
            "AND (CAST(:s AS text) IS NULL OR d.status = :s) ORDER BY d.id DESC LIMIT :limit"
        ),
        {"c": customer_id, "s": status, "limit": limit},
    )
    return [_delivery(r) for r in rows]


async def get_delivery(session: AsyncSession, delivery_id: int) -> Delivery:
    row = (
        await session.execute(
            text(
                f"SELECT {_DELIVERY} FROM alert_deliveries d JOIN alert_channels ch ON ch.id = d.channel_id "
                "WHERE d.id = :id"
            ),
            {"id": delivery_id},
        )
    ).first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    delivery = _delivery(row)
    attempts = await session.execute(
        text(
            "SELECT attempt, ok, error, masked_destination, started_at, finished_at FROM "
            "alert_delivery_attempts "
            "WHERE delivery_id = :id ORDER BY id"
        ),
        {"id": delivery_id},
    )
    delivery.attempt_log = [Attempt(*values(a)) for a in attempts]
    return delivery


async def list_firings(session: AsyncSession, customer_id: str, *, limit: int = 50) -> list[Firing]:
    """The customer's most recent notices, each with its deliveries."""
    rows = await session.execute(
        text(
            "SELECT f.id, f.rule_id, r.name, f.customer_id, f.kind, f.level, f.threshold, f.value, "
            "f.period_start, f.period_end, f.forecast_at, f.fired_at, f.metric_name, f.anomaly_kind, "
            "f.granularity "
            "FROM alert_firings f JOIN alert_rules r ON r.id = f.rule_id "
            "WHERE f.customer_id = :c ORDER BY f.fired_at DESC, f.id DESC LIMIT :limit"
        ),
        {"c": customer_id, "limit": limit},
    )
    firings = []
    for (
        fid,
        rule_id,
        rule_name,
        cid,
        kind,
        level,
        threshold,
        value,
        start,
        end,
        forecast_at,
        fired_at,
        metric_name,
        anomaly_kind,
        granularity,
    ) in (values(r) for r in rows):
        deliveries = await session.execute(
            text(
                f"SELECT {_DELIVERY} FROM alert_deliveries d JOIN alert_channels ch ON ch.id = d.channel_id "
                "WHERE d.firing_id = :f ORDER BY d.id"
            ),
            {"f": fid},
        )
        firings.append(
            Firing(
                fid,
                rule_id,
                rule_name,
                cid,
                kind,
                exact(level),
                exact(threshold),
                exact(value),
                start,
                end,
                forecast_at,
                fired_at,
                [_delivery(d) for d in deliveries],
                metric_name,
                anomaly_kind,
                granularity,
            )
        )
    return firings
