"""Holds in `live:inflight` that no message will ever release.

The edge takes a batch's hold (`LiveStore.check_and_hold`) before it hands the batch to the
broker, and the persist worker releases it once the batch is in Postgres. A hold whose
batch never reached the broker stays: a check that Redis ran only after the web had given
up waiting for it (Valkey paused for seconds: the client answered 503, the ZADD landed
later), or a web process killed between the hold and the hand-off. Such a hold froze
`completeThrough` and made `status` report persisting stalled, for ever.

A hold is a batch's claim on a message in the broker. So when the ingest queue holds no
message at all (none waiting, in a worker's hands, delayed or dead) every hold older than
`HOLD_GRACE` is an orphan and is released. A newer one may belong to a hand-off under way.
RabbitMQ does not tell over AMQP how many messages workers hold, so there nothing is
released (the web's own retry, `Ingestor._release_later`, still clears the first case).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from redis.asyncio import Redis

from portal.infrastructure.queues import INGEST_QUEUE
from portal.infrastructure.settings import Settings
from portal.live import redis_keys as keys
from portal.operations.status import probe_client, redis_queue_depth

log = logging.getLogger(__name__)

HOLD_GRACE = timedelta(seconds=60)

# KEYS[1] live:inflight; ARGV[1] grace in ms. By the server's clock, as the watermark reads it.
_RELEASE_OLDER = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])))
"""


async def ingest_queue_empty(settings: Settings) -> bool | None:
    """Whether the broker holds no ingest message in any state; None when it cannot tell."""
    url = settings.broker_url or settings.redis_url
    if not url:
        return None
    if url.startswith(("amqp://", "amqps://")):
        return None  # RabbitMQ does not tell over AMQP which messages workers hold
    broker = probe_client(url)
    try:
        depth = await redis_queue_depth(broker, INGEST_QUEUE)
    finally:
        await broker.aclose()
    # `unacknowledged` (the messages hash) counts the waiting ones and those workers hold.
    return not (depth.waiting or depth.unacknowledged or depth.delayed or depth.dead)


async def release_orphan_holds(live: Redis, settings: Settings) -> int:
    """Release the holds no message will release (see the module); how many. Never raises:
    a store that does not answer leaves them for the next run."""
    try:
        if not await ingest_queue_empty(settings):
            return 0
        released = int(
            await live.eval(_RELEASE_OLDER, 1, keys.INFLIGHT_KEY, int(HOLD_GRACE.total_seconds() * 1000))
        )
    except Exception as exc:
        log.info("orphan in-flight holds not checked: %s", type(exc).__name__)
        return 0
    if released:
        log.warning(
            "released %d in-flight hold(s) older than %d s whose batch is in no broker message "
            "(refused after its hold was taken); freshness moves on",
            released,
            int(HOLD_GRACE.total_seconds()),
        )
    return released
