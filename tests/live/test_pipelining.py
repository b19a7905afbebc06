"""Concurrent requests share the live view's Redis round trips, and each still gets exactly
its own replies or its own error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from portal.live.pipelining import SharedPipeline

ECHO = "return {KEYS[1], ARGV[1]}"
FAIL = "return redis.error_reply('refused ' .. ARGV[1])"


async def test_concurrent_submissions_share_pipelines_and_get_their_own_replies(
    redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = SharedPipeline(redis)
    pipelines = 0
    real_execute = SharedPipeline._execute

    async def counted(self: SharedPipeline, taken: Any) -> list[Any]:
        nonlocal pipelines
        pipelines += 1
        return await real_execute(self, taken)

    monkeypatch.setattr(SharedPipeline, "_execute", counted)
    await redis.script_flush()  # the first pipeline finds the script missing and loads it
    answers = await asyncio.gather(
        *(
            shared.run([(ECHO, f"k{i}", f"a{i}"), (ECHO, f"k{i}", f"b{i}")], [("INCRBY", "counter", i)])
            for i in range(50)
        )
    )
    for i, answer in enumerate(answers):
        assert answer[:2] == [[f"k{i}", f"a{i}"], [f"k{i}", f"b{i}"]]
    # Commands ran once each, also those sent beside a script Redis had lost.
    assert sorted(answer[2] for answer in answers)[-1] == sum(range(50))
    assert await redis.get("counter") == str(sum(range(50)))
    assert pipelines <= 3  # one for the first caller, one for everyone who waited (+ none)


async def test_an_error_reaches_only_the_submission_it_belongs_to(redis: Redis) -> None:
    shared = SharedPipeline(redis)
    good, bad, other = await asyncio.gather(
        shared.run([(ECHO, "k", "fine")]),
        shared.run([(ECHO, "k", "first"), (FAIL, "k", "this one")]),
        shared.run([], [("SET", "plain", "1")]),
        return_exceptions=True,
    )
    assert good == [["k", "fine"]]
    assert isinstance(bad, ResponseError) and "refused this one" in str(bad)
    assert other == [True]
    # A pipeline that cannot run at all fails every caller in it, and the next one works.
    broken = SharedPipeline(Redis(host="127.0.0.1", port=1))
    with pytest.raises(RedisConnectionError):
        await broken.run([(ECHO, "k", "x")])
    assert await shared.run([(ECHO, "k", "again")]) == [["k", "again"]]
