"""Webhook actors: send one delivery of an event to an endpoint; sweep for what was missed."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import dramatiq
import structlog

from portal.infrastructure.db import transaction
from portal.webhooks import service
from portal.webhooks.sending import post
from workers.context import get_context
from workers.outages import periodic

log = logging.getLogger(__name__)


@dramatiq.actor(
    actor_name=service.DELIVER_ACTOR,
    queue_name=service.DELIVER_QUEUE,
    max_retries=3,
    min_backoff=1_000,
    max_backoff=30_000,
    time_limit=120_000,
)
async def deliver_webhook(delivery_id: int) -> None:
    """POST one delivery and record the attempt; queue the retry if it failed. A no-op if
    the delivery is settled, not due, or leased by another worker (this message may be a
    redelivery: the lease, not the message, decides who sends)."""
    ctx = await get_context()
    structlog.contextvars.bind_contextvars(webhook_delivery_id=delivery_id)
    settings = ctx.settings
    # The lease outlives a send (connect and read timeouts) with room to record it.
    lease = timedelta(seconds=2 * settings.webhook_send_timeout_s + 30)
    async with transaction(ctx.sessions) as session:
        claimed = await service.claim(session, delivery_id, now=datetime.now(UTC), lease=lease)
    if claimed is None:
        # Not visible yet (queued before its transaction committed: NotFound, and Dramatiq
        # retries shortly), settled, not due, or leased: look again when that ends.
        async with transaction(ctx.sessions) as session:
            until = await service.busy_until(session, delivery_id)
        if until is not None:
            wait_ms = max(int((until - datetime.now(UTC)).total_seconds() * 1000), 0) + 100
            deliver_webhook.send_with_options(args=(delivery_id,), delay=wait_ms)
        return
    started = datetime.now(UTC)
    result = await asyncio.to_thread(
        post,
        claimed.url,
        claimed.body,
        event_id=claimed.event_id,
        secret=service.signing_secret(claimed, secret_key=settings.secret_key),
        timestamp=int(started.timestamp()),
        timeout_s=settings.webhook_send_timeout_s,
        allow=settings.destination_allow_networks,
    )
    async with transaction(ctx.sessions) as session:
        retry_ms = await service.record(
            session,
            claimed,
            result,
            started_at=started,
            now=datetime.now(UTC),
            retry_delays_ms=settings.webhook_retry_delays_ms,
        )
    if retry_ms is not None:
        log.warning(
            "webhook delivery %s attempt %s failed (%s); retrying in %s ms",
            delivery_id,
            claimed.attempt,
            result.error,
            retry_ms,
        )
        deliver_webhook.send_with_options(args=(delivery_id,), delay=retry_ms)


@dramatiq.actor(
    actor_name="sweep_webhooks", queue_name=service.DELIVER_QUEUE, max_retries=0, time_limit=300_000
)
@periodic
async def sweep_webhooks() -> None:
    """Queue every due delivery nobody is sending: a job lost between a commit and its
    enqueue, a retry whose message was lost, an expired lease. Not retried: the scheduler
    runs it again."""
    ctx = await get_context()
    async with transaction(ctx.sessions) as session:
        due = await service.due_deliveries(session, now=datetime.now(UTC))
    for delivery_id in due:
        deliver_webhook.send(delivery_id)
