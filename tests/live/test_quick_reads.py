"""QuickReads (portal/live/quick_reads.py) against the real Redis: each caller gets its own
reply however many are in flight, and failures are redis-py's, within the timeout."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from portal.infrastructure.redis_client import async_client
from portal.infrastructure.settings import Settings
from portal.live.quick_reads import QuickReads, supported


@pytest.fixture
async def quick(settings: Settings) -> AsyncIterator[QuickReads]:
    client = async_client(settings.redis_url or "")
    reads = QuickReads(client, timeout_s=1.0)
    yield reads
    reads.close()
    await client.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_concurrent_reads_each_get_their_own_reply(quick: QuickReads, redis: Redis) -> None:
    run = os.urandom(4).hex()
    await redis.mset({f"quick:{run}:{i}": str(i) for i in range(300)})
    await redis.hset(f"quick:{run}:h", mapping={"a": "1", "b": "2"})
    replies = await asyncio.gather(*(quick.call("GET", f"quick:{run}:{i}") for i in range(300)))
    assert replies == [str(i).encode() for i in range(300)]
    assert await quick.call("HMGET", f"quick:{run}:h", "b", "missing", "a") == [b"2", None, b"1"]


async def test_the_reads_asked_for_in_one_turn_of_the_loop_leave_in_one_write(
    quick: QuickReads, redis: Redis
) -> None:
    run = os.urandom(4).hex()
    await redis.mset({f"quick:{run}:{i}": str(i) for i in range(50)})
    assert await quick.call("PING") == b"PONG"  # connected (and signed in) first
    protocol = quick._protocol
    assert protocol is not None and protocol.transport is not None
    transport = protocol.transport
    writes: list[bytes] = []
    write = transport.write

    def counted(data: bytes | bytearray | memoryview) -> None:
        writes.append(bytes(data))
        write(data)

    transport.write = counted  # type: ignore[method-assign]
    try:
        replies = await asyncio.gather(*(quick.call("GET", f"quick:{run}:{i}") for i in range(50)))
        assert replies == [str(i).encode() for i in range(50)]
        assert len(writes) == 1 and writes[0].count(b"GET") == 50
        # A read alone goes at the end of its own turn, answered as before.
        assert await quick.call("GET", f"quick:{run}:7") == b"7"
        assert len(writes) == 2
    finally:
        transport.write = write  # type: ignore[method-assign]


async def test_an_error_reply_fails_only_its_own_read(quick: QuickReads, redis: Redis) -> None:
    run = os.urandom(4).hex()
    await redis.set(f"quick:{run}:s", "x")
    wrong, right = await asyncio.gather(
        quick.call("HMGET", f"quick:{run}:s", "a"),
        quick.call("GET", f"quick:{run}:s"),
        return_exceptions=True,
    )
    many = await quick.call_many([("GET", f"quick:{run}:s"), ("HGET", f"quick:{run}:s", "a"), ("PING",)])
    assert many[0] == b"x" and isinstance(many[1], redis_errors.ResponseError) and many[2] == b"PONG"
    # `run`, as SharedPipeline's: the replies, or the first error raised.
    assert await quick.run([], [("GET", f"quick:{run}:s"), ("PING",)]) == [b"x", b"PONG"]
    with pytest.raises(redis_errors.ResponseError, match="WRONGTYPE"):
        await quick.run([], [("GET", f"quick:{run}:s"), ("HGET", f"quick:{run}:s", "a")])
    assert isinstance(wrong, redis_errors.ResponseError) and "WRONGTYPE" in str(wrong)
    assert right == b"x"


async def test_the_configured_database_is_selected(settings: Settings) -> None:
    url = (settings.redis_url or "").rstrip("/").rsplit("/", 1)
    other_db = f"{url[0]}/3" if url[-1].isdigit() else f"{settings.redis_url}/3"
    client = async_client(other_db)
    reads = QuickReads(client)
    try:
        await client.set("quick:db", "three")
        assert await reads.call("GET", "quick:db") == b"three"
    finally:
        reads.close()
        await client.delete("quick:db")
        await client.aclose()


async def test_nothing_listening_is_a_connection_error() -> None:
    client = Redis(host="127.0.0.1", port=free_port())
    reads = QuickReads(client, timeout_s=0.5)
    with pytest.raises(redis_errors.ConnectionError):
        await reads.call("GET", "x")
    await client.aclose()


async def test_a_server_that_never_answers_times_out_and_the_next_read_connects_again(
    settings: Settings, redis: Redis
) -> None:
    # A socket that accepts and then says nothing.
    silent: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Redis(host="127.0.0.1", port=port)
    reads = QuickReads(client, timeout_s=0.3)
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(reads.call("GET", f"k{i}") for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, redis_errors.TimeoutError) for r in results), results
        assert time.monotonic() - started < 5  # not stuck: failed by the watchdog
        # A second read opens a new connection.
        with pytest.raises(redis_errors.TimeoutError):
            await reads.call("GET", "again")
        assert len(silent) == 2
    finally:
        reads.close()
        for writer in silent:
            writer.close()
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
        await client.aclose()


async def test_a_connection_killed_by_the_server_fails_what_is_in_flight_then_heals(
    quick: QuickReads, redis: Redis
) -> None:
    run = os.urandom(4).hex()
    await redis.set(f"quick:{run}", "v")
    assert await quick.call("CLIENT", "SETNAME", f"quick-{run}") == b"OK"
    # BLPOP holds the connection's reply; killing the connection fails it at once.
    pending = asyncio.ensure_future(quick.call("BLPOP", f"quick:{run}:list", "0.9"))
    await asyncio.sleep(0.1)
    clients = await redis.client_list()
    (mine,) = [c for c in clients if c.get("name") == f"quick-{run}"]
    await redis.client_kill_filter(_id=mine["id"])
    with pytest.raises(redis_errors.ConnectionError):
        await pending
    assert await quick.call("GET", f"quick:{run}") == b"v"


def test_only_a_single_server_without_tls_is_supported() -> None:
    assert supported(Redis(host="127.0.0.1", port=free_port()))
    assert supported(Redis(unix_socket_path="/tmp/nowhere.sock"))
    assert not supported(Redis(host="127.0.0.1", port=free_port(), ssl=True))
