"""The hourly chart and the page's time labels: pure functions, no servers."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from portal.pages.charts import Bar, HourRow, Tick, daily_bars, day_label, hourly_bars
from portal.pages.formatting import hour_range, instant


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "tz_name", "expected"),
    [
        (at(2026, 11, 24, 14), "UTC", "Tue 24 Nov 14:00–15:00 UTC"),
        (at(2026, 11, 24, 14), "Europe/Berlin", "Tue 24 Nov 15:00–16:00 CET"),
        # :30 and :45 offsets: the customer's hours start at local :00.
        (at(2026, 11, 24, 8, 30), "Asia/Kolkata", "Tue 24 Nov 14:00–15:00 IST"),
        (at(2026, 11, 24, 0, 15), "Asia/Kathmandu", "Tue 24 Nov 06:00–07:00 +0545"),
        # The repeated hour of a DST change reads as two different hours.
        (at(2026, 10, 25, 0), "Europe/Berlin", "Sun 25 Oct 02:00 CEST–02:00 CET"),
        (at(2026, 10, 25, 1), "Europe/Berlin", "Sun 25 Oct 02:00–03:00 CET"),
        # The skipped hour: one real hour from 01:00 CET to 03:00 CEST.
        (at(2026, 3, 29, 0), "Europe/Berlin", "Sun 29 Mar 01:00 CET–03:00 CEST"),
        (at(2026, 11, 24, 4), "America/New_York", "Mon 23 Nov 23:00–00:00 EST"),
    ],
)
def test_hour_range_names_the_local_hour(start: datetime, tz_name: str, expected: str) -> None:
    assert hour_range(start, tz_name) == expected


@pytest.mark.parametrize(
    ("moment", "tz_name", "expected"),
    [
        (at(2026, 11, 24, 13, 3, 59), "UTC", "24 Nov 2026 13:03 UTC"),
        (at(2026, 11, 24, 13, 3, 59), "Asia/Kolkata", "24 Nov 2026 18:33 IST"),
        (at(2026, 10, 31, 23), "Europe/Berlin", "1 Nov 2026 00:00 CET"),
        (at(2026, 7, 1, 4), "America/New_York", "1 Jul 2026 00:00 EDT"),
    ],
)
def test_instant_is_local_to_the_minute_with_the_zone(moment: datetime, tz_name: str, expected: str) -> None:
    assert instant(moment, tz_name) == expected


def test_no_points_draw_nothing() -> None:
    chart = hourly_bars([], width=300, height=134, tz_name="UTC")
    assert (chart.hours, chart.bars, chart.ticks, chart.rows, chart.peak) == (0, (), (), (), "0")
    assert chart.empty


def test_hours_without_usage_draw_nothing() -> None:
    points = [(at(2026, 11, 24, h), Decimal(0)) for h in range(3)]
    chart = hourly_bars(points, width=300, height=134, tz_name="UTC")
    assert chart.empty
    assert chart.rows == ()
    assert chart.ticks == (Tick(x=0.0, label="24"),)


def test_bars_are_proportional_to_the_peak_with_exact_titles() -> None:
    # 300 wide, 134 high: slots of 100 with a 15% gap; the plot is 100 high (16 to 116).
    points = [
        (at(2026, 11, 24, 0), Decimal(0)),
        (at(2026, 11, 24, 1), Decimal("2")),
        (at(2026, 11, 24, 2), Decimal("4.50")),
    ]
    chart = hourly_bars(points, width=300, height=134, tz_name="UTC", unit="call")
    assert (chart.hours, chart.top, chart.baseline, chart.peak) == (3, 16.0, 116.0, "4.5")
    assert chart.bars == (
        Bar(x=107.5, y=71.56, width=85.0, height=44.44, title="Tue 24 Nov 01:00–02:00 UTC: 2 call"),
        Bar(x=207.5, y=16.0, width=85.0, height=100.0, title="Tue 24 Nov 02:00–03:00 UTC: 4.5 call"),
    )
    assert chart.rows == (
        HourRow("Tue 24 Nov 01:00–02:00 UTC", "2"),
        HourRow("Tue 24 Nov 02:00–03:00 UTC", "4.5"),
    )


def test_a_tiny_hour_beside_a_huge_one_stays_visible() -> None:
    points = [(at(2026, 11, 24, 0), Decimal("0.001")), (at(2026, 11, 24, 1), Decimal(10) ** 9)]
    chart = hourly_bars(points, width=300, height=134, tz_name="UTC")
    assert [bar.height for bar in chart.bars] == [1.0, 100.0]
    assert chart.rows[0].value == "0.001"
    assert chart.peak == "1000000000"


def test_narrow_slots_have_no_gap() -> None:
    points = [(at(2026, 11, 1, h), Decimal(1)) for h in range(24)]
    chart = hourly_bars(points, width=48, height=100, tz_name="UTC")
    assert {bar.width for bar in chart.bars} == {2.0}
    assert [bar.x for bar in chart.bars[:3]] == [0.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("width", "expected_ticks"),
    [
        # Four hours from 22:00 on the 23rd (New York): a new local day starts at the third.
        (400, (Tick(x=0.0, label="23"), Tick(x=200.0, label="24"))),
        # Too crowded to label both days: the tick stays, its label goes.
        (40, (Tick(x=0.0, label="23"), Tick(x=20.0, label=""))),
    ],
)
def test_ticks_mark_local_days(width: int, expected_ticks: tuple[Tick, ...]) -> None:
    points = [(at(2026, 11, 24, 3 + i), Decimal(1)) for i in range(4)]
    chart = hourly_bars(points, width=width, height=100, tz_name="America/New_York")
    assert chart.ticks == expected_ticks


def test_the_repeated_dst_hour_is_two_bars() -> None:
    points = [(at(2026, 10, 25, 0), Decimal(3)), (at(2026, 10, 25, 1), Decimal(5))]
    chart = hourly_bars(points, width=200, height=134, tz_name="Europe/Berlin", unit="GB")
    assert [bar.title for bar in chart.bars] == [
        "Sun 25 Oct 02:00 CEST–02:00 CET: 3 GB",
        "Sun 25 Oct 02:00–03:00 CET: 5 GB",
    ]


@pytest.mark.parametrize(
    ("points", "width", "height", "tz_name", "message"),
    [
        ([(at(2026, 11, 24, 0), Decimal(-1))], 300, 134, "UTC", "must not be negative"),
        ([(at(2026, 11, 24, 0), Decimal(1))], 300, 134, "Mars/Olympus", "unknown IANA time zone"),
        ([], 0, 134, "UTC", "chart too small"),
        ([], 300, 30, "UTC", "chart too small"),
    ],
)
def test_bad_input_is_refused(
    points: list[tuple[datetime, Decimal]], width: int, height: int, tz_name: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        hourly_bars(points, width=width, height=height, tz_name=tz_name)


def test_daily_bars_label_local_days_with_exact_values() -> None:
    # Local midnights in Berlin (CET, UTC+1).
    chart = daily_bars(
        [(at(2026, 11, 22, 23), Decimal("0")), (at(2026, 11, 23, 23), Decimal("12.5"))],
        width=200,
        height=100,
        tz_name="Europe/Berlin",
        unit="call",
    )
    assert [row.hour for row in chart.rows] == ["Tue 24 Nov 2026"]
    assert chart.bars[0].title == "Tue 24 Nov 2026: 12.5 call"
    assert [tick.label for tick in chart.ticks] == ["23", "24"]
    assert day_label(at(2026, 3, 28, 23), "Europe/Berlin") == "Sun 29 Mar 2026"
