"""Hourly and daily bar charts as geometry for an inline SVG. Pure functions, no I/O.

A chart spans its whole range (the billing period, the last 30 days…) whatever part of it
has usage: one slot per local hour or day, a bar where there is usage, nothing where there
is none, and the part still to come shaded. Across the chart, positions are percentages
(the SVG stretches to its box and its text keeps its size); up and down they are CSS
pixels. The value axis has round ticks (`chart_axes.nice_ticks`), labelled with the unit;
the date labels come in three sets, one per screen size, each thinned until none overlap.
Values stay exact decimals in every text; only coordinates are floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache

from portal.infrastructure.periods import hour_buckets, local_midnight, to_datetime
from portal.pages.chart_axes import (
    CHAR_PX,
    LABEL_WIDTHS,
    Label,
    date_labels,
    hour_labels,
    nice_ticks,
    range_text,
)
from portal.pages.formatting import day_of, hour_range, measure, to_local, unit_for
from portal.usage.combine import exact

# Room above the plot for the top value label and below it for the date labels (px).
TOP_MARGIN = 16.0
BOTTOM_MARGIN = 20.0
# A non-zero slot is drawn at least this tall, so that a small hour next to a large one
# stays visible (its title and the table carry the exact value).
MIN_BAR_HEIGHT = 1.0
# Value grid lines at least this far apart (px): a short chart gets fewer of them.
MIN_GRID_GAP = 28.0
# Slots keep a gap between bars while they are at least this many to the narrowest
# label width (about 3 px each on a phone); more bars are drawn touching.
MAX_SLOTS_WITH_GAP = 100
BAR_GAP = 0.15
# The value labels stand left of the plot in a gutter of a multiple of this many px
# (charts.css has a class per width, up to MAX_GUTTER), wide enough for the longest.
GUTTER_STEP = 20
MAX_GUTTER = 200
# An hourly chart of up to this many days labels hours (06:00, 12:00…) where they fit.
MAX_HOUR_LABEL_DAYS = 3
# Day boundaries are marked for up to this many days (denser marks read as a smear).
MAX_DAY_TICKS = 62

# Kept for the pages that name a day in text.
day_label = day_of


@dataclass(frozen=True, slots=True)
class Bar:
    """`x`, `width`: percent of the chart's width; `y`, `height`: px."""

    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True, slots=True)
class GridLine:
    """A round value on the value axis: its height (px) and its text ("2,500 calls")."""

    y: float
    label: str


@dataclass(frozen=True, slots=True)
class LabelSet:
    """The date labels for one screen size ("s", "m", "l": `chart_axes.LABEL_WIDTHS`)."""

    size: str
    labels: tuple[Label, ...]


@dataclass(frozen=True, slots=True)
class HourRow:
    hour: str
    value: str


@dataclass(frozen=True, slots=True)
class BarChart:
    height: int
    slots: int
    granularity: str
    top: float
    baseline: float
    gutter: int  # px left of the plot for the value labels
    peak: str
    scale_top: str  # the value of the top grid line: 0 to this is the value axis
    bars: tuple[Bar, ...]
    grid: tuple[GridLine, ...]
    day_ticks: tuple[float, ...]  # percent: where each local day starts
    label_sets: tuple[LabelSet, ...]
    later: float | None  # percent: where the part of the range still to come begins
    rows: tuple[HourRow, ...]
    summary: str  # what the chart shows, in words (its accessible name)
    units: str = ""  # the unit as a column of several values is headed ("calls", "GB")

    @property
    def empty(self) -> bool:
        return not self.bars


def _r(value: float) -> float:
    return round(value, 2)


def _pct(value: float) -> float:
    return round(value, 3)


def hour_slots(start: datetime, end: datetime, tz_name: str) -> list[datetime]:
    """The UTC starts of the local hours in [start, end) (23 or 25 on a DST day)."""
    return [to_datetime(bucket) for bucket in hour_buckets(start, end, tz_name)]


def day_slots(start: datetime, end: datetime, tz_name: str) -> list[datetime]:
    """The UTC instants of the local midnights of the days in [start, end)."""
    if end <= start:
        return []
    first = to_local(start, tz_name).date()
    last = to_local(end - timedelta(microseconds=1), tz_name).date()
    return [local_midnight(first + timedelta(days=n), tz_name) for n in range((last - first).days + 1)]


