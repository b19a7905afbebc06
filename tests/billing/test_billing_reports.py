"""What billing reports: the live cost preview, the CSV exports, the review queue and the
invoice list, through the real pipeline, with exact amounts."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.infrastructure.periods import BillingPeriod, local_date, period_for, previous_period
from tests.billing.conftest import ClosedPeriod, closed_period, create_plan, draft, month_of, subscribe
from tests.clock import set_clock
from tests.conftest import WorkerProcess, wait_for, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter, roll_up_days

CENT = Decimal("0.01")
BASE = {"key": "base", "model": "flat", "amount": "10.00", "description": "Platform fee"}
CALLS = {
    "key": "calls",
    "model": "per_unit",
    "meter": "api_calls",
    "unitPrice": "0.01",
    "description": "API calls",
}
TEN_PERCENT = {"kind": "percentage", "percent": "10"}


def plan(plan_id: str, *charges: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": plan_id, "name": plan_id.title(), "currency": "USD", "charges": list(charges), **fields}


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


async def send(client: AsyncTestClient[Any], key: str, redis: Redis, events: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/events/batch", headers=auth(key), json={"events": events})
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == len(events), response.text
    await wait_until_persisted(redis)


# --- live cost preview ------------------------------------------------------------------------


def current_period(tz: str, now: datetime) -> tuple[int, BillingPeriod]:
    """An anchor three local days back, and the period of `now` on it (so that at least
    three days of it have passed: the projection divides by the elapsed time)."""
    anchor = local_date((now - timedelta(days=3)).timestamp(), tz).day
    return anchor, period_for(now, tz, anchor)


def _half_up(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


async def test_preview_shows_the_period_so_far_and_projects_usage_but_not_the_flat_fee(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
) -> None:
    # Given acme (Kolkata) on 10.00 flat + 0.01 per call since its current period started,
    # and the app's clock stopped at `now`
    tz = "Asia/Kolkata"
    now = datetime.now(UTC).replace(microsecond=0)
    set_clock(client, now)
    anchor, period = current_period(tz, now)
    await make_customer(client, admin_key, id="acme", timezone=tz, currency="USD")
    await make_meter(client, admin_key, metric="api_calls")
    await create_plan(client, admin_key, plan("basic", BASE, CALLS))
    await subscribe(
        client,
        admin_key,
        "acme",
        planId="basic",
        startDate=local_date(period.start.timestamp(), tz).isoformat(),
        anchorDay=anchor,
    )
    # And 100 calls now
    await send(client, ingest_key, redis, [event(customer="acme", quantity=100, timestamp=ms(now))])

    # When the preview is read
    response = await client.get("/v1/customers/acme/invoices/preview", headers=auth(admin_key))
    assert response.status_code == 200, response.text
    preview = response.json()

    # Then so far: 10.00 + 100 x 0.01, exactly
    assert (preview["customerId"], preview["currency"]) == ("acme", "USD")
    assert _instant(preview["periodStart"]) == period.start and _instant(preview["periodEnd"]) == period.end
    assert preview["soFar"] == {
        "subtotal": "11.00",
        "discountTotal": "0.00",
        "creditsApplied": "0.00",
        "total": "11.00",
    }
    lines = {line["chargeKey"]: line for line in preview["lines"]}
    assert (lines["calls"]["quantity"], lines["calls"]["unitPrice"], lines["calls"]["amount"]) == (
        "100",
        "0.01",
        "1.00",
    )
    assert (lines["base"]["kind"], lines["base"]["amount"]) == ("flat", "10.00")
    # And projected: the calls at the pace so far (period length / elapsed time to `now`),
    # the flat fee as it is
    length = Decimal((period.end - period.start).total_seconds())
    elapsed = Decimal((now - period.start).total_seconds())
    projected = preview["projected"]
    assert projected["subtotal"] == str(Decimal("10.00") + _half_up(100 * length / elapsed * CENT))
    assert Decimal(projected["subtotal"]) > Decimal("11.00")
    assert (projected["discountTotal"], projected["creditsApplied"], projected["total"]) == (
        "0.00",
        "0.00",
        projected["subtotal"],
    )


async def test_a_subscription_starting_mid_period_is_projected_from_its_start_on_billed_usage_only(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
) -> None:
    # Given acme's period began three local days ago, its subscription (0.01 a call) only at
    # the start of yesterday, 1,000 calls before the subscription and 100 after it
    tz = "Asia/Kolkata"
    now = datetime.now(UTC).replace(microsecond=0)
    set_clock(client, now)
    anchor, period = current_period(tz, now)
    subscribed = local_date((now - timedelta(days=1)).timestamp(), tz)
    await make_customer(client, admin_key, id="acme", timezone=tz, currency="USD")
    await make_meter(client, admin_key, metric="api_calls")
    await create_plan(client, admin_key, plan("calls", CALLS))
    await subscribe(
        client, admin_key, "acme", planId="calls", startDate=subscribed.isoformat(), anchorDay=anchor
    )
    await send(
        client,
        ingest_key,
        redis,
        [
            event(customer="acme", quantity=1000, timestamp=ms(period.start + timedelta(hours=1))),
            event(customer="acme", quantity=100, timestamp=ms(now)),
        ],
    )

    # When the preview is read
    response = await client.get("/v1/customers/acme/invoices/preview", headers=auth(admin_key))
    assert response.status_code == 200, response.text
    preview = response.json()

    # Then so far: only the 100 calls since the subscription began
    assert preview["soFar"]["total"] == "1.00"
    # And projected: those 100 at their pace since the subscription began, to the period's
    # end; the 1,000 unbilled calls and the days before the start play no part
    start = period_for(now, tz, anchor).start
    begun = max(start, datetime.combine(subscribed, datetime.min.time(), tzinfo=ZoneInfo(tz)))
    rest = Decimal((period.end - begun).total_seconds())
    elapsed = Decimal((now - begun).total_seconds())
    assert preview["projected"]["total"] == str(_half_up(100 * rest / elapsed * CENT))


async def test_preview_after_an_immediate_plan_change_projects_usage_to_the_period_end(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
) -> None:
    """ "Projected to its end at the pace seen so far" (PreviewView): after a plan change the
    rest of the period still has usage, priced on the new plan."""
    # Given acme on basic (10.00 + 0.01 per call) for the three days of its period so far,
    # 100 calls, then moved to cheap (10.00 + 0.005 per call) from the next hour
    tz = "Asia/Kolkata"
    now = datetime.now(UTC).replace(microsecond=0)
    set_clock(client, now)
    anchor, period = current_period(tz, now)
    await make_customer(client, admin_key, id="acme", timezone=tz, currency="USD")
    await make_meter(client, admin_key, metric="api_calls")
    await create_plan(client, admin_key, plan("basic", BASE, CALLS))
    await create_plan(client, admin_key, plan("cheap", BASE, {**CALLS, "unitPrice": "0.005"}))
    await subscribe(
        client,
        admin_key,
        "acme",
        planId="basic",
        startDate=local_date(period.start.timestamp(), tz).isoformat(),
        anchorDay=anchor,
    )
    await send(client, ingest_key, redis, [event(customer="acme", quantity=100, timestamp=ms(now))])
    change = _instant(
        (await subscribe(client, admin_key, "acme", planId="cheap", effective="immediate"))["startsAt"]
    )
    assert period.start < change < period.end

    # When the preview is read
    response = await client.get("/v1/customers/acme/invoices/preview", headers=auth(admin_key))
    assert response.status_code == 200, response.text
    preview = response.json()

    # Then so far: the flat fee split between the plans (10.00 in all, each half rounded
    # on its own, so within a cent) and the 100 calls on basic
    so_far = Decimal(preview["soFar"]["subtotal"])
    assert Decimal("10.99") <= so_far <= Decimal("11.01"), preview["soFar"]
    # And projected: the rest of the period (after the change) at no less than the pace so
    # far (100 calls / elapsed) on cheap's 0.005, in addition to what is there so far
    slowest_pace = Decimal(100) / Decimal((now - period.start).total_seconds())
    rest = slowest_pace * Decimal((period.end - change).total_seconds()) * Decimal("0.005")
    assert rest > Decimal("3.00")  # about 27 days at ~33 calls a day
    minimum = so_far + rest.quantize(CENT, rounding=ROUND_DOWN) - CENT
    assert Decimal(preview["projected"]["subtotal"]) >= minimum, (
        preview["soFar"],
        preview["projected"],
        minimum,
    )


async def test_preview_of_a_flat_fee_alone_projects_the_fee_itself(
    client: AsyncTestClient[Any],
    admin_key: str,
) -> None:
    tz = "America/New_York"
    anchor, period = current_period(tz, datetime.now(UTC))
    await make_customer(client, admin_key, id="acme", timezone=tz, currency="USD")
    await create_plan(client, admin_key, plan("flat", BASE, discounts=[TEN_PERCENT]))
    await subscribe(
        client,
        admin_key,
        "acme",
        planId="flat",
        startDate=local_date(period.start.timestamp(), tz).isoformat(),
        anchorDay=anchor,
    )
    # And 3.00 prepaid credit
    granted = await client.post(
        "/v1/customers/acme/credits", headers=auth(admin_key), json={"amount": "3.00"}
    )
    assert granted.status_code == 201, granted.text

    preview = (await client.get("/v1/customers/acme/invoices/preview", headers=auth(admin_key))).json()

    expected = {"subtotal": "10.00", "discountTotal": "1.00", "creditsApplied": "3.00", "total": "6.00"}
    assert preview["soFar"] == expected
    assert preview["projected"] == expected
    # A preview stores nothing
    listed = (await client.get("/v1/invoices?customerId=acme", headers=auth(admin_key))).json()
    assert listed == []


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- CSV export -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Adjusted:
    closed: ClosedPeriod
    invoice: dict[str, Any]
    adjustment: dict[str, Any]


@pytest.fixture
async def adjusted(
    client: AsyncTestClient[Any], admin_key: str, ingest_key: str, worker: WorkerProcess, redis: Redis
) -> Adjusted:
    """acme (Kolkata) on 10.00 flat + 0.01 per call less 10%: 100 calls in a closed period,
    approved (INV-000001: 11.00 - 1.10 = 9.90), then 50 late calls (DN-000001: +0.50 - 0.05)."""
    closed = closed_period("Asia/Kolkata")
    await make_customer(client, admin_key, id="acme", timezone=closed.tz, currency="USD")
    await make_meter(client, admin_key, metric="api_calls")
    await create_plan(client, admin_key, plan("basic", BASE, CALLS, discounts=[TEN_PERCENT]))
    await subscribe(
        client,
        admin_key,
        "acme",
        planId="basic",
        startDate=closed.start_date.isoformat(),
        anchorDay=closed.anchor_day,
    )
    await send(
        client,
        ingest_key,
        redis,
        [event(customer="acme", quantity=100, timestamp=closed.ms(closed.period.start + timedelta(hours=2)))],
    )
    invoice = await draft(client, admin_key, "acme", month_of(closed.period, closed.tz))
    approved = await client.post(
        f"/v1/invoices/{invoice['id']}/approve", headers=auth(admin_key), json={"approvedBy": "maria@vendor"}
    )
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["number"], body["subtotal"], body["discountTotal"], body["total"]) == (
        "INV-000001",
        "11.00",
        "1.10",
        "9.90",
    )

    await send(
        client,
        ingest_key,
        redis,
        [
            event(
                customer="acme",
                quantity=50,
                event_id="late-1",
                timestamp=closed.ms(closed.period.start + timedelta(hours=3)),
            )
        ],
    )

    async def with_adjustment() -> dict[str, Any] | None:
        view = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth(admin_key))).json()
        return view if view["adjustments"] else None

    view = await wait_for(with_adjustment, what="the debit note")
    [note] = view["adjustments"]
    assert (note["number"], note["kind"], note["amount"], note["subtotalDelta"], note["discountDelta"]) == (
        "DN-000001",
        "debit",
        "0.45",
        "0.50",
        "0.05",
    )
    return Adjusted(closed, view, note)


async def test_invoices_csv_has_the_invoice_and_its_debit_note(
    client: AsyncTestClient[Any],
    admin_key: str,
    adjusted: Adjusted,
) -> None:
    response = await client.get("/v1/invoices/export.csv", headers=auth(admin_key))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="invoices.csv"' in response.headers["content-disposition"]
    reader = csv.DictReader(io.StringIO(response.text))
    assert reader.fieldnames == [
        "document",
        "kind",
        "invoice_id",
        "invoice_number",
        "customer_id",
        "currency",
        "status",
        "period_start",
        "period_end",
        "subtotal",
        "discount_total",
        "credits_applied",
        "total",
        "issued_at",
        "computed_at",
    ]
    rows = list(reader)
    invoice, note = adjusted.invoice, adjusted.adjustment
    period = adjusted.closed.period
    common = {
        "invoice_id": str(invoice["id"]),
        "invoice_number": "INV-000001",
        "customer_id": "acme",
        "currency": "USD",
        "status": "finalized",
        "period_start": period.start.isoformat(),
        "period_end": period.end.isoformat(),
    }
    assert [{k: v for k, v in row.items() if k not in ("issued_at", "computed_at")} for row in rows] == [
        {
            "document": "INV-000001",
            "kind": "invoice",
            **common,
            "subtotal": "11.00",
            "discount_total": "1.10",
            "credits_applied": "0.00",
            "total": "9.90",
        },
        {
            "document": "DN-000001",
            "kind": "debit_note",
            **common,
            "subtotal": "0.50",
            "discount_total": "0.05",
            "credits_applied": "0.00",
            "total": "0.45",
        },
    ]
    assert _instant(rows[0]["issued_at"]) == _instant(invoice["finalizedAt"])
    assert _instant(rows[1]["issued_at"]) == _instant(note["createdAt"])
    assert rows[0]["computed_at"] != ""

    # The running period's draft: its state as the API says it, never issued, rated when
    running = await draft(client, admin_key, "acme")
    again = list(
        csv.DictReader(
            io.StringIO((await client.get("/v1/invoices/export.csv", headers=auth(admin_key))).text)
        )
    )
    [row] = [r for r in again if r["invoice_id"] == str(running["id"])]
    assert (row["document"], row["status"], row["issued_at"]) == (
        f"draft-{running['id']}",
        running["state"],
        "",
    )
    assert running["state"] == "draft" and row["total"] == running["total"]
    assert row["computed_at"] != ""
    # What is owed now: the rows of the invoice add up to its adjusted total
    assert sum(Decimal(row["total"]) for row in rows) == Decimal(invoice["adjustedTotal"]) == Decimal("10.35")


async def test_lines_csv_has_the_invoice_lines_and_the_note_lines(
    client: AsyncTestClient[Any],
    admin_key: str,
    adjusted: Adjusted,
) -> None:
    response = await client.get(
        "/v1/invoices/lines.csv?customerId=acme&status=finalized", headers=auth(admin_key)
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="invoice-lines.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    invoice_id = str(adjusted.invoice["id"])
    start, end = adjusted.closed.period.start.isoformat(), adjusted.closed.period.end.isoformat()
    fields = (
        "document",
        "position",
        "kind",
        "charge_key",
        "meter",
        "description",
        "quantity",
        "unit_price",
        "amount",
        "plan_id",
        "segment_start",
        "segment_end",
    )
    owners = {(row["invoice_id"], row["invoice_number"], row["customer_id"], row["currency"]) for row in rows}
    assert owners == {(invoice_id, "INV-000001", "acme", "USD")}
    # The share of the period each line covers: all of it here; a note's lines have none
    assert [row["proration"] for row in rows] == ["1", "1", "1", "", ""]
    assert [tuple(row[f] for f in fields) for row in rows] == [
        ("INV-000001", "0", "flat", "base", "", "Platform fee", "1", "10", "10.00", "basic", start, end),
        (
            "INV-000001",
            "1",
            "usage",
            "calls",
            "api_calls",
            "API calls",
            "100",
            "0.01",
            "1.00",
            "basic",
            start,
            end,
        ),
        (
            "INV-000001",
            "2",
            "discount",
            "discount-0",
            "",
            "10% discount",
            "1",
            "10",
            "-1.10",
            "basic",
            start,
            end,
        ),
        # The note's lines: what changed, per line (sorted by segment, kind, charge)
        ("DN-000001", "0", "discount", "discount-0", "", "10% discount", "0", "", "-0.05", "", start, ""),
        ("DN-000001", "1", "usage", "calls", "api_calls", "API calls", "50", "", "0.50", "", start, ""),
    ]
    # The note's lines add up to the note; the invoice's to the invoice
    assert sum(Decimal(r["amount"]) for r in rows if r["document"] == "DN-000001") == Decimal("0.45")
    assert sum(Decimal(r["amount"]) for r in rows if r["document"] == "INV-000001") == Decimal("9.90")


async def test_exports_filter_by_status_customer_and_period(
    client: AsyncTestClient[Any],
    admin_key: str,
    adjusted: Adjusted,
) -> None:
    period = adjusted.closed.period
    header_only = {
        "status=void",
        "status=draft",
        "customerId=nobody",
        f"from={_q(period.start + timedelta(seconds=1))}",
        f"to={_q(period.start)}",
    }
    for query in sorted(header_only):
        for path in ("/v1/invoices/export.csv", "/v1/invoices/lines.csv"):
            response = await client.get(f"{path}?{query}", headers=auth(admin_key))
            assert response.status_code == 200, (query, response.text)
            assert list(csv.DictReader(io.StringIO(response.text))) == [], (path, query)
    within = f"from={_q(period.start)}&to={_q(period.end)}"
    rows = list(
        csv.DictReader(
            io.StringIO((await client.get(f"/v1/invoices/export.csv?{within}", headers=auth(admin_key))).text)
        )
    )
    assert [row["document"] for row in rows] == ["INV-000001", "DN-000001"]


def _q(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


# --- review queue and invoice list -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TwoPeriods:
    closed: ClosedPeriod
    earlier: BillingPeriod
    earlier_invoice: dict[str, Any]
    closed_invoice: dict[str, Any]


@pytest.fixture
async def two_periods(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: Any,
) -> TwoPeriods:
    """acme (Kolkata) on 1.00 per call from the start of the period before the closed one:
    10 calls in that earlier period (approved: INV-000001 10.00), 100 in the closed one
    (its draft: 100.00, awaiting review)."""
    closed = closed_period("Asia/Kolkata")
    earlier = previous_period(closed.period, closed.tz, closed.anchor_day)
    await make_customer(client, admin_key, id="acme", timezone=closed.tz, currency="USD")
    await make_meter(client, admin_key, metric="api_calls")
    await create_plan(
        client,
        admin_key,
        plan("unit", {"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "1.00"}),
    )
    await subscribe(
        client,
        admin_key,
        "acme",
        planId="unit",
        startDate=local_date(earlier.start.timestamp(), closed.tz).isoformat(),
        anchorDay=closed.anchor_day,
    )
    # The earlier period started two months ago, more than the accepted lateness (35 days):
    # ingest refuses events for it, so its usage is written into the hourly aggregates the
    # way the worker would (one local hour, Kolkata has no DST, no group-by: group_key '').
    assert earlier.start < datetime.now(UTC) - timedelta(days=35)
    await pg.execute(
        "INSERT INTO hourly_usage (customer_id, metric_name, hour, group_key, value, event_count) "
        "VALUES ('acme', 'api_calls', $1, '', 10, 10)",
        earlier.start + timedelta(hours=5),
    )
    await roll_up_days(pg)
    await send(
        client,
        ingest_key,
        redis,
        [event(customer="acme", quantity=100, timestamp=closed.ms(closed.period.start + timedelta(hours=5)))],
    )
    earlier_draft = await draft(client, admin_key, "acme", month_of(earlier, closed.tz))
    closed_draft = await draft(client, admin_key, "acme", month_of(closed.period, closed.tz))
    assert (earlier_draft["total"], closed_draft["total"]) == ("10.00", "100.00")
    return TwoPeriods(closed, earlier, earlier_draft, closed_draft)


async def _queue(client: AsyncTestClient[Any], key: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/review-queue", headers=auth(key))
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_review_queue_flags_a_first_invoice_then_a_tenfold_change(
    client: AsyncTestClient[Any],
    admin_key: str,
    two_periods: TwoPeriods,
) -> None:
    earlier_id, closed_id = two_periods.earlier_invoice["id"], two_periods.closed_invoice["id"]
    # Before anything is approved both drafts are first invoices, oldest period first
    queue = await _queue(client, admin_key)
    assert [
        (
            item["invoice"]["id"],
            item["invoice"]["state"],
            item["invoice"]["total"],
            item["previousTotal"],
            item["changeRatio"],
            item["flags"],
        )
        for item in queue
    ] == [
        (earlier_id, "awaiting_review", "10.00", None, None, ["first_invoice"]),
        (closed_id, "awaiting_review", "100.00", None, None, ["first_invoice"]),
    ]
    # When the earlier one is approved
    approved = await client.post(f"/v1/invoices/{earlier_id}/approve", headers=auth(admin_key), json={})
    assert approved.status_code == 200, approved.text
    assert (approved.json()["number"], approved.json()["total"]) == ("INV-000001", "10.00")
    # Then the closed one is compared with it: 100.00 against 10.00 is ten times, flagged
    [item] = await _queue(client, admin_key)
    assert (
        item["invoice"]["id"],
        item["invoice"]["total"],
        item["previousTotal"],
        item["changeRatio"],
        item["flags"],
    ) == (closed_id, "100.00", "10.00", "10.00", ["large_change"])
    assert item["notes"] == ["total 100.00 against 10.00 last period"]


async def test_review_queue_flags_failed_events_of_the_period_only(
    client: AsyncTestClient[Any],
    admin_key: str,
    two_periods: TwoPeriods,
    pg: Any,
) -> None:
    closed = two_periods.closed
    await client.post(
        f"/v1/invoices/{two_periods.earlier_invoice['id']}/approve", headers=auth(admin_key), json={}
    )
    # Given events that failed to persist: one inside the closed period, one after it, one of
    # the period already replayed, and one of another customer (only the first counts)
    inside = ms(closed.period.start + timedelta(days=2))
    failed = [
        ("m-1", "acme", "e-1", inside, "failed"),
        ("m-1", "acme", "e-2", ms(closed.period.end), "failed"),
        ("m-2", "acme", "e-3", inside, "replayed"),
        ("m-2", "globex", "e-4", inside, "failed"),
    ]
    for message_id, customer, event_id, timestamp, status in failed:
        body = event(customer=customer, event_id=event_id, timestamp=timestamp, quantity=5)
        await pg.execute(
            "INSERT INTO failed_events (message_id, customer_id, event_id, event, received_at, reason, "
            "status) VALUES ($1, $2, $3, $4::jsonb, now(), 'database unavailable', $5)",
            message_id,
            customer,
            event_id,
            json.dumps(body),
            status,
        )
    # When the queue is read
    [item] = await _queue(client, admin_key)
    # Then the closed draft is flagged for its one failed event, after the large change
    assert item["invoice"]["id"] == two_periods.closed_invoice["id"]
    assert item["flags"] == ["large_change", "failed_events"]
    assert item["notes"][1] == "1 event(s) in this period failed to persist; replay them before approving"


async def test_invoice_list_filters_by_customer_and_state(
    client: AsyncTestClient[Any],
    admin_key: str,
    two_periods: TwoPeriods,
) -> None:
    earlier_id, closed_id = two_periods.earlier_invoice["id"], two_periods.closed_invoice["id"]
    assert (
        await client.post(f"/v1/invoices/{earlier_id}/approve", headers=auth(admin_key), json={})
    ).status_code == 200
    # Given also the current period's draft of acme, and globex with a closed draft of its own
    current_id = (await draft(client, admin_key, "acme"))["id"]
    closed = two_periods.closed
    await make_customer(client, admin_key, id="globex", timezone=closed.tz, currency="USD")
    await subscribe(
        client,
        admin_key,
        "globex",
        planId="unit",
        startDate=closed.start_date.isoformat(),
        anchorDay=closed.anchor_day,
    )
    globex_id = (await draft(client, admin_key, "globex", month_of(closed.period, closed.tz)))["id"]

    async def ids(query: str) -> list[int]:
        response = await client.get(f"/v1/invoices?{query}", headers=auth(admin_key))
        assert response.status_code == 200, response.text
        return [summary["id"] for summary in response.json()]

    # Then each filter returns exactly its invoices, newest first
    assert await ids("customerId=acme&state=awaiting_review") == [closed_id]
    assert await ids("customerId=acme&state=draft") == [current_id]
    assert await ids("customerId=acme&state=finalized") == [earlier_id]
    assert await ids("customerId=acme&state=void") == []
    assert await ids("customerId=acme") == [current_id, closed_id, earlier_id]
    assert await ids("state=awaiting_review") == [globex_id, closed_id]
    assert await ids("customerId=globex") == [globex_id]
    assert await ids("customerId=nobody") == []
    # Paging: newest first, `before` the last id seen
    assert await ids("customerId=acme&limit=2") == [current_id, closed_id]
    assert await ids(f"customerId=acme&limit=2&before={closed_id}") == [earlier_id]
    # And a summary carries the state and totals as evaluated now
    [summary] = (
        await client.get("/v1/invoices?customerId=acme&state=finalized", headers=auth(admin_key))
    ).json()
    assert (summary["number"], summary["state"], summary["total"], summary["adjustedTotal"]) == (
        "INV-000001",
        "finalized",
        "10.00",
        "10.00",
    )
