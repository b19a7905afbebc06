"""Operator tasks behind CLI commands, each one transaction."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from portal.infrastructure.broker import INGEST_QUEUE, MAINTENANCE_QUEUE, setup_broker
from portal.infrastructure.db import create_engine, session_factory, transaction
from portal.infrastructure.jobs import enqueue_sync
from portal.infrastructure.settings import Settings
from portal.ingest.service import PERSIST_ACTOR
from portal.keys.schemas import Scope
from portal.keys.service import create_key

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)


async def create_api_key(settings: Settings, *, scope: Scope, name: str) -> str:
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with transaction(session_factory(engine)) as session:
            _, token = await create_key(session, scope=scope, name=name or f"{scope} key")
        return token
    finally:
        await engine.dispose()


async def create_user(
    settings: Settings,
    *,
    email: str,
    name: str,
    role: str,
    customer_id: str | None,
    all_customers: bool,
    assigned: list[str],
) -> str:
    """Create a user and email them a one-time link; returns what to print."""
    from portal.accounts.invites import invite
    from portal.infrastructure.clock import system_clock

    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        invitation = await invite(
            session_factory(engine),
            settings,
            email=email,
            name=name,
            role=role,
            customer_id=customer_id,
            all_customers=all_customers,
            assigned=assigned,
            now=system_clock(),
        )
    finally:
        await engine.dispose()
    sent = (
        "emailed to " + invitation.user.email
        if invitation.email_error is None
        else f"not emailed ({invitation.email_error})"
    )
    return f"user {invitation.user.id} created; password link {sent}:\n{invitation.link}"


async def replay_failed_events(session: AsyncSession, redis: Redis, *, ids: list[int] | None) -> int:
    """Queue failed events again as new batches (one per original message) and mark them
    replayed, in the caller's transaction; returns how many. Safe to repeat: the ledger
    admits each event once. Used by the CLI and the portal's failed-events page."""
    from portal.infrastructure.jobs import enqueue
    from portal.ingest import repository as ingest_repository
    from portal.live.redis_keys import INFLIGHT_KEY

    rows = await ingest_repository.failed_to_replay(session, ids)
    by_message: dict[str, list[Any]] = defaultdict(list)
    replayable: list[int] = []
    for failed_id, message_id, event in rows:
        stored = event if isinstance(event, dict) else json.loads(event)
        if not isinstance(stored, dict) or "wire" not in stored:
            # Not a row the worker wrote (it keeps every event it sets aside as its exact
            # wire row, or that row's escaped JSON text; `kept_wire`): nothing to send
            # again, so it stays as it is for an operator.
            log.warning("failed event %s holds no wire row to replay; left as it is", failed_id)
            continue
        by_message[message_id].append(stored["wire"])
        replayable.append(failed_id)
    # Queued inside the transaction on purpose, unlike jobs owed after commit: the failed
    # event's row is its only copy, so it must not be marked replayed unless the broker
    # took the batch (a broker refusal rolls the marking back). A commit that fails after
    # the enqueue only replays twice, which the ledger makes harmless.
    for events in by_message.values():
        batch_id = uuid.uuid4().hex
        accepted_ms = int(time.time() * 1000)
        await redis.zadd(INFLIGHT_KEY, {batch_id: accepted_ms})
        await enqueue(
            PERSIST_ACTOR,
            INGEST_QUEUE,
            {
                "id": batch_id,
                "holds": [batch_id],
                "acceptedAt": accepted_ms,
                "events": events,
                "conflicts": [],
                # The live view counted them when they were first accepted; the hour's
                # reconcile squares it with what the replay stores.
                "countedLive": False,
            },
        )
    await ingest_repository.mark_replayed(session, replayable)
    return len(replayable)


async def replay_failed(settings: Settings, *, ids: list[int] | None) -> int:
    """The CLI's replay: `replay_failed_events` in its own transaction."""
    from portal.infrastructure.redis_client import async_client

    assert settings.database_url and settings.redis_url
    setup_broker(settings)
    engine = create_engine(settings.database_url, pool_size=1)
    redis = async_client(settings.redis_url)
    try:
        async with transaction(session_factory(engine)) as session:
            return await replay_failed_events(session, redis, ids=ids)
    finally:
        await redis.aclose()
        await engine.dispose()


def enqueue_reconcile(settings: Settings, *, full: bool) -> None:
    setup_broker(settings)
    enqueue_sync("reconcile_live", MAINTENANCE_QUEUE, full)


async def rebuild_daily_usage(settings: Settings, *, customer_ids: list[str] | None) -> int:
    """Rebuild the customers' daily_usage rows (every customer's without ids) from their
    hourly_usage rows, in one transaction; how many daily rows it wrote. For hours
    changed by hand: the persist transaction and corrections keep days in step themselves."""
    import asyncpg

    from portal.usage.repository import rebuild_days

    assert settings.database_url
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            return await rebuild_days(conn, customer_ids)
    finally:
        await conn.close()
