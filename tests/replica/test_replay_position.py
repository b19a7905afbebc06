"""Where a replica stands against the marks a web process took (pure: no servers)."""

from __future__ import annotations

import pytest

from portal.infrastructure.read_replica import Mark, Replay, parse_lsn, replay_position

MARKS = [Mark(1_000, 100, 10.0), Mark(2_000, 200, 11.0), Mark(3_000, 300, 12.5)]


@pytest.mark.parametrize(
    ("replayed", "now", "expected"),
    [
        # Every mark replayed: complete through the newest watermark, no lag (however old).
        (300, 99.0, Replay(3_000, 0.0)),
        (10_000, 13.0, Replay(3_000, 0.0)),
        # Between marks: the newest one at or below, lag from the oldest one above.
        (250, 13.0, Replay(2_000, 0.5)),
        (200, 13.0, Replay(2_000, 0.5)),
        (199, 13.0, Replay(1_000, 2.0)),
        # Behind every mark: no completeness known.
        (99, 13.0, Replay(None, 3.0)),
        # A clock read before the mark was taken never gives a negative lag.
        (99, 9.0, Replay(None, 0.0)),
    ],
)
def test_replay_position(replayed: int, now: float, expected: Replay) -> None:
    assert replay_position(MARKS, replayed, now) == expected


def test_no_marks_means_no_known_completeness() -> None:
    assert replay_position([], 500, 1.0) == Replay(None, 0.0)


@pytest.mark.parametrize(
    ("lsn", "value"),
    [("0/0", 0), ("0/3020E10", 0x3020E10), ("16/B374D848", (0x16 << 32) | 0xB374D848)],
)
def test_parse_lsn(lsn: str, value: int) -> None:
    assert parse_lsn(lsn) == value
