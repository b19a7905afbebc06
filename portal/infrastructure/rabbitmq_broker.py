"""Dramatiq's RabbitMQ broker as this product uses it (BROKER_URL=amqp://… or amqps://…).

What it adds to Dramatiq's `RabbitmqBroker`:

- **Publisher confirms** (`confirm_delivery=True`): an enqueue returns once RabbitMQ has the
  message durably (written and synced by a quorum of the queue's replicas), so the web
  answers 202 only for events the broker holds. Messages are persistent (Dramatiq's
  `delivery_mode=2`) and queues durable.
- **Quorum queues** when the server has them (3.8 and later): replicated by Raft over the
  cluster's nodes, where a classic queue lives on one node. Dead-lettering from them is
  at-least-once (3.10 and later), so a message on its way to the dead-letter queue is not
  lost when that queue's leader is away. Quorum queues have no priorities: `max_priority`
  is never set, and no message carries `broker_priority`.
- **Dead letters are kept** (`<queue>.XQ` without Dramatiq's 7-day message TTL): an ingest
  dead letter holds accepted events; portal/operations/dead_letters.py ages out the others.
- **Patience**: a worker's enqueue (a retry, a follow-up job) waits up to
  `enqueue_patience_s` for an unavailable broker, as the Redis broker's does
  (portal/infrastructure/broker.py); the web's and the scheduler's keep none.

A worker killed mid-message leaves it unacknowledged: RabbitMQ delivers it again when the
worker's connection drops. The actors are idempotent, so the outcome is exactly once.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import xq_name
from dramatiq.errors import ConnectionClosed

from portal.infrastructure.enqueue_patience import EnqueuePatience

log = logging.getLogger(__name__)

AMQP_SCHEMES = ("amqp://", "amqps://")
# The first versions with quorum queues, and with at-least-once dead-lettering from them.
QUORUM_SINCE = (3, 8)
AT_LEAST_ONCE_DEAD_LETTERS_SINCE = (3, 10)
# Connection parameters this product sets unless the URL names them: a RabbitMQ in a
# resource alarm (disk, memory) blocks publishers, which would otherwise wait forever.
URL_DEFAULTS = {"blocked_connection_timeout": "30", "socket_timeout": "5", "stack_timeout": "10"}


def is_amqp_url(url: str | None) -> bool:
    return bool(url) and str(url).lower().startswith(AMQP_SCHEMES)


def with_url_defaults(url: str) -> str:
    """`url` with URL_DEFAULTS added for each parameter its query string does not set."""
    query = url.split("?", 1)[1] if "?" in url else ""
    given = {part.split("=", 1)[0] for part in query.split("&") if part}
    missing = [f"{k}={v}" for k, v in URL_DEFAULTS.items() if k not in given]
    if not missing:
        return url
    return url + ("&" if "?" in url else "?") + "&".join(missing)


def server_version(connection: pika.BlockingConnection) -> tuple[int, ...]:
    """The RabbitMQ version a connection reports, (0,) when it does not say."""
    raw = connection._impl.server_properties.get("version", b"")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    parts = []
    for part in text.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts) or (0,)


def queue_type_arguments(version: tuple[int, ...]) -> dict[str, Any]:
    """Arguments making a queue a quorum queue on a server of `version` (none before 3.8)."""
    if version < QUORUM_SINCE:
        return {}
    arguments: dict[str, Any] = {"x-queue-type": "quorum"}
    if version >= AT_LEAST_ONCE_DEAD_LETTERS_SINCE:
        # At-least-once dead-lettering requires rejecting publishes over a length limit
        # (there is none) instead of dropping the oldest message.
        arguments.update({"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
    return arguments


class ResilientRabbitmqBroker(RabbitmqBroker):
    """See the module docstring. `url` may list several nodes of a cluster separated by
    `;` (Dramatiq tries them in order)."""

    def __init__(self, *, url: str, enqueue_patience_s: float = 0.0) -> None:
        urls = ";".join(with_url_defaults(u) for u in url.split(";"))
        super().__init__(url=urls, confirm_delivery=True)
        self.url = url  # for the operator's connections (portal/infrastructure/rabbitmq_admin.py)
        self.enqueue_patience_s = enqueue_patience_s
        self.patience = EnqueuePatience(enqueue_patience_s, (ConnectionClosed,))
        self._version: tuple[int, ...] | None = None

    @property
    def version(self) -> tuple[int, ...]:
        if self._version is None:
            self._version = server_version(self.connection)
        return self._version

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        # The queue and its delay queue: dead letters go to `<queue>.XQ`.
        arguments: dict[str, Any] = super()._build_queue_arguments(queue_name)  # type: ignore[no-untyped-call]
        arguments.update(queue_type_arguments(self.version))
        return arguments

    def _declare_xq_queue(self, queue_name: str) -> Any:
        arguments = {"x-queue-type": "quorum"} if self.version >= QUORUM_SINCE else {}
        return self.channel.queue_declare(queue=xq_name(queue_name), durable=True, arguments=arguments)

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        # Dramatiq reconnects and tries again 5 times before raising ConnectionClosed.
        enqueue = super().enqueue
        sent: dramatiq.Message[Any] = self.patience.send(lambda: enqueue(message, delay=delay))
        return sent
