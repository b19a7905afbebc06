"""Role heartbeats: which web, worker and scheduler processes are alive, and when each was
last seen, for `/readyz` and `usage-portal status`.

Every process writes a heartbeat to Redis every `interval` seconds: its role, host, pid and
start time under `ops:{roles}`, the time of the beat (Redis's clock, so machines with
skewed clocks agree) under `ops:{roles}:seen`. A process is alive while its last beat is
younger than `ALIVE_BEATS` of its own intervals; one that stops cleanly says so in a last
beat. Processes silent for `keys.ROLES_FORGET_AFTER` are dropped by the next beat of anyone.

Writing a beat never raises: when Redis is down or loading, the beat is skipped (the store
problem is reported on its own) and the next one tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from redis.asyncio import Redis as AsyncRedis

from portal.infrastructure.periods import to_datetime
from portal.infrastructure.queues import QUEUES
from portal.live import redis_keys as keys

log = logging.getLogger(__name__)

ROLES = ("web", "worker", "scheduler")
# Roles /readyz watches: the web answering it is alive by definition.
BACKGROUND_ROLES = ("worker", "scheduler")
# A process is alive while its last beat is younger than this many of its intervals.
ALIVE_BEATS = 3

# Record the beat on the server's clock; drop processes silent for ARGV[3] ms.
_BEAT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[1])
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
for _, field in ipairs(gone) do
    redis.call('HDEL', KEYS[1], field)
    redis.call('ZREM', KEYS[2], field)
end
return now
"""


# KEYS[1], KEYS[2]: the roles hash and its seen ZSET (one hash tag). Returns {TIME seconds,
# microseconds, HGETALL of the hash, ZRANGE WITHSCORES of the ZSET}: read on the node that
# holds both, in one round trip (a cluster pipeline cannot carry TIME, which names no key).
_READ_SCRIPT = """
local t = redis.call('TIME')
return {t[1], t[2], redis.call('HGETALL', KEYS[1]), redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')}
"""


@dataclass(frozen=True, slots=True)
class Identity:
    """One process of a role."""

    role: str
    host: str
    pid: int
    started_at: datetime
    # The queues a worker process consumes (empty: every queue, or not a worker), so status
    # can name a queue no live worker reads.
    queues: tuple[str, ...] = ()

    @classmethod
    def of_this_process(cls, role: str, queues: tuple[str, ...] = ()) -> Identity:
        return cls(role, socket.gethostname(), os.getpid(), to_datetime(time.time()), queues)

    @property
    def field(self) -> str:
        return f"{self.role}|{self.host}|{self.pid}"

    def payload(self, *, every_s: float, stopped: bool) -> str:
        return json.dumps(
            {
                "role": self.role,
                "host": self.host,
                "pid": self.pid,
                "startedAt": self.started_at.timestamp(),
                "every": every_s,
                "stopped": stopped,
                "queues": list(self.queues),
            }
        )


def _beat_args(identity: Identity, every_s: float, stopped: bool) -> list[Any]:
    forget_ms = int(keys.ROLES_FORGET_AFTER.total_seconds() * 1000)
    return [identity.field, identity.payload(every_s=every_s, stopped=stopped), forget_ms]


def beat(client: redis.Redis, identity: Identity, *, every_s: float, stopped: bool = False) -> bool:
    """Write one heartbeat (synchronous client). False, and nothing raised, if Redis
    could not take it."""
    try:
        client.eval(
            _BEAT_SCRIPT, 2, keys.ROLES_KEY, keys.ROLES_SEEN_KEY, *_beat_args(identity, every_s, stopped)
        )
    except Exception as exc:  # Redis down or loading: reported elsewhere, try next time
        log.debug("heartbeat of %s not written: %s", identity.field, type(exc).__name__)
        return False
    return True


async def beat_async(
    client: AsyncRedis, identity: Identity, *, every_s: float, stopped: bool = False
) -> bool:
    """`beat` for an asyncio client."""
    try:
        await client.eval(
            _BEAT_SCRIPT, 2, keys.ROLES_KEY, keys.ROLES_SEEN_KEY, *_beat_args(identity, every_s, stopped)
        )
    except Exception as exc:
        log.debug("heartbeat of %s not written: %s", identity.field, type(exc).__name__)
        return False
    return True


class HeartbeatThread(threading.Thread):
    """Beats for a synchronous process (a worker process, the scheduler) until `stop()`,
    which writes a last beat saying the process stopped."""

    def __init__(self, client: redis.Redis, identity: Identity, every_s: float) -> None:
        super().__init__(name=f"heartbeat-{identity.role}", daemon=True)
        self.client = client
        self.identity = identity
        self.every_s = every_s  # Settings.heartbeat_seconds
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            beat(self.client, self.identity, every_s=self.every_s)
            self._stopping.wait(self.every_s)

    def stop(self) -> None:
        self._stopping.set()
        beat(self.client, self.identity, every_s=self.every_s, stopped=True)


