"""Messages fetched under a live worker's id but never handed to its threads (the fetch's
reply lost with the connection, or a prefetch cache dropped with it) go back to their
queue when the consumer starts again; messages its threads hold stay with it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest

from portal.infrastructure.broker import ResilientRedisBroker
from portal.infrastructure.settings import Settings

QUEUE = "orphans-test"  # no worker of the suite consumes it


@pytest.fixture
def broker(settings: Settings) -> Iterator[ResilientRedisBroker]:
    broker = ResilientRedisBroker(url=settings.broker_url)
    broker.declare_queue(QUEUE)
    yield broker
    broker.client.delete(
        f"{broker.namespace}:{QUEUE}",
        f"{broker.namespace}:{QUEUE}.msgs",
        f"{broker.namespace}:__acks__.{broker.broker_id}.{QUEUE}",
    )
    broker.close()


def _take(consumer: Any, n: int, polls: int = 50) -> list[Any]:
    """Up to `n` messages from `consumer`, polling at most `polls` times (100 ms each)."""
    taken: list[Any] = []
    for message in itertools.islice(consumer, polls):
        if message is not None:
            taken.append(message)
            if len(taken) == n:
                break
    return taken


def _send(broker: ResilientRedisBroker, n: int) -> list[str]:
    ids = []
    for i in range(n):
        message = broker.enqueue(
            dramatiq.Message(queue_name=QUEUE, actor_name="noop", args=(i,), kwargs={}, options={})
        )
        ids.append(message.options["redis_message_id"])
    return ids


def test_messages_fetched_but_never_handed_over_go_back_to_the_queue(broker: ResilientRedisBroker) -> None:
    # Given a consumer that handed one message to a worker thread,
    sent = _send(broker, 3)
    first = broker.consume(QUEUE, prefetch=1, timeout=100)
    [held] = _take(first, 1)
    # and a fetch whose reply was lost with the connection (the messages are fetched
    # under this process's id, but no consumer holds them),
    lost = broker.do_fetch(QUEUE, 2)
    assert len(lost) == 2
    first.close()
    # When the consumer starts again after the lost connection,
    second = broker.consume(QUEUE, prefetch=5, timeout=100)
    again = _take(second, 2)
    # Then the two orphans are delivered again, and the held message is not.
    assert sorted(m.options["redis_message_id"] for m in again) == sorted(
        i for i in sent if i != held.options["redis_message_id"]
    )
    second.ack(held)
    for message in again:
        second.ack(message)
    assert broker.in_hand(QUEUE) == set()
    second.close()
