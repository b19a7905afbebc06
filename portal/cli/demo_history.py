"""The demo's past: days of realistic usage for every demo customer, generated (pure) and
loaded through the persist worker's own transaction, a day at a time.

Shape of each customer's usage, in its own zone: API calls follow business hours (busy
9:00-17:00 with a lunch dip, quiet nights from the main region only, weekends at an
eighth), grow steadily over the history, and have one spike (a runaway job: four
afternoon hours at several times the usual rate). Active users log in on weekdays, a
few on weekends; storage grows.

Events are aggregated to about one per customer, metric, dimension and hour, so 90 days
of five customers are ~31k events. They are validated by the edge's own rules (with the
history's start as the oldest accepted time: the HTTP API refuses events older than the
accepted lateness) and written by `workers.persist.persist_rows`, the persist actor's
transaction (ledger, raw events, hourly aggregates, late events), then counted in the
live view by `LiveStore.settle`, as the worker does for a batch no web process counted.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from portal.catalog.service import MeterSpec
from portal.infrastructure.settings import Settings
from portal.ingest.events import AcceptedEvent
from portal.ingest.schemas import EventMetadata, UsageEvent
from portal.ingest.validation import Limits, validate

HISTORY_DAYS = 90
SOURCE = "demo-history"
GROWTH = Decimal("0.8")  # the last day is this much busier than the first
WEEKEND = 0.12
SPIKE_HOURS = range(14, 18)  # local hours of the spike's afternoon


@dataclass(frozen=True, slots=True)
class Profile:
    """How busy one customer is. `calls_peak`: API calls in a busy weekday hour at the
    start of the history, all regions together; `regions`: their shares; `users`: people
    on the books at the start and the end; `storage_gb`: stored at the start and the end;
    `spike_at`: where the spike falls, as a fraction of the history; `spike_factor`: how
    many times the usual rate it runs at."""

    customer_id: str
    calls_peak: int
    regions: tuple[tuple[str, float], ...]
    users: tuple[int, int]
    storage_gb: tuple[int, int]
    spike_at: float
    spike_factor: int


PROFILES = (
    Profile("acme", 1500, (("eu", 0.5), ("us", 0.3), ("apac", 0.2)), (70, 130), (60, 190), 0.72, 7),
    Profile("globex", 2400, (("us", 0.7), ("eu", 0.2), ("apac", 0.1)), (30, 55), (20, 95), 0.45, 5),
    Profile("initech", 600, (("apac", 0.8), ("us", 0.2)), (15, 30), (5, 25), 0.3, 6),
    Profile("umbrella", 900, (("eu", 0.6), ("us", 0.4)), (40, 70), (30, 80), 0.6, 5),
    Profile("tanaka", 1200, (("apac", 0.9), ("us", 0.1)), (25, 45), (50, 140), 0.85, 6),
)


def _day_shape(hour: float) -> float:
    """Share of the busy-hour rate at a local hour of a weekday."""
    if 12 <= hour < 13:
        return 0.75
    if 9 <= hour < 17:
        return 1.0
    if 7 <= hour < 9 or 17 <= hour < 19:
        return 0.4
    if 19 <= hour < 22:
        return 0.15
    return 0.04


def _progress(at: datetime, start: datetime, end: datetime) -> float:
    return (at - start) / (end - start)


def spike_day(profile: Profile, start: datetime, end: datetime, zone: ZoneInfo) -> datetime:
    """The local date (midnight, in `zone`) of the customer's spike: the weekday at or
    after `spike_at` of the history."""
    day = (start + (end - start) * profile.spike_at).astimezone(zone)
    day = day.replace(hour=0, minute=0, second=0, microsecond=0)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _hours(start: datetime, end: datetime) -> Iterator[datetime]:
    hour = start.replace(minute=0, second=0, microsecond=0)
    while hour < end:
        yield hour
        hour += timedelta(hours=1)


def _event(
    customer_id: str, event_id: str, at: datetime, metric: str, quantity: Decimal, dimensions: dict[str, str]
) -> UsageEvent:
    return UsageEvent(
        event_id=event_id,
        timestamp=int(at.timestamp() * 1000),
        customer_id=customer_id,
        metric_name=metric,
        quantity=quantity,
        dimensions=dimensions,
        metadata=EventMetadata(source=SOURCE, version="1"),
    )


def _calls(profile: Profile, zone: ZoneInfo, start: datetime, end: datetime) -> Iterator[UsageEvent]:
    spike = spike_day(profile, start, end, zone).date()
    for hour in _hours(start, end):
        at = hour + timedelta(minutes=17)
        if at < start or at >= end:
            continue
        local = at.astimezone(zone)
        rng = random.Random(f"{profile.customer_id}:calls:{hour.isoformat()}")
        shape = _day_shape(local.hour + local.minute / 60)
        weekend = local.weekday() >= 5
        rate = profile.calls_peak * shape * (WEEKEND if weekend else 1.0)
        rate *= 1 + float(GROWTH) * _progress(at, start, end)
        if local.date() == spike and local.hour in SPIKE_HOURS:
            rate *= profile.spike_factor
        # In quiet hours (nights, weekends) all traffic comes from the main region: a third
        # of the events, the same shape.
        regions = ((profile.regions[0][0], 1.0),) if weekend or shape < 0.4 else profile.regions
        for region, share in regions:
            quantity = round(rate * share * rng.uniform(0.85, 1.15))
            if quantity > 0:
                yield _event(
                    profile.customer_id,
                    f"demo-{profile.customer_id}-calls-{hour:%Y%m%dT%H}-{region}",
                    at,
                    "api_calls",
                    Decimal(quantity),
                    {"region": region},
                )


def _days(start: datetime, end: datetime, zone: ZoneInfo) -> Iterator[datetime]:
    day = start.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        yield day
        day = (day + timedelta(days=1, hours=2)).replace(hour=0)  # across DST changes


def _users(profile: Profile, zone: ZoneInfo, start: datetime, end: datetime) -> Iterator[UsageEvent]:
    """Each active person once a day, at a business hour (unique_count: the period's
    monthly active users are the distinct people of its days)."""
    first, last = profile.users
    for day in _days(start, end, zone):
        rng = random.Random(f"{profile.customer_id}:users:{day.date().isoformat()}")
        on_books = round(first + (last - first) * max(0.0, _progress(day, start, end)))
        share = 0.2 if day.weekday() >= 5 else 0.75
        active = rng.sample(range(1, on_books + 1), round(on_books * share * rng.uniform(0.9, 1.0)))
        for person in sorted(active):
            at = (day + timedelta(hours=rng.uniform(8.5, 17.5))).astimezone(UTC).replace(microsecond=0)
            if start <= at < end:
                yield _event(
                    profile.customer_id,
                    f"demo-{profile.customer_id}-users-{day:%Y%m%d}-{person:03d}",
                    at,
                    "active_users",
                    Decimal(1),
                    {"user": f"user-{person:03d}"},
                )


def _storage(profile: Profile, start: datetime, end: datetime) -> Iterator[UsageEvent]:
    """A reading every six hours (a max meter: the period's peak is billed)."""
    first, last = profile.storage_gb
    for hour in _hours(start, end):
        at = hour + timedelta(minutes=5)
        if hour.hour % 6 or at < start or at >= end:
            continue
        rng = random.Random(f"{profile.customer_id}:storage:{hour.isoformat()}")
        gb = (first + (last - first) * _progress(at, start, end)) * rng.uniform(0.97, 1.03)
        yield _event(
            profile.customer_id,
            f"demo-{profile.customer_id}-storage-{hour:%Y%m%dT%H}",
            at,
            "storage_gb",
            Decimal(f"{gb:.2f}"),
            {},
        )


def history_events(
    profile: Profile,
    *,
    zone: str,
    start: datetime,
    end: datetime,
    meters: dict[str, MeterSpec],
    settings: Settings,
) -> list[AcceptedEvent]:
    """The customer's usage in [start, end) (UTC instants), validated by the edge's rules
    as of `end` with `start` as the oldest accepted time. Pure and deterministic: the same
    arguments give the same events, ids included. Raises EventError if the catalog lacks
    a meter or the customer (`zones`/`meters` as the ingest catalog gives them)."""
    end_us = int(end.timestamp() * 1_000_000)
    limits = Limits(
        now_us=end_us,
        oldest_us=int(start.timestamp() * 1_000_000),
        newest_us=end_us,
        max_dimensions=settings.max_dimensions,
        max_dimension_key_chars=settings.max_dimension_key_chars,
        max_dimension_value_chars=settings.max_dimension_value_chars,
        max_event_id_chars=settings.max_event_id_chars,
    )
    tz = ZoneInfo(zone)
    zones = {profile.customer_id: zone}
    raw = [*_calls(profile, tz, start, end), *_users(profile, tz, start, end), *_storage(profile, start, end)]
    return [validate(e, zones=zones, meters=meters, limits=limits) for e in raw]


# Pieces of history start and end at noon UTC: alerts evaluated at their ends fire at
# midday in Europe, in the morning in America, in the evening in Asia, not at midnight.
CHUNK_HOUR = 12


def chunk_starts(start: datetime, end: datetime, span: timedelta) -> list[datetime]:
    """The starts of the load's units of work: `span`-long pieces (whole days) from a noon
    (UTC) at or before `start` to `end`, oldest first."""
    first = start.astimezone(UTC).replace(hour=CHUNK_HOUR, minute=0, second=0, microsecond=0)
    if first > start:
        first -= timedelta(days=1)
    # On a grid fixed in time, so a later load's pieces line up with an earlier one's.
    first -= timedelta(days=first.toordinal() % (span // timedelta(days=1) or 1))
    out: list[datetime] = []
    while first < end:
        out.append(first)
        first += span
    return out


def by_chunk(
    events: list[AcceptedEvent], starts: list[datetime], span: timedelta
) -> dict[datetime, list[AcceptedEvent]]:
    """Events by the chunk (of `chunk_starts`) their time falls in, each in time order."""
    first_s, span_s = int(starts[0].timestamp()), int(span.total_seconds())
    chunks: dict[datetime, list[AcceptedEvent]] = defaultdict(list)
    for e in sorted(events, key=lambda e: e.event_time_us):
        chunks[starts[(e.event_time_us // 1_000_000 - first_s) // span_s]].append(e)
    return chunks