@dataclass(frozen=True, slots=True)
class _Axis:
    """A range's slots in a zone and what follows from them alone: the same for every chart
    of that range, so kept (`_axis`) rather than worked out on each of the 2-second polls."""

    granularity: str  # "hour" or "day"
    slots: tuple[datetime, ...]
    tz_name: str
    index: dict[datetime, int] = field(init=False)
    days: tuple[tuple[int, date], ...] = field(init=False)  # (first slot, local day) of each day
    labels: dict[int, str] = field(init=False)  # slot -> its label, filled as bars need them
    label_sets: dict[int, tuple[LabelSet, ...]] = field(init=False)  # by gutter, filled as needed

    def __post_init__(self) -> None:
        days: list[tuple[int, date]] = []
        for i, start in enumerate(self.slots):
            day = to_local(start, self.tz_name).date()
            if not days or days[-1][1] != day:
                days.append((i, day))
        object.__setattr__(self, "index", {start: i for i, start in enumerate(self.slots)})
        object.__setattr__(self, "days", tuple(days))
        object.__setattr__(self, "labels", {})
        object.__setattr__(self, "label_sets", {})

    def slot_label(self, i: int) -> str:
        text = self.labels.get(i)
        if text is None:
            label = hour_range if self.granularity == "hour" else day_of
            text = self.labels[i] = label(self.slots[i], self.tz_name)
        return text


# Distinct (range, zone) pairs kept: a few per billing anchor and zone in use. A 31-day
# hourly axis with every label filled is ~0.2 MB, so at most ~50 MB per web process, however
# many ranges a user asks the meter pages for (the least recently drawn go first).
_AXES_KEPT = 256


@lru_cache(maxsize=_AXES_KEPT)
def _axis(granularity: str, start: datetime, end: datetime, tz_name: str) -> _Axis:
    slots = hour_slots(start, end, tz_name) if granularity == "hour" else day_slots(start, end, tz_name)
    return _Axis(granularity, tuple(slots), tz_name)


def hourly_bars(
    points: list[tuple[datetime, Decimal]],
    *,
    height: int,
    tz_name: str,
    unit: str = "",
    name: str = "Usage",
    start: datetime | None = None,
    end: datetime | None = None,
    scale_peak: Decimal | None = None,
) -> BarChart:
    """Bars for local hours: `points` are (UTC hour start, value >= 0), in time order;
    the chart spans [start, end) (by default the points' own hours), hours without a point
    after the last one are "still to come". Raises ValueError for an unknown zone, a
    negative value, a point outside the range, or a chart too short to draw."""
    return _bars(points, _range_axis("hour", points, start, end, tz_name), height, unit, name, scale_peak)


def daily_bars(
    points: list[tuple[datetime, Decimal]],
    *,
    height: int,
    tz_name: str,
    unit: str = "",
    name: str = "Usage",
    start: datetime | None = None,
    end: datetime | None = None,
    scale_peak: Decimal | None = None,
) -> BarChart:
    """Bars for local days (`points`: UTC instants of local midnights), drawn like
    `hourly_bars` over the days of [start, end)."""
    return _bars(points, _range_axis("day", points, start, end, tz_name), height, unit, name, scale_peak)


def _range_axis(
    granularity: str,
    points: list[tuple[datetime, Decimal]],
    start: datetime | None,
    end: datetime | None,
    tz_name: str,
) -> _Axis:
    """The axis of [start, end), by default the points' own range."""
    if not points and (start is None or end is None):
        return _Axis(granularity, (), tz_name)
    return _axis(granularity, start or points[0][0], end or points[-1][0] + timedelta(hours=1), tz_name)


