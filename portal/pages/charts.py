"""Hourly and daily bar charts as geometry for an inline SVG. Pure functions, no I/O.

The template draws what `hourly_bars` / `daily_bars` return: one `<rect>` (with a `<title>`
for hover) per hour or day with usage, a tick at the start of every local day, and the same
numbers as table rows for people who do not see the chart. Values stay exact decimals in
every text; only coordinates are floats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from portal.pages.formatting import hour_range, to_local
from portal.usage.combine import exact

# Room above the plot for the peak label and below it for the day labels (SVG units).
TOP_MARGIN = 16.0
BOTTOM_MARGIN = 18.0
# A non-zero hour is drawn at least this tall, so that a small hour next to a large one
# stays visible (its title and the table carry the exact value).
MIN_BAR_HEIGHT = 1.0
# Day labels closer than this (SVG units) to the previous label are left out.
MIN_LABEL_GAP = 22.0


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True, slots=True)
class Tick:
    """The start of a local day; `label` is its day of the month, or "" when crowded."""

    x: float
    label: str


@dataclass(frozen=True, slots=True)
class HourRow:
    hour: str
    value: str


@dataclass(frozen=True, slots=True)
class BarChart:
    width: int
    height: int
    hours: int
    top: float
    baseline: float
    peak: str
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    rows: tuple[HourRow, ...]

    @property
    def empty(self) -> bool:
        return not self.bars


def _r(value: float) -> float:
    return round(value, 2)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def day_label(start: datetime, tz_name: str) -> str:
    """'Tue 24 Nov 2026': the local day starting at `start` (its zone is named elsewhere on
    the page: a day has no single abbreviation across a DST change)."""
    local = to_local(start, tz_name)
    return f"{_WEEKDAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}"


def hourly_bars(
    points: list[tuple[datetime, Decimal]],
    *,
    width: int,
    height: int,
    tz_name: str,
    unit: str = "",
) -> BarChart:
    """Bars for consecutive hours (`points`: UTC hour starts in time order, values >= 0).

    Each point gets an equal slot across `width`; bar heights are proportional to the
    largest value. Hours with value 0 get no bar and no table row. Raises ValueError for
    an unknown zone or a negative value.
    """
    return _bars(points, width=width, height=height, tz_name=tz_name, unit=unit, label=hour_range)


def daily_bars(
    points: list[tuple[datetime, Decimal]],
    *,
    width: int,
    height: int,
    tz_name: str,
    unit: str = "",
) -> BarChart:
    """Bars for consecutive local days (`points`: UTC instants of local midnights), drawn
    and tabled like `hourly_bars`."""
    return _bars(points, width=width, height=height, tz_name=tz_name, unit=unit, label=day_label)


def _bars(
    points: list[tuple[datetime, Decimal]],
    *,
    width: int,
    height: int,
    tz_name: str,
    unit: str,
    label: Callable[[datetime, str], str],
) -> BarChart:
    if width <= 0 or height <= TOP_MARGIN + BOTTOM_MARGIN:
        raise ValueError(f"chart too small: {width}x{height}")
    if any(value < 0 for _, value in points):
        raise ValueError("hourly values must not be negative")
    baseline = height - BOTTOM_MARGIN
    plot_height = baseline - TOP_MARGIN
    peak = max((value for _, value in points), default=Decimal(0))
    slot = width / len(points) if points else float(width)
    gap = slot * 0.15 if slot >= 4 else 0.0
    suffix = f" {unit}" if unit else ""

    bars: list[Bar] = []
    rows: list[HourRow] = []
    ticks: list[Tick] = []
    last_label_x: float | None = None
    previous_day = None
    for index, (start, value) in enumerate(points):
        x = index * slot
        day = to_local(start, tz_name).date()
        if day != previous_day:
            labelled = last_label_x is None or x - last_label_x >= MIN_LABEL_GAP
            ticks.append(Tick(x=_r(x), label=str(day.day) if labelled else ""))
            if labelled:
                last_label_x = x
            previous_day = day
        if value == 0:
            continue
        text = label(start, tz_name)
        bar_height = max(MIN_BAR_HEIGHT, float(value / peak) * plot_height)
        bars.append(
            Bar(
                x=_r(x + gap / 2),
                y=_r(baseline - bar_height),
                width=_r(slot - gap),
                height=_r(bar_height),
                title=f"{text}: {exact(value)}{suffix}",
            )
        )
        rows.append(HourRow(hour=text, value=exact(value)))
    return BarChart(
        width=width,
        height=height,
        hours=len(points),
        top=TOP_MARGIN,
        baseline=baseline,
        peak=exact(peak),
        bars=tuple(bars),
        ticks=tuple(ticks),
        rows=tuple(rows),
    )
