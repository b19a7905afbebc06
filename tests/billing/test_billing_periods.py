"""Billing periods, segments and hours at the edges of time zones (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from portal.billing.schemas import Subscription
from portal.billing.subscriptions import month_period, segments_in
from portal.infrastructure.domain_errors import Invalid
from portal.infrastructure.periods import BillingPeriod, hour_buckets, period_for


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def sub(plan: str, starts: datetime, ends: datetime | None = None) -> Subscription:
    return Subscription(
        id=1, customer_id="c", plan_id=plan, anchor_day=1, starts_at=starts, ends_at=ends, discounts=()
    )


@pytest.mark.parametrize(
    ("tz", "anchor", "month", "period"),
    [
        ("UTC", 1, "2026-02", BillingPeriod(utc(2026, 2, 1), utc(2026, 3, 1))),
        # Anchor 31 in February: the 28th, and back to the 31st in March.
        ("UTC", 31, "2026-02", BillingPeriod(utc(2026, 2, 28), utc(2026, 3, 31))),
        ("UTC", 31, "2028-02", BillingPeriod(utc(2028, 2, 29), utc(2028, 3, 31))),  # leap year
        ("UTC", 30, "2026-04", BillingPeriod(utc(2026, 4, 30), utc(2026, 5, 30))),
        # :30 and :45 offsets: local midnight is at a half or quarter hour in UTC.
        ("Asia/Kolkata", 1, "2026-11", BillingPeriod(utc(2026, 10, 31, 18, 30), utc(2026, 11, 30, 18, 30))),
        (
            "Asia/Kathmandu",
            15,
            "2026-11",
            BillingPeriod(utc(2026, 11, 14, 18, 15), utc(2026, 12, 14, 18, 15)),
        ),
        # A DST change inside the period: midnight moves from -04:00 to -05:00.
        ("America/New_York", 1, "2026-11", BillingPeriod(utc(2026, 11, 1, 4), utc(2026, 12, 1, 5))),
        # Lord Howe shifts by 30 minutes for DST (+10:30 -> +11:00 on 4 October 2026).
        ("Australia/Lord_Howe", 1, "2026-10", BillingPeriod(utc(2026, 9, 30, 13, 30), utc(2026, 10, 31, 13))),
    ],
)
def test_month_period_is_the_period_starting_in_that_month(
    tz: str,
    anchor: int,
    month: str,
    period: BillingPeriod,
) -> None:
    assert month_period(tz, anchor, month) == period


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "26-01", "november"])
def test_month_period_refuses_what_is_not_a_month(month: str) -> None:
    with pytest.raises(Invalid, match="expected YYYY-MM"):
        month_period("UTC", 1, month)


@pytest.mark.parametrize(
    ("tz", "month", "hours"),
    [
        ("UTC", "2026-11", 720),
        ("America/New_York", "2026-11", 721),  # fall back: one local hour happens twice
        ("America/New_York", "2026-03", 743),  # spring forward: one local hour never happens
        ("Europe/Berlin", "2026-10", 745),
        ("Asia/Kathmandu", "2026-02", 672),
    ],
)
def test_a_period_is_a_whole_number_of_local_hours(tz: str, month: str, hours: int) -> None:
    period = month_period(tz, 1, month)
    buckets = hour_buckets(period.start, period.end, tz)
    assert len(buckets) == hours
    assert buckets[0] == period.start.timestamp()
    # The hours tile the period exactly: the next period's first hour follows the last one.
    following = period_for(period.end, tz, 1)
    assert hour_buckets(following.start, following.end, tz)[0] == period.end.timestamp()


def test_segments_split_a_period_by_exact_share_of_its_length() -> None:
    period = BillingPeriod(utc(2026, 11, 1), utc(2026, 12, 1))  # 30 days
    change = utc(2026, 11, 11)
    segments = segments_in([sub("growth", change), sub("basic", utc(2026, 10, 1), change)], period)
    assert [(s.subscription.plan_id, s.start, s.end, s.fraction) for s in segments] == [
        ("basic", period.start, change, Decimal(10) / Decimal(30)),
        ("growth", change, period.end, Decimal(20) / Decimal(30)),
    ]
    assert sum(s.fraction for s in segments) == 1


def test_a_subscription_starting_mid_period_covers_only_its_part() -> None:
    period = BillingPeriod(utc(2026, 11, 1), utc(2026, 12, 1))
    [segment] = segments_in([sub("basic", utc(2026, 11, 16))], period)
    assert (segment.start, segment.fraction) == (utc(2026, 11, 16), Decimal(1) / Decimal(2))


def test_subscriptions_outside_the_period_make_no_segment() -> None:
    period = BillingPeriod(utc(2026, 11, 1), utc(2026, 12, 1))
    assert (
        segments_in([sub("old", utc(2026, 9, 1), utc(2026, 11, 1)), sub("new", utc(2026, 12, 1))], period)
        == []
    )
