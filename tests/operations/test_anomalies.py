"""Anomalies in synthetic series whose anomalies are known (pure)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from portal.pages.formatting import day_of, hour_range
from portal.usage.anomaly_rule import Anomaly, hourly_anomalies
from tests.clock import BOUNDARIES, Boundary, set_clock
from tests.factories import auth, make_customer, make_meter, roll_up_days
from tests.pages.helpers import HTMX, make_user, sign_in

START = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)


def business(at: datetime, week_growth: float = 0.0) -> Decimal:
    """Busy 08-18 on weekdays, a little on weekend days, nothing at night; growing by
    `week_growth` a week."""
    weeks = (at - START).days / 7
    if at.hour < 8 or at.hour >= 18:
        return Decimal(0)
    base = 20 if at.weekday() >= 5 else 100
    return Decimal(round(base * (1 + week_growth) ** weeks))


def series(weeks: float, week_growth: float = 0.0) -> dict[datetime, Decimal]:
    hours = int(weeks * 7 * 24)
    return {START + i * HOUR: business(START + i * HOUR, week_growth) for i in range(hours)}


def last_week(values: dict[datetime, Decimal]) -> list[datetime]:
    end = max(values) + HOUR
    return [end - 7 * 24 * HOUR + i * HOUR for i in range(7 * 24)]


def test_normal_weeks_with_nights_and_weekend_dips_have_no_anomalies() -> None:
    values = series(5)
    assert hourly_anomalies(values, last_week(values)) == []


def test_steady_growth_is_not_an_anomaly() -> None:
    values = series(6, week_growth=0.15)
    assert hourly_anomalies(values, last_week(values)) == []


def test_a_spike_is_flagged_once_with_what_was_expected() -> None:
    values = series(5)
    hour = last_week(values)[24 * 2 + 11]  # Wednesday 11:00
    values[hour] = Decimal(1000)
    assert hourly_anomalies(values, last_week(values)) == [
        Anomaly("spike", hour, hour + HOUR, Decimal(1000), Decimal(100))
    ]


def test_a_busy_hour_dropping_to_zero_is_flagged() -> None:
    values = series(5)
    hour = last_week(values)[24 + 9]  # Tuesday 09:00
    values[hour] = Decimal(0)
    assert hourly_anomalies(values, last_week(values)) == [
        Anomaly("drop_to_zero", hour, hour + HOUR, Decimal(0), Decimal(100))
    ]


def test_hours_of_silence_where_there_always_was_usage_are_one_span() -> None:
    values = series(5)
    week = last_week(values)
    quiet = week[24 * 3 + 10 : 24 * 3 + 15]  # Thursday 10:00-15:00
    for hour in quiet:
        values.pop(hour)
    assert hourly_anomalies(values, week) == [
        Anomaly("silence", quiet[0], quiet[-1] + HOUR, Decimal(0), Decimal(500))
    ]


def test_a_weekend_at_weekday_level_is_a_spike_only_when_far_above_its_own_history() -> None:
    values = series(5)
    saturday_noon = last_week(values)[24 * 5 + 12]
    values[saturday_noon] = Decimal(50)  # 2.5x the usual 20: within normal variation
    assert hourly_anomalies(values, last_week(values)) == []
    values[saturday_noon] = Decimal(100)  # 5x
    assert [a.kind for a in hourly_anomalies(values, last_week(values))] == ["spike"]


def test_without_enough_history_nothing_is_judged() -> None:
    values = series(0.5)
    hour = max(values)
    values[hour] = Decimal(10_000)
    assert hourly_anomalies(values, [hour]) == []


def last_settled_hour(boundary: Boundary) -> datetime:
    """The start of the customer's last local hour that has ended, in UTC."""
    return (boundary.local().replace(minute=0, second=0, microsecond=0) - HOUR).astimezone(UTC)


@pytest.mark.parametrize("boundary", BOUNDARIES)
async def test_the_api_flags_a_spike_in_a_customers_stored_usage(
    client: Any, admin_key: str, pg: Any, boundary: Boundary
) -> None:
    await make_customer(client, admin_key, id="acme", timezone=boundary.tz)
    await make_meter(client, admin_key, metric="api_calls")
    set_clock(client, boundary.at)
    settled = last_settled_hour(boundary)
    rows = [(settled - timedelta(weeks=w), Decimal(10)) for w in range(1, 5)] + [(settled, Decimal(400))]
    for hour, value in rows:
        await pg.execute(
            "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
            "VALUES ('acme', 'api_calls', $1, $2, 1)",
            hour,
            value,
        )
        await roll_up_days(pg)
    found = (await client.get("/v1/customers/acme/anomalies", headers=auth(admin_key))).json()
    # Daily flags are tested in tests/usage/test_anomalies_daily.py: here only the hour (right
    # after midnight its day is settled too, and is a spike of its own).
    assert [
        (a["metricName"], a["granularity"], a["kind"], a["start"], a["value"], a["expected"])
        for a in found
        if a["granularity"] == "hour"
    ] == [("api_calls", "hour", "spike", settled.isoformat().replace("+00:00", "Z"), "400", "10")]


@pytest.mark.parametrize("boundary", BOUNDARIES)
async def test_the_customer_page_shows_a_flagged_hour(
    client: Any, admin_key: str, pg: Any, boundary: Boundary
) -> None:
    await make_customer(client, admin_key, id="acme", timezone=boundary.tz)
    await make_meter(client, admin_key, metric="api_calls")
    set_clock(client, boundary.at)
    settled = last_settled_hour(boundary)
    for hour, value in [(settled - timedelta(weeks=w), Decimal(10)) for w in range(1, 5)] + [(settled, 0)]:
        if value:
            await pg.execute(
                "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
                "VALUES ('acme', 'api_calls', $1, $2, 1)",
                hour,
                value,
            )
            await roll_up_days(pg)
    await make_user(pg, "admin@portal.test", role="admin")
    await sign_in(client, "admin@portal.test")
    panel = (await client.get("/portal/customers/acme/usage", headers=HTMX)).text
    rows = re.findall(
        r"<tr><td>([^<]*)</td><td>(API calls)</td><td>([^<]*)</td>\s*"
        r'<td class="num">([^<]*)</td><td class="num">([^<]*)</td></tr>',
        panel,
    )
    shown = [(hour_range(settled, boundary.tz), "API calls", "Dropped to zero", "0", "10")]
    if boundary.local().hour == 0:
        # The settled hour closed the customer's day, which went to zero against 10 on the
        # same weekday of earlier weeks: the page lists that day too, after the hours.
        shown.append(
            (f"{day_of(settled, boundary.tz)} (whole day)", "API calls", "Dropped to zero", "0", "10")
        )
    assert rows == shown
