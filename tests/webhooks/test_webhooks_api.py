"""The webhooks API: what a client controls is refused with a clear 4xx and changes nothing;
the signing secret is shown once; the retry schedule lasts more than a day; a delivery is
claimed by one sender at a time."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from alerts.destinations import parse_networks
from alerts.signing import sign
from portal.billing.announcements import credit_crossed_low
from portal.infrastructure.db import create_engine, session_factory, transaction
from portal.infrastructure.settings import WEBHOOK_RETRY_DELAYS_MS, Settings
from portal.webhooks import repository, service
from portal.webhooks.schemas import AttemptResult, EndpointCreate
from portal.webhooks.sending import post
from tests.factories import auth
from tests.sinks import HttpReceiver
from tests.webhooks.conftest import endpoint

URL = "https://hooks.example.com/billing"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            {"url": "ftp://hooks.example.com/x", "eventTypes": ["invoice.finalized"]},
            "must start with https://",
        ),
        ({"url": "http://10.0.0.7/hook", "eventTypes": ["invoice.finalized"]}, "a private address"),
        ({"url": "http://169.254.169.254/latest", "eventTypes": ["invoice.finalized"]}, "cloud metadata"),
        ({"url": "http://metadata.google.internal/", "eventTypes": ["credit.low"]}, "metadata service"),
        (
            {"url": "https://user:pw@hooks.example.com/", "eventTypes": ["credit.low"]},
            "user name or password",
        ),
        ({"url": "https://hooks.example.com:99999/", "eventTypes": ["credit.low"]}, "not a valid URL"),
        ({"url": "https://hooks.example.com/a b", "eventTypes": ["credit.low"]}, "spaces"),
        ({"url": URL, "eventTypes": ["invoice.paid"]}, "invoice.paid"),
        ({"url": URL, "eventTypes": []}, "eventTypes"),
        ({"url": URL, "eventTypes": ["credit.low"], "description": "x" * 501}, "description"),
        ({"url": "h" * 2001, "eventTypes": ["credit.low"]}, "url"),
    ],
)
async def test_a_hostile_endpoint_is_refused_with_its_reason(
    client: AsyncTestClient[Any], admin_key: str, body: dict[str, Any], says: str
) -> None:
    response = await client.post("/v1/webhook-endpoints", headers=auth(admin_key), json=body)
    assert response.status_code == 422, response.text
    assert says in response.text
    assert (await client.get("/v1/webhook-endpoints", headers=auth(admin_key))).json() == []


async def test_the_secret_is_shown_once_and_changes_are_checked_like_new_endpoints(
    client: AsyncTestClient[Any], admin_key: str
) -> None:
    # Given an endpoint (the public name does not need to resolve to be saved)
    created = await endpoint(client, admin_key, "https://hooks.example.com/erp", ["invoice.finalized"])
    assert created["signingSecret"].startswith("whsec_")
    # Then listing and reading it never show the secret again
    [listed] = (await client.get("/v1/webhook-endpoints", headers=auth(admin_key))).json()
    assert listed["signingSecret"] is None and listed["description"] == "ERP"
    # When it is moved to a private address, or subscribed to an unknown type: 422, unchanged
    path = f"/v1/webhook-endpoints/{created['id']}"
    moved = await client.patch(path, headers=auth(admin_key), json={"url": "http://192.168.1.5/"})
    assert moved.status_code == 422 and "private address" in moved.text
    retyped = await client.patch(path, headers=auth(admin_key), json={"eventTypes": ["nope"]})
    assert retyped.status_code == 422
    assert (await client.get(path, headers=auth(admin_key))).json()["url"] == "https://hooks.example.com/erp"
    # And a valid change applies; a deleted endpoint is gone (404), as is an unknown one
    changed = await client.patch(
        path, headers=auth(admin_key), json={"enabled": False, "eventTypes": ["credit.low"]}
    )
    assert (changed.json()["enabled"], changed.json()["eventTypes"]) == (False, ["credit.low"])
    assert (await client.delete(path, headers=auth(admin_key))).status_code == 204
    assert (await client.get(path, headers=auth(admin_key))).status_code == 404
    assert (await client.delete(path, headers=auth(admin_key))).status_code == 404
    assert (await client.post("/v1/webhook-deliveries/99/replay", headers=auth(admin_key))).status_code == 404
    assert (await client.get("/v1/webhook-events?type=nope", headers=auth(admin_key))).status_code == 422
    assert (
        await client.get("/v1/webhook-deliveries?status=lost", headers=auth(admin_key))
    ).status_code == 422


async def test_hostile_lookups_are_4xx(client: AsyncTestClient[Any], admin_key: str) -> None:
    for path in (
        "/v1/webhook-events/%00",
        "/v1/webhook-events/evt_nope",
        "/v1/webhook-events?customerId=%00",
        "/v1/webhook-deliveries?eventId=%00",
        "/v1/webhook-deliveries?endpointId=0",
        "/v1/webhook-deliveries/99999999999999999999",
    ):
        response = await client.get(path, headers=auth(admin_key))
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)


async def test_the_api_needs_an_admin_key(client: AsyncTestClient[Any], ingest_key: str) -> None:
    assert (await client.get("/v1/webhook-endpoints", headers=auth(ingest_key))).status_code == 403
    assert (await client.get("/v1/webhook-events")).status_code == 401


def test_the_retry_schedule_lasts_more_than_a_day() -> None:
    # 1 min, 5 min, 30 min, 2 h, 6 h, 12 h, 24 h: the last attempt 44 h 36 min after the first
    assert sum(WEBHOOK_RETRY_DELAYS_MS) == (44 * 60 + 36) * 60_000
    assert len(WEBHOOK_RETRY_DELAYS_MS) + 1 == 8


@pytest.mark.parametrize(
    ("granted", "before", "after", "low"),
    [
        ("50", "50", "1", True),  # drawn from above the mark (10) to below it
        ("50", "10", "9.99", True),  # exactly at the mark counts as above
        ("50", "9", "5", False),  # already low: announced when it crossed, not again
        ("50", "50", "10", False),  # down to the mark, not below
        ("0", "0", "0", False),  # nothing granted
    ],
)
def test_credit_is_low_once_per_crossing(granted: str, before: str, after: str, low: bool) -> None:
    assert credit_crossed_low(Decimal(granted), Decimal(before), Decimal(after)) is low


async def test_one_sender_at_a_time_and_the_schedule_after_each_failure(settings: Settings) -> None:
    # Given an event announced to one endpoint, at a fixed instant
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=2)
    sessions = session_factory(engine)
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    async with transaction(sessions) as session:
        created = await service.create_endpoint(
            session,
            EndpointCreate(url="https://hooks.example.com/x", event_types=["credit.low"]),
            secret_key=settings.secret_key,
            allow_networks=(),
        )
        await service.announce(session, "credit.low", {"customerId": None}, customer_id=None, now=now)
        [delivery_id] = await repository.due_delivery_ids(session, now=now, limit=10)
        session.info.clear()  # no worker here: the owed job is not sent
    lease = timedelta(seconds=50)
    delays = (60_000, 300_000)
    failed = AttemptResult(False, 503, "answered HTTP 503", 12)
    expected_next = [
        now + timedelta(minutes=1),
        now + timedelta(minutes=1, seconds=50) + timedelta(minutes=5),
    ]
    at = now
    for attempt in (1, 2):
        async with transaction(sessions) as session:
            claimed = await service.claim(session, delivery_id, now=at, lease=lease)
            assert claimed is not None and claimed.attempt == attempt
            assert service.signing_secret(claimed, secret_key=settings.secret_key) == created.signing_secret
        # While one sender holds it, nobody else gets it
        async with transaction(sessions) as session:
            assert await service.claim(session, delivery_id, now=at, lease=lease) is None
        async with transaction(sessions) as session:
            delay = await service.record(
                session, claimed, failed, started_at=at, now=at, retry_delays_ms=delays
            )
            assert delay == delays[attempt - 1]
            assert await service.busy_until(session, delivery_id) == expected_next[attempt - 1]
        at = expected_next[attempt - 1] + (timedelta(seconds=50) if attempt == 1 else timedelta(0))
    # After the last retry fails, the delivery is failed for good
    async with transaction(sessions) as session:
        claimed = await service.claim(session, delivery_id, now=at, lease=lease)
        assert claimed is not None and claimed.attempt == 3
        assert (
            await service.record(session, claimed, failed, started_at=at, now=at, retry_delays_ms=delays)
            is None
        )
        [delivery] = await service.list_deliveries(session)
    await engine.dispose()
    assert (delivery.status, delivery.attempt_count, delivery.last_error) == (
        "failed",
        3,
        "answered HTTP 503",
    )
    assert [(a.attempt, a.http_status, a.duration_ms) for a in delivery.attempts] == [
        (1, 503, 12),
        (2, 503, 12),
        (3, 503, 12),
    ]


def test_a_send_to_an_address_the_rules_refuse_fails_without_connecting(http_receiver: HttpReceiver) -> None:
    # Given a receiver on the loopback, which no network allowance opens here
    # When an attempt is made to it (as if its name had come to resolve there since it was saved)
    result = post(
        f"{http_receiver.url}/x", "{}", event_id="evt_1", secret="whsec_x", timestamp=1, timeout_s=2, allow=()
    )
    # Then it fails with the rule's reason, and nothing reached the receiver
    assert (result.ok, result.http_status) == (False, None)
    assert result.error == (
        "refused by the portal's destination rules: 127.0.0.1 is a loopback address (127.0.0.0/8)"
    )
    assert http_receiver.requests == []


def test_a_send_signs_the_body_and_names_the_event(http_receiver: HttpReceiver) -> None:
    result = post(
        f"{http_receiver.url}/x",
        '{"id":"evt_1"}',
        event_id="evt_1",
        secret="whsec_x",
        timestamp=1_795_615_380,
        timeout_s=2,
        allow=parse_networks("127.0.0.0/8"),
    )
    assert (result.ok, result.http_status, result.error) == (True, 200, None)
    [request] = http_receiver.requests
    assert request.header("X-Usage-Portal-Event-Id") == "evt_1"
    assert request.header("X-Usage-Portal-Timestamp") == "1795615380"
    assert request.header("X-Usage-Portal-Signature") == sign("whsec_x", "1795615380", b'{"id":"evt_1"}')


def test_an_endpoint_answering_a_byte_at_a_time_cannot_hold_a_send_past_its_deadline() -> None:
    # Given an endpoint that answers its status line, then one header byte every 0.3 s (each
    # read inside the 1 s socket timeout) for half a minute
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            for _ in range(100):
                if stop.wait(0.3):
                    return
                with contextlib.suppress(OSError):
                    conn.sendall(b"X")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        # When an attempt is made to it with a 1 s timeout
        result = post(
            f"http://127.0.0.1:{port}/h",
            "{}",
            event_id="evt_1",
            secret="whsec_x",
            timestamp=1,
            timeout_s=1,
            allow=(ipaddress.ip_network("127.0.0.0/8"),),
        )
        trickling = thread.is_alive()
    finally:
        stop.set()
        listener.close()
    # Then it gave up at its deadline (twice the timeout), saying so, while the endpoint was
    # still trickling: the worker's thread is free again, not held for the endpoint's 30 s
    assert (result.ok, result.http_status, result.error) == (False, None, "no answer within 2 s")
    assert trickling
