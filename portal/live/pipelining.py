"""Redis round trips of the live view, shared by concurrent requests.

Each request needs two round trips (the marker check, then the apply). With one pipeline per
request, redis-py's per-pipeline work (a pool checkout, timeouts, packing, parsing) was a
quarter of the web's CPU per single event (py-spy, issue 15). Instead, calls that arrive
while a pipeline is in flight wait and go together in the next one: group commit, as the
broker hand-off does (`portal.ingest.handoff`). Every caller still gets exactly its own
replies, or its own error.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from portal.infrastructure.redis_client import load_script

# One-key script calls `(script, key, *args)`, and plain commands `(name, *args)`.
ScriptCall = tuple[Any, ...]
Command = tuple[Any, ...]


@lru_cache(maxsize=8)
def script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()  # what Redis names a script by


# A script call or a command, as one pipeline sends it: (is a script call, the call).
Op = tuple[bool, tuple[Any, ...]]


def as_ops(calls: list[ScriptCall], commands: list[Command] | None = None) -> list[Op]:
    return [(True, call) for call in calls] + [(False, command) for command in commands or ()]


async def with_scripts_loaded(
    redis: Redis, ops: list[Op], send: Callable[[list[Op]], Awaitable[list[Any]]]
) -> list[Any]:
    """The replies of `ops` sent with `send` (one round trip), each script call by SHA.
    redis-py's Script objects check `SCRIPT EXISTS` before every pipeline, a second round
    trip; instead the scripts are loaded once, and again only when Redis answers that it
    lost them (a restart or SCRIPT FLUSH): then the calls it refused, and only those, are
    sent again. Errors are returned in their places."""
    replies = await send(ops)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        for script in {ops[i][1][0] for i in missing}:
            await load_script(redis, script)  # on every node of a cluster
        again = await send([ops[i] for i in missing])
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return replies


@dataclass(slots=True)
class _Submission:
    calls: list[ScriptCall]
    commands: list[Command]
    done: asyncio.Future[list[Any]]

    @property
    def size(self) -> int:
        return len(self.calls) + len(self.commands)


@dataclass(slots=True)
class SharedPipeline:
    """Runs submissions of script calls and commands, merging those that wait into one
    pipeline (at most one pipeline in flight per process and event loop)."""

    redis: Redis
    max_commands: int = 2000
    _pending: list[_Submission] = field(default_factory=list)
    _writing: bool = False
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)  # kept from the GC

    async def run(self, calls: list[ScriptCall], commands: list[Command] | None = None) -> list[Any]:
        """The replies of `calls` then `commands`, in order; raises the first error among
        them (nothing of another submission's fate reaches this one)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append(_Submission(calls, list(commands or ()), done))
        if not self._writing:
            self._writing = True
            task = loop.create_task(self._write())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await done

    def _take(self) -> list[_Submission]:
        taken: list[_Submission] = []
        size = 0
        while self._pending and (not taken or size + self._pending[0].size <= self.max_commands):
            submission = self._pending.pop(0)
            taken.append(submission)
            size += submission.size
        return taken

    async def _write(self) -> None:
        try:
            while self._pending:
                taken = self._take()
                try:
                    replies = await self._execute(taken)
                except Exception as exc:
                    for submission in taken:
                        if not submission.done.done():
                            submission.done.set_exception(exc)
                    continue
                offset = 0
                for submission in taken:
                    mine = replies[offset : offset + submission.size]
                    offset += submission.size
                    if submission.done.done():
                        continue
                    error = next((r for r in mine if isinstance(r, Exception)), None)
                    if error is not None:
                        submission.done.set_exception(error)
                    else:
                        submission.done.set_result(mine)
        finally:
            self._writing = False

    async def _execute(self, taken: list[_Submission]) -> list[Any]:
        """One pipelined round trip for every taken submission (scripts by SHA)."""
        ops: list[Op] = []
        for submission in taken:
            ops += as_ops(submission.calls, submission.commands)
        return await with_scripts_loaded(self.redis, ops, self._pipelined)

    async def _pipelined(self, ops: list[Op]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for is_script, (first, *rest) in ops:
                if is_script:
                    key, *args = rest
                    pipe.evalsha(script_sha(first), 1, key, *args)
                else:
                    pipe.execute_command(first, *rest)
            return list(await pipe.execute(raise_on_error=False))
