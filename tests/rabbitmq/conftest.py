"""The ingest and fault tests on the RabbitMQ broker (BROKER_URL=amqp://…).

A private RabbitMQ node (portal/infrastructure/rabbitmq_server.py) starts once, when the
first test here asks for it: the rest of the suite never pays for it. Postgres and the live
view's Redis are the session's.

The fixtures `client`, `worker` and `own_worker` are overridden here, so the tests of
tests/ingest imported by these modules run unchanged on RabbitMQ: the web app enqueues
through the RabbitMQ broker, and the worker process consumes from it. The broker is
process-global (portal/infrastructure/broker.py): each test here switches it to RabbitMQ
and back to the session's Redis broker when it ends.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import pytest
from dramatiq.common import dq_name, xq_name
from litestar import Litestar
from litestar.testing import AsyncTestClient

from portal.app import create_app
from portal.infrastructure.broker import QUEUES, reset_broker, setup_broker
from portal.infrastructure.rabbitmq_server import RabbitmqServer
from portal.infrastructure.settings import Settings
from tests.conftest import WorkerProcess

START_TIMES: list[float] = []


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitmqServer]:
    """The tests' RabbitMQ node (tests may stop, kill and start it: each test gets it running)."""
    base = Path(tempfile.mkdtemp(prefix="rabbitmq-test-"))
    server = RabbitmqServer(base)
    try:
        server.start()
        START_TIMES.append(server.last_start_s)
        yield server
    finally:
        server.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def rabbit_settings(settings: Settings, rabbitmq: RabbitmqServer) -> Settings:
    """The session's Postgres and live-view Redis, with RabbitMQ as the broker."""
    return replace(settings, broker_url=rabbitmq.url)


def purge(url: str) -> None:
    """Empty every queue of ours (and its delay and dead-letter queues)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        for queue in QUEUES:
            for name in (queue, dq_name(queue), xq_name(queue)):
                channel = connection.channel()
                with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):  # not declared yet
                    channel.queue_purge(name)
                if channel.is_open:
                    channel.close()
    finally:
        connection.close()


@pytest.fixture
def on_rabbitmq(
    settings: Settings, rabbit_settings: Settings, rabbitmq: RabbitmqServer
) -> Iterator[Settings]:
    """This process's broker is RabbitMQ for the test, with empty queues; the session's
    Redis broker again afterwards."""
    rabbitmq.start()  # a no-op unless an earlier test left it stopped
    purge(rabbitmq.url)
    reset_broker()
    setup_broker(rabbit_settings)
    try:
        yield rabbit_settings
    finally:
        reset_broker()
        setup_broker(settings)


@pytest.fixture(scope="session")
def rabbit_app(rabbit_settings: Settings) -> Litestar:
    return create_app(rabbit_settings)


@pytest.fixture
async def client(rabbit_app: Litestar, on_rabbitmq: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=rabbit_app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def rabbit_worker(rabbit_settings: Settings) -> Iterator[WorkerProcess]:
    """One worker process on RabbitMQ for the tests here (tests may kill it)."""
    process = WorkerProcess(rabbit_settings)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def worker(rabbit_worker: WorkerProcess, on_rabbitmq: Settings) -> WorkerProcess:
    if rabbit_worker.process is None or rabbit_worker.process.poll() is not None:
        rabbit_worker.start()
    return rabbit_worker


@pytest.fixture
def own_worker(worker: WorkerProcess) -> WorkerProcess:
    """The RabbitMQ worker, which the test may kill: the only consumer of RabbitMQ (the
    session's other workers consume the Redis broker)."""
    return worker
