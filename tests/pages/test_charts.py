"""The usage charts (value ticks, date labels, bars over the whole range) and the page's
time labels: pure functions, no servers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import pairwise

import pytest

from portal.pages.chart_axes import CHAR_PX, LABEL_GAP_PX, LABEL_WIDTHS, date_labels, nice_ticks, range_text
from portal.pages.charts import Bar, GridLine, HourRow, daily_bars, day_label, hourly_bars
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


D = Decimal


@pytest.mark.parametrize(
    ("peak", "max_intervals", "whole", "expected"),
    [
        (D(160), 4, True, ("0", "50", "100", "150", "200")),
        (D(7780), 4, True, ("0", "2000", "4000", "6000", "8000")),
        (D("6.5"), 4, False, ("0", "2", "4", "6", "8")),
        (D(90), 4, True, ("0", "25", "50", "75", "100")),
        (D(101), 4, True, ("0", "50", "100", "150")),
        (D(1), 4, False, ("0", "0.25", "0.5", "0.75", "1")),
        # Counts have no quarter calls: whole steps, and never fewer than three ticks.
        (D(1), 4, True, ("0", "1", "2")),
        (D(3), 4, True, ("0", "1", "2", "3")),
        (D("0.001"), 4, False, ("0", "0.00025", "0.0005", "0.00075", "0.001")),
        (D(10) ** 9, 4, True, ("0", "250000000", "500000000", "750000000", "1000000000")),
        # A short chart gets fewer ticks.
        (D(160), 3, True, ("0", "100", "200")),
        (D(0), 4, True, ("0", "1", "2")),
    ],
)
def test_value_ticks_are_round_steps_from_zero_past_the_peak(
    peak: Decimal, max_intervals: int, whole: bool, expected: tuple[str, ...]
) -> None:
    ticks = nice_ticks(peak, max_intervals=max_intervals, whole=whole)
    assert tuple(format(t.normalize(), "f") for t in ticks) == expected


def test_a_value_axis_needs_two_intervals() -> None:
    with pytest.raises(ValueError, match="at least 2 intervals"):
        nice_ticks(D(5), max_intervals=1)


def test_no_points_draw_nothing() -> None:
    chart = hourly_bars([], height=134, tz_name="UTC")
    assert (chart.slots, chart.bars, chart.rows, chart.peak, chart.later) == (0, (), (), "0", None)
    assert chart.empty
    assert chart.summary == "Usage per hour: no usage."


def test_a_range_without_usage_keeps_its_days_and_draws_no_bar() -> None:
    chart = daily_bars(
        [(at(2026, 12, 1), D(0)), (at(2026, 12, 2), D(0))],
        height=134,
        tz_name="UTC",
        start=at(2026, 12, 1),
        end=at(2026, 12, 8),
    )
    assert chart.empty and chart.rows == ()
    assert chart.slots == 7
    assert chart.day_ticks == (0.0, 14.286, 28.571, 42.857, 57.143, 71.429, 85.714)
    assert chart.summary == "Usage per day, 1–7 Dec 2026: no usage."


def test_bars_sit_in_their_hour_of_the_whole_range_scaled_to_the_top_tick() -> None:
    # Four hours, usage in the second and third, the fourth still to come. The plot is
    # 100 px high (16 to 116): three intervals at most, so the axis runs 0, 2, 4, 6.
    points = [(at(2026, 11, 24, 0), D(0)), (at(2026, 11, 24, 1), D("2")), (at(2026, 11, 24, 2), D("4.50"))]
    chart = hourly_bars(
        points,
        height=136,
        tz_name="UTC",
        unit="call",
        name="API calls",
        start=at(2026, 11, 24),
        end=at(2026, 11, 24, 4),
    )
    assert (chart.slots, chart.top, chart.baseline, chart.peak, chart.scale_top) == (
        4,
        16.0,
        116.0,
        "4.5",
        "6",
    )
    assert chart.grid == (
        GridLine(y=116.0, label="0 calls"),
        GridLine(y=82.67, label="2 calls"),
        GridLine(y=49.33, label="4 calls"),
        GridLine(y=16.0, label="6 calls"),
    )
    assert chart.bars == (
        Bar(x=26.875, y=82.67, width=21.25, height=33.33, title="Tue 24 Nov 01:00–02:00 UTC: 2 calls"),
        Bar(x=51.875, y=41.0, width=21.25, height=75.0, title="Tue 24 Nov 02:00–03:00 UTC: 4.5 calls"),
    )
    assert chart.rows == (
        HourRow("Tue 24 Nov 01:00–02:00 UTC", "2"),
        HourRow("Tue 24 Nov 02:00–03:00 UTC", "4.5"),
    )
    assert chart.later == 75.0  # the fourth hour has no point yet
    assert chart.summary == (
        "API calls per hour, 24 Nov 2026: highest 4.5 calls, Tue 24 Nov 02:00–03:00 UTC; "
        "2 of 4 hours with usage."
    )


def test_one_unit_is_singular_in_a_title() -> None:
    chart = hourly_bars([(at(2026, 11, 24, 5), D(1))], height=134, tz_name="UTC", unit="call")
    assert chart.bars[0].title == "Tue 24 Nov 05:00–06:00 UTC: 1 call"
    assert [line.label for line in chart.grid] == ["0 calls", "1 call", "2 calls"]


def test_the_period_keeps_its_empty_days_and_shades_what_is_still_to_come() -> None:
    # A 30-day period in Berlin with usage only on its third day, seen on the fifth.
    start = at(2026, 11, 30, 23)
    points = [(start + timedelta(hours=h), D(5) if h == 50 else D(0)) for h in range(4 * 24 + 10)]
    chart = hourly_bars(
        points, height=160, tz_name="Europe/Berlin", unit="call", start=start, end=start + timedelta(days=30)
    )
    assert chart.slots == 720
    assert [(bar.x, bar.width) for bar in chart.bars] == [(6.944, 0.139)]  # hour 50 of 720, no gap
    assert chart.later == 14.722  # after the 106 hours seen
    assert len(chart.day_ticks) == 30
    assert chart.summary.endswith("highest 5 calls, Thu 3 Dec 02:00–03:00 CET; 1 of 720 hours with usage.")


def test_a_tiny_hour_beside_a_huge_one_stays_visible() -> None:
    points = [(at(2026, 11, 24, 0), D("0.001")), (at(2026, 11, 24, 1), D(10) ** 9)]
    chart = hourly_bars(points, height=136, tz_name="UTC")
    assert [bar.height for bar in chart.bars] == [1.0, 100.0]
    assert chart.rows[0].value == "0.001"
    assert chart.peak == "1000000000"


def test_a_shared_scale_makes_bars_of_equal_values_equally_tall() -> None:
    day = at(2026, 11, 24)
    small = hourly_bars([(day, D(40))], height=120, tz_name="UTC", start=day, end=day + timedelta(hours=2))
    shared = hourly_bars(
        [(day, D(40))], height=120, tz_name="UTC", start=day, end=day + timedelta(hours=2), scale_peak=D(160)
    )
    large = hourly_bars(
        [(day, D(160))], height=120, tz_name="UTC", start=day, end=day + timedelta(hours=2), scale_peak=D(160)
    )
    assert small.bars[0].height == 84.0  # alone, 40 fills its own axis (0 to 40)
    assert (shared.scale_top, large.scale_top) == ("200", "200")
    assert shared.grid == large.grid
    assert shared.bars[0].height * 4 == pytest.approx(large.bars[0].height)


def test_the_repeated_dst_hour_is_two_bars_of_a_25_hour_day() -> None:
    day = at(2026, 10, 24, 22)  # Sunday 25 October in Berlin
    points = [(at(2026, 10, 25, 0), D(3)), (at(2026, 10, 25, 1), D(5))]
    chart = hourly_bars(
        points, height=134, tz_name="Europe/Berlin", unit="GB", start=day, end=day + timedelta(hours=25)
    )
    assert chart.slots == 25
    assert [bar.title for bar in chart.bars] == [
        "Sun 25 Oct 02:00 CEST–02:00 CET: 3 GB",
        "Sun 25 Oct 02:00–03:00 CET: 5 GB",
    ]


@pytest.mark.parametrize(
    ("points", "height", "tz_name", "message"),
    [
        ([(at(2026, 11, 24, 0), D(-1))], 134, "UTC", "must not be negative"),
        ([(at(2026, 11, 24, 0), D(1))], 134, "Mars/Olympus", "unknown IANA time zone"),
        ([], 60, "UTC", "chart too small"),
        ([(at(2026, 11, 25, 0), D(1))], 134, "UTC", "outside the chart's range"),
    ],
)
def test_bad_input_is_refused(
    points: list[tuple[datetime, Decimal]], height: int, tz_name: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        hourly_bars(points, height=height, tz_name=tz_name, start=at(2026, 11, 24), end=at(2026, 11, 24, 6))


def test_daily_bars_name_local_days_with_exact_values() -> None:
    # Local midnights in Berlin (CET, UTC+1).
    chart = daily_bars(
        [(at(2026, 11, 22, 23), D("0")), (at(2026, 11, 23, 23), D("12.5"))],
        height=100,
        tz_name="Europe/Berlin",
        unit="call",
    )
    assert [row.hour for row in chart.rows] == ["Tue 24 Nov 2026"]
    assert chart.bars[0].title == "Tue 24 Nov 2026: 12.5 calls"
    assert [label.text for label in chart.label_sets[0].labels] == ["Mon 23 Nov", "Tue 24"]
    assert day_label(at(2026, 3, 28, 23), "Europe/Berlin") == "Sun 29 Mar 2026"


def days_from(first: date, count: int, hours: int = 1) -> list[tuple[int, date]]:
    return [(n * hours, first + timedelta(days=n)) for n in range(count)]


@pytest.mark.parametrize(
    ("first", "count", "hours", "width", "expected"),
    [
        # A week of days, wide: every day with its weekday; on a phone, dates only.
        (date(2026, 12, 1), 7, 1, 880.0, ["Tue 1 Dec", "Wed 2", "Thu 3", "Fri 4", "Sat 5", "Sun 6", "Mon 7"]),
        (date(2026, 12, 1), 7, 1, 300.0, ["1 Dec", "2", "3", "4", "5", "6", "7"]),
        # A month of hours: every other day on a laptop, Mondays on a phone.
        (date(2026, 12, 1), 31, 24, 540.0, ["1 Dec", *[str(d) for d in range(3, 32, 2)]]),
        (date(2026, 12, 1), 31, 24, 300.0, ["7 Dec", "14", "21", "28"]),
        # The last 30 days across a month end: the month is named where it changes.
        (date(2026, 11, 7), 30, 1, 300.0, ["9 Nov", "16", "23", "30"]),
        (
            date(2026, 11, 7),
            30,
            1,
            880.0,
            ["7 Nov", *[str(d) for d in range(8, 31)], "1 Dec", *[str(d) for d in range(2, 7)]],
        ),
        # A year of days: months, or quarters on a phone.
        (
            date(2026, 1, 1),
            365,
            1,
            880.0,
            ["Jan 2026", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
        ),
        (date(2026, 1, 1), 365, 1, 300.0, ["Jan 2026", "Apr", "Jul", "Oct"]),
        # One day: its name alone.
        (date(2026, 12, 1), 1, 24, 300.0, ["Tue 1 Dec"]),
    ],
)
def test_date_labels_thin_out_until_none_overlap(
    first: date, count: int, hours: int, width: float, expected: list[str]
) -> None:
    days = days_from(first, count, hours)
    labels = date_labels(days, count * hours, width)
    assert [label.text for label in labels] == expected
    extents = []
    for label in labels:
        text_px = len(label.text) * CHAR_PX
        x = label.x / 100 * width
        left = {"start": x, "middle": x - text_px / 2, "end": x - text_px}[label.anchor]
        extents.append((left, left + text_px))
    assert all(left >= 0 and right <= width for left, right in extents)
    assert all(b[0] - a[1] >= LABEL_GAP_PX for a, b in pairwise(extents))


def test_every_screen_size_gets_its_own_label_set() -> None:
    start = at(2026, 12, 1)
    chart = hourly_bars([], height=160, tz_name="UTC", start=start, end=start + timedelta(days=31))
    assert [s.size for s in chart.label_sets] == list(LABEL_WIDTHS) == ["s", "m", "l"]
    assert [len(s.labels) for s in chart.label_sets] == [4, 16, 31]


def test_an_hourly_chart_of_a_few_days_names_hours_where_they_fit() -> None:
    one_day = hourly_bars([], height=160, tz_name="UTC", start=at(2026, 12, 1), end=at(2026, 12, 2))
    assert {s.size: [label.text for label in s.labels] for s in one_day.label_sets} == {
        "s": ["1 Dec", "06:00", "12:00", "18:00"],
        "m": ["1 Dec", "03:00", "06:00", "09:00", "12:00", "15:00", "18:00", "21:00"],
        "l": ["1 Dec", "03:00", "06:00", "09:00", "12:00", "15:00", "18:00", "21:00"],
    }
    # Across the autumn DST change (a 25-hour day in Berlin), on a phone: days, not hours.
    start = at(2026, 10, 24, 22)
    dst = hourly_bars([], height=160, tz_name="Europe/Berlin", start=start, end=start + timedelta(hours=73))
    assert [label.text for label in dst.label_sets[0].labels] == ["Sun 25 Oct", "Mon 26", "Tue 27"]
    assert [label.text for label in dst.label_sets[1].labels] == [
        "25 Oct",
        "12:00",
        "26 Oct",
        "12:00",
        "27 Oct",
        "12:00",
    ]
    assert [label.tick for label in dst.label_sets[1].labels][2] == 34.247  # hour 25 of 73


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        (date(2026, 12, 3), date(2026, 12, 6), "3–6 Dec 2026"),
        (date(2026, 11, 24), date(2026, 12, 23), "24 Nov – 23 Dec 2026"),
        (date(2026, 12, 24), date(2027, 1, 23), "24 Dec 2026 – 23 Jan 2027"),
        (date(2026, 12, 3), date(2026, 12, 3), "3 Dec 2026"),
    ],
)
def test_range_text(first: date, last: date, expected: str) -> None:
    assert range_text(first, last) == expected


def test_charts_of_one_range_share_its_axis_and_keep_their_own_bars() -> None:
    # The axis of a range and zone is kept between charts (every poll draws the same period):
    # what one chart drew must not show up in the next, in another zone or with a new gutter.
    from portal.pages import charts

    start, end = at(2026, 12, 1), at(2027, 1, 1)
    few = [(at(2026, 12, 3, 14), D(5))]
    more = [(at(2026, 12, 3, 14), D(70_000)), (at(2026, 12, 4, 2), D(9))]

    def december(points: list[tuple[datetime, Decimal]], tz_name: str = "UTC") -> charts.BarChart:
        return hourly_bars(points, height=136, tz_name=tz_name, start=start, end=end, unit="call")

    first, second, berlin = december(few), december(more), december(few, "Europe/Berlin")
    assert [b.title for b in first.bars] == ["Thu 3 Dec 14:00–15:00 UTC: 5 calls"]
    assert [b.title for b in second.bars] == [
        "Thu 3 Dec 14:00–15:00 UTC: 70,000 calls",
        "Fri 4 Dec 02:00–03:00 UTC: 9 calls",
    ]
    assert [b.title for b in berlin.bars] == ["Thu 3 Dec 15:00–16:00 CET: 5 calls"]
    assert first.gutter != second.gutter
    # Drawn again from nothing kept, each chart is the same.
    charts._axis.cache_clear()
    assert (december(more), december(few)) == (second, first)
