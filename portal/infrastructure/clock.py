"""The time the web process goes by: one clock, held in the process state, that a test
may set.

Handlers read the time once per request with `portal.now()` (`PortalState.now`) and hand
it to the services, which take `now` as an argument and never read a clock themselves.
Tests of a page or an API route run "as if" at a given instant by setting
`app.state.portal.clock` (see `tests/clock.py`); everything else keeps `system_clock`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

# Returns the current instant, timezone-aware, in UTC.
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def checked_now(clock: Clock) -> datetime:
    """What `clock` says, in UTC; raises ValueError for a naive instant (a clock without a
    zone would shift every period boundary by the server's offset)."""
    now = clock()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"the clock returned a naive datetime: {now!r}")
    return now.astimezone(UTC)
