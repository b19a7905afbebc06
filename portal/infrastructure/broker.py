"""The Dramatiq broker, set once per process before any actor is declared.

Web processes use it only to enqueue messages by actor name (`portal.infrastructure.jobs`); worker
processes import `workers.main`, which calls `setup_broker()` before declaring actors.

`BROKER_URL` chooses the broker (else `REDIS_URL` is the broker too):

- `redis://…`, `rediss://…`, `unix://…`: Dramatiq's Redis broker made to ride out a Redis
  that is down, restarting or loading its data (`ResilientRedisBroker`, below). A standalone
  Redis only: its scripts touch several keys, which a Redis Cluster refuses.
- `amqp://…`, `amqps://…`: Dramatiq's RabbitMQ broker (`ResilientRabbitmqBroker`,
  portal/infrastructure/rabbitmq_broker.py): publisher confirms before an enqueue returns,
  durable quorum queues and persistent messages.

Both give the same outcome: an enqueue returns once the message is durable, or raises (the
web answers 503, nothing accepted); a worker's enqueue waits `enqueue_patience_s` for the
broker; a message whose worker died runs again, and every actor is safe to run twice.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import dramatiq
import msgspec
import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.encoder import Encoder, MessageData
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.middleware import AsyncIO, CurrentMessage

from portal.infrastructure.enqueue_patience import EnqueuePatience
from portal.infrastructure.queues import ALERTS_QUEUE as ALERTS_QUEUE
from portal.infrastructure.queues import INGEST_QUEUE as INGEST_QUEUE
from portal.infrastructure.queues import MAINTENANCE_QUEUE as MAINTENANCE_QUEUE
from portal.infrastructure.queues import QUEUES as QUEUES
from portal.infrastructure.rabbitmq_broker import ResilientRabbitmqBroker, is_amqp_url
from portal.infrastructure.settings import Settings

log = logging.getLogger(__name__)

# Dramatiq's Redis broker's key prefix (its default, which setup_broker keeps).
REDIS_NAMESPACE = "dramatiq"

_broker: ResilientRedisBroker | ResilientRabbitmqBroker | None = None

# Redis errors that mean "the server is down, restarting or loading" (BusyLoadingError is a
# ConnectionError), not "this command is wrong".
REDIS_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError)
# Dead letters are kept until replayed or cleared by us (portal/operations/dead_letters.py), never
# dropped by Dramatiq's own maintenance: an ingest message holds accepted events.
DEAD_LETTERS_KEPT_MS = 100 * 365 * 86_400_000


@dataclass(frozen=True, slots=True)
class RedisQueueKeys:
    """Where Dramatiq's Redis broker keeps a queue (its own naming, read by status, the
    data gauges, the backlog bound and the dead-letter tools)."""

    waiting: str  # list of message ids to deliver
    messages: str  # hash: every message not acknowledged yet (waiting or being worked on)
    delayed: str  # hash: the delay queue's messages (retries waiting for their time)
    dead_ids: str  # sorted set: the dead letters' ids, scored by when they died
    dead: str  # hash: the dead letters' messages


def redis_queue_keys(queue: str) -> RedisQueueKeys:
    base = f"{REDIS_NAMESPACE}:{queue}"
    return RedisQueueKeys(base, f"{base}.msgs", f"{base}.DQ.msgs", f"{base}.XQ", f"{base}.XQ.msgs")


class MsgspecJSONEncoder(Encoder):
    """Dramatiq messages as JSON, encoded by msgspec: the same bytes as the default
    encoder, several times faster on 1000-event batches (web encodes, workers decode)."""

    def encode(self, data: MessageData) -> bytes:
        return msgspec.json.encode(data)

    def decode(self, data: bytes) -> MessageData:
        try:
            decoded: MessageData = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            raise DecodeError(  # type: ignore[no-untyped-call]
                f"failed to decode message {data[:200]!r}", data, exc
            ) from None
        return decoded


class _ResilientConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, with every outage reported as a lost connection.

    Dramatiq (2.2) maps only `redis.ConnectionError` to `ConnectionClosed`, which its
    consumer thread survives; a `redis.TimeoutError` went down its "unexpected error" path,
    where a failing requeue escaped and ended the consumer thread: that queue was never
    read again by the process (Dramatiq issue #894). And after a lost connection the thread
    drops the delayed messages it held in memory, which stay fetched under this process's
    id until the process dies (issue #527): a persist retry waiting in `ingest.DQ` while
    Valkey restarted would never run. A new consumer of a delay queue gives those back.
    """

    broker: ResilientRedisBroker

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._orphans_returned = False

    def _return_orphans(self) -> None:
        # Every message fetched under this process's id for the queue that no worker thread
        # holds is an orphan: fetched into a cache a lost connection dropped, or fetched by
        # a script whose reply the lost connection never delivered. Dramatiq requeues such
        # messages only once this process stops beating, which a live worker never does.
        # A delay queue's messages wait in the consumer thread's memory, dropped with the
        # connection: all of them are orphans.
        acks = f"{self.broker.namespace}:__acks__.{self.broker.broker_id}.{self.queue_name}"
        fetched = {m.decode() if isinstance(m, bytes) else m for m in self.broker.client.smembers(acks)}
        held = set() if self.queue_name.endswith(".DQ") else self.broker.in_hand(self.queue_name)
        orphans = sorted(fetched - held)
        if orphans:
            self.broker.do_requeue(self.queue_name, *orphans)
            kind = "delayed message(s)" if self.queue_name.endswith(".DQ") else "message(s)"
            log.warning(
                "gave back %d %s of %s fetched before a lost connection", len(orphans), kind, self.queue_name
            )
        self._orphans_returned = True

    def __next__(self) -> Any:
        try:
            if not self._orphans_returned:
                self._return_orphans()
            message = super().__next__()  # type: ignore[no-untyped-call]
        except REDIS_UNAVAILABLE as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        if message is not None:
            self.broker.hold(self.queue_name, message.options["redis_message_id"])
        return message

    def ack(self, message: Any) -> None:
        try:
            super().ack(message)  # type: ignore[no-untyped-call]
        except REDIS_UNAVAILABLE as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        self.broker.release_hold(self.queue_name, message.options["redis_message_id"])

    def nack(self, message: Any) -> None:
        try:
            super().nack(message)  # type: ignore[no-untyped-call]
        except REDIS_UNAVAILABLE as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
        self.broker.release_hold(self.queue_name, message.options["redis_message_id"])

    def requeue(self, messages: Any) -> None:
        try:
            super().requeue(messages)  # type: ignore[no-untyped-call]
        except REDIS_UNAVAILABLE as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]


