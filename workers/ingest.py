"""The persist actor: one message per accepted batch."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from portal.broker import INGEST_QUEUE
from portal.settings import get_settings
from workers.context import get_context
from workers.partitions import forget_known
from workers.persist import persist_batch, record_failed_batch

log = logging.getLogger(__name__)
_settings = get_settings()


def _last_attempt() -> bool:
    message = CurrentMessage.get_current_message()
    if message is None:
        return True
    return int(message.options.get("retries", 0)) >= _settings.persist_max_retries


@dramatiq.actor(
    actor_name="persist_events",
    queue_name=INGEST_QUEUE,
    max_retries=_settings.persist_max_retries,
    min_backoff=_settings.persist_min_backoff_ms,
    max_backoff=_settings.persist_max_backoff_ms,
    time_limit=120_000,
)
async def persist_events(batch: dict[str, Any]) -> None:
    """Write an accepted batch to Postgres, exactly once, however often it is delivered.

    On the last attempt a failure is not raised but recorded: every event of the batch
    goes to `failed_events` with the reason, for an operator to replay. Only if even that
    fails does the message go to the broker's dead-letter queue.
    """
    ctx = get_context()
    try:
        async with ctx.transaction() as conn:
            outcome = await persist_batch(conn, batch)
    except Exception as exc:
        forget_known()
        if not _last_attempt():
            raise
        reason = f"{type(exc).__name__}: {exc}"
        log.error("batch %s failed for good: %s", batch.get("id"), reason)
        async with ctx.transaction() as conn:
            await record_failed_batch(conn, batch, reason)
    else:
        log.debug("batch %s: %s", batch.get("id"), outcome)
    await ctx.live.release(str(batch["id"]))
