"""Usage anomalies: each settled hour of a customer's meter against its own history (pure).

The expected value of an hour is the median of the same hour on the same weekday in the
previous weeks (seasonality by hour of day and weekday) when at least three such weeks
exist, else of the same hour on the previous days, else no judgement. Medians ignore the
odd outlier in the history, so a past spike does not hide the next one. Three kinds:

- `spike`: at least `spike_factor` times the expected value, and above every value of the
  history (steady growth never is: it stays within a small factor of last weeks);
- `drop_to_zero`: nothing in an hour that had usage in every one of its history samples;
- `silence`: `silence_hours` or more such hours in a row (reported once, as a span).

Hours that are always quiet (nights, weekends) have zeros in their history, so a zero there
is normal and never flagged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from statistics import median
from typing import Literal

AnomalyKind = Literal["spike", "drop_to_zero", "silence"]
HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: AnomalyKind
    start: datetime
    end: datetime
    value: Decimal
    expected: Decimal


@dataclass(frozen=True, slots=True)
class Sensitivity:
    spike_factor: Decimal = Decimal(3)
    min_weeks: int = 3
    max_weeks: int = 6
    min_days: int = 5
    silence_hours: int = 3


def history(values: Mapping[datetime, Decimal], hour: datetime, s: Sensitivity) -> list[Decimal]:
    """The same hour in earlier weeks, or failing that on earlier days (missing = 0)."""
    weeks = [hour - timedelta(weeks=w) for w in range(1, s.max_weeks + 1)]
    known = [t for t in weeks if _covered(values, t)]
    if len(known) >= s.min_weeks:
        return [values.get(t, Decimal(0)) for t in known]
    days = [hour - timedelta(days=d) for d in range(1, 8)]
    known = [t for t in days if _covered(values, t)]
    if len(known) >= s.min_days:
        return [values.get(t, Decimal(0)) for t in known]
    return []


def _covered(values: Mapping[datetime, Decimal], at: datetime) -> bool:
    # An hour counts as history once the series reaches back that far.
    return at >= min(values) if values else False


def hourly_anomalies(values: Mapping[datetime, Decimal], hours: Sequence[datetime],
                     sensitivity: Sensitivity | None = None) -> list[Anomaly]:
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
        past = history(values, hour, s)
        value = values.get(hour, Decimal(0))
        if not past:
            close_run()
            continue
        expected = Decimal(median(past))
        if value == 0 and all(p > 0 for p in past):
            zero_run.append((hour, expected))
            continue
        close_run()
        if expected > 0 and value >= expected * s.spike_factor and value > max(past):
            found.append(Anomaly("spike", hour, hour + HOUR, value, expected))
    close_run()
    return found
