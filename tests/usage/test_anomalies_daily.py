"""Daily anomalies in synthetic series whose anomalies are known (pure), and the batch
lookup of flagged customers for the account managers' table (Postgres)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from portal.catalog.schemas import Customer
from portal.infrastructure.db import create_engine, session_factory, transaction
from portal.infrastructure.settings import Settings
from portal.usage.anomaly_detection import flagged_customers
from portal.usage.anomaly_rule import Anomaly, daily_anomalies
from tests.clock import BOUNDARIES, Boundary, set_clock
from tests.factories import auth, make_customer, make_meter, roll_up_days

MONDAY = date(2026, 9, 28)
PARIS = "Europe/Paris"


def days(count: int, start: date = MONDAY) -> list[date]:
    return [start + timedelta(days=i) for i in range(count)]


def weekday_series(weeks: int, weekday: int = 1000, weekend: int = 50) -> dict[date, Decimal]:
    return {d: Decimal(weekend if d.weekday() >= 5 else weekday) for d in days(weeks * 7)}


def last_two_weeks(values: dict[date, Decimal]) -> list[date]:
    return sorted(values)[-14:]


def test_steady_growth_of_three_percent_a_day_for_eight_weeks_is_not_an_anomaly() -> None:
    values = {d: Decimal(round(1000 * 1.03**i)) for i, d in enumerate(days(8 * 7))}
    assert values[MONDAY + timedelta(days=55)] == Decimal(5082)  # the series does grow 5x
    assert daily_anomalies(values, last_two_weeks(values), "UTC") == []


def test_weekend_dips_are_not_anomalies() -> None:
    values = weekday_series(8)
    assert daily_anomalies(values, last_two_weeks(values), "UTC") == []


def test_weekend_dips_are_not_anomalies_with_only_the_previous_days_as_history() -> None:
    # Two weeks: too few same weekdays, so the previous seven days are the history.
    values = weekday_series(2)
    assert daily_anomalies(values, sorted(values)[7:], "UTC") == []


def test_a_day_at_ten_times_its_usual_usage_is_a_spike() -> None:
    values = weekday_series(8)
    wednesday = date(2026, 11, 18)
    values[wednesday] = Decimal(10_000)
    assert daily_anomalies(values, last_two_weeks(values), "UTC") == [
        Anomaly(
            "spike",
            datetime(2026, 11, 18, tzinfo=UTC),
            datetime(2026, 11, 19, tzinfo=UTC),
            Decimal(10_000),
            Decimal(1000),
            "day",
        )
    ]


def test_a_weekday_dropped_to_zero_is_flagged_but_not_a_quiet_weekend() -> None:
    values = weekday_series(8, weekend=0)
    judged = last_two_weeks(values)
    thursday = date(2026, 11, 19)
    values.pop(thursday)  # no usage at all that day: absent from the hourly aggregates
    assert daily_anomalies(values, judged, "UTC") == [
        Anomaly(
            "drop_to_zero",
            datetime(2026, 11, 19, tzinfo=UTC),
            datetime(2026, 11, 20, tzinfo=UTC),
            Decimal(0),
            Decimal(1000),
            "day",
        )
    ]


def test_a_weekend_day_at_weekday_level_is_a_spike_against_its_own_weekends() -> None:
    values = weekday_series(8)
    saturday = date(2026, 11, 21)
    values[saturday] = Decimal(1000)  # 20x its usual 50, though an ordinary weekday amount
    found = daily_anomalies(values, last_two_weeks(values), "UTC")
    assert [(a.kind, a.value, a.expected) for a in found] == [("spike", Decimal(1000), Decimal(50))]


def test_a_day_is_the_customers_local_day_and_spans_a_dst_change() -> None:
    values = weekday_series(5)
    sunday = date(2026, 10, 25)  # Paris leaves summer time: a 25-hour day
    values[sunday] = Decimal(500)
    assert daily_anomalies(values, [sunday], PARIS) == [
        Anomaly(
            "spike",
            datetime(2026, 10, 24, 22, tzinfo=UTC),
            datetime(2026, 10, 25, 23, tzinfo=UTC),
            Decimal(500),
            Decimal(50),
            "day",
        )
    ]


def test_the_median_of_previous_days_is_the_expectation_with_under_three_weeks() -> None:
    values = {d: Decimal(100 + 10 * i) for i, d in enumerate(days(12))}  # 100, 110, ... 210
    values[MONDAY + timedelta(days=12)] = Decimal(1000)
    # The previous seven days are 150..210: median 180; 1000 > 3 x 180.
    assert [
        (a.kind, a.start, a.expected) for a in daily_anomalies(values, [MONDAY + timedelta(days=12)], "UTC")
    ] == [("spike", datetime(2026, 10, 10, tzinfo=UTC), Decimal(180))]


def test_history_before_the_first_usage_is_unknown_not_zero() -> None:
    values = weekday_series(3)
    first = min(values)
    # Known from the seventh day: no earlier Thursday, and four previous days (five needed).
    thursday = first + timedelta(days=10)
    values[thursday] = Decimal(0)
    assert daily_anomalies(values, [thursday], "UTC", known_from=first + timedelta(days=6)) == []
    assert [a.kind for a in daily_anomalies(values, [thursday], "UTC")] == ["drop_to_zero"]


# --- the batch lookup (Postgres) -------------------------------------------------------------

NOW = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)  # a Tuesday; 18:00 in Kolkata
HOUR = timedelta(hours=1)


def hours(start: datetime, end: datetime) -> Iterator[datetime]:
    at = start
    while at < end:
        yield at
        at += HOUR


def customer(id: str, tz: str = "UTC") -> Customer:
    return Customer(
        id=id, name=id.title(), timezone=tz, currency="EUR", created_at=datetime(2026, 1, 1, tzinfo=UTC)
    )


@pytest.fixture
async def seeded(client: Any, admin_key: str, pg: Any) -> None:
    await make_meter(client, admin_key, metric="api_calls")
    await make_meter(client, admin_key, metric="peak_seats", aggregation="max")
    six_weeks = datetime(2026, 10, 13, 12, tzinfo=UTC)  # UTC hours start on the hour
    kolkata = six_weeks + timedelta(minutes=30)  # Kolkata's local hours at :30 UTC
    rows: list[tuple[str, str, datetime, Decimal]] = []
    # steady: 100 an hour, every hour.
    rows += [("steady", "api_calls", h, Decimal(100)) for h in hours(six_weeks, NOW)]
    # spiky: the same, with 09:00 today at 1,000 (an hourly spike) and yesterday 03:00 at
    # 24,000 (before the last 24 hours, but yesterday's total 26,300 is over 3 x 2,400).
    spikes = {
        datetime(2026, 11, 24, 9, tzinfo=UTC): Decimal(1000),
        datetime(2026, 11, 23, 3, tzinfo=UTC): Decimal(24_000),
    }
    rows += [("spiky", "api_calls", h, spikes.get(h, Decimal(100))) for h in hours(six_weeks, NOW)]
    # quiet (Kolkata, hours at :30 UTC): nothing on its whole local Monday 2026-11-23: a
    # day dropped to zero, and in the last 24 hours its evening 18:00-24:00 is one silence.
    monday = (datetime(2026, 11, 22, 18, 30, tzinfo=UTC), datetime(2026, 11, 23, 18, 30, tzinfo=UTC))
    rows += [
        ("quiet", "api_calls", h, Decimal(100)) for h in hours(kolkata, NOW) if not monday[0] <= h < monday[1]
    ]
    # newbie: two days of history is too little to judge, even a spike.
    two_days = datetime(2026, 11, 22, 12, tzinfo=UTC)
    rows += [("newbie", "api_calls", h, Decimal(100)) for h in hours(two_days, NOW)]
    rows.append(("newbie", "api_calls", datetime(2026, 11, 24, 11, tzinfo=UTC), Decimal(0)))
    # A max meter has no volume to judge: its jumps never count.
    rows += [("steady", "peak_seats", h, Decimal(5 if h.hour else 500)) for h in hours(six_weeks, NOW)]
    await pg.executemany(
        "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
        "VALUES ($1, $2, $3, $4, 1) ON CONFLICT (customer_id, metric_name, hour, group_key) "
        "DO UPDATE SET value = EXCLUDED.value",
        rows,
    )
    await roll_up_days(pg)


async def test_flagged_customers_counts_the_last_24_hours_and_the_last_day_in_two_queries(
    seeded: None,
    settings: Settings,
) -> None:
    page = [
        customer("steady"),
        customer("spiky"),
        customer("quiet", "Asia/Kolkata"),
        customer("newbie"),
        customer("absent"),
    ]
    engine = create_engine(settings.database_url or "", pool_size=1)
    statements: list[str] = []
    sa_event.listen(
        engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(str(args[2]))
    )
    async with transaction(session_factory(engine)) as session:
        found = await flagged_customers(session, page, NOW)
        one = len(statements)
        full = page + [customer(f"other-{i:02}") for i in range(95)]  # a full page of 100
        again = await flagged_customers(session, full, NOW)
    await engine.dispose()
    assert found == {"steady": 0, "spiky": 2, "quiet": 2, "newbie": 0, "absent": 0}
    assert len(again) == 100 and {k: v for k, v in again.items() if v} == {"spiky": 2, "quiet": 2}
    assert one == 2 and len(statements) == 4  # the meters, then the usage of the whole page


@pytest.mark.parametrize("boundary", BOUNDARIES)
async def test_the_api_returns_daily_flags_with_their_granularity(
    client: Any, admin_key: str, pg: Any, boundary: Boundary
) -> None:
    await make_customer(client, admin_key, id="acme", timezone=boundary.tz)
    await make_meter(client, admin_key, metric="api_calls")
    now = boundary.at
    set_clock(client, now)
    local = boundary.local()
    today = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)  # local midnight
    yesterday = today - timedelta(days=1)
    rows = [
        (h, Decimal(1000 if yesterday <= h < today else 100)) for h in hours(today - timedelta(days=36), now)
    ]
    await pg.executemany(
        "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
        "VALUES ('acme', 'api_calls', $1, $2, 1)",
        rows,
    )
    await roll_up_days(pg)
    found = (await client.get("/v1/customers/acme/anomalies", headers=auth(admin_key))).json()
    assert [
        (a["granularity"], a["kind"], a["start"], a["end"], a["value"], a["expected"])
        for a in found
        if a["granularity"] == "day"
    ] == [
        (
            "day",
            "spike",
            yesterday.isoformat().replace("+00:00", "Z"),
            today.isoformat().replace("+00:00", "Z"),
            "24000",
            "2400",
        )
    ]
    # Each of yesterday's hours in the last 48 is a spike of its own, against 100.
    hourly = [a for a in found if a["granularity"] == "hour"]
    assert hourly and {(a["kind"], a["value"], a["expected"]) for a in hourly} == {("spike", "1000", "100")}