class HeartbeatTask:
    """Beats for an asyncio process (a web process) until `stop()`."""

    def __init__(self, client: AsyncRedis, identity: Identity, every_s: float) -> None:
        self.client = client
        self.identity = identity
        self.every_s = every_s  # Settings.heartbeat_seconds
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while not self._stopping:
            await self._beat(stopped=False)
            await asyncio.sleep(self.every_s)

    async def _beat(self, *, stopped: bool) -> None:
        # A Redis that does not answer must not hold the loop's shutdown nor pile up beats.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                beat_async(self.client, self.identity, every_s=self.every_s, stopped=stopped),
                max(self.every_s, 1.0),
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        task.cancel()
        # Python 3.11's wait_for can swallow a cancellation that lands as its inner call
        # finishes, and the loop then sleeps on: cancel again until the task ends (bounded;
        # the `_stopping` flag ends the loop at its next turn anyway).
        for _ in range(50):
            done, _pending = await asyncio.wait({task}, timeout=0.1)
            if done:
                break
            task.cancel()
        await self._beat(stopped=True)


@dataclass(frozen=True, slots=True)
class RoleProcess:
    """What the heartbeats say about one process."""

    role: str
    host: str
    pid: int
    started_at: datetime
    seen_at: datetime  # its last beat, by Redis's clock
    every_s: float
    stopped: bool  # it said so in its last beat
    queues: tuple[str, ...] = ()  # a worker's queues; empty: every queue

    def consumes(self, queue: str) -> bool:
        return not self.queues or queue in self.queues

    def alive(self, now: datetime) -> bool:
        return not self.stopped and (now - self.seen_at).total_seconds() < ALIVE_BEATS * self.every_s

    def state(self, now: datetime) -> str:
        return "alive" if self.alive(now) else "stopped" if self.stopped else "silent"

    def describe(self, now: datetime) -> str:
        ago = max(int((now - self.seen_at).total_seconds()), 0)
        return (
            f"{self.role} pid {self.pid} on {self.host}: {self.state(now)}, last seen "
            f"{self.seen_at.isoformat(timespec='seconds')} ({ago} s ago), started "
            f"{self.started_at.isoformat(timespec='seconds')}"
        )


@dataclass(frozen=True, slots=True)
class RolesSeen:
    """Every process seen in the last `keys.ROLES_FORGET_AFTER`, as of `now` (Redis clock)."""

    now: datetime
    processes: tuple[RoleProcess, ...]

    def of(self, role: str) -> list[RoleProcess]:
        return [p for p in self.processes if p.role == role]

    def alive(self, role: str) -> list[RoleProcess]:
        return [p for p in self.of(role) if p.alive(self.now)]

    def queue_problem(self) -> str | None:
        """A sentence naming the queues no live worker consumes while some worker is alive
        (e.g. the notices worker of `up` dead beside the events worker: alerts would wait
        unseen); None when every queue has a reader, or no worker is alive at all (the
        worker role's own problem says that)."""
        workers = self.alive("worker")
        unread = [q for q in QUEUES if workers and not any(w.consumes(q) for w in workers)]
        if not unread:
            return None
        return f"no worker alive consumes the queue(s) {', '.join(unread)}; their messages wait"

    def last_seen(self, role: str) -> RoleProcess | None:
        seen = self.of(role)
        return max(seen, key=lambda p: p.seen_at) if seen else None

    def problem(self, role: str) -> str | None:
        """A sentence when processes of `role` were seen and none is alive now; None when
        one is alive, or none was ever seen (a deployment may run that role elsewhere
        later; `usage-portal status` says "none seen")."""
        last = self.last_seen(role)
        if last is None or self.alive(role):
            return None
        return f"no {role} alive; last: {last.describe(self.now)}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_roles(client: AsyncRedis) -> RolesSeen:
    """The heartbeats recorded in Redis. Raises what Redis raises (the caller reports the
    store as down)."""
    return _roles_from(await client.eval(_READ_SCRIPT, 2, keys.ROLES_KEY, keys.ROLES_SEEN_KEY))


def read_roles_sync(client: redis.Redis) -> RolesSeen:
    """`read_roles` for a synchronous client (`up`'s supervisor)."""
    return _roles_from(client.eval(_READ_SCRIPT, 2, keys.ROLES_KEY, keys.ROLES_SEEN_KEY))


def _roles_from(reply: Any) -> RolesSeen:
    seconds, micros, flat_payloads, flat_seen = reply
    now = to_datetime(int(seconds) + int(micros) / 1_000_000)
    seen_ms = {
        _text(field): float(score) for field, score in zip(flat_seen[::2], flat_seen[1::2], strict=True)
    }
    processes = []
    for field, raw in zip(flat_payloads[::2], flat_payloads[1::2], strict=True):
        at = seen_ms.get(_text(field))
        if at is None:
            continue
        try:
            got = json.loads(_text(raw))
            processes.append(
                RoleProcess(
                    str(got["role"]),
                    str(got["host"]),
                    int(got["pid"]),
                    to_datetime(float(got["startedAt"])),
                    to_datetime(at / 1000),
                    float(got["every"]),
                    bool(got["stopped"]),
                    tuple(str(q) for q in got.get("queues") or ()),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue  # a record of another version: ignore it rather than fail the report
    processes.sort(key=lambda p: (ROLES.index(p.role) if p.role in ROLES else len(ROLES), p.host, p.pid))
    return RolesSeen(now, tuple(processes))