class ResilientRedisBroker(RedisBroker):
    """Dramatiq's Redis broker whose consumers survive outages (`_ResilientConsumer`) and
    whose `enqueue` waits up to `enqueue_patience_s` for Redis to come back
    (`portal/infrastructure/enqueue_patience.py` says why workers need that).
    """

    def __init__(self, *, enqueue_patience_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.enqueue_patience_s = enqueue_patience_s
        self.patience = EnqueuePatience(enqueue_patience_s, REDIS_UNAVAILABLE)
        # Per queue, the ids of messages a consumer handed to this process's worker threads
        # and that are not acknowledged yet: not orphans after a lost connection.
        self._in_hand: dict[str, set[str]] = {}
        self._in_hand_lock = threading.Lock()

    def hold(self, queue_name: str, message_id: str) -> None:
        with self._in_hand_lock:
            self._in_hand.setdefault(queue_name, set()).add(message_id)

    def release_hold(self, queue_name: str, message_id: str) -> None:
        with self._in_hand_lock:
            self._in_hand.get(queue_name, set()).discard(message_id)

    def in_hand(self, queue_name: str) -> set[str]:
        with self._in_hand_lock:
            return set(self._in_hand.get(queue_name, ()))

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _ResilientConsumer

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        enqueue = super().enqueue
        sent: dramatiq.Message[Any] = self.patience.send(lambda: enqueue(message, delay=delay))
        return sent


Broker = ResilientRedisBroker | ResilientRabbitmqBroker


def setup_broker(settings: Settings, *, enqueue_patience_s: float = 0.0) -> Broker:
    """Create the process's broker (idempotent) and make it Dramatiq's global broker: the
    RabbitMQ broker for an `amqp://` or `amqps://` BROKER_URL, else the Redis broker.
    `enqueue_patience_s`: how long an enqueue waits for an unavailable broker (workers)."""
    global _broker
    if _broker is not None:
        return _broker
    url = settings.effective_broker_url
    if not url:
        raise RuntimeError("BROKER_URL or REDIS_URL must be set")
    broker: Broker
    if is_amqp_url(url):
        # A worker that dies leaves its messages unacknowledged: RabbitMQ delivers them
        # again as soon as its connection drops, no heartbeat to wait for.
        broker = ResilientRabbitmqBroker(url=url, enqueue_patience_s=enqueue_patience_s)
    else:
        broker = ResilientRedisBroker(
            url=url,
            enqueue_patience_s=enqueue_patience_s,
            # Unacked messages of a worker that died (SIGKILL, OOM) are requeued once its
            # heartbeat is this old, by the maintenance that runs with some broker commands.
            heartbeat_timeout=settings.broker_heartbeat_timeout_ms,
            maintenance_chance=settings.broker_maintenance_chance,
            dead_message_ttl=DEAD_LETTERS_KEPT_MS,
        )
    broker.add_middleware(AsyncIO())
    broker.add_middleware(CurrentMessage())
    dramatiq.set_encoder(MsgspecJSONEncoder())
    dramatiq.set_broker(broker)
    _broker = broker
    return broker


def get_broker() -> Broker:
    if _broker is None:
        raise RuntimeError("setup_broker() has not been called in this process")
    return _broker


def reset_broker() -> None:
    """Forget the broker (tests start several apps against different servers)."""
    global _broker
    if _broker is not None:
        _broker.close()
    _broker = None
