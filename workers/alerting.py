"""Alert actors: evaluate a customer's rules, deliver a notice, sweep for what was missed."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import dramatiq
import structlog

from alerts.delivery import Transport, send
from portal.alerting import deliveries, repository
from portal.alerting.evaluate import evaluate_customer
from portal.infrastructure import metrics
from portal.infrastructure.broker import ALERTS_QUEUE
from portal.infrastructure.db import transaction
from portal.infrastructure.settings import get_settings
from portal.live import redis_keys as live_keys
from workers.context import WorkerContext, get_context
from workers.debounce import send_debounced
from workers.outages import is_outage, periodic, retried_quietly

log = logging.getLogger(__name__)
_settings = get_settings()
# How long an asked-for evaluation may stay pending before the sweep runs it itself: well
# past the debounce and a busy queue's wait.
PENDING_GRACE_MS = 60_000


def transport() -> Transport:
    return Transport(
        smtp_url=_settings.smtp_url,
        slack_webhook_base=_settings.slack_webhook_base,
        timeout_s=_settings.alert_send_timeout_s,
        allow_networks=_settings.destination_allow_networks,
    )


async def request_evaluation(ctx: WorkerContext, customer_ids: list[str]) -> None:
    """Ask for an evaluation of each customer's rules, debounced: the first new usage
    schedules one `alert_debounce_ms` later; usage until it starts is covered by it."""
    await send_debounced(
        ctx.redis,
        evaluate_alerts,
        [(live_keys.alert_debounce_key(c), c) for c in customer_ids],
        delay_ms=ctx.settings.alert_debounce_ms,
        # Noted first: the sweep evaluates what is still noted a while later, so a request
        # lost with its process (between these keys and the message) is only late.
        note=lambda pipe: pipe.zadd(
            live_keys.ALERTS_PENDING_KEY, dict.fromkeys(customer_ids, time.time() * 1000)
        ),
    )


@dramatiq.actor(
    actor_name="evaluate_alerts",
    queue_name=ALERTS_QUEUE,
    max_retries=5,
    min_backoff=500,
    max_backoff=10_000,
    time_limit=120_000,
)
@retried_quietly
async def evaluate_alerts(customer_id: str) -> None:
    """Fire what the customer's rules owe and send it. Safe to run twice: firings are
    unique per rule, level, kind and period."""
    ctx = await get_context()
    structlog.contextvars.bind_contextvars(customer_id=customer_id)
    # Release the debounce first: usage persisted from now on schedules a new evaluation,
    # usage persisted before is read below.
    await ctx.redis.delete(live_keys.alert_debounce_key(customer_id))
    started_ms = time.time() * 1000
    async with transaction(ctx.sessions) as session:
        ids = await evaluate_customer(session, customer_id, now=datetime.now(UTC), settings=ctx.settings)
    for delivery_id in ids:
        deliver_alert.send(delivery_id)
    await settle_pending(ctx, customer_id, started_ms)


async def settle_pending(ctx: WorkerContext, customer_id: str, started_ms: float) -> None:
    """The customer's requests up to `started_ms` are evaluated: no longer pending (a request
    noted since stays, with its own message on the way)."""
    await ctx.redis.eval(_SETTLE_PENDING, 1, live_keys.ALERTS_PENDING_KEY, customer_id, started_ms)


# Removes the member only if it was noted before the evaluation started.
_SETTLE_PENDING = """
local noted = redis.call('ZSCORE', KEYS[1], ARGV[1])
if noted and tonumber(noted) <= tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
"""


@dramatiq.actor(
    actor_name="deliver_alert",
    queue_name=ALERTS_QUEUE,
    max_retries=3,
    min_backoff=1_000,
    max_backoff=30_000,
    time_limit=120_000,
)
async def deliver_alert(delivery_id: int) -> None:
    """Send one delivery and record the attempt; schedule the retry if it failed.
    A no-op if the delivery is settled, not due, or being sent by another worker."""
    ctx = await get_context()
    structlog.contextvars.bind_contextvars(delivery_id=delivery_id)
    lease = timedelta(seconds=ctx.settings.alert_lease_seconds)
    async with transaction(ctx.sessions) as session:
        claimed = await deliveries.claim(
            session, delivery_id, now=datetime.now(UTC), lease=lease, secret_key=ctx.settings.secret_key
        )
    if claimed is None:
        # Settled, not due yet, or leased by a sender that may have died mid-send (this
        # message can be its redelivery): look again when the lease or delay ends.
        # A delivery not visible yet (queued before its request committed) raises
        # NotFound, and Dramatiq retries shortly.
        async with transaction(ctx.sessions) as session:
            until = await deliveries.busy_until(session, delivery_id)
        if until is not None:
            wait_ms = max(int((until - datetime.now(UTC)).total_seconds() * 1000), 0) + 100
            deliver_alert.send_with_options(args=(delivery_id,), delay=wait_ms)
        return
    started = datetime.now(UTC)
    outcome = await asyncio.to_thread(
        send,
        claimed.destination.url,
        claimed.notice,
        transport=transport(),
        webhook_secret=claimed.destination.signing_secret,
    )
    async with transaction(ctx.sessions) as session:
        retry_ms = await deliveries.record(
            session,
            claimed,
            outcome,
            started_at=started,
            now=datetime.now(UTC),
            retry_delays_ms=ctx.settings.alert_retry_delays_ms,
        )
    kind = claimed.destination.kind
    if outcome.ok:
        metrics.ALERT_DELIVERIES.labels(kind, "sent").inc()
        metrics.ALERT_DELIVERY_SECONDS.labels(kind).observe(
            max((datetime.now(UTC) - claimed.notice.occurred_at).total_seconds(), 0.0)
        )
    else:
        metrics.ALERT_DELIVERIES.labels(kind, "retry" if retry_ms is not None else "failed").inc()
    if retry_ms is not None:
        log.warning(
            "delivery %s attempt %s failed (%s); retrying in %s ms",
            delivery_id,
            claimed.attempt,
            outcome.error,
            retry_ms,
        )
        deliver_alert.send_with_options(args=(delivery_id,), delay=retry_ms)


@dramatiq.actor(actor_name="sweep_alerts", queue_name=ALERTS_QUEUE, max_retries=0, time_limit=600_000)
@periodic
async def sweep_alerts() -> None:
    """The safe path: evaluate every customer with rules from Postgres, and send every
    due delivery nobody is sending (lost messages, expired leases). Not retried: the
    scheduler runs it again."""
    ctx = await get_context()
    async with transaction(ctx.sessions) as session:
        customers = set(await repository.customers_with_rules(session))
    # Customers with limits but no rules are evaluated after their usage persists; the
    # sweep takes those whose evaluation was asked for a while ago and has not run (its
    # message lost with a process), not all of them every time.
    stale_ms = time.time() * 1000 - PENDING_GRACE_MS
    pending = await ctx.redis.zrangebyscore(live_keys.ALERTS_PENDING_KEY, "-inf", stale_ms)
    customers |= {p.decode() if isinstance(p, bytes) else str(p) for p in pending}
    ids: list[int] = []
    for customer_id in sorted(customers):
        try:
            started_ms = time.time() * 1000
            async with transaction(ctx.sessions) as session:
                ids += await evaluate_customer(
                    session, customer_id, now=datetime.now(UTC), settings=ctx.settings
                )
            await settle_pending(ctx, customer_id, started_ms)
        except Exception as exc:
            if is_outage(exc):  # the whole sweep waits for the next tick
                raise
            log.exception("alert sweep: evaluating %s failed", customer_id)
    async with transaction(ctx.sessions) as session:
        ids += await deliveries.due_deliveries(session, now=datetime.now(UTC))
    for delivery_id in sorted(set(ids)):
        deliver_alert.send(delivery_id)
