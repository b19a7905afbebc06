"""`completeThrough` as seen by a read session: on a replica, no later than what it has
replayed (portal/infrastructure/read_replica.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from portal.infrastructure.periods import to_datetime
from portal.infrastructure.read_replica import COMPLETE_THROUGH_MS
from portal.live.store import LiveStore


async def complete_through_ms(live: LiveStore, session: AsyncSession) -> int:
    """Epoch ms before which every accepted event is in what `session` reads: the live
    watermark (`LiveStore.watermark_ms`), clamped on a replica session to the newest
    watermark whose commits it had replayed when it opened."""
    watermark = await live.watermark_ms()
    replayed = session.info.get(COMPLETE_THROUGH_MS)
    return watermark if replayed is None else min(watermark, int(replayed))


async def complete_through(live: LiveStore, session: AsyncSession) -> datetime:
    """`complete_through_ms` as a UTC instant."""
    return to_datetime(await complete_through_ms(live, session) / 1000)
