"""Which notices a rule owes (pure): levels, crossings, recoveries, forecasts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from alerts.thresholds import Level, crossing_time, notices_due, thresholds

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 11, tzinfo=UTC)  # a third of the period


def d(value: str) -> Decimal:
    return Decimal(value)


def due(
    value: str,
    levels: list[Level],
    fired: set[tuple[Decimal, str]] | None = None,
    *,
    recovery: bool = False,
    forecast: bool = False,
    grows: bool = True,
    now: datetime = NOW,
) -> list[tuple[str, str, datetime | None]]:
    found = notices_due(
        d(value),
        levels,
        fired=fired or set(),
        notify_recovery=recovery,  # type: ignore[arg-type]
        notify_forecast=forecast,
        grows=grows,
        start=START,
        end=END,
        now=now,
        min_forecast_elapsed_s=3600,
    )
    return [(n.kind, format(n.level.level, "f"), n.forecast_at) for n in found]


BUDGET = thresholds([d("50"), d("80"), d("100")], "budget", d("10000"))


@pytest.mark.parametrize(
    ("levels", "basis", "base", "expected"),
    [
        ([d("100"), d("50"), d("80")], "budget", d("10000"), ["5000", "8000", "10000"]),
        ([d("1000"), d("250")], "absolute", None, ["250", "1000"]),
        ([d("100")], "included", d("0"), []),  # nothing included: no percentage to measure
        ([d("100")], "commitment", None, []),
        ([d("12.5")], "included", d("2000"), ["250"]),
    ],
)
def test_thresholds_are_levels_in_the_rules_unit(
    levels: list[Decimal], basis: str, base: Decimal | None, expected: list[str]
) -> None:
    assert [format(lv.threshold.normalize(), "f") for lv in thresholds(levels, basis, base)] == expected  # type: ignore[arg-type]


def test_one_batch_across_three_levels_owes_three_crossings() -> None:
    assert due("10000", BUDGET) == [
        ("crossing", "50", None),
        ("crossing", "80", None),
        ("crossing", "100", None),
    ]


def test_what_already_fired_is_not_owed_again() -> None:
    fired = {(d("50"), "crossing"), (d("80"), "crossing")}
    assert due("9000", BUDGET, fired) == []
    assert due("10000", BUDGET, fired) == [("crossing", "100", None)]


def test_a_level_is_crossed_at_its_threshold_exactly() -> None:
    assert due("4999.999", BUDGET) == []
    assert due("5000", BUDGET) == [("crossing", "50", None)]


def test_recovery_once_usage_falls_back_below_a_crossed_level() -> None:
    fired = {(d("50"), "crossing"), (d("80"), "crossing")}
    assert due("7000", BUDGET, fired, recovery=True) == [("recovery", "80", None)]
    assert due("7000", BUDGET, fired | {(d("80"), "recovery")}, recovery=True) == []
    assert due("7000", BUDGET, fired, recovery=False) == []


def test_forecast_says_when_a_steady_trend_reaches_a_level() -> None:
    # 3,000 in the first 10 days: 5,000 is reached on day 16 2/3, 8,000 on day 26 2/3,
    # and 10,000 (day 33 1/3) not within this 30-day period.
    assert due("3000", BUDGET, forecast=True) == [
        ("forecast", "50", START + timedelta(days=10) * (5000 / 3000)),
        ("forecast", "80", START + timedelta(days=10) * (8000 / 3000)),
    ]


def test_no_forecast_for_usage_that_does_not_grow_or_too_early() -> None:
    assert due("3000", BUDGET, forecast=True, grows=False) == []
    assert due("3000", BUDGET, forecast=True, now=START + timedelta(minutes=30)) == []
    assert due("3000", BUDGET, {(d("50"), "forecast")}, forecast=True)[0][1] == "80"


def test_crossing_time_needs_a_pace() -> None:
    assert crossing_time(d("0"), d("10"), start=START, now=NOW) is None
    assert crossing_time(d("5"), d("10"), start=START, now=NOW) == START + timedelta(days=20)
