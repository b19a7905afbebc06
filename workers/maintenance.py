"""Scheduled maintenance actors: reconcile the live view, keep partitions ahead, prune
the dedup ledger past the lateness window, archive raw events past their retention. Each
is safe to run twice."""

from __future__ import annotations

import logging
from datetime import timedelta

import dramatiq

from portal.infrastructure.broker import MAINTENANCE_QUEUE
from portal.infrastructure.clock import system_clock
from portal.ingest import repository as ingest_repository
from portal.ingest.archive import archive_now
from portal.ingest.partitions import maintain_partitions_now
from portal.operations.orphan_holds import release_orphan_holds
from workers.context import get_context
from workers.outages import periodic
from workers.reconcile import reconcile

log = logging.getLogger(__name__)


@dramatiq.actor(actor_name="reconcile_live", queue_name=MAINTENANCE_QUEUE, max_retries=0, time_limit=600_000)
@periodic
async def reconcile_live(full: bool = False) -> None:
    """Rewrite differing settled live hours from Postgres; record drift; release in-flight
    holds no message will release (portal/operations/orphan_holds.py). Not retried: the
    scheduler runs it again at the next tick (also after an outage: skipped)."""
    ctx = await get_context()
    await reconcile(ctx, full=full)
    await release_orphan_holds(ctx.redis, ctx.settings)


@dramatiq.actor(
    actor_name="maintain_storage",
    queue_name=MAINTENANCE_QUEUE,
    max_retries=3,
    min_backoff=5_000,
    max_backoff=60_000,
    time_limit=600_000,
)
@periodic
async def maintain_storage() -> None:
    """Create partitions ahead; forget ledger entries older than the lateness window
    (events that old are refused at the edge, so their ids cannot come back)."""
    ctx = await get_context()
    async with ctx.transaction() as conn:
        await maintain_partitions_now(conn, ctx.settings.accepted_lateness)
        await ingest_repository.prune_ledger(conn, ctx.settings.accepted_lateness + timedelta(days=2))


@dramatiq.actor(
    actor_name="archive_raw_events",
    queue_name=MAINTENANCE_QUEUE,
    max_retries=3,
    min_backoff=60_000,
    max_backoff=600_000,
    time_limit=6 * 3600_000,
)
@periodic
async def archive_raw_events() -> None:
    """Export the months of raw events past PORTAL_RAW_EVENT_RETENTION_DAYS to the archive
    dir, verify, drop (portal/ingest/archive.py). A run stopped midway is finished by the
    next; a partition that does not verify is kept and logged as an error."""
    ctx = await get_context()
    settings = ctx.settings
    async with ctx.pool.acquire() as conn:
        report = await archive_now(
            conn,
            archive_dir=settings.archive_path,
            retention=settings.raw_event_retention,
            lateness=settings.accepted_lateness,
            now=system_clock(),
        )
    for line in report.lines():
        log.info("archive: %s", line)
