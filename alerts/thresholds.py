"""Which notices a rule owes now: pure functions of usage, levels and what already fired.

A level is what the rule was given (80 for 80%, or 1000 calls); its threshold is that
level in the rule's own unit (usage, or money for spend). A level *crosses* once usage
is at or above its threshold; it *recovers* once usage is back below it after crossing
(e.g. a credit lowered the spend); a *forecast* says when the trend so far reaches it,
if that is before the period ends. Each (level, kind) is owed at most once per period:
`fired` is what the database already holds, and its unique constraint is the real guard.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

Basis = Literal["absolute", "included", "commitment", "budget", "limit"]
NoticeKind = Literal["crossing", "recovery", "forecast"]
HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class Level:
    level: Decimal  # as configured: a percentage, or an amount when the basis is absolute
    threshold: Decimal  # in the rule's unit


@dataclass(frozen=True, slots=True)
class Due:
    kind: NoticeKind
    level: Level
    forecast_at: datetime | None = None


def thresholds(levels: Iterable[Decimal], basis: Basis, base: Decimal | None) -> list[Level]:
    """Each level with its threshold, lowest first. A percentage basis needs its base
    (the included quantity, the commitment or the budget); with no base (e.g. a plan with
    no included quantity) there is nothing to measure against, so no levels."""
    if basis == "absolute":
        return sorted((Level(level, level) for level in levels), key=lambda lv: lv.threshold)
    if base is None or base <= 0:
        return []
    return sorted((Level(level, base * level / HUNDRED) for level in levels), key=lambda lv: lv.threshold)


def crossing_time(value: Decimal, threshold: Decimal, *, start: datetime, now: datetime) -> datetime | None:
    """When usage reaches `threshold` if it keeps growing at its pace since `start`
    (None when there is no pace yet)."""
    if value <= 0 or now <= start:
        return None
    return start + (now - start) * float(threshold / value)


def notices_due(
    value: Decimal,
    levels: Sequence[Level],
    *,
    fired: set[tuple[Decimal, NoticeKind]],
    notify_recovery: bool,
    notify_forecast: bool,
    grows: bool,
    start: datetime,
    end: datetime,
    now: datetime,
    min_forecast_elapsed_s: float,
) -> list[Due]:
    """The notices owed for a period, given its usage `value` now (see module docstring).

    Forecasts are only made for usage that grows with time (sums, counts, spend) and once
    `min_forecast_elapsed_s` of the period has passed, so a burst in its first minutes
    does not predict the month."""
    due: list[Due] = []
    for level in levels:
        crossed = (level.level, "crossing") in fired
        if value >= level.threshold:
            if not crossed:
                due.append(Due("crossing", level))
            continue
        if crossed:
            if notify_recovery and (level.level, "recovery") not in fired:
                due.append(Due("recovery", level))
            continue
        if (
            notify_forecast
            and grows
            and (level.level, "forecast") not in fired
            and (now - start).total_seconds() >= min_forecast_elapsed_s
        ):
            at = crossing_time(value, level.threshold, start=start, now=now)
            if at is not None and at < end:
                due.append(Due("forecast", level, at))
    return due
