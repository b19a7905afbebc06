"""Webhook bodies print numbers as the API does ("100", "12.5", never "100.000000000000"),
and the note a correction causes is announced with its own reason and origin."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.billing.adjustments import _reason
from portal.webhooks.events import body
from tests.billing.conftest import ClosedPeriod, draft
from tests.billing.test_invoice_lifecycle import _month, billed_customer
from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event
from tests.ingest.test_pipeline import catalog, send
from tests.sinks import HttpReceiver
from tests.webhooks.conftest import endpoint

__all__ = ["billed_customer", "catalog"]

AT = datetime(2026, 12, 6, 18, 45, 37, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stored", "text"),
    [
        (Decimal("50000.000000000000"), "50000"),
        (Decimal("12.500000000000"), "12.5"),
        (Decimal("0E-12"), "0"),
        (Decimal("1E+3"), "1000"),
        (Decimal("99999999999999999999.999999999999"), "99999999999999999999.999999999999"),
    ],
)
def test_a_stored_quantity_reads_in_a_body_as_the_api_prints_it(stored: Decimal, text: str) -> None:
    data = {"quantityBefore": stored, "quantityAfter": None}
    sent = body("evt_1", "event.corrected", data, created_at=AT)
    assert sent.endswith(f'"data":{{"quantityBefore":"{text}","quantityAfter":null}}}}')


def test_a_limit_reached_reads_as_the_check_prints_it() -> None:
    data = {"limit": Decimal("100.000000000000"), "used": Decimal("100.000000000000")}
    sent = body("evt_1", "entitlement.exceeded", data, created_at=AT)
    assert sent.endswith('"data":{"limit":"100","used":"100"}}')


@pytest.mark.parametrize(
    ("late", "reason"),
    [
        (1, "1 event arrived after INV-000011 was finalized"),
        (2, "2 events arrived after INV-000011 was finalized"),
    ],
)
def test_a_note_counts_its_late_events_in_words(late: int, reason: str) -> None:
    assert _reason(late, [], "INV-000011") == reason


async def test_the_note_of_a_correction_is_announced_with_its_own_reason_and_origin(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    billed_customer: ClosedPeriod,
    pg: asyncpg.Connection,
    http_receiver: HttpReceiver,
) -> None:
    # Given an approved invoice, and an endpoint for corrections and notes
    await endpoint(client, admin_key, f"{http_receiver.url}/erp", ["event.corrected", "adjustment.created"])
    invoice = await draft(client, admin_key, "acme", _month(billed_customer))
    approved = await client.post(f"/v1/invoices/{invoice['id']}/approve", headers=auth(admin_key), json={})
    assert approved.status_code == 200, approved.text
    eu = await pg.fetchval("SELECT event_id FROM usage_events WHERE quantity = 200")

    # When an event of its period is cancelled
    response = await client.post(
        f"/v1/events/{eu}/cancel",
        headers=auth(ingest_key),
        json={"customerId": "acme", "reason": "duplicate import"},
    )
    assert response.status_code == 200, response.text

    # Then the correction's quantity reads as the API's answer does, and the note is
    # announced with the reason it is stored with, as a correction's note
    assert response.json()["quantityBefore"] == "200"
    received = {r.json()["type"]: r for r in http_receiver.wait_for_requests(2, timeout=20)}
    assert '"quantityBefore":"200","quantityAfter":null,' in received["event.corrected"].body.decode()
    note = received["adjustment.created"].json()["data"]
    stored = await pg.fetchval("SELECT reason FROM adjustments WHERE id = $1", note["adjustmentId"])
    assert stored == f"event {eu} cancelled after INV-000001 was finalized: duplicate import"
    assert (note["reason"], note["origin"]) == (stored, "event_corrections")


async def test_an_amend_to_the_same_quantity_names_it_as_the_api_prints_it(
    client: AsyncTestClient[Any], ingest_key: str, catalog: None, worker: WorkerProcess, redis: Redis
) -> None:
    await send(client, ingest_key, [event(event_id="a", quantity="12.5")])
    await wait_until_persisted(redis)
    response = await client.post(
        "/v1/events/a/amend",
        headers=auth(ingest_key),
        json={"customerId": "acme", "quantity": "12.50", "reason": "again"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "quantity: the event's quantity is 12.5 already"
