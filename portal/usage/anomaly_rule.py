"""Usage anomalies: each settled hour, and each settled day, of a customer's meter against
its own history (pure).

Hours: the expected value of an hour is the median of the same hour on the same weekday in
the previous weeks (seasonality by hour of day and weekday) when at least three such weeks
exist, else of the same hour on the previous days, else no judgement.

Days (the customer's local calendar days): the same rule one level up, the same weekday in
the previous weeks when at least three exist, else the previous days. A day catches what
no single hour shows (usage spread over the whole day at ten times the usual rate, in
hours that each stay below the hourly spike factor against their own busy history).

Medians ignore the odd outlier in the history, so a past spike does not hide the next one.
Kinds:

- `spike`: at least `spike_factor` times the expected value, and above every value of the
  history (steady growth never is: it stays within a small factor of last weeks);
- `drop_to_zero`: nothing in an hour (day) that had usage in every one of its history samples;
- `silence`: `silence_hours` or more such hours in a row (hours only; reported once, as a
  span). Consecutive empty days are each a `drop_to_zero`.

Hours (days) that are always quiet (nights, weekends) have zeros in their history, so a
zero there is normal and never flagged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from statistics import median
from typing import Literal, TypeVar

from portal.infrastructure.periods import local_midnight

AnomalyKind = Literal["spike", "drop_to_zero", "silence"]
Granularity = Literal["hour", "day"]
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# A point in a series: an hour start (datetime) or a local calendar day (date).
T = TypeVar("T", date, datetime)


@dataclass(frozen=True, slots=True)
class Anomaly:
    """[start, end) is the hour, the span of silent hours, or the local day (UTC instants)."""

    kind: AnomalyKind
    start: datetime
    end: datetime
    value: Decimal
    expected: Decimal
    granularity: Granularity = "hour"


@dataclass(frozen=True, slots=True)
class Sensitivity:
    spike_factor: Decimal = Decimal(3)
    min_weeks: int = 3
    max_weeks: int = 6
    min_days: int = 5
    silence_hours: int = 3


def history(values: Mapping[T, Decimal], at: T, s: Sensitivity, known_from: T | None = None) -> list[Decimal]:
    """The same hour (day) in earlier weeks, or failing that the previous days (missing = 0).

    Only points from `known_from` on count (default: the series' first key): before the
    meter's first usage the history is unknown, not zero."""
    start = known_from if known_from is not None else (min(values) if values else None)
    if start is None:
        return []
    weeks = [at - timedelta(weeks=w) for w in range(1, s.max_weeks + 1)]
    known = [t for t in weeks if t >= start]
    if len(known) >= s.min_weeks:
        return [values.get(t, Decimal(0)) for t in known]
    days = [at - timedelta(days=d) for d in range(1, 8)]
    known = [t for t in days if t >= start]
    if len(known) >= s.min_days:
        return [values.get(t, Decimal(0)) for t in known]
    return []


def _judge(value: Decimal, past: list[Decimal], s: Sensitivity) -> tuple[AnomalyKind, Decimal] | None:
    """The one judgement both granularities share: (kind, expected) or None (normal)."""
    expected = Decimal(median(past))
    if value == 0 and all(p > 0 for p in past):
        return "drop_to_zero", expected
    if expected > 0 and value >= expected * s.spike_factor and value > max(past):
        return "spike", expected
    return None


def hourly_anomalies(
    values: Mapping[datetime, Decimal],
    hours: Sequence[datetime],
    sensitivity: Sensitivity | None = None,
    *,
    known_from: datetime | None = None,
) -> list[Anomaly]:
    """Anomalies among `hours` (settled hour starts, in order) of a series that maps hour
    starts to usage (hours without usage may be absent)."""
    s = sensitivity or Sensitivity()
    found: list[Anomaly] = []
    zero_run: list[tuple[datetime, Decimal]] = []

    def close_run() -> None:
        if not zero_run:
            return
        start, expected = zero_run[0][0], sum((e for _, e in zero_run), Decimal(0))
        end = zero_run[-1][0] + HOUR
        if len(zero_run) >= s.silence_hours:
            found.append(Anomaly("silence", start, end, Decimal(0), expected))
        else:
            found.extend(Anomaly("drop_to_zero", t, t + HOUR, Decimal(0), e) for t, e in zero_run)
        zero_run.clear()

    for hour in hours:
        past = history(values, hour, s, known_from)
        value = values.get(hour, Decimal(0))
        verdict = _judge(value, past, s) if past else None
        if verdict is not None and verdict[0] == "drop_to_zero":
            zero_run.append((hour, verdict[1]))
            continue
        close_run()
        if verdict is not None:
            found.append(Anomaly(verdict[0], hour, hour + HOUR, value, verdict[1]))
    close_run()
    return found


def daily_anomalies(
    values: Mapping[date, Decimal],
    days: Sequence[date],
    tz_name: str,
    sensitivity: Sensitivity | None = None,
    *,
    known_from: date | None = None,
) -> list[Anomaly]:
    """Anomalies among `days` (settled local days, in order) of a series that maps the
    customer's local days to usage (days without usage may be absent). Each anomaly spans
    the day's local midnights in `tz_name` (23 or 25 hours across a DST change)."""
    s = sensitivity or Sensitivity()
    found: list[Anomaly] = []
    for day in days:
        past = history(values, day, s, known_from)
        value = values.get(day, Decimal(0))
        verdict = _judge(value, past, s) if past else None
        if verdict is not None:
            found.append(
                Anomaly(
                    verdict[0],
                    local_midnight(day, tz_name),
                    local_midnight(day + DAY, tz_name),
                    value,
                    verdict[1],
                    "day",
                )
            )
    return found
