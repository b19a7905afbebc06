"""Running the web app "as if" at a given instant (`portal/infrastructure/clock.py`), and the instants where
days and periods turn over.

Tests that store their data straight in Postgres run at fixed instants (`BOUNDARIES`):
the same every run, and far enough from today that a handler reading the wall clock
instead of the injected one shows up as a failure. Tests that send events through ingest,
whose lateness window is measured by the wall clock, run at the same wall times in the
recent past (`recent_boundaries()`, or `recent_boundaries(tz)` for all three in one zone).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from portal.state import PortalState


class StoppedClock:
    """A clock that shows `now` until a test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def set_clock(client: Any, at: datetime) -> StoppedClock:
    """Make the app behind `client` (an AsyncTestClient) read `at` as now; returns the clock."""
    portal: PortalState = client.app.state.portal
    clock = StoppedClock(at)
    portal.clock = clock
    return clock


@dataclass(frozen=True, slots=True)
class Boundary:
    """An instant a second away from a turn of day or billing period, and the zone of the
    customer whose day or period turns."""

    at: datetime
    tz: str

    def local(self) -> datetime:
        return self.at.astimezone(ZoneInfo(self.tz))


# A second before and after midnight UTC, and a second before a month ends in India
# (+05:30: 18:29:59 UTC, another day in UTC).
BOUNDARIES = [
    pytest.param(Boundary(datetime(2026, 3, 10, 23, 59, 59, tzinfo=UTC), "UTC"), id="23:59:59-UTC"),
    pytest.param(Boundary(datetime(2026, 3, 11, 0, 0, 1, tzinfo=UTC), "UTC"), id="00:00:01-UTC"),
    pytest.param(
        Boundary(datetime(2026, 4, 30, 23, 59, 59, tzinfo=ZoneInfo("Asia/Kolkata")), "Asia/Kolkata"),
        id="month-end-Asia/Kolkata",
    ),
]


def _latest(tz: str, day: date, wall: time, before: datetime) -> datetime:
    """The latest instant at local wall time `wall` on `day` or earlier, before `before`."""
    zone = ZoneInfo(tz)
    while (at := datetime.combine(day, wall, tzinfo=zone)) >= before:
        day -= timedelta(days=1)
    return at.astimezone(UTC)


def recent_boundaries(tz: str | None = None, now: datetime | None = None) -> list[Any]:
    """The BOUNDARIES' wall times, at their latest occurrence before `now` (the wall clock):
    within ingest's lateness window, and never in the future. With `tz`, all three are wall
    times in that zone (for a test whose customer lives there)."""
    now = now or datetime.now(UTC)
    day_zone, month_zone = tz or "UTC", tz or "Asia/Kolkata"
    today = now.astimezone(ZoneInfo(day_zone)).date()
    last_month_end = now.astimezone(ZoneInfo(month_zone)).date().replace(day=1) - timedelta(days=1)
    return [
        pytest.param(
            Boundary(_latest(day_zone, today, time(23, 59, 59), now), day_zone), id=f"23:59:59-{day_zone}"
        ),
        pytest.param(
            Boundary(_latest(day_zone, today, time(0, 0, 1), now), day_zone), id=f"00:00:01-{day_zone}"
        ),
        pytest.param(
            Boundary(_latest(month_zone, last_month_end, time(23, 59, 59), now), month_zone),
            id=f"month-end-{month_zone}",
        ),
    ]
