"""The one place that turns `REDIS_URL` (the live view's and the app's Redis) into a client.

`REDIS_URL` names either one server or a Redis/Valkey Cluster:

- `redis://[user:password@]host:port/<db>` (`rediss://` for TLS): one server, as before.
- `redis+cluster://[user:password@]host:port[/0]` (`rediss+cluster://` for TLS): a cluster,
  by any one of its nodes; the client discovers the others and routes each command to the
  node that holds its key's slot. A cluster has only database 0.

Both kinds are used through the same commands: redis-py's cluster clients take the same
calls as its single-server ones (pipelines are split by node; DEL, EXISTS, KEYS, FLUSHDB and
SCRIPT LOAD/FLUSH go to every node that must see them), so callers hold a `Redis` and need
not know. What does differ is what Redis Cluster refuses: a Lua script or a MULTI whose keys
hash to different slots, and MGET across slots. The live view keeps every key of a customer
under one hash tag for that (portal/live/redis_keys.py says which keys are tagged and which
are global).

The broker's Redis (`BROKER_URL`) is not made here: Dramatiq's Redis broker is not
cluster-safe, so it runs on RabbitMQ or a standalone Redis (portal/infrastructure/broker.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.cluster
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

# Connections a web process may hold per cluster node. A single server gets a pool that
# waits for a free connection (portal/state.py); redis-py's cluster client cannot wait, it
# raises MaxConnectionsError, so its bound is set well above what a burst needs (a web
# process sends the live view's calls in one shared pipeline, portal/live/pipelining.py)
# and well below Valkey's 10,000 clients.
CLUSTER_MAX_CONNECTIONS_PER_NODE = 256


def is_cluster_url(url: str) -> bool:
    """Whether `url` names a Redis Cluster (`redis+cluster://`, `rediss+cluster://`)."""
    return urlsplit(url).scheme.lower() in CLUSTER_SCHEMES


def node_url(url: str) -> str:
    """A cluster URL as the plain URL of the node it names (`redis+cluster://h:p` ->
    `redis://h:p/0`), what redis-py's cluster client parses; other URLs unchanged.
    Raises ValueError for a cluster URL naming a database other than 0."""
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        return url
    db = parts.path.strip("/")
    if db not in ("", "0"):
        raise ValueError(f"a Redis Cluster has only database 0, not {db!r} (REDIS_URL)")
    return urlunsplit((scheme, parts.netloc, "/0", parts.query, parts.fragment))


def async_client(
    url: str,
    *,
    max_connections: int | None = None,
    wait_for_connection_s: float | None = None,
    **options: Any,
) -> Redis:
    """An asyncio client for `url`: a `redis.asyncio.Redis` for one server, a
    `redis.asyncio.cluster.RedisCluster` for a cluster (typed as `Redis`: it takes the same
    calls). `options` are redis-py's (socket_timeout, retry, decode_responses, ...).

    `wait_for_connection_s` makes a single server's pool block up to that long for a free
    connection once `max_connections` are in use (instead of opening more); a cluster's
    bound is per node, at least CLUSTER_MAX_CONNECTIONS_PER_NODE when waiting was asked for.
    Connects to nothing until the first command."""
    if is_cluster_url(url):
        per_node = max_connections
        if wait_for_connection_s is not None:
            per_node = max(per_node or 0, CLUSTER_MAX_CONNECTIONS_PER_NODE)
        if per_node is not None:
            options["max_connections"] = per_node
        return cast(Redis, RedisCluster.from_url(node_url(url), **options))
    if wait_for_connection_s is not None:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections or 64, timeout=wait_for_connection_s, **options
        )
        return Redis(connection_pool=pool)
    if max_connections is not None:
        options["max_connections"] = max_connections
    return Redis.from_url(url, **options)


class _LazyClusterClient:
    """A sync cluster client made at its first use. redis-py's sync RedisCluster asks a node
    for the slot map as it is made, and raises there when none answers; the processes that
    hold a sync client (the scheduler, a worker's heartbeat) must start while Redis is down
    and use it once it is back, as they do with one server."""

    def __init__(self, make: Callable[[], redis.cluster.RedisCluster]) -> None:
        self._make = make
        self._client: redis.cluster.RedisCluster | None = None
        self._lock = threading.Lock()

    def _get(self) -> redis.cluster.RedisCluster:
        with self._lock:
            if self._client is None:
                self._client = self._make()
            return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def sync_client(url: str, **options: Any) -> redis.Redis:
    """`async_client` for synchronous code: a `redis.Redis`, or for a cluster a
    `redis.cluster.RedisCluster` (made at its first command; typed as `redis.Redis`)."""
    if is_cluster_url(url):
        plain = node_url(url)
        return cast(
            redis.Redis, _LazyClusterClient(lambda: redis.cluster.RedisCluster.from_url(plain, **options))
        )
    return redis.Redis.from_url(url, **options)


def is_cluster_client(client: Any) -> bool:
    return isinstance(client, RedisCluster | redis.cluster.RedisCluster | _LazyClusterClient)


def database(client: Redis) -> int:
    """The database number the client uses (0 on a cluster)."""
    if is_cluster_client(client):
        return 0
    return int(client.connection_pool.connection_kwargs.get("db", 0) or 0)


async def publish(client: Redis, channel: str, message: str) -> int:
    """PUBLISH, answering how many subscribers received it. On a cluster it is sent to the
    node owning `channel`'s slot, the node redis-py's cluster pub/sub subscribes on, so the
    count includes every subscriber (a node counts only its own)."""
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(channel)
        return int(await client.execute_command("PUBLISH", channel, message, target_nodes=node))
    return int(await client.publish(channel, message))


async def flush(client: Redis) -> None:
    """Empty the client's database: every primary of a cluster."""
    if isinstance(client, RedisCluster):
        await client.execute_command("FLUSHDB", target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.flushdb()


async def load_script(client: Redis, script: str) -> str:
    """SCRIPT LOAD on every node that may run it (every primary of a cluster); its SHA."""
    if isinstance(client, RedisCluster):
        return str(await client.execute_command("SCRIPT LOAD", script, target_nodes=RedisCluster.PRIMARIES))
    return str(await client.script_load(script))


async def keys_matching(client: Redis, pattern: str) -> list[Any]:
    """Every key matching `pattern`, from every primary of a cluster (KEYS: for tests and
    operators, never on a path that serves requests)."""
    if isinstance(client, RedisCluster):
        return list(await client.execute_command("KEYS", pattern, target_nodes=RedisCluster.PRIMARIES))
    return list(await client.keys(pattern))
