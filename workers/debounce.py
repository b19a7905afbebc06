"""One job per burst: the first request for a subject sends the job a little later, and the
requests until that job starts are covered by it (it deletes the subject's key first, so
work arriving after it starts asks again). The key expires by itself if the job is lost."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dramatiq import Actor
from redis.asyncio.client import Pipeline


async def send_debounced(
    redis: Any,
    actor: Actor[Any, Any],
    subjects: Sequence[tuple[str, Any]],
    *,
    delay_ms: int,
    note: Callable[[Pipeline], object] | None = None,
) -> None:
    """Send `actor(argument)` `delay_ms` later for each (key, argument) in `subjects` whose
    key was not held yet, holding it for ten delays. `note` adds commands of the caller's
    to the same round trip, before the keys."""
    delay_ms = max(delay_ms, 1)
    async with redis.pipeline(transaction=False) as pipe:
        if note is not None:
            note(pipe)
        noted = len(pipe)
        for key, _ in subjects:
            pipe.set(key, "1", nx=True, px=delay_ms * 10)
        claimed = (await pipe.execute())[noted:]
    for (_, argument), first in zip(subjects, claimed, strict=True):
        if first:
            actor.send_with_options(args=(argument,), delay=delay_ms)
