"""Hour buckets and billing periods on time-zone edges (pure, table-driven)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from portal.infrastructure.periods import BillingPeriod, hour_bucket, hour_buckets, period_for, to_datetime


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("instant", "zone", "bucket_start"),
    [
        (utc(2026, 1, 1, 12, 50), "UTC", utc(2026, 1, 1, 12, 0)),
        (utc(2026, 1, 1, 12, 50), "Asia/Kolkata", utc(2026, 1, 1, 12, 30)),  # +05:30
        (utc(2026, 1, 1, 12, 10), "Asia/Kolkata", utc(2026, 1, 1, 11, 30)),
        (utc(2026, 1, 1, 12, 50), "Asia/Kathmandu", utc(2026, 1, 1, 12, 15)),  # +05:45
        (utc(2026, 1, 1, 12, 14, 59), "Asia/Kathmandu", utc(2026, 1, 1, 11, 15)),
        (utc(2026, 1, 1, 12, 50), "America/St_Johns", utc(2026, 1, 1, 12, 30)),  # -03:30
        (utc(2026, 3, 29, 1, 30), "Europe/Berlin", utc(2026, 3, 29, 1, 0)),  # 03:30 CEST
        (utc(2026, 10, 25, 0, 30), "Europe/Berlin", utc(2026, 10, 25, 0, 0)),  # first 02:xx
        (utc(2026, 10, 25, 1, 30), "Europe/Berlin", utc(2026, 10, 25, 1, 0)),  # second 02:xx
    ],
)
def test_hour_bucket_is_the_customers_local_hour(
    instant: datetime, zone: str, bucket_start: datetime
) -> None:
    assert to_datetime(hour_bucket(instant.timestamp(), zone)) == bucket_start


def test_hours_across_spring_forward_skip_the_missing_hour() -> None:
    hours = hour_buckets(utc(2026, 3, 28, 23), utc(2026, 3, 29, 3), "Europe/Berlin")
    # Local 00:00, 01:00, 03:00, 04:00 (02:00 does not exist that night).
    assert [to_datetime(h).hour for h in hours] == [23, 0, 1, 2]
    assert len(hours) == 4


def test_hours_across_fall_back_count_the_repeated_hour_twice() -> None:
    hours = hour_buckets(utc(2026, 10, 24, 22), utc(2026, 10, 25, 2), "Europe/Berlin")
    assert len(hours) == 4  # local 00, 01, 02 (CEST), 02 (CET)


@pytest.mark.parametrize(
    ("instant", "zone", "anchor", "period"),
    [
        # Calendar month in the customer's zone.
        (utc(2026, 3, 15), "UTC", 1, BillingPeriod(utc(2026, 3, 1), utc(2026, 4, 1))),
        (
            utc(2026, 2, 28, 23, 30),
            "Europe/Berlin",
            1,
            BillingPeriod(utc(2026, 2, 28, 23), utc(2026, 3, 31, 22)),
        ),  # March, across DST
        (
            utc(2026, 2, 28, 22, 59),
            "Europe/Berlin",
            1,
            BillingPeriod(utc(2026, 1, 31, 23), utc(2026, 2, 28, 23)),
        ),
        # Anchor 31 falls back to the last day of short months.
        (utc(2026, 2, 28, 12), "UTC", 31, BillingPeriod(utc(2026, 2, 28), utc(2026, 3, 31))),
        (utc(2026, 2, 27, 12), "UTC", 31, BillingPeriod(utc(2026, 1, 31), utc(2026, 2, 28))),
        (utc(2028, 2, 29, 1), "UTC", 30, BillingPeriod(utc(2028, 2, 29), utc(2028, 3, 30))),
        # Half-hour zone: the period starts at local midnight, 18:30 UTC the day before.
        (
            utc(2026, 3, 1, 0, 10),
            "Asia/Kolkata",
            31,
            BillingPeriod(utc(2026, 2, 27, 18, 30), utc(2026, 3, 30, 18, 30)),
        ),
        # Exact to the microsecond at the boundary.
        (
            utc(2026, 3, 31, 18, 29, 59, 999999),
            "Asia/Kolkata",
            1,
            BillingPeriod(utc(2026, 2, 28, 18, 30), utc(2026, 3, 31, 18, 30)),
        ),
        (
            utc(2026, 3, 31, 18, 30),
            "Asia/Kolkata",
            1,
            BillingPeriod(utc(2026, 3, 31, 18, 30), utc(2026, 4, 30, 18, 30)),
        ),
        (
            utc(2026, 12, 31, 23),
            "Pacific/Chatham",
            1,  # +13:45 in summer
            BillingPeriod(utc(2026, 12, 31, 10, 15), utc(2027, 1, 31, 10, 15)),
        ),
    ],
)
def test_period_for(instant: datetime, zone: str, anchor: int, period: BillingPeriod) -> None:
    assert period_for(instant, zone, anchor) == period


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((datetime(2026, 1, 1), "UTC", 1), "timezone-aware"),
        ((utc(2026, 1, 1), "Mars/Olympus", 1), "unknown IANA time zone"),
        ((utc(2026, 1, 1), "UTC", 0), "anchor day must be 1-31"),
    ],
)
def test_period_for_refuses_bad_input(args: tuple[datetime, str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        period_for(*args)
