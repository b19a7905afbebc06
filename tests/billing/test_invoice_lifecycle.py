"""From usage to an approved invoice, and late events to an automatic adjustment: through
the real pipeline (HTTP ingest, broker, worker, Postgres), with the exact amounts."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from tests.billing.conftest import ClosedPeriod, closed_period, create_plan, draft, lines_by_key, subscribe
from tests.conftest import WorkerProcess, wait_for, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter

PRO = {
    "id": "pro",
    "name": "Pro",
    "currency": "USD",
    "charges": [
        {"key": "base", "model": "flat", "amount": "49.00", "description": "Platform fee"},
        {
            "key": "calls-eu",
            "model": "per_unit",
            "meter": "api_calls",
            "unitPrice": "0.003",
            "dimensions": {"region": "eu"},
        },
        {
            "key": "calls",
            "model": "graduated",
            "meter": "api_calls",
            "tiers": [
                {"upTo": "1000", "unitPrice": "0"},
                {"upTo": "10000", "unitPrice": "0.002"},
                {"unitPrice": "0.001"},
            ],
        },
        {
            "key": "storage",
            "model": "per_unit",
            "meter": "storage_gb",
            "unitPrice": "0.10",
            "includedQuantity": "10",
        },
        {"key": "seats", "model": "per_unit", "meter": "seats", "unitPrice": "5.00"},
    ],
    "discounts": [{"kind": "percentage", "percent": "10"}],
}


@pytest.fixture
async def billed_customer(
    client: AsyncTestClient[Any], admin_key: str, ingest_key: str, worker: WorkerProcess, redis: Redis
) -> ClosedPeriod:
    """acme (Asia/Kolkata, +05:30) on plan pro, with a closed period's usage persisted."""
    closed = closed_period("Asia/Kolkata")
    await make_customer(client, admin_key, id="acme", timezone=closed.tz, currency="USD")
    await make_meter(client, admin_key, metric="api_calls", group_by=["region"])
    await make_meter(client, admin_key, metric="storage_gb", aggregation="max", unit="GB")
    await make_meter(client, admin_key, metric="seats", aggregation="latest", unit="seat")
    await create_plan(client, admin_key, PRO)
    await subscribe(
        client,
        admin_key,
        "acme",
        planId="pro",
        startDate=closed.start_date.isoformat(),
        anchorDay=closed.anchor_day,
    )
    start, end = closed.period.start, closed.period.end
    events = [
        # Exact to the millisecond at both boundaries, in a +05:30 zone.
        event(quantity=999, timestamp=closed.ms(start) - 1, dimensions={"region": "us"}),
        event(quantity=1500, timestamp=closed.ms(start), dimensions={"region": "us"}),
        event(quantity=200, timestamp=closed.ms(end) - 1, dimensions={"region": "eu"}),
        event(quantity=500, timestamp=closed.ms(end), dimensions={"region": "us"}),
        event(metric="storage_gb", quantity=25, timestamp=closed.ms(start + timedelta(hours=5))),
        event(metric="storage_gb", quantity=12, timestamp=closed.ms(start + timedelta(hours=6))),
        event(metric="seats", quantity=10, timestamp=closed.ms(start + timedelta(hours=1))),
    ]
    response = await client.post("/v1/events/batch", headers=auth(ingest_key), json={"events": events})
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 7
    await wait_until_persisted(redis)
    return closed


async def test_usage_becomes_an_exact_draft_in_the_customers_zone(
    client: AsyncTestClient[Any],
    admin_key: str,
    billed_customer: ClosedPeriod,
) -> None:
    invoice = await draft(client, admin_key, "acme", _month(billed_customer))
    assert invoice["state"] == "awaiting_review"
    assert invoice["number"] is None
    lines = lines_by_key(invoice)
    # 1500 us calls: 1000 free, 500 at 0.002. The 999 before and 500 at the end are not in it.
    assert (lines["calls"]["quantity"], lines["calls"]["amount"]) == ("1500", "1.00")
    tiers = [(t["quantity"], t["amount"]) for t in lines["calls"]["tiers"]]
    assert tiers == [("1000", "0"), ("500", "1.000")]
    assert (lines["calls-eu"]["quantity"], lines["calls-eu"]["amount"]) == ("200", "0.60")
    assert (
        lines["storage"]["quantity"],
        lines["storage"]["billableQuantity"],
        lines["storage"]["amount"],
    ) == ("25", "15", "1.50")
    assert (lines["seats"]["quantity"], lines["seats"]["amount"]) == ("10", "50.00")
    assert lines["base"]["amount"] == "49.00"
    assert lines["discount-0"]["amount"] == "-10.21"
    assert (invoice["subtotal"], invoice["discountTotal"], invoice["creditsApplied"], invoice["total"]) == (
        "102.10",
        "10.21",
        "0.00",
        "91.89",
    )
    assert invoice["completeThrough"] is not None


