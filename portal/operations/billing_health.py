"""The billing-health measures, computed from the data (not from process counters).

- event processing latency: from receipt (202) and from the event's own timestamp to the
  commit that counted it (`persisted_at`, the start of the transaction that also updated the
  hourly aggregates), p50 and p99 over the newest `LATENCY_SAMPLE` events of the window;
- billing discrepancy rate: the share of invoices finalized in the window that later needed
  an adjustment, and the adjustments' amount per currency;
- usage alert accuracy: the share of forecast notices (of periods that have ended or whose
  level was crossed) that were followed by the crossing they predicted, and crossings no
  channel was told about (no delivery sent);
- data quality: per ingest source (native, openmeter, lago, stripe), the share of events
  accepted without rejection, and the rejections by the field at fault (portal/ingest/quality.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from portal.alerting import repository as alerting_repository
from portal.billing.repository import adjustments as adjustment_store
from portal.billing.repository import invoices as invoice_store
from portal.http.schemas import CamelStruct
from portal.ingest import quality
from portal.ingest import repository as ingest_repository
from portal.ingest.quality import days_between
from portal.usage.combine import exact


class Latency(CamelStruct):
    events: int
    received_p50_s: float | None
    received_p99_s: float | None
    event_time_p50_s: float | None
    event_time_p99_s: float | None


class Discrepancy(CamelStruct):
    finalized: int
    adjusted: int
    rate: str | None
    adjustment_amounts: dict[str, str]


class AlertAccuracy(CamelStruct):
    forecasts_judged: int
    forecasts_followed: int
    forecast_accuracy: str | None
    crossings: int
    crossings_without_notice: int


class SourceQualityOut(CamelStruct):
    source: str
    accepted: int
    rejected: int
    score: str | None
    rejections_by_reason: dict[str, int]


class BillingHealth(CamelStruct):
    window_start: datetime
    window_end: datetime
    latency: Latency
    discrepancy: Discrepancy
    alerts: AlertAccuracy
    # Per ingest source, the UTC days the window touches (counted per day).
    data_quality: list[SourceQualityOut]


# Events the latency measure reads at most (the newest of the window).
LATENCY_SAMPLE = 100_000


def _share(part: int, whole: int) -> str | None:
    return None if whole == 0 else exact((Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001")))


async def billing_health(
    session: AsyncSession, redis: Redis, *, now: datetime, window: timedelta
) -> BillingHealth:
    start = now - window
    latency = await ingest_repository.persist_latency(session, start=start, end=now, sample=LATENCY_SAMPLE)
    finalized, adjusted = await invoice_store.finalized_with_notes(session, start=start, end=now)
    amounts = await adjustment_store.note_sums_by_currency(session, start=start, end=now)
    judged, followed = await alerting_repository.forecast_outcomes(session, start=start, end=now)
    crossings, unnotified = await alerting_repository.crossings_unnotified(session, start=start, end=now)
    sources = await quality.read(redis, days_between(start, now))
    count, r50, r99, e50, e99 = latency
    seconds = [None if v is None else round(float(v), 3) for v in (r50, r99, e50, e99)]
    totals = {cur.strip(): exact(total) for cur, total in amounts}
    return BillingHealth(
        window_start=start,
        window_end=now,
        latency=Latency(int(count), *seconds),
        discrepancy=Discrepancy(int(finalized), int(adjusted), _share(int(adjusted), int(finalized)), totals),
        alerts=AlertAccuracy(
            int(judged), int(followed), _share(int(followed), int(judged)), int(crossings), int(unnotified)
        ),
        data_quality=[
            SourceQualityOut(
                source,
                q.accepted,
                q.rejected,
                _share(q.accepted, q.accepted + q.rejected),
                dict(sorted(q.reasons.items())),
            )
            for source, q in sorted(sources.items())
        ],
    )
