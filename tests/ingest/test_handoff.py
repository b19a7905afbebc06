"""Coalesced hand-off to the broker (pure asyncio, with a recording enqueue)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from portal.ingest.handoff import BatchHandoff, holds


class Recorder:
    def __init__(self, *, fail: bool = False) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail = fail
        self.gate = asyncio.Event()

    async def __call__(self, message: dict[str, Any]) -> None:
        await self.gate.wait()  # the broker write takes a while
        if self.fail:
            raise ConnectionError("broker down")
        self.messages.append(message)


async def test_requests_arriving_during_a_write_share_the_next_message() -> None:
    broker = Recorder()
    handoff = BatchHandoff(broker, max_writers=1)
    first = asyncio.create_task(handoff.submit("a", 10, [["e1"]], []))
    await asyncio.sleep(0)
    later = [asyncio.create_task(handoff.submit(h, ms, [[f"e-{h}"]], [])) for h, ms in (("b", 12), ("c", 11))]
    await asyncio.sleep(0)
    broker.gate.set()
    await asyncio.gather(first, *later)
    assert [holds(m) for m in broker.messages] == [["a"], ["b", "c"]]
    assert broker.messages[1]["events"] == [["e-b"], ["e-c"]]
    assert broker.messages[1]["acceptedAt"] == 11


async def test_messages_stay_under_the_size_cap() -> None:
    broker = Recorder()
    broker.gate.set()
    handoff = BatchHandoff(broker, max_events=3, max_writers=1)
    await asyncio.gather(*(handoff.submit(str(i), i, [[i], [i]], []) for i in range(4)))
    assert sorted(len(m["events"]) for m in broker.messages) == [2, 2, 2, 2]


async def test_a_failed_write_fails_every_request_in_it() -> None:
    broker = Recorder(fail=True)
    handoff = BatchHandoff(broker)
    tasks = [asyncio.create_task(handoff.submit(str(i), i, [[i]], [])) for i in range(3)]
    await asyncio.sleep(0)
    broker.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert broker.messages == []


def test_holds_of_an_old_style_message() -> None:
    assert holds({"id": "x"}) == ["x"]
    with pytest.raises(KeyError):
        holds({})
