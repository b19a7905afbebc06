"""`up --demo`'s history: generated usage loaded through the persist path, billed and
alerted on, with one failed event; a second seed changes nothing.

The seed runs as of a fixed instant with 6 days of history (the same code as the
90 days of `up --demo`, about 2 s here)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from redis.asyncio import Redis

from portal.catalog.service import MeterSpec
from portal.cli.demo import DemoData, demo_catalog, seed_demo, subscription_start, synthetic_batch
from portal.cli.demo_history import PROFILES, history_events, spike_day
from portal.cli.demo_load import FAILED_EVENT_ID
from portal.infrastructure.settings import Settings
from portal.live import redis_keys as keys
from portal.live.store import live_value

# Thursday 5 November 2026, afternoon: the subscriptions started on 1 August; August,
# September and October have ended; November is running.
NOW = datetime(2026, 11, 5, 15, 20, tzinfo=UTC)
DAYS = 6
BERLIN = ZoneInfo("Europe/Berlin")
METERS = {
    "api_calls": MeterSpec("api_calls", "sum", ("region",), None),
    "active_users": MeterSpec("active_users", "unique_count", (), "user"),
    "storage_gb": MeterSpec("storage_gb", "max", (), None),
}
ZONES = {
    "acme": "Europe/Berlin",
    "globex": "America/New_York",
    "initech": "Asia/Kolkata",
    "umbrella": "Europe/London",
    "tanaka": "Asia/Tokyo",
}


def _generated(customer: str, settings: Settings, days: int = DAYS) -> list[Any]:
    profile = next(p for p in PROFILES if p.customer_id == customer)
    return history_events(
        profile,
        zone=ZONES[customer],
        start=NOW - timedelta(days=days),
        end=NOW,
        meters=METERS,
        settings=settings,
    )


@pytest.fixture
async def seeded(settings: Settings) -> DemoData:
    return await seed_demo(settings, now=NOW, days=DAYS)


async def _live_total(redis: Redis, customer: str, metric: str) -> Decimal:
    total = Decimal(0)
    for key in await redis.zrange(keys.index_key(customer), 0, -1):
        if f"}}:{metric}:" in key:
            total += live_value(await redis.hgetall(key), keys.TOTAL_FIELD) or 0
    return total


async def _sum(pg: asyncpg.Connection, table: str, column: str, customer: str) -> Decimal:
    return Decimal(
        await pg.fetchval(
            f"SELECT sum({column}) FROM {table} WHERE customer_id = $1 AND metric_name = 'api_calls'",
            customer,
        )
    )


async def test_every_customers_calls_agree_in_raw_events_hours_and_the_live_view(
    seeded: DemoData, settings: Settings, pg: asyncpg.Connection, redis: Redis
) -> None:
    for customer in ZONES:
        expected = sum(e.quantity for e in _generated(customer, settings) if e.metric_name == "api_calls")
        found = (
            await _sum(pg, "usage_events", "quantity", customer),
            await _sum(pg, "hourly_usage", "value", customer),
            await _live_total(redis, customer, "api_calls"),
        )
        assert (customer, *found) == (customer, expected, expected, expected)
    # The number a user sees on Acme's usage page for these six days, exactly.
    assert await _sum(pg, "hourly_usage", "value", "acme") == Decimal(150211)
    assert seeded.history is not None and seeded.history.events == await pg.fetchval(
        "SELECT count(*) FROM event_ledger"
    )


async def test_ended_periods_are_billed_rules_fired_as_usage_grew_and_one_event_failed(
    seeded: DemoData, pg: asyncpg.Connection
) -> None:
    """One seed for the three (a seed is the slow part): bills, alerts, the failed event."""
    rows = await pg.fetch("SELECT customer_id, status, number, period_end FROM invoices ORDER BY id")
    states = Counter((r["status"], r["number"] is not None) for r in rows)
    # August and September approved for each of the five customers; October left for
    # review; November, the running period, a draft.
    assert states == {("finalized", True): 10, ("draft", False): 10}
    assert sorted(r["number"] for r in rows if r["number"]) == [f"INV-{n:06d}" for n in range(1, 11)]
    # Approved the morning after its grace period: 2 October, 09:40 in Berlin.
    approved = await pg.fetchrow("SELECT finalized_at, approved_by FROM invoices WHERE number = 'INV-000008'")
    assert tuple(approved.values()) == (datetime(2026, 10, 2, 7, 40, tzinfo=UTC), "manager@demo.test")
    october = [r["customer_id"] for r in rows if r["status"] == "draft" and r["period_end"] < NOW]
    assert sorted(october) == sorted(ZONES)
    notes = await pg.fetch(
        "SELECT a.number, a.amount, a.reason, i.customer_id, i.number AS invoice FROM adjustments a "
        "JOIN invoices i ON i.id = a.invoice_id"
    )
    assert [tuple(n.values()) for n in notes] == [
        (
            "CN-000001",
            Decimal("-25.00"),
            "Goodwill credit: slow API responses during the afternoon of the traffic spike",
            "acme",
            "INV-000008",
        )
    ]
    assert seeded.billing is not None and seeded.billing.finalized == 10

    # Acme's rules, evaluated at the end of each two days of history as it was loaded.
    fired = await pg.fetch(
        "SELECT r.name, f.level, f.value, f.fired_at FROM alert_firings f "
        "JOIN alert_rules r ON r.id = f.rule_id ORDER BY f.fired_at, r.name"
    )
    assert [(f["name"], f["level"], f["value"], f["fired_at"]) for f in fired] == [
        ("Monthly budget", Decimal(50), Decimal("168.64"), datetime(2026, 11, 4, 12, tzinfo=UTC)),
        # Seen when the history reached now.
        ("API calls this month", Decimal(100000), Decimal(146120), NOW),
    ]
    # Each waits for the alerts sweep to send it to the finance team's address.
    assert await pg.fetchval("SELECT count(*) FROM alert_deliveries WHERE status = 'pending'") == 2
    failed = await pg.fetch("SELECT customer_id, event_id, reason, status FROM failed_events")
    assert [tuple(f.values()) for f in failed] == [
        ("globex", FAILED_EVENT_ID, "productId: contains U+0000, which Postgres cannot store", "failed")
    ]


TABLES = (
    "usage_events",
    "event_ledger",
    "hourly_usage",
    "hourly_unique_values",
    "invoices",
    "adjustments",
    "alert_rules",
    "alert_channels",
    "alert_firings",
    "alert_deliveries",
    "failed_events",
    "subscriptions",
    "users",
)


async def test_a_second_seed_changes_nothing_but_keys_and_password(
    seeded: DemoData, settings: Settings, pg: asyncpg.Connection, redis: Redis
) -> None:
    async def state() -> tuple[Any, ...]:
        counts = [await pg.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES]
        sums = await pg.fetchval("SELECT sum(value) FROM hourly_usage")
        invoices = await pg.fetch("SELECT id, status, number, total FROM invoices ORDER BY id")
        return (
            counts,
            sums,
            [tuple(r.values()) for r in invoices],
            await _live_total(redis, "acme", "api_calls"),
        )

    before = await state()
    again = await seed_demo(settings, now=NOW, days=DAYS)
    assert again.history is not None and (again.history.chunks_loaded, again.history.events) == (0, 0)
    assert await state() == before
    assert again.password != seeded.password
    # Only the keys this start printed work: the earlier start's are revoked
    active = await pg.fetch("SELECT name FROM api_keys WHERE revoked_at IS NULL ORDER BY name")
    assert [r["name"] for r in active] == ["demo admin", "demo ingest"]
    assert await pg.fetchval("SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL") == 2
    assert (again.ingest_key, again.admin_key) != (seeded.ingest_key, seeded.admin_key)


async def test_a_start_days_later_fills_only_the_days_the_demo_did_not_run(
    seeded: DemoData, settings: Settings, pg: asyncpg.Connection
) -> None:
    loaded_before = await pg.fetchval("SELECT sum(value) FROM hourly_usage WHERE hour < $1", NOW)
    later = await seed_demo(settings, now=NOW + timedelta(days=3), days=DAYS)
    assert later.history is not None and later.history.chunks_loaded == 2
    assert await pg.fetchval("SELECT sum(value) FROM hourly_usage WHERE hour < $1", NOW) == loaded_before
    assert await pg.fetchval("SELECT min(hour) FROM hourly_usage WHERE hour >= $1", NOW) > NOW
    assert await pg.fetchval("SELECT count(*) FROM failed_events") == 1
    assert await pg.fetchval("SELECT count(*) FROM invoices WHERE status = 'finalized'") == 10


def test_the_history_has_business_hours_quiet_weekends_growth_and_a_spike(settings: Settings) -> None:
    calls = [e for e in _generated("acme", settings, days=10) if e.metric_name == "api_calls"]
    by_hour: Counter[datetime] = Counter()
    for e in calls:
        by_hour[datetime.fromtimestamp(e.bucket, UTC)] += int(e.quantity)
    berlin = {at: at.astimezone(BERLIN) for at in by_hour}
    spike = spike_day(PROFILES[0], NOW - timedelta(days=10), NOW, BERLIN)
    assert spike.date() == date(2026, 11, 2)  # a Monday
    # Tuesday 27 October and 3 November, Saturday 31 October, at 11:00 and 03:00 Berlin time.
    at = {(b.date(), b.hour): by_hour[utc] for utc, b in berlin.items()}
    assert at[(date(2026, 10, 27), 11)] > 10 * at[(date(2026, 10, 27), 3)]
    assert at[(date(2026, 10, 27), 11)] > 5 * at[(date(2026, 10, 31), 11)]
    assert at[(date(2026, 11, 3), 11)] > at[(date(2026, 10, 27), 11)]
    assert at[(date(2026, 11, 2), 15)] > 4 * at[(date(2026, 11, 3), 15)]


def test_subscriptions_start_three_months_back_in_each_zone() -> None:
    assert subscription_start(date(2026, 11, 24)) == date(2026, 8, 1)
    assert subscription_start(date(2027, 2, 1)) == date(2026, 11, 1)
    assert {s.start_date for s in demo_catalog(date(2027, 1, 31)).subscriptions} == {date(2026, 10, 1)}


def test_the_trickle_never_moves_the_watched_number() -> None:
    import random

    batches = [synthetic_batch(random.Random(seed), 0) for seed in range(500)]
    sent = {(e["customerId"], e["metricName"]) for batch in batches for e in batch}
    assert ("acme", "api_calls") not in sent
    assert {("acme", "active_users"), ("globex", "api_calls"), ("tanaka", "storage_gb")} <= sent


def test_the_trickle_continues_the_history_rather_than_running_away() -> None:
    # Its people are the customer's own ("user-007", as the history names them), and its
    # storage readings sit near the customer's latest, so watching the demo for ten minutes
    # does not add fifty monthly active users or a new storage peak.
    import random

    from portal.cli.demo_history import PROFILES

    events = [e for seed in range(500) for e in synthetic_batch(random.Random(seed), 0)]
    for profile in PROFILES:
        mine = [e for e in events if e["customerId"] == profile.customer_id]
        people = {e["dimensions"]["user"] for e in mine if e["metricName"] == "active_users"}  # type: ignore[index]
        assert people and all(re.fullmatch(r"user-\d{3}", p) for p in people)
        assert max(int(p[5:]) for p in people) <= profile.users[1]
        readings = [float(e["quantity"]) for e in mine if e["metricName"] == "storage_gb"]  # type: ignore[arg-type]
        assert readings and max(readings) <= profile.storage_gb[1]
        # about one person every 20 s and one reading every 50 s per customer
        assert len(people) >= 10 and len(readings) < 25
