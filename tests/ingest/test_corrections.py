"""Event corrections end to end (issue 19): cancel and amend accepted events through the API,
the real worker carrying them into the live view once, billed totals exact, and a finalized
period getting a note linked to the correction."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from tests.billing.conftest import ClosedPeriod, draft
from tests.billing.test_invoice_lifecycle import _month, billed_customer
from tests.conftest import WorkerProcess, wait_for, wait_until_persisted
from tests.factories import auth, event
from tests.ingest.test_late_duplicates import group_fields
from tests.ingest.test_pipeline import catalog, send, usage
from tests.sinks import HttpReceiver
from tests.webhooks.conftest import endpoint

__all__ = ["billed_customer", "catalog"]


async def correct(
    client: AsyncTestClient[Any], key: str, event_id: str, action: str, expect: int = 200, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/events/{event_id}/{action}", headers=auth(key), json={"customerId": "acme", **body}
    )
    assert response.status_code == expect, response.text
    return dict(response.json())


async def totals(client: AsyncTestClient[Any], key: str, metric: str) -> tuple[str, str]:
    return (await usage(client, key, metric, "live"))["total"], (await usage(client, key, metric, "billed"))[
        "total"
    ]


async def settled_live(client: AsyncTestClient[Any], key: str, metric: str, want: tuple[str, str]) -> None:
    async def done() -> bool:
        return await totals(client, key, metric) == want

    await wait_for(done, timeout=20, what=f"{metric} live and billed at {want}")


async def test_cancel_and_amend_change_live_and_billed_totals_exactly_once(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    sent = [
        event(event_id="a", quantity="1.5", dimensions={"region": "eu"}),
        event(event_id="b", quantity=2, dimensions={"region": "us"}),
        event(event_id="c", quantity="0.25", dimensions={"region": "eu"}),
        event(event_id="r1", metric="requests"),
        event(event_id="r2", metric="requests"),
        event(event_id="s1", metric="storage_gb", quantity=10),
        event(event_id="s2", metric="storage_gb", quantity=30),
        event(event_id="u1", metric="active_users", dimensions={"user": "ann"}),
        event(event_id="u2", metric="active_users", dimensions={"user": "ann"}),
        event(event_id="u3", metric="active_users", dimensions={"user": "bob"}),
    ]
    assert (await send(client, ingest_key, sent))["accepted"] == 10
    await wait_until_persisted(redis)
    # Checks fill the period accumulators first: they must follow every correction too.
    check = {
        "checks": [{"customerId": "acme", "meter": m} for m in ("api_calls", "requests", "active_users")]
    }
    assert (
        await client.post("/v1/entitlements/check", headers=auth(ingest_key), json=check)
    ).status_code == 200

    cancelled = await correct(client, ingest_key, "a", "cancel", reason="test key used in production")
    assert (cancelled["kind"], cancelled["quantityBefore"], cancelled["quantityAfter"]) == (
        "cancel",
        "1.5",
        None,
    )
    assert (cancelled["invoiceId"], cancelled["actor"]) == (None, "key:test ingest")
    await settled_live(client, admin_key, "api_calls", ("2.25", "2.25"))
    # Cancelling again changes nothing (409), however often the live job ran.
    await correct(client, ingest_key, "a", "cancel", expect=409, reason="again")
    amended = await correct(
        client, ingest_key, "b", "amend", quantity="5.125", reason="metering bug: counted 2"
    )
    assert (amended["quantityBefore"], amended["quantityAfter"]) == ("2", "5.125")
    await settled_live(client, admin_key, "api_calls", ("5.375", "5.375"))
    fields = await group_fields(redis, "api_calls")
    assert (fields["="], fields['g|{"region":"eu"}'], fields['g|{"region":"us"}']) == (5.375, 0.25, 5.125)

    await correct(client, ingest_key, "r1", "cancel", reason="duplicate call")
    await settled_live(client, admin_key, "requests", ("1", "1"))
    await correct(client, ingest_key, "s2", "cancel", reason="a test volume")
    await settled_live(client, admin_key, "storage_gb", ("10", "10"))
    await correct(client, ingest_key, "u1", "cancel", reason="bot")
    await settled_live(client, admin_key, "active_users", ("2", "2"))  # ann is still in u2
    await correct(client, ingest_key, "u3", "cancel", reason="bot")
    await settled_live(client, admin_key, "active_users", ("1", "1"))

    answers = (await client.post("/v1/entitlements/check", headers=auth(ingest_key), json=check)).json()[
        "results"
    ]
    assert [a["used"] for a in answers] == ["5.375", "1", "1"]
    # The raw events are kept; the audit log says who, when and why.
    row = await pg.fetchrow("SELECT quantity, cancelled_at FROM usage_events WHERE event_id = 'a'")
    assert row is not None and row["quantity"] == 1.5 and row["cancelled_at"] is not None
    audit = await pg.fetch(
        "SELECT action, actor, reason FROM audit_log WHERE object_type = 'event' AND object_id = 'b'"
    )
    assert [tuple(r) for r in audit] == [("event.amend", "key:test ingest", "metering bug: counted 2")]
    history = await client.get(
        "/v1/events/b/corrections", headers=auth(ingest_key), params={"customerId": "acme"}
    )
    assert [c["quantityAfter"] for c in history.json()] == ["5.125"]
    # A resend of a cancelled event is a duplicate: it stays cancelled.
    assert (await send(client, ingest_key, sent[:1]))["duplicates"] == 1
    await wait_until_persisted(redis)
    assert await totals(client, admin_key, "api_calls") == ("5.375", "5.375")


async def test_a_cancel_in_a_finalized_period_yields_a_credit_note_linked_to_it(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    billed_customer: ClosedPeriod,
    pg: asyncpg.Connection,
    http_receiver: HttpReceiver,
) -> None:
    await endpoint(client, admin_key, f"{http_receiver.url}/erp", ["event.corrected", "adjustment.created"])
    invoice = await draft(client, admin_key, "acme", _month(billed_customer))
    approved = await client.post(f"/v1/invoices/{invoice['id']}/approve", headers=auth(admin_key), json={})
    assert approved.status_code == 200 and approved.json()["total"] == "91.89"
    eu = await pg.fetchval("SELECT event_id FROM usage_events WHERE quantity = 200")
    correction = await correct(client, ingest_key, eu, "cancel", reason="sent by a test key")
    assert correction["invoiceId"] == invoice["id"]

    async def adjusted() -> dict[str, Any] | None:
        view = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth(admin_key))).json()
        return view if view["adjustments"] else None

    view = await wait_for(adjusted, what="the note of the correction")
    [note] = view["adjustments"]
    # 200 eu calls at 0.003 = 0.60 less, and 10% less discount: 0.54 credited.
    assert (note["number"], note["kind"], note["amount"]) == ("CN-000001", "credit", "-0.54")
    assert note["reason"] == f"event {eu} cancelled after INV-000001 was finalized: sent by a test key"
    assert view["adjustedTotal"] == "91.35"
    linked = await pg.fetchrow(
        "SELECT a.number FROM event_corrections c JOIN adjustments a ON a.id = c.adjustment_id"
    )
    assert linked is not None and linked["number"] == "CN-000001"
    # An amend of the storage peak (25 GB -> 30 GB): 5 GB more billable at 0.10, less 10%.
    storage = await pg.fetchval("SELECT event_id FROM usage_events WHERE quantity = 25")
    await correct(client, ingest_key, storage, "amend", quantity="30", reason="meter read low")

    async def debited() -> dict[str, Any] | None:
        view = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth(admin_key))).json()
        return view if len(view["adjustments"]) == 2 else None

    view = await wait_for(debited, what="the debit note of the amend")
    assert [(n["number"], n["amount"]) for n in view["adjustments"]] == [
        ("CN-000001", "-0.54"),
        ("DN-000001", "0.45"),
    ]


HOSTILE = [
    ("nope/cancel", {"customerId": "acme", "reason": "x"}, 404),
    ("a/cancel", {"customerId": "nobody", "reason": "x"}, 404),
    ("a/cancel", {"customerId": "acme", "reason": ""}, 422),
    ("a/cancel", {"customerId": "acme", "reason": "   "}, 422),
    ("a/cancel", {"customerId": "acme", "reason": "two\nlines"}, 422),
    ("a/cancel", {"customerId": "acme"}, 422),
    ("a/cancel", {"customerId": "acme", "reason": "x" * 501}, 422),
    ("a/amend", {"customerId": "acme", "reason": "x", "quantity": "-1"}, 422),
    ("a/amend", {"customerId": "acme", "reason": "x", "quantity": 3}, 422),
    ("a/amend", {"customerId": "acme", "reason": "x", "quantity": "1.5"}, 422),
    ("a/amend", {"customerId": "acme", "reason": "x", "quantity": "1" + "0" * 20}, 422),
    ("a/amend", {"customerId": "acme", "reason": "x", "quantity": "1e3"}, 422),
    ("a/amend", {"customerId": "acme", "reason": "x"}, 422),
    ("x" * 300 + "/cancel", {"customerId": "acme", "reason": "x"}, 404),
]


async def test_hostile_corrections_are_refused_and_change_nothing(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    await send(client, ingest_key, [event(event_id="a", quantity="1.5")])
    await wait_until_persisted(redis)
    for path, body, status in HOSTILE:
        response = await client.post(f"/v1/events/{path}", headers=auth(ingest_key), json=body)
        assert response.status_code == status, (path, body, response.text)
    assert await pg.fetchval("SELECT count(*) FROM event_corrections") == 0
    assert await pg.fetchval("SELECT sum(value) FROM hourly_usage WHERE metric_name = 'api_calls'") == 1.5
    assert await pg.fetchval("SELECT count(*) FROM usage_events WHERE cancelled_at IS NOT NULL") == 0


async def test_a_correction_before_the_event_is_persisted_is_a_409_to_retry(
    client: AsyncTestClient[Any], ingest_key: str, catalog: None, pg: asyncpg.Connection
) -> None:
    # Given an event accepted a moment ago and not persisted yet (no worker runs here)
    await send(client, ingest_key, [event(event_id="fresh", quantity="3")])
    assert await pg.fetchval("SELECT count(*) FROM event_ledger") == 0

    # When the application cancels it at once, then an id it never sent
    early = await correct(client, ingest_key, "fresh", "cancel", expect=409, reason="duplicate")
    never = await correct(client, ingest_key, "never-sent", "cancel", expect=404, reason="duplicate")

    # Then the first is "try again" (the client retries a 409), the second unknown
    assert early["detail"] == "event 'fresh' is accepted but not recorded yet: try again in a few seconds"
    listed = await client.get("/v1/events/fresh/corrections?customerId=acme", headers=auth(ingest_key))
    assert (listed.status_code, listed.json()) == (200, [])  # accepted, never corrected
    unknown = await client.get("/v1/events/never-sent/corrections?customerId=acme", headers=auth(ingest_key))
    assert unknown.status_code == 404
    assert "no event 'never-sent'" in never["detail"]
    assert await pg.fetchval("SELECT count(*) FROM event_corrections") == 0
