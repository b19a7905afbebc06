"""What the operator's tools read and change in a RabbitMQ broker, over AMQP alone.

The Redis broker's counterparts read Dramatiq's keys (portal/operations/status.py,
portal/operations/dead_letters.py); here the same questions go to RabbitMQ:

- **Queue depths**: a passive `queue.declare` answers with the messages ready in a queue.
  RabbitMQ does not tell, over AMQP, how many messages consumers hold unacknowledged (in
  flight, or delayed: a worker holds a delayed message until it is due); its management
  plugin does. Those two figures are None here.
- **Dead letters** (`<queue>.XQ`): read with `basic.get` without acknowledging, then given
  back when the channel closes; dropped by acknowledging; put back on their queue by
  publishing a copy (with a publisher confirm) and then acknowledging the dead one. A
  message fetched by one operator is invisible to another until given back, so two
  replays at once move each message once.

Synchronous (pika's blocking connection), one connection per `RabbitmqAdmin`; async callers
run it in a thread.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import pika
import pika.exceptions
from dramatiq.common import dq_name, xq_name

from portal.infrastructure.rabbitmq_broker import with_url_defaults

# Options of a dead message reset when it is put back, as the Redis broker's replay does.
RESET_OPTIONS = ("retries", "traceback", "requeue_timestamp")


@dataclass(frozen=True, slots=True)
class QueueCounts:
    ready: int  # waiting to be delivered
    delayed_ready: int  # in the delay queue, not yet fetched by a worker
    dead: int


@dataclass(frozen=True, slots=True)
class DeadMessage:
    message_id: str  # Dramatiq's message id
    message: dict[str, Any]  # the decoded Dramatiq message ({} when it is not JSON)
    died_ms: int  # epoch ms it was dead-lettered (RabbitMQ's clock, second precision)
    body: bytes


def _died_ms(properties: pika.BasicProperties) -> int:
    deaths = (properties.headers or {}).get("x-death") or []
    at = deaths[0].get("time") if deaths and isinstance(deaths[0], dict) else None
    if isinstance(at, datetime):
        return int(at.timestamp() * 1000)
    if isinstance(at, int | float):
        return int(at * 1000)
    return 0


def _decode(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except (ValueError, TypeError):
        return {}
    return message if isinstance(message, dict) else {}


class RabbitmqAdmin:
    """One connection to the broker for the operator's questions. Raises pika's
    AMQPError subclasses when RabbitMQ is unavailable."""

    def __init__(self, url: str) -> None:
        first = url.split(";", 1)[0]
        self.connection = pika.BlockingConnection(pika.URLParameters(with_url_defaults(first)))

    def __enter__(self) -> RabbitmqAdmin:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError):
                self.connection.close()

    def _ready(self, queue: str) -> int:
        channel = self.connection.channel()
        try:
            declared = channel.queue_declare(queue=queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:  # not declared yet: no worker or web used it
                return 0
            raise
        count = int(declared.method.message_count)
        channel.close()
        return count

    def counts(self, queue: str) -> QueueCounts:
        return QueueCounts(self._ready(queue), self._ready(dq_name(queue)), self._ready(xq_name(queue)))

    def _sweep(
        self,
        queue: str,
        chosen: Callable[[DeadMessage], bool],
        then: Callable[[pika.adapters.blocking_connection.BlockingChannel, DeadMessage], None] | None,
    ) -> list[DeadMessage]:
        """Fetch every dead letter of `queue`; for each one `chosen` picks, run `then` (if
        any) and acknowledge it (gone from the dead-letter queue); give back the others.
        Returns the chosen ones."""
        dead_queue = xq_name(queue)
        channel = self.connection.channel()
        channel.confirm_delivery()
        taken: list[DeadMessage] = []
        try:
            while True:
                try:
                    method, properties, body = channel.basic_get(dead_queue, auto_ack=False)
                except pika.exceptions.ChannelClosedByBroker as exc:
                    if exc.reply_code == 404:
                        return []
                    raise
                if method is None:
                    break
                decoded = _decode(body)
                letter = DeadMessage(
                    message_id=str(decoded.get("message_id", "")),
                    message=decoded,
                    died_ms=_died_ms(properties),
                    body=body,
                )
                if chosen(letter):
                    if then is not None:
                        then(channel, letter)
                    channel.basic_ack(method.delivery_tag)
                    taken.append(letter)
        finally:
            # Whatever was fetched and not acknowledged goes back to the dead-letter queue.
            if channel.is_open:
                channel.close()
        return taken

    def dead_letters(self, queue: str) -> list[DeadMessage]:
        """Every dead letter of `queue`, oldest first; none is removed."""
        seen: list[DeadMessage] = []

        def look(letter: DeadMessage) -> bool:
            seen.append(letter)
            return False

        self._sweep(queue, look, None)
        return sorted(seen, key=lambda letter: letter.died_ms)

    def drop_dead(self, queue: str, chosen: Callable[[DeadMessage], bool]) -> int:
        """Remove the dead letters of `queue` that `chosen` picks; how many were removed."""
        return len(self._sweep(queue, chosen, None))

    def requeue_dead(self, queue: str, chosen: Callable[[DeadMessage], bool]) -> int:
        """Put the dead letters of `queue` that `chosen` picks back on `queue` with their
        retry count reset; how many were put back. Each copy is confirmed by RabbitMQ before
        its dead letter is removed: a crash in between leaves it in both, and the actors
        are idempotent."""

        def publish(channel: pika.adapters.blocking_connection.BlockingChannel, letter: DeadMessage) -> None:
            message = dict(letter.message)
            options = message.setdefault("options", {})
            if isinstance(options, dict):
                for option in RESET_OPTIONS:
                    options.pop(option, None)
            channel.basic_publish(
                exchange="",
                routing_key=queue,
                body=json.dumps(message).encode(),
                properties=pika.BasicProperties(delivery_mode=2),
                mandatory=True,
            )

        return len(self._sweep(queue, lambda letter: bool(letter.message) and chosen(letter), publish))


def ping(url: str) -> None:
    """Open and close a connection: raises when RabbitMQ does not accept one."""
    RabbitmqAdmin(url).close()
