"""The official clients (cloudevents, openmeter, lago-python-client, stripe) against a real
HTTP server (uvicorn in a subprocess) serving the portal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.infrastructure.settings import Settings
from tests.compat.conftest import counted
from tests.conftest import ROOT, TEST_ENV, WorkerProcess, _free_port, wait_until_persisted

cloudevents_http = pytest.importorskip("cloudevents.http")
stripe = pytest.importorskip("stripe")
lago = pytest.importorskip("lago_python_client")
openmeter = pytest.importorskip("openmeter")


@pytest.fixture(scope="module")
def server(settings: Settings) -> Iterator[str]:
    port = _free_port()
    env = dict(os.environ)
    env.update(TEST_ENV)
    env.update(
        {
            "DATABASE_URL": settings.database_url or "",
            "REDIS_URL": settings.redis_url or "",
            "BROKER_URL": settings.broker_url or "",
            "PORTAL_DATA_DIR": tempfile.mkdtemp(prefix="portal-compat-"),
        }
    )
    log = Path(tempfile.mkstemp(prefix="uvicorn-", suffix=".log")[1])
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "portal.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code < 500:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"uvicorn did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)
    yield base
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


async def test_cloudevents_sdk_structured_and_batch(
    server: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    client: AsyncTestClient[Any],
) -> None:
    from cloudevents.conversion import to_structured
    from cloudevents.http import CloudEvent

    event = CloudEvent(
        {"type": "tokens", "source": "sdk", "subject": "acme", "id": uuid.uuid4().hex},
        {"value": 12, "model": "gpt"},
    )
    headers, body = to_structured(event)

    def send(body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(
            f"{server}/api/v1/events",
            content=body,
            headers={**headers, "Authorization": f"Bearer {ingest_key}"},
        )

    assert (await asyncio.to_thread(send, body, headers)).status_code == 204
    assert (await asyncio.to_thread(send, body, headers)).status_code == 204  # a retry
    bad = CloudEvent({"type": "tokens", "source": "sdk", "subject": "nobody"}, {"value": 1})
    headers, body = to_structured(bad)
    response = await asyncio.to_thread(send, body, headers)
    assert response.status_code == 400 and response.json()["status"] == 400
    assert await counted(pg, redis) == (1, "12")


async def test_openmeter_client(
    server: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    from corehttp.exceptions import ClientAuthenticationError, HttpResponseError
    from openmeter import Client

    om = Client(endpoint=server, token=ingest_key)
    event = {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "source": "om",
        "type": "tokens",
        "subject": "acme",
        "data": {"value": 3, "model": "gpt"},
    }
    batch = [{**event, "id": uuid.uuid4().hex, "data": {"value": v}} for v in (1, 2)]
    await asyncio.to_thread(om.events.ingest_event, event)
    await asyncio.to_thread(om.events.ingest_events, batch)
    await asyncio.to_thread(om.events.ingest_event, event)  # a retry
    with pytest.raises(HttpResponseError) as failure:
        await asyncio.to_thread(om.events.ingest_event, {**event, "id": "x", "subject": "nobody"})
    assert failure.value.status_code == 400
    with pytest.raises(ClientAuthenticationError):
        await asyncio.to_thread(Client(endpoint=server, token="wrong").events.ingest_event, event)
    assert await counted(pg, redis) == (3, "6")


async def test_lago_client(
    server: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    from lago_python_client.client import Client
    from lago_python_client.exceptions import LagoApiError
    from lago_python_client.models import BatchEvent, Event

    lago_client = Client(api_key=ingest_key, api_url=server)
    one = Event(
        transaction_id=uuid.uuid4().hex,
        external_subscription_id="acme",
        code="tokens",
        timestamp=int(time.time()),
        properties={"value": 4, "model": "gpt"},
    )
    answer = await asyncio.to_thread(lago_client.events.create, one)
    assert answer is not None and answer.transaction_id == one.transaction_id
    batch = BatchEvent(
        events=[
            Event(
                transaction_id=uuid.uuid4().hex,
                external_subscription_id="acme",
                code="tokens",
                timestamp=str(time.time()),
                properties={"value": v},
            )
            for v in (1, 5)
        ]
    )
    await asyncio.to_thread(lago_client.events.batch_create, batch)
    await asyncio.to_thread(lago_client.events.create, one)  # a retry
    with pytest.raises(LagoApiError) as failure:
        await asyncio.to_thread(
            lago_client.events.create,
            Event(
                transaction_id="t-bad",
                external_subscription_id="nobody",
                code="tokens",
                properties={"value": 1},
            ),
        )
    assert failure.value.status_code == 422
    with pytest.raises(LagoApiError) as failure:
        await asyncio.to_thread(Client(api_key="wrong", api_url=server).events.create, one)
    assert failure.value.status_code == 401
    assert await counted(pg, redis) == (3, "10")


async def test_stripe_client(
    server: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    client = stripe.StripeClient(ingest_key, base_addresses={"api": server}, max_network_retries=0)
    identifier = uuid.uuid4().hex

    def create(**params: Any) -> Any:
        return client.v1.billing.meter_events.create(params=params)

    created = await asyncio.to_thread(
        create,
        event_name="tokens",
        identifier=identifier,
        payload={"stripe_customer_id": "acme", "value": "9"},
        timestamp=int(time.time()),
    )
    assert created.object == "billing.meter_event" and created.identifier == identifier
    await asyncio.to_thread(
        create,
        event_name="tokens",
        identifier=identifier,
        payload={"stripe_customer_id": "acme", "value": "9"},
    )  # a retry
    # The module-level API, as most integrations call it.
    stripe.api_key = ingest_key
    stripe.api_base = server
    try:
        event = await asyncio.to_thread(
            stripe.billing.MeterEvent.create,
            event_name="tokens",
            payload={"stripe_customer_id": "acme", "value": "1"},
        )
        assert event.event_name == "tokens"
        with pytest.raises(stripe.InvalidRequestError) as failure:
            await asyncio.to_thread(
                stripe.billing.MeterEvent.create,
                event_name="tokens",
                payload={"stripe_customer_id": "nobody", "value": "1"},
            )
        assert failure.value.http_status == 400
        assert failure.value.param == "payload[stripe_customer_id]"
        with pytest.raises(stripe.AuthenticationError):
            await asyncio.to_thread(
                stripe.billing.MeterEvent.create,
                event_name="tokens",
                payload={"stripe_customer_id": "acme", "value": "1"},
                api_key="wrong",
            )
    finally:
        stripe.api_key = None
        stripe.api_base = "https://api.stripe.com"
    assert await counted(pg, redis) == (2, "10")


async def test_stripe_client_cancels_a_meter_event(
    server: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    client = stripe.StripeClient(ingest_key, base_addresses={"api": server}, max_network_retries=0)
    kept, wrong = uuid.uuid4().hex, uuid.uuid4().hex
    for identifier, value in ((kept, "9"), (wrong, "1000")):
        await asyncio.to_thread(
            client.v1.billing.meter_events.create,
            params={
                "event_name": "tokens",
                "identifier": identifier,
                "payload": {"stripe_customer_id": "acme", "value": value},
            },
        )
    await wait_until_persisted(redis)
    adjustment = await asyncio.to_thread(
        client.v1.billing.meter_event_adjustments.create,
        params={"event_name": "tokens", "type": "cancel", "cancel": {"identifier": wrong}},
    )
    assert (adjustment.object, adjustment.status, adjustment.cancel.identifier) == (
        "billing.meter_event_adjustment",
        "complete",
        wrong,
    )
    assert await pg.fetchval("SELECT sum(value) FROM hourly_usage WHERE metric_name = 'tokens'") == 9
    reason = await pg.fetchval("SELECT reason FROM event_corrections WHERE event_id = $1", wrong)
    assert reason == "cancelled through the Stripe-compatible API"
    # Cancelling it again, or an identifier never sent: Stripe's invalid_request_error.
    for identifier in (wrong, "never-sent"):
        with pytest.raises(stripe.InvalidRequestError) as failure:
            await asyncio.to_thread(
                client.v1.billing.meter_event_adjustments.create,
                params={"event_name": "tokens", "type": "cancel", "cancel": {"identifier": identifier}},
            )
        assert failure.value.param == "cancel[identifier]"
    assert await pg.fetchval("SELECT sum(value) FROM hourly_usage WHERE metric_name = 'tokens'") == 9
