"""The official clients keep counting exactly once across a restart of the portal: each
sends, the server restarts, and each resends what it sent (as a client retrying after
a connection error would) plus something new."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from redis.asyncio import Redis

from tests.client.conftest import ServerProcess
from tests.client.conftest import server_process as server_process
from tests.compat.conftest import counted
from tests.conftest import WorkerProcess

stripe = pytest.importorskip("stripe")
lago = pytest.importorskip("lago_python_client")
openmeter = pytest.importorskip("openmeter")


@pytest.fixture
def client_server(server_process: ServerProcess) -> ServerProcess:
    if not server_process.running():
        server_process.start()
    return server_process


async def test_stripe_lago_and_openmeter_count_once_across_a_server_restart(
    client_server: ServerProcess,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    from lago_python_client.client import Client as Lago
    from lago_python_client.models import Event
    from openmeter import Client as OpenMeter

    server = client_server

    def send_all(stripe_id: str, lago_id: str, cloud_id: str, at: int) -> None:
        # A retry resends the same request: same ids, same timestamps.
        client = stripe.StripeClient(ingest_key, base_addresses={"api": server.url}, max_network_retries=0)
        client.v1.billing.meter_events.create(
            params={
                "event_name": "tokens",
                "identifier": stripe_id,
                "timestamp": at,
                "payload": {"stripe_customer_id": "acme", "value": "5"},
            }
        )
        Lago(api_key=ingest_key, api_url=server.url).events.create(
            Event(
                transaction_id=lago_id,
                external_subscription_id="acme",
                code="tokens",
                timestamp=at,
                properties={"value": 7},
            )
        )
        OpenMeter(endpoint=server.url, token=ingest_key).events.ingest_event(
            {
                "specversion": "1.0",
                "id": cloud_id,
                "source": "om",
                "type": "tokens",
                "subject": "acme",
                "time": datetime.fromtimestamp(at, UTC).isoformat(),
                "data": {"value": 11},
            }
        )

    now = int(time.time())
    first = (uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex, now)
    await asyncio.to_thread(send_all, *first)
    await asyncio.to_thread(server.stop)
    await asyncio.to_thread(server.start)
    await asyncio.to_thread(send_all, *first)  # the retries, after the restart
    await asyncio.to_thread(send_all, uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex, now)
    assert await counted(pg, redis) == (6, "46")  # (5 + 7 + 11) twice, the retries counted once