async def test_approved_invoice_then_late_events_become_one_exact_credit_note(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    billed_customer: ClosedPeriod,
    redis: Redis,
) -> None:
    closed = billed_customer
    invoice = await draft(client, admin_key, "acme", _month(closed))
    approved = await client.post(
        f"/v1/invoices/{invoice['id']}/approve", headers=auth(admin_key), json={"approvedBy": "maria@vendor"}
    )
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["state"], body["number"], body["total"], body["approvedBy"]) == (
        "finalized",
        "INV-000001",
        "91.89",
        "maria@vendor",
    )

    # Late: 100 more eu calls (+0.30) and a later seat count of 8 (10 -> 8: -10.00).
    late = [
        event(
            quantity=100,
            timestamp=closed.ms(closed.period.start + timedelta(hours=2)),
            dimensions={"region": "eu"},
            event_id="late-calls",
        ),
        event(
            metric="seats",
            quantity=8,
            timestamp=closed.ms(closed.period.end - timedelta(hours=1)),
            event_id="late-seats",
        ),
    ]
    response = await client.post("/v1/events/batch", headers=auth(ingest_key), json={"events": late})
    assert response.status_code == 202 and response.json()["accepted"] == 2
    await wait_until_persisted(redis)

    async def adjusted() -> dict[str, Any] | None:
        view = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth(admin_key))).json()
        return view if view["adjustments"] else None

    view = await wait_for(adjusted, what="the automatic adjustment")
    [note] = view["adjustments"]
    assert (note["number"], note["kind"], note["amount"]) == ("CN-000001", "credit", "-8.73")
    assert (note["subtotalDelta"], note["discountDelta"]) == ("-9.70", "-0.97")
    assert note["eventIds"] == ["late-calls", "late-seats"] and note["eventCount"] == 2
    deltas = {line["chargeKey"]: (line["quantityDelta"], line["amountDelta"]) for line in note["lines"]}
    assert deltas == {"calls-eu": ("100", "0.30"), "seats": ("-2", "-10.00"), "discount-0": ("0", "0.97")}
    # The finalized invoice itself never changes: original + adjustments = what is true now.
    assert (view["total"], view["adjustedTotal"], view["number"]) == ("91.89", "83.16", "INV-000001")


async def test_a_note_names_the_late_events_that_changed_no_amount_before_it(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    billed_customer: ClosedPeriod,
    redis: Redis,
    pg: Any,
) -> None:
    # Given INV-000001 issued with 200 EU calls at 0.003 (USD 0.60)
    closed = billed_customer
    invoice = await _issued(client, admin_key, closed)
    at = closed.ms(closed.period.start + timedelta(hours=3))

    async def send_late(event_id: str, quantity: int) -> None:
        late = event(quantity=quantity, timestamp=at, dimensions={"region": "eu"}, event_id=event_id)
        assert (await client.post("/v1/events", headers=auth(ingest_key), json=late)).status_code == 202
        await wait_until_persisted(redis)

    # When one late EU call arrives (201 calls: still USD 0.60, no note), then two more
    # (203 calls: USD 0.61)
    await send_late("late-1", 1)

    async def settled() -> bool:
        return bool(
            await pg.fetchval("SELECT settled_at IS NOT NULL FROM late_events WHERE event_id = 'late-1'")
        )

    await wait_for(settled, what="the first late event settled without a note")
    assert (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth(admin_key))).json()[
        "adjustments"
    ] == []
    await send_late("late-2", 2)

    # Then the note's quantity change is both events' (3), and it names both
    view = await wait_for(lambda: _with_adjustments(client, admin_key, invoice["id"]), what="the note")
    [note] = view["adjustments"]
    assert (note["number"], note["amount"]) == ("DN-000001", "0.01")
    assert {line["chargeKey"]: line["quantityDelta"] for line in note["lines"]}["calls-eu"] == "3"
    assert (note["eventIds"], note["eventCount"]) == (["late-1", "late-2"], 2)
    assert note["reason"] == "2 events arrived after INV-000001 was finalized"


