"""The axes of the usage charts: round value ticks, and date labels that never overlap.
Pure functions, no I/O.

Positions across the chart are fractions of its width (the SVG stretches to its box, its
text keeps its size); whether labels fit is judged at a stated width in CSS pixels, once
per screen size the stylesheet tells apart (`LABEL_WIDTHS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_CEILING, Decimal

# Steps of a value axis: 1, 2, 2.5 or 5 times a power of ten.
NICE_STEPS = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))
# Chart width (CSS px, value labels included) each label set is judged at; charts.css
# shows "s" on phones (up to 40rem), "m" up to 64rem and "l" above. Each is the narrowest
# chart of its screen size (a meter card on the overview, inside the page's padding), so
# labels only move apart on a wider screen.
LABEL_WIDTHS = {"s": 300.0, "m": 540.0, "l": 880.0}
# An 11px label is at most this wide per character, and labels keep this gap (CSS px).
CHAR_PX = 6.2
LABEL_GAP_PX = 6.0
# Ranges longer than this many days are labelled by months, not every other Monday.
MAX_WEEKLY_DAYS = 100

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def nice_ticks(peak: Decimal, *, max_intervals: int = 4, whole: bool = False) -> tuple[Decimal, ...]:
    """Ticks from 0 in equal round steps (1, 2, 2.5 or 5 times 10^n), the last at or above
    `peak`: 3 to `max_intervals` + 1 of them. `whole`: steps of at least 1 (counts of
    calls or users have no quarter calls). A peak of 0 or less scales like a peak of 1.
    Raises ValueError when `max_intervals` is below 2."""
    if max_intervals < 2:
        raise ValueError(f"a value axis needs at least 2 intervals, not {max_intervals}")
    if peak <= 0:
        peak = Decimal(1)
    exponent = (peak / max_intervals).adjusted()
    step = NICE_STEPS[-1].scaleb(exponent)
    for multiple in NICE_STEPS:
        candidate = multiple.scaleb(exponent)
        if whole and candidate < 1:
            continue
        if candidate * max_intervals >= peak:
            step = candidate
            break
    intervals = max(2, int((peak / step).to_integral_value(rounding=ROUND_CEILING)))
    return tuple(step * i for i in range(intervals + 1))


@dataclass(frozen=True, slots=True)
class Span:
    """What one label names: the slots [first, end) (a day or a month) and its text."""

    first: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Label:
    """A date label: `x` (percent of the width) where the text is anchored (`anchor` is
    SVG's text-anchor), `tick` (percent) where the day or month it names begins."""

    x: float
    anchor: str
    text: str
    tick: float


def _pct(slot: float, slots: int) -> float:
    return round(slot * 100 / slots, 3)


def place(spans: list[Span], slots: int, width_px: float) -> tuple[Label, ...] | None:
    """Each span's text centred under it, moved inside the chart at its edges; None when
    two labels would come closer than LABEL_GAP_PX at `width_px`."""
    labels: list[Label] = []
    right_of_previous = -LABEL_GAP_PX
    for span in spans:
        text_px = len(span.text) * CHAR_PX
        centre = (span.first + span.end) / 2 / slots * width_px
        if text_px > width_px:
            return None
        if centre - text_px / 2 < 0:
            anchor, left, x = "start", 0.0, 0.0
        elif centre + text_px / 2 > width_px:
            anchor, left, x = "end", width_px - text_px, 100.0
        else:
            anchor, left, x = "middle", centre - text_px / 2, _pct((span.first + span.end) / 2, slots)
        if left < right_of_previous + LABEL_GAP_PX:
            return None
        right_of_previous = left + text_px
        labels.append(Label(x=x, anchor=anchor, text=span.text, tick=_pct(span.first, slots)))
    return tuple(labels)


def _day_spans(
    days: list[tuple[int, date]], slots: int, keep: Callable[[int, date], bool], weekday: bool
) -> list[Span]:
    """Spans of the kept days; the month is written on the first label and wherever it
    changes ("30 Nov", "1 Dec", "2", …), the weekday in front when asked ("Mon 30 Nov")."""
    spans: list[Span] = []
    month = None
    for index, (first, day) in enumerate(days):
        if not keep(index, day):
            continue
        end = days[index + 1][0] if index + 1 < len(days) else slots
        text = str(day.day)
        if (day.year, day.month) != month:
            text += f" {_MONTHS[day.month - 1]}"
            month = (day.year, day.month)
        if weekday:
            text = f"{_WEEKDAYS[day.weekday()]} {text}"
        spans.append(Span(first, end, text))
    return spans


def _month_spans(days: list[tuple[int, date]], slots: int, every: int) -> list[Span]:
    """One span per calendar month (every `every`-th from January), named "Dec", with the
    year on the first label and at a new year ("Dec 2026", "Jan 2027")."""
    spans: list[Span] = []
    year = None
    starts = [i for i, (_, day) in enumerate(days) if i == 0 or day.day == 1]
    for n, i in enumerate(starts):
        first, day = days[i]
        following = starts[n + 1] if n + 1 < len(starts) else len(days)
        if (day.month - 1) % every or (day.day != 1 and following - i < 7):
            continue  # not a month shown, or a few days before the first whole month
        end = days[following][0] if following < len(days) else slots
        text = _MONTHS[day.month - 1]
        if day.year != year:
            text += f" {day.year}"
            year = day.year
        spans.append(Span(first, end, text))
    return spans


def date_labels(days: list[tuple[int, date]], slots: int, width_px: float) -> tuple[Label, ...]:
    """Labels for the local days of a chart (`days`: the slot where each day starts, and
    its date, in order; `slots` in all), the most detailed that fit at `width_px`: every
    day with its weekday, every day, every other day, Mondays, every other Monday (up to
    MAX_WEEKLY_DAYS), months, quarters; at the least the first day alone."""
    if not days:
        return ()
    mondays = [i for i, (_, day) in enumerate(days) if day.weekday() == 0]
    options: list[list[Span]] = [
        _day_spans(days, slots, lambda i, d: True, weekday=True),
        _day_spans(days, slots, lambda i, d: True, weekday=False),
        _day_spans(days, slots, lambda i, d: i % 2 == 0, weekday=False),
        _day_spans(days, slots, lambda i, d: d.weekday() == 0, weekday=False),
        # Beyond a quarter, months read better than a crowd of Mondays.
        _day_spans(days, slots, lambda i, d: i in mondays[::2], weekday=False)
        if len(days) <= MAX_WEEKLY_DAYS
        else [],
        _month_spans(days, slots, 1),
        _month_spans(days, slots, 3),
    ]
    for spans in options:
        if not spans:
            continue
        placed = place(spans, slots, width_px)
        if placed is not None:
            return placed
    first = _day_spans(days, slots, lambda i, d: i == 0, weekday=False)
    return place(first, slots, width_px) or ()


def hour_labels(hours: list[tuple[int, datetime]], slots: int, width_px: float) -> tuple[Label, ...] | None:
    """Labels at every 3rd, 6th or 12th local hour (the first that fit at `width_px`), for
    an hourly chart of a few days (`hours`: each slot and its local start). Midnight is
    named by its date ("1 Dec"), other hours by their time ("06:00"). None when even every
    12th hour is too crowded."""
    for every in (3, 6, 12):
        spans = [
            Span(i, i, f"{local.day} {_MONTHS[local.month - 1]}" if local.hour == 0 else f"{local:%H}:00")
            for i, local in hours
            if local.hour % every == 0 and (i == 0 or hours[i - 1][1].hour != local.hour)
        ]
        placed = place(spans, slots, width_px) if spans else None
        if placed is not None:
            return placed
    return None


def range_text(first: date, last: date) -> str:
    """'3-6 Dec 2026', '24 Nov - 23 Dec 2026', '24 Dec 2026 - 23 Jan 2027', '3 Dec 2026'
    (both days included; each dash is an en dash)."""
    end = f"{last.day} {_MONTHS[last.month - 1]} {last.year}"
    if first == last:
        return end
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}–{end}"
    if first.year == last.year:
        return f"{first.day} {_MONTHS[first.month - 1]} – {end}"
    return f"{first.day} {_MONTHS[first.month - 1]} {first.year} – {end}"
