"""The live view's Valkey apart from the broker's (issue 15): a data dir from before it had
one is moved over at start, keys with their expiry, and the broker's queue stays where it
was; a second start moves nothing and loses nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from portal.infrastructure.embedded import MOVE_BATCH, EmbeddedServers

HOUR = "lu:{acme}:api_calls:1764547200"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[EmbeddedServers]:
    servers = EmbeddedServers(tmp_path / "data")
    yield servers
    servers.stop()


def test_a_data_dir_from_before_the_live_valkey_moves_its_live_view_and_keeps_the_queue(
    servers: EmbeddedServers,
) -> None:
    # As an older version left it: one Valkey, the live view, sessions and operations in db
    # 0, the broker's queue in db 1.
    password = servers.password
    port = servers.valkey.start(password)
    old_live = Redis(host="127.0.0.1", port=port, password=password, db=0)
    old_broker = Redis(host="127.0.0.1", port=port, password=password, db=1)
    old_live.hset(HOUR, mapping={"=": "7", "g|eu": "5"})
    old_live.expire(HOUR, 3600)
    old_live.zadd("live:inflight", {"batch-1": 1764547200000})
    old_live.set("sess:abc", '{"user": "u1"}', ex=600)
    fillers = MOVE_BATCH * 2 + 500  # more than one MIGRATE's worth
    with old_live.pipeline(transaction=False) as pipe:
        for number in range(fillers):
            pipe.hset(f"quality:filler-{number}", "accepted", number)
        pipe.execute()
    old_broker.rpush("dramatiq:default", "message-1")
    old_broker.hset("dramatiq:default.msgs", "message-1", '{"actor_name": "persist_events"}')

    urls = servers.start()

    live = Redis.from_url(urls.redis_url)
    broker = Redis.from_url(urls.broker_url)
    try:
        assert live.connection_pool.connection_kwargs["port"] != port
        assert live.hgetall(HOUR) == {b"=": b"7", b"g|eu": b"5"}
        assert 3500 < live.ttl(HOUR) <= 3600
        assert live.zscore("live:inflight", "batch-1") == 1764547200000
        assert live.get("sess:abc") == b'{"user": "u1"}'
        assert 500 < live.ttl("sess:abc") <= 600
        assert live.hget(f"quality:filler-{fillers - 1}", "accepted") == str(fillers - 1).encode()
        assert live.dbsize() == fillers + 3
        assert old_live.dbsize() == 0
        # The queue is where it was: the broker's Valkey, db 1, untouched.
        assert broker.connection_pool.connection_kwargs["port"] == port
        assert broker.lrange("dramatiq:default", 0, -1) == [b"message-1"]
        assert broker.hget("dramatiq:default.msgs", "message-1") == b'{"actor_name": "persist_events"}'

        # Restarted: the live Valkey kept what it holds (its append-only file), and
        # nothing is moved again.
        servers.stop()
        urls = servers.start()
        live.close()
        live = Redis.from_url(urls.redis_url)
        assert live.dbsize() == fillers + 3
        assert live.hgetall(HOUR) == {b"=": b"7", b"g|eu": b"5"}
        assert (
            servers.move_live_view(
                broker_port=servers.valkey.running_port() or 0,
                live_port=servers.live_valkey.running_port() or 0,
            )
            == 0
        )
    finally:
        live.close()
        broker.close()
        old_live.close()
        old_broker.close()