async def test_a_duplicate_after_finalization_adjusts_nothing(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    billed_customer: ClosedPeriod,
    redis: Redis,
    pg: Any,
) -> None:
    closed = billed_customer
    invoice = await _issued(client, admin_key, closed)
    again = event(
        quantity=1500, timestamp=closed.ms(closed.period.start), dimensions={"region": "us"}, event_id="dup-1"
    )
    for _ in range(2):
        await client.post("/v1/events/batch", headers=auth(ingest_key), json={"events": [again]})
    await wait_until_persisted(redis)
    # The first send was late and counted once; the second was a duplicate.
    view = await wait_for(lambda: _with_adjustments(client, admin_key, invoice["id"]), what="adjustment")
    assert [a["amount"] for a in view["adjustments"]] == ["2.70"]  # 1500 more at 0.002 = 3.00, less 10%
    assert await pg.fetchval("SELECT count(*) FROM late_events") == 1


async def test_draft_includes_late_events_without_an_adjustment(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    billed_customer: ClosedPeriod,
    redis: Redis,
    pg: Any,
) -> None:
    closed = billed_customer
    before = await draft(client, admin_key, "acme", _month(closed))
    late = event(
        quantity=100,
        timestamp=closed.ms(closed.period.start + timedelta(days=1)),
        dimensions={"region": "eu"},
    )
    assert (await client.post("/v1/events", headers=auth(ingest_key), json=late)).status_code == 202
    await wait_until_persisted(redis)
    after = (await client.get(f"/v1/invoices/{before['id']}", headers=auth(admin_key))).json()
    assert (before["total"], after["total"]) == ("91.89", "92.16")  # +100 x 0.003 less 10%
    assert after["id"] == before["id"] and after["adjustments"] == []
    assert await pg.fetchval("SELECT count(*) FROM late_events") == 0


async def test_late_events_re_rate_a_draft_awaiting_review_in_the_queue(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    billed_customer: ClosedPeriod,
    redis: Redis,
) -> None:
    # Given the ended period's draft in the review queue at USD 91.89
    closed = billed_customer
    drafted = await draft(client, admin_key, "acme", _month(closed))

    async def queued_total() -> str:
        queue = (await client.get("/v1/review-queue", headers=auth(admin_key))).json()
        return str(next(item["invoice"]["total"] for item in queue if item["invoice"]["id"] == drafted["id"]))

    assert await queued_total() == "91.89"

    # When 100 more EU calls of that period arrive late
    late = event(
        quantity=100,
        timestamp=closed.ms(closed.period.start + timedelta(days=1)),
        dimensions={"region": "eu"},
    )
    assert (await client.post("/v1/events", headers=auth(ingest_key), json=late)).status_code == 202
    await wait_until_persisted(redis)

    # Then the queue shows the total approving it would issue, without anyone opening it
    async def re_rated() -> bool:
        return await queued_total() == "92.16"  # +100 x 0.003 less 10%

    await wait_for(re_rated, timeout=20, what="the queued draft re-rated")


async def test_prepaid_credit_is_drawn_at_approval_and_given_back_by_void(
    client: AsyncTestClient[Any],
    admin_key: str,
    billed_customer: ClosedPeriod,
) -> None:
    granted = await client.post(
        "/v1/customers/acme/credits",
        headers=auth(admin_key),
        json={"amount": "20.00", "description": "prepaid"},
    )
    assert granted.status_code == 201, granted.text
    invoice = await draft(client, admin_key, "acme", _month(billed_customer))
    assert (invoice["creditsApplied"], invoice["total"]) == ("20.00", "71.89")
    approved = (
        await client.post(f"/v1/invoices/{invoice['id']}/approve", headers=auth(admin_key), json={})
    ).json()
    assert (approved["creditsApplied"], approved["total"]) == ("20.00", "71.89")
    balance = (await client.get("/v1/customers/acme/credits", headers=auth(admin_key))).json()
    assert balance["balance"] == "0.00"
    assert [(g["amount"], g["remaining"]) for g in balance["grants"]] == [("20.00", "0.00")]

    voided = await client.post(
        f"/v1/invoices/{invoice['id']}/void", headers=auth(admin_key), json={"reason": "wrong seats"}
    )
    assert voided.status_code == 200, voided.text
    reissue = voided.json()
    assert (reissue["state"], reissue["replacesId"], reissue["total"]) == (
        "awaiting_review",
        invoice["id"],
        "71.89",
    )
    old = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth(admin_key))).json()
    assert (old["state"], old["number"], old["voidReason"], old["replacedById"]) == (
        "void",
        "INV-000001",
        "wrong seats",
        reissue["id"],
    )
    balance = (await client.get("/v1/customers/acme/credits", headers=auth(admin_key))).json()
    assert balance["balance"] == "20.00"
    second = (
        await client.post(f"/v1/invoices/{reissue['id']}/approve", headers=auth(admin_key), json={})
    ).json()
    assert (second["number"], second["total"]) == ("INV-000002", "71.89")


