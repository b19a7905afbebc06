"""An event-driven job that meets a store outage retries with one warning line, not a
traceback per attempt (workers/outages.py `retried_quietly`); other errors fail as before."""

from __future__ import annotations

import logging

import dramatiq
import pytest
import redis.exceptions

from workers.outages import retried_quietly


async def test_an_outage_retries_the_message_with_one_line_and_a_bug_still_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @retried_quietly
    async def evaluate(kind: str) -> None:
        if kind == "outage":
            raise redis.exceptions.TimeoutError("Timeout reading from 127.0.0.1:6390")
        raise KeyError("a bug")

    with caplog.at_level(logging.WARNING, logger="workers.outages"), pytest.raises(dramatiq.Retry):
        await evaluate("outage")
    assert [r.getMessage() for r in caplog.records] == [
        "evaluate retrying: a store is unavailable (TimeoutError)"
    ]
    assert not any(r.exc_info for r in caplog.records)
    with pytest.raises(KeyError):
        await evaluate("bug")
