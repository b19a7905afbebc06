"""The persist actor: one message per accepted batch."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg
import dramatiq
import redis.exceptions
import structlog
from dramatiq.middleware import CurrentMessage

from portal import metrics
from portal.broker import INGEST_QUEUE
from portal.ingest.handoff import holds
from portal.settings import get_settings
from workers.alerting import request_evaluation
from workers.billing import settle_late_events_actor
from workers.context import get_context
from workers.partitions import forget_known
from workers.persist import persist_batch, record_failed_batch

log = logging.getLogger(__name__)
_settings = get_settings()

# Errors that mean "a store is unreachable", not "this batch is bad". Waiting them out is
# always right (the broker holds the batch), so they never use up the batch's retries.
UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
FAILURES_OPTION = "persist_failures"


def retry_when(retries: int, exception: BaseException) -> bool:
    # The actor records a batch that keeps failing for a reason of its own and returns;
    # whatever still raises is an outage, retried with capped backoff until it ends.
    return True


def _count_failure() -> int:
    """Failures of this batch that were not outages, kept in the message across retries."""
    message = CurrentMessage.get_current_message()
    if message is None:
        return _settings.persist_max_retries + 1
    failures = int(message.options.get(FAILURES_OPTION, 0)) + 1
    message.options[FAILURES_OPTION] = failures
    return failures


@dramatiq.actor(
    actor_name="persist_events",
    queue_name=INGEST_QUEUE,
    retry_when=retry_when,
    min_backoff=_settings.persist_min_backoff_ms,
    max_backoff=_settings.persist_max_backoff_ms,
    time_limit=120_000,
)
async def persist_events(batch: dict[str, Any]) -> None:
    """Write an accepted batch to Postgres, exactly once, however often it is delivered.

    While Postgres or Redis is unreachable the batch waits in the broker. A batch that
    fails for another reason more than `persist_max_retries` times is not raised but
    kept: every event goes to `failed_events` with the reason, for an operator to replay.
    """
    ctx = await get_context()
    structlog.contextvars.bind_contextvars(message_id=str(batch["id"]))
    try:
        async with ctx.transaction() as conn:
            outcome = await persist_batch(conn, batch)
    except UNAVAILABLE:
        forget_known()
        raise
    except Exception as exc:
        forget_known()
        if _count_failure() <= _settings.persist_max_retries:
            raise
        reason = f"{type(exc).__name__}: {exc}"
        log.error("batch %s failed for good: %s", batch["id"], reason)
        async with ctx.transaction() as conn:
            kept = await record_failed_batch(conn, batch, reason)
        metrics.FAILED_EVENTS.inc(kept)
    else:
        log.debug("batch %s: %s", batch["id"], outcome)
        metrics.PERSISTED_EVENTS.inc(outcome.persisted)
        metrics.PERSIST_LAG.observe(max(time.time() - int(batch["acceptedAt"]) / 1000, 0.0))
        for invoice_id in outcome.late_invoices:
            # After the commit: the adjustment job must see the late events it settles.
            # If this process dies first, the scheduler's late-event sweep settles them.
            settle_late_events_actor.send(invoice_id)
        if outcome.alert_customers:
            await request_evaluation(ctx, list(outcome.alert_customers))
    await ctx.live.release(*holds(batch))