def _bars(
    points: list[tuple[datetime, Decimal]],
    axis: _Axis,
    height: int,
    unit: str,
    name: str,
    scale_peak: Decimal | None,
) -> BarChart:
    baseline = height - BOTTOM_MARGIN
    plot_height = baseline - TOP_MARGIN
    if plot_height < 2 * MIN_GRID_GAP:
        raise ValueError(f"chart too small: {height} px high")
    if any(value < 0 for _, value in points):
        raise ValueError("values must not be negative")
    slots, index, granularity = axis.slots, axis.index, axis.granularity
    missing = [start for start, _ in points if start not in index]
    if missing:
        raise ValueError(f"a point at {missing[0].isoformat()} is outside the chart's range")
    n = len(slots)
    values = {index[start]: value for start, value in points}
    peak = max(values.values(), default=Decimal(0))
    ticks = nice_ticks(
        max(peak, scale_peak or Decimal(0)),
        max_intervals=min(4, int(plot_height // MIN_GRID_GAP)),
        whole=all(v == v.to_integral_value() for v in values.values()),
    )
    scale_top = ticks[-1]
    slot = 100 / n if n else 100.0
    gap = slot * BAR_GAP if n <= MAX_SLOTS_WITH_GAP else 0.0

    bars: list[Bar] = []
    rows: list[HourRow] = []
    for i, value in sorted(values.items()):
        if value == 0:
            continue
        text = axis.slot_label(i)
        bar_height = max(MIN_BAR_HEIGHT, float(value / scale_top) * plot_height)
        bars.append(
            Bar(
                x=_pct(i * slot + gap / 2),
                y=_r(baseline - bar_height),
                width=_pct(slot - gap),
                height=_r(bar_height),
                title=f"{text}: {measure(exact(value), unit)}",
            )
        )
        rows.append(HourRow(hour=text, value=exact(value)))

    last = max(values, default=-1)
    grid = tuple(
        GridLine(y=_r(baseline - float(t / scale_top) * plot_height), label=measure(exact(t), unit))
        for t in ticks
    )
    gutter = gutter_for(grid)
    return BarChart(
        height=height,
        slots=n,
        granularity=granularity,
        top=TOP_MARGIN,
        baseline=baseline,
        gutter=gutter,
        peak=exact(peak),
        scale_top=exact(scale_top),
        bars=tuple(bars),
        grid=grid,
        day_ticks=tuple(_pct(i * slot) for i, _ in axis.days) if len(axis.days) <= MAX_DAY_TICKS else (),
        label_sets=_label_sets(axis, gutter),
        later=_pct((last + 1) * slot) if points and last + 1 < n else None,
        rows=tuple(rows),
        summary=_summary(name, axis, values, unit),
        units=unit_for(2, unit),
    )


def _label_sets(axis: _Axis, gutter: int) -> tuple[LabelSet, ...]:
    """Date labels per screen size; an hourly chart of a few days names hours where they fit."""
    kept = axis.label_sets.get(gutter)
    if kept is not None:
        return kept
    slots, days = axis.slots, list(axis.days)
    hours = (
        [(i, to_local(start, axis.tz_name)) for i, start in enumerate(slots)]
        if axis.granularity == "hour" and len(days) <= MAX_HOUR_LABEL_DAYS
        else []
    )
    sets = []
    for size, width in LABEL_WIDTHS.items():
        labels = hour_labels(hours, len(slots), width - gutter) if hours else None
        sets.append(LabelSet(size, labels or date_labels(days, len(slots), width - gutter)))
    axis.label_sets[gutter] = tuple(sets)
    return axis.label_sets[gutter]


def gutter_for(grid: tuple[GridLine, ...]) -> int:
    """The gutter (px) that holds the longest value label and a gap before the plot."""
    widest = max((len(line.label) for line in grid), default=0) * CHAR_PX + 8
    steps = -(-widest // GUTTER_STEP)
    return int(min(MAX_GUTTER, max(2, steps) * GUTTER_STEP))


def _summary(name: str, axis: _Axis, values: dict[int, Decimal], unit: str) -> str:
    """'API calls per hour, 1-31 Dec 2026: highest 160 calls, Thu 3 Dec 14:00-15:00 CET;
    12 of 744 hours with usage.' (the dashes are en dashes)."""
    slots, days, granularity = axis.slots, axis.days, axis.granularity
    head = f"{name} per {granularity}"
    if days:
        head += f", {range_text(days[0][1], days[-1][1])}"
    used = [i for i, v in values.items() if v > 0]
    if not used:
        return f"{head}: no usage."
    peak = max(values.values())
    at = min(i for i, v in values.items() if v == peak)
    plural = granularity if len(slots) == 1 else f"{granularity}s"
    return (
        f"{head}: highest {measure(exact(peak), unit)}, {axis.slot_label(at)}; "
        f"{len(used)} of {len(slots)} {plural} with usage."
    )
