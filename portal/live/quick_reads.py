"""Reads of the live view on one pipelined connection, for entitlement checks.

A check's own work is one HMGET; through redis-py it cost about a third of the web's CPU
per check (py-spy, bench/entitlements.py): a pool checkout and release, a retry wrapper,
timeouts per call, packing and parsing in Python. Here every read of a process goes down
one connection as soon as it is asked, replies come back in order (Redis answers a
connection's commands in the order sent), and hiredis packs and parses: a read costs a
future and its share of one write per turn of the event loop (the reads asked for in one
turn leave together at its end). Concurrent reads pipeline by themselves.

Failures are the ones redis-py raises, so callers treat both alike: a connection that
cannot be made or is lost fails every read in flight with redis' `ConnectionError`; a read
unanswered after `timeout_s` fails with redis' `TimeoutError`, with every read behind it (they
cannot be answered before it), and the connection is dropped; the next read connects
again. Only for a single server over TCP or a Unix socket without TLS (`supported`); the
others keep redis-py.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import hiredis
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection

from portal.live.pipelining import Command, Op, ScriptCall, as_ops, script_sha, with_scripts_loaded


def supported(redis: Redis) -> bool:
    """Whether `redis` is one server reached without TLS (a cluster has no single pool)."""
    pool = getattr(redis, "connection_pool", None)
    return pool is not None and pool.connection_class in (Connection, UnixDomainSocketConnection)


def _reply_error(message: str) -> redis_errors.ResponseError:
    """An error Redis answered, as redis-py names it where the callers tell them apart."""
    if message.startswith("NOSCRIPT"):
        return redis_errors.NoScriptError(message)
    return redis_errors.ResponseError(message)


@dataclass(slots=True)
class _Waiting:
    reply: asyncio.Future[Any]
    deadline: float


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: QuickReads) -> None:
        self.owner = owner
        self.reader = hiredis.Reader()
        self.waiting: deque[_Waiting] = deque()
        self.transport: asyncio.Transport | None = None
        # Commands asked for in this turn of the event loop, written together at its end.
        self.unsent: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, packed: bytes) -> None:
        """Queue `packed` for the write at the end of this turn of the loop: the reads of the
        checks that arrived together leave in one system call (a write to a socket cost as
        much web CPU as the rest of a read), and Valkey reads them in one."""
        if not self.unsent:
            asyncio.get_running_loop().call_soon(self.flush)
        self.unsent.append(packed)

    def flush(self) -> None:
        unsent, self.unsent = self.unsent, []
        if unsent and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(unsent))

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while self.waiting:
            reply = self.reader.gets()
            if reply is False:
                return
            waiting = self.waiting.popleft()
            if waiting.reply.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                waiting.reply.set_exception(_reply_error(str(reply)))
            else:
                waiting.reply.set_result(reply)

    def fail(self, exc: Exception) -> None:
        while self.waiting:
            reply = self.waiting.popleft().reply
            if not reply.done():
                reply.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(redis_errors.ConnectionError(f"connection to Redis lost: {exc or 'closed'}"))
        self.owner.lost(self)


class QuickReads:
    """Commands to the server `redis` is configured for, on one connection of their own."""

    def __init__(self, redis: Redis, *, timeout_s: float = 1.0) -> None:
        if not supported(redis):
            raise ValueError("quick reads need a single Redis server without TLS")
        self._redis = redis  # for loading scripts
        pool = redis.connection_pool
        self._tcp = pool.connection_class is Connection
        self._options = dict(pool.connection_kwargs)
        self._timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    async def run(self, calls: list[ScriptCall], commands: list[Command] | None = None) -> list[Any]:
        """What `SharedPipeline.run` answers (the replies of `calls` then `commands`, scripts
        by SHA and loaded again if Redis lost them; the first error raised), in one write."""
        if not calls and commands is not None and len(commands) == 1:  # one read: a check's
            return [await self.call(*commands[0])]
        replies = await with_scripts_loaded(self._redis, as_ops(calls, commands), self._send_ops)
        error = next((r for r in replies if isinstance(r, Exception)), None)
        if error is not None:
            raise error
        return replies

    async def _send_ops(self, ops: list[Op]) -> list[Any]:
        return await self.call_many(
            [
                ("EVALSHA", script_sha(script), 1, *args) if is_script else (script, *args)
                for is_script, (script, *args) in ops
            ]
        )

    async def call(self, *args: Any) -> Any:
        """The reply to one command (bytes, not decoded)."""
        return await self._send(self._protocol or await self._connect(), args)

    async def call_many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """The replies to `commands`, sent in one write; an error reply is returned in its
        place (a ResponseError), a lost connection or a timeout raised."""
        protocol = self._protocol or await self._connect()
        replies = [self._queue(protocol) for _ in commands]
        self._write(protocol, b"".join(hiredis.pack_command(args) for args in commands))
        answers: list[Any] = []
        for reply in replies:  # answered in order: no need to gather them
            try:
                answers.append(await reply)
            except redis_errors.ResponseError as exc:
                answers.append(exc)
            except BaseException:
                for rest in replies:  # failed together; retrieved, so none is logged as lost
                    if rest.done() and not rest.cancelled():
                        rest.exception()
                    else:
                        rest.cancel()
                raise
        return answers

    async def _send(self, protocol: _Protocol, args: tuple[Any, ...]) -> Any:
        reply = self._queue(protocol)
        self._write(protocol, hiredis.pack_command(args))
        return await reply

    def _queue(self, protocol: _Protocol) -> asyncio.Future[Any]:
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        protocol.waiting.append(_Waiting(reply, time.monotonic() + self._timeout_s))
        return reply

    def _write(self, protocol: _Protocol, packed: bytes) -> None:
        assert protocol.transport is not None
        protocol.send(packed)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(self._timeout_s, self._watch)

    def _watch(self) -> None:
        """Fail the reads waiting longer than the timeout (and the ones behind them)."""
        self._watchdog = None
        protocol = self._protocol
        if protocol is None or not protocol.waiting:
            return
        oldest = protocol.waiting[0].deadline
        if time.monotonic() >= oldest:
            protocol.fail(redis_errors.TimeoutError(f"Redis did not answer within {self._timeout_s:g} s"))
            self.lost(protocol)
            if protocol.transport is not None:
                protocol.transport.abort()
            return
        delay = max(0.01, oldest - time.monotonic())
        self._watchdog = asyncio.get_running_loop().call_later(delay, self._watch)

    def lost(self, protocol: _Protocol) -> None:
        if self._protocol is protocol:
            self._protocol = None

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done():
                self._connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options = self._options
        protocol: _Protocol | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                if self._tcp:
                    _, protocol = await loop.create_connection(
                        lambda: _Protocol(self), options.get("host", "localhost"), options.get("port", 6379)
                    )
                else:
                    _, protocol = await loop.create_unix_connection(lambda: _Protocol(self), options["path"])
                # Before any other read goes down the connection.
                if options.get("password"):
                    user = options.get("username")
                    auth = ("AUTH", user, options["password"]) if user else ("AUTH", options["password"])
                    await self._send(protocol, auth)
                if options.get("db"):
                    await self._send(protocol, ("SELECT", options["db"]))
        except (OSError, TimeoutError, redis_errors.RedisError) as exc:
            if protocol is not None and protocol.transport is not None:
                protocol.transport.abort()
            raise redis_errors.ConnectionError(f"cannot connect to Redis: {exc}") from exc
        self._protocol = protocol
        return protocol

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
