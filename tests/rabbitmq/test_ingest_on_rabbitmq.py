"""End to end on RabbitMQ: web → RabbitMQ → a real worker → Postgres, exact live and billed
totals. The bodies are the Redis broker's tests (tests/ingest), run here with the
`client`, `worker` and `own_worker` of tests/rabbitmq/conftest.py."""

from __future__ import annotations

import pika
import pytest

from portal.infrastructure.broker import INGEST_QUEUE, get_broker
from portal.infrastructure.rabbitmq_broker import ResilientRabbitmqBroker
from portal.infrastructure.settings import Settings
from tests.ingest.test_backlog import (
    bounded,
    test_at_its_bound_ingest_refuses_with_a_503_counts_nothing_and_takes_events_again_once_persisted,
)
from tests.ingest.test_failures import test_worker_killed_mid_batch_then_restarted_counts_everything_once
from tests.ingest.test_pipeline import (
    catalog,
    test_mixed_stream_with_duplicates_retries_and_late_events_gives_exact_totals,
)
from tests.ingest.test_single_events import (
    test_concurrent_single_events_are_each_answered_for_their_own_event,
)

__all__ = [
    "bounded",
    "catalog",
    "test_at_its_bound_ingest_refuses_with_a_503_counts_nothing_and_takes_events_again_once_persisted",
    "test_concurrent_single_events_are_each_answered_for_their_own_event",
    "test_mixed_stream_with_duplicates_retries_and_late_events_gives_exact_totals",
    "test_worker_killed_mid_batch_then_restarted_counts_everything_once",
]


def test_the_rabbitmq_queues_are_durable_quorum_queues_with_confirms(on_rabbitmq: Settings) -> None:
    broker = get_broker()
    assert isinstance(broker, ResilientRabbitmqBroker)
    assert broker.confirm_delivery
    broker.declare_queue(INGEST_QUEUE, ensure=True)
    # A declare with other arguments is refused: this is what the queues are.
    connection = pika.BlockingConnection(pika.URLParameters(on_rabbitmq.broker_url or ""))
    try:
        for name, arguments in (
            (INGEST_QUEUE, {"x-queue-type": "quorum", "x-dead-letter-routing-key": f"{INGEST_QUEUE}.XQ"}),
            (f"{INGEST_QUEUE}.XQ", {"x-queue-type": "quorum"}),
        ):
            channel = connection.channel()
            expected = broker._build_queue_arguments(name) if name == INGEST_QUEUE else arguments
            assert arguments.items() <= expected.items()
            channel.queue_declare(queue=name, durable=True, arguments=expected)  # the same: accepted
            with pytest.raises(pika.exceptions.ChannelClosedByBroker):
                channel.queue_declare(queue=name, durable=True, arguments={"x-queue-type": "classic"})
    finally:
        connection.close()
