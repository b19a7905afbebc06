"""Data quality: how many events each ingest source sent that were accepted, and why the
others were rejected, counted per UTC day in Redis (a few counters per request, not per
event). Counting never fails a request: a Redis error is logged and the count skipped."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from redis.asyncio import Redis

from portal.ingest.validation import rejection_reason
from portal.live.redis_keys import QUALITY_TTL, quality_key

log = logging.getLogger(__name__)


def reason_of(error: str) -> str:
    """The field a rejection names ("quantity: must be …" → "quantity"), one of a fixed
    set whatever the client sent, so the counters cannot grow without bound."""
    return rejection_reason(error)


async def record(redis: Redis, source: str, *, accepted: int, rejected: Iterable[str], now: datetime) -> None:
    """Count one request's events: `accepted` (duplicates included: a resend is not a
    data problem) and the rejection messages of the others."""
    reasons = Counter(reason_of(error) for error in rejected)
    if not accepted and not reasons:
        return
    key = quality_key(now.date().isoformat())
    try:
        async with redis.pipeline(transaction=False) as pipe:
            if accepted:
                pipe.hincrby(key, f"{source}|accepted", accepted)
            for reason, count in reasons.items():
                pipe.hincrby(key, f"{source}|rejected|{reason}", count)
            pipe.expire(key, int(QUALITY_TTL.total_seconds()))
            await pipe.execute()
    except Exception as exc:  # a measure, not the data: never fail ingest for it
        log.warning("data-quality counters not updated: %s", exc)


@dataclass(slots=True)
class SourceQuality:
    accepted: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def score(self) -> float | None:
        total = self.accepted + self.rejected
        return None if total == 0 else self.accepted / total


async def read(redis: Redis, days: Iterable[date]) -> dict[str, SourceQuality]:
    """Per source, the counts of the given days."""
    out: dict[str, SourceQuality] = {}
    for day in days:
        counters = await redis.hgetall(quality_key(day.isoformat()))
        for raw_field, raw_count in counters.items():
            name = raw_field.decode() if isinstance(raw_field, bytes) else str(raw_field)
            source, kind, *reason = name.split("|", 2)
            quality = out.setdefault(source, SourceQuality())
            if kind == "accepted":
                quality.accepted += int(raw_count)
            else:
                quality.rejected += int(raw_count)
                quality.reasons[reason[0]] = quality.reasons.get(reason[0], 0) + int(raw_count)
    return out


def days_between(start: datetime, end: datetime) -> list[date]:
    first, last = start.date(), end.date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