async def test_credit_an_unapproved_draft_will_draw_is_not_offered_to_the_next_period_too(
    client: AsyncTestClient[Any],
    admin_key: str,
    billed_customer: ClosedPeriod,
) -> None:
    # Given USD 100.00 of credit granted while the ended period's draft (USD 91.89 before
    # credit) awaits review, and the running period's platform fee (49.00 less 10%: 44.10)
    granted = await client.post(
        "/v1/customers/acme/credits", headers=auth(admin_key), json={"amount": "100.00"}
    )
    assert granted.status_code == 201, granted.text
    ended = await draft(client, admin_key, "acme", _month(billed_customer))
    assert (ended["creditsApplied"], ended["total"]) == ("91.89", "0.00")

    # Then the running period is offered only what that draft leaves: 8.11, not 100 again
    current = await draft(client, admin_key, "acme")
    assert (current["subtotal"], current["creditsApplied"], current["total"]) == ("49.00", "8.11", "35.99")
    preview = (await client.get("/v1/customers/acme/invoices/preview", headers=auth(admin_key))).json()
    assert (preview["soFar"]["creditsApplied"], preview["soFar"]["total"]) == ("8.11", "35.99")
    # And the ended draft, rated again, still has its whole credit (the later draft's claim
    # does not count against an earlier period)
    again = await draft(client, admin_key, "acme", _month(billed_customer))
    assert (again["creditsApplied"], again["total"]) == ("91.89", "0.00")

    # When it is approved, what it drew is gone from the grant, and the running period's
    # offer is the same 8.11
    approved = await client.post(f"/v1/invoices/{ended['id']}/approve", headers=auth(admin_key), json={})
    assert approved.status_code == 200, approved.text
    current = await draft(client, admin_key, "acme")
    assert (current["creditsApplied"], current["total"]) == ("8.11", "35.99")


async def test_credit_granted_after_a_draft_was_rated_goes_to_that_draft_first(
    client: AsyncTestClient[Any],
    admin_key: str,
    billed_customer: ClosedPeriod,
    worker: WorkerProcess,
) -> None:
    # Given the ended period's draft rated with no credit (USD 91.89 to pay)
    ended = await draft(client, admin_key, "acme", _month(billed_customer))
    assert (ended["creditsApplied"], ended["total"]) == ("0.00", "91.89")
    # and the running period's draft, stored at USD 44.10
    running = await draft(client, admin_key, "acme")
    assert (running["creditsApplied"], running["total"]) == ("0.00", "44.10")

    # When USD 100.00 is granted, and nobody opens that draft
    granted = await client.post(
        "/v1/customers/acme/credits", headers=auth(admin_key), json={"amount": "100.00"}
    )
    assert granted.status_code == 201, granted.text

    # Then the running period is offered only what that draft will leave (100 - 91.89)
    preview = (await client.get("/v1/customers/acme/invoices/preview", headers=auth(admin_key))).json()
    assert (preview["soFar"]["creditsApplied"], preview["soFar"]["total"]) == ("8.11", "35.99")

    # And the review queue shows the draft with the credit it will draw, re-rated by itself
    async def queued() -> bool:
        queue = (await client.get("/v1/review-queue", headers=auth(admin_key))).json()
        mine = next(item["invoice"] for item in queue if item["invoice"]["id"] == ended["id"])
        return bool(mine["total"] == "0.00")

    await wait_for(queued, timeout=20, what="the draft re-rated with the new credit")

    # And the running period's stored draft too, as the finance export reads it
    async def exported() -> bool:
        export = await client.get("/v1/invoices/export.csv", headers=auth(admin_key))
        [row] = [r for r in csv.DictReader(io.StringIO(export.text)) if r["invoice_id"] == str(running["id"])]
        return (row["credits_applied"], row["total"]) == ("8.11", "35.99")

    await wait_for(exported, timeout=20, what="the running draft re-rated with the credit left to it")


async def _issued(client: AsyncTestClient[Any], key: str, closed: ClosedPeriod) -> dict[str, Any]:
    """The closed period's invoice, drafted and approved."""
    invoice = await draft(client, key, "acme", _month(closed))
    approved = await client.post(f"/v1/invoices/{invoice['id']}/approve", headers=auth(key), json={})
    assert approved.status_code == 200, approved.text
    return dict(approved.json())


async def _with_adjustments(client: AsyncTestClient[Any], key: str, invoice_id: int) -> dict[str, Any] | None:
    view: dict[str, Any] = (await client.get(f"/v1/invoices/{invoice_id}", headers=auth(key))).json()
    return view if view["adjustments"] else None


def _month(closed: ClosedPeriod) -> str:
    from tests.billing.conftest import month_of

    return month_of(closed.period, closed.tz)
