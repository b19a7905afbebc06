"""Live key names and lifetimes (pure): keys outlive every read (the seed's 2-hour TTL
lost usage older than two hours)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from portal.infrastructure.periods import period_for, previous_period
from portal.live import redis_keys as keys


def test_keys_of_one_customer_share_a_hash_tag() -> None:
    tagged = [
        keys.hour_key("acme", "api_calls", 3600),
        keys.unique_key("acme", "u", 0, "="),
        keys.index_key("acme"),
        keys.marker_key("acme", 123),
        keys.applied_key("acme", "batch-1"),
        keys.corrected_key("acme", "message-1"),
        keys.scratch_key("acme", "x"),
    ]
    assert all("{acme}" in key for key in tagged)


def test_an_hour_key_lives_through_the_current_and_previous_period_plus_lateness() -> None:
    lateness = timedelta(days=35)
    # The worst case: the first hour of a 31-day previous period, read at the very end of
    # a 31-day current period, still receiving late events for `lateness` after that.
    now = datetime(2026, 8, 31, 23, 59, tzinfo=UTC)
    current = period_for(now, "Pacific/Kiritimati")  # +14:00, the far edge of the zones
    previous = previous_period(current, "Pacific/Kiritimati")
    first_hour = int(previous.start.timestamp())
    expires = keys.hour_key_expires_at(first_hour, lateness)
    assert expires > current.end.timestamp()
    assert expires - first_hour >= (current.end - previous.start + lateness).total_seconds()


def test_a_marker_window_is_read_until_the_next_one_ends() -> None:
    window = timedelta(minutes=30)
    opened = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    slot = keys.marker_slot(int(opened.timestamp() * 1000), window)
    assert keys.marker_slot(int((opened + window).timestamp() * 1000) - 1, window) == slot
    assert keys.marker_slot(int((opened + window).timestamp() * 1000), window) == slot + 1
    # Lookups in the next window still read this one; none after it does.
    assert keys.markers_expire_at(slot, window) == int((opened + 2 * window).timestamp())


def test_group_fields() -> None:
    assert keys.group_field("") == keys.TOTAL_FIELD
    assert keys.group_field('{"region":"eu"}') == 'g|{"region":"eu"}'
