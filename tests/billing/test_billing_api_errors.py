"""Bad input to the billing API gets a clear error naming the problem, and changes nothing.

Every case checks the status code, that the message (`detail`, or the per-field `extra` of a
body validation error) names the field or the problem, and that no plan, subscription,
credit grant, invoice or document number was written or changed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from httpx import Response
from litestar.testing import AsyncTestClient

from portal.infrastructure.periods import period_for
from tests.billing.conftest import ClosedPeriod, closed_period, create_plan, draft, month_of, subscribe
from tests.clock import BOUNDARIES, Boundary, set_clock
from tests.factories import auth, make_customer, make_meter

CALLS = {"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.01"}
BASE = {"key": "base", "model": "flat", "amount": "10.00"}


def plan(
    plan_id: str = "basic",
    *,
    currency: str = "USD",
    charges: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    return {
        "id": plan_id,
        "name": plan_id.title(),
        "currency": currency,
        "charges": [CALLS] if charges is None else charges,
        **fields,
    }


def problem(response: Response) -> str:
    """What the caller is told: the detail and, for body validation errors, each field's message."""
    body = response.json()
    return f"{body.get('detail', '')} {body.get('extra', '')}"


def assert_error(response: Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    told = problem(response)
    for fragment in fragments:
        assert fragment in told, f"{fragment!r} not in {told!r}"


COUNTED = ("plans", "subscriptions", "credit_grants", "invoices", "invoice_lines", "document_numbers")


async def counts(pg: Any) -> dict[str, int]:
    return {table: int(await pg.fetchval(f"SELECT count(*) FROM {table}")) for table in COUNTED}


# --- plans ------------------------------------------------------------------------------------

INVALID_PLANS: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "per-unit-without-unit-price",
        plan(charges=[{"key": "calls", "model": "per_unit", "meter": "api_calls"}]),
        ["charge calls.unitPrice", "required for a per_unit charge"],
    ),
    ("unknown-currency", plan(currency="XYZ"), ["currency", "'XYZ'", "ISO 4217"]),
    (
        "tiers-not-rising",
        plan(
            charges=[
                {
                    "key": "calls",
                    "model": "graduated",
                    "meter": "api_calls",
                    "tiers": [
                        {"upTo": "1000", "unitPrice": "0.01"},
                        {"upTo": "500", "unitPrice": "0.005"},
                        {"unitPrice": "0.001"},
                    ],
                }
            ]
        ),
        ["charge calls.tiers[1].upTo", "tiers must rise", "500", "1000"],
    ),
    (
        "unknown-meter",
        plan(charges=[{**CALLS, "meter": "storage_gb"}]),
        ["charge calls.meter", "no meter 'storage_gb'"],
    ),
    (
        "dimension-not-grouped-by",
        plan(charges=[{**CALLS, "dimensions": {"country": "de"}}]),
        ["charge calls.dimensions", "'country'", "groupBy"],
    ),
    ("unknown-field", plan(colour="blue"), ["unknown field `colour`"]),
    ("unknown-charge-field", plan(charges=[{**CALLS, "unit_price": "0.01"}]), ["unknown field `unit_price`"]),
]


@pytest.mark.parametrize(
    ("body", "fragments"), [(b, f) for _, b, f in INVALID_PLANS], ids=[name for name, _, _ in INVALID_PLANS]
)
async def test_an_invalid_plan_is_refused_naming_the_problem(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: Any,
    body: dict[str, Any],
    fragments: list[str],
) -> None:
    # Given a meter api_calls grouped by region
    await make_meter(client, admin_key, metric="api_calls", group_by=["region"])
    # When the plan is posted
    response = await client.post("/v1/plans", headers=auth(admin_key), json=body)
    # Then 422 naming the problem, and no plan exists
    assert_error(response, 422, *fragments)
    assert await pg.fetchval("SELECT count(*) FROM plans") == 0


async def test_the_same_plan_twice_is_one_plan_and_another_price_for_its_id_is_refused(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: Any,
) -> None:
    await make_meter(client, admin_key, metric="api_calls", group_by=["region"])
    first = await client.post("/v1/plans", headers=auth(admin_key), json=plan())
    assert first.status_code == 201, first.text
    # The same definition again: 200 with the plan, still one row
    again = await client.post("/v1/plans", headers=auth(admin_key), json=plan())
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert await pg.fetchval("SELECT count(*) FROM plans") == 1
    # The same id with another price: 409, and the stored plan keeps its price
    repriced = await client.post(
        "/v1/plans", headers=auth(admin_key), json=plan(charges=[{**CALLS, "unitPrice": "0.02"}])
    )
    assert_error(repriced, 409, "'basic'", "immutable")
    assert await pg.fetchval("SELECT count(*) FROM plans") == 1
    stored = (await client.get("/v1/plans/basic", headers=auth(admin_key))).json()
    assert stored["charges"][0]["unitPrice"] == "0.01"


# --- subscriptions ----------------------------------------------------------------------------


async def _catalog(client: AsyncTestClient[Any], key: str, *, tz: str = "UTC") -> None:
    """Customer acme billed in USD, meter api_calls, plans basic and plus (USD), euro (EUR)."""
    await make_customer(client, key, id="acme", timezone=tz, currency="USD")
    await make_meter(client, key, metric="api_calls")
    await create_plan(client, key, plan("basic"))
    await create_plan(client, key, plan("plus", charges=[{**CALLS, "unitPrice": "0.005"}]))
    await create_plan(client, key, plan("euro", currency="EUR"))


async def _subscriptions(pg: Any) -> list[tuple[str, datetime, datetime | None]]:
    rows = await pg.fetch("SELECT plan_id, starts_at, ends_at FROM subscriptions ORDER BY starts_at, id")
    return [(r["plan_id"], r["starts_at"], r["ends_at"]) for r in rows]


@pytest.mark.parametrize(
    ("customer", "body", "status", "fragments"),
    [
        ("nobody", {"planId": "basic"}, 404, ["no customer 'nobody'"]),
        ("acme", {"planId": "gold"}, 404, ["no plan 'gold'"]),
        ("acme", {"planId": "euro"}, 422, ["planId", "EUR", "USD"]),
        ("acme", {"planId": "basic", "anchorDay": 0}, 422, ["anchorDay"]),
        ("acme", {"planId": "basic", "anchorDay": 32}, 422, ["anchorDay"]),
        ("acme", {"planId": "basic", "startDate": "2026-02-30"}, 422, ["startDate"]),
        ("acme", {"planId": "basic", "effective": "tomorrow"}, 422, ["effective"]),
        ("acme", {"plan": "basic"}, 422, ["unknown field `plan`"]),
    ],
    ids=[
        "unknown-customer",
        "unknown-plan",
        "other-currency",
        "anchor-0",
        "anchor-32",
        "no-such-date",
        "bad-effective",
        "unknown-field",
    ],
)
async def test_a_first_subscription_with_bad_input_is_refused(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: Any,
    customer: str,
    body: dict[str, Any],
    status: int,
    fragments: list[str],
) -> None:
    await _catalog(client, admin_key)
    before = await counts(pg)
    response = await client.post(
        f"/v1/customers/{customer}/subscriptions", headers=auth(admin_key), json=body
    )
    assert_error(response, status, *fragments)
    assert await counts(pg) == before
    assert before["subscriptions"] == 0


@pytest.mark.parametrize(
    ("tz", "body", "fragments"),
    [
        ("UTC", {"startDate": "2026-01-01"}, ["startDate", "subscribed already"]),
        ("UTC", {"anchorDay": 15}, ["anchorDay", "stays"]),
        ("UTC", {"effectiveAt": timedelta(minutes=30)}, ["effectiveAt", "hour"]),
        ("UTC", {"effectiveAt": timedelta(seconds=1)}, ["effectiveAt", "hour"]),
        # 19:00Z is a whole UTC hour but 00:30 in Kolkata (+05:30): not one of the customer's hours.
        ("Asia/Kolkata", {"effectiveAt": timedelta(minutes=30)}, ["effectiveAt", "hour"]),
        ("UTC", {"effectiveAt": "naive"}, ["effectiveAt", "time zone"]),
        ("UTC", {"effectiveAt": timedelta(days=-400)}, ["effectiveAt", "before the first subscription"]),
    ],
    ids=[
        "start-date-again",
        "other-anchor",
        "half-past",
        "one-second-past",
        "half-past-in-kolkata",
        "no-offset",
        "before-first",
    ],
)
@pytest.mark.parametrize("boundary", BOUNDARIES)
async def test_a_plan_change_with_bad_input_is_refused_and_the_subscription_stays(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: Any,
    tz: str,
    body: dict[str, Any],
    fragments: list[str],
    boundary: Boundary,
) -> None:
    # Given acme subscribed to basic from today (by the app's clock, a second from a day's
    # turn in UTC or Kolkata), anchored on a day other than 15
    await _catalog(client, admin_key, tz=tz)
    today = boundary.at
    set_clock(client, today)
    anchor = 1 if today.day == 15 else 14 if today.day == 1 else today.day
    first = await subscribe(client, admin_key, "acme", planId="basic", anchorDay=anchor)
    before, subs = await counts(pg), await _subscriptions(pg)
    # When it changes to plus with a bad field (effectiveAt: an offset from the next period start)
    if isinstance(body.get("effectiveAt"), timedelta):
        at = period_for(today, tz, anchor).end + body["effectiveAt"]
        body = {**body, "effectiveAt": at.isoformat()}
    elif body.get("effectiveAt") == "naive":
        naive = period_for(today, tz, anchor).end.replace(tzinfo=None)
        body = {**body, "effectiveAt": naive.isoformat()}
    response = await client.post(
        "/v1/customers/acme/subscriptions", headers=auth(admin_key), json={"planId": "plus", **body}
    )
    # Then 422 naming the field, and the subscription is as it was
    assert_error(response, 422, *fragments)
    assert await counts(pg) == before
    assert await _subscriptions(pg) == subs
    assert [
        s["id"]
        for s in (await client.get("/v1/customers/acme/subscriptions", headers=auth(admin_key))).json()
    ] == [first["id"]]


async def test_the_same_plan_again_at_the_same_instant_is_a_conflict(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: Any,
) -> None:
    # Given acme on basic, with a change to plus scheduled for the next period
    await _catalog(client, admin_key)
    await subscribe(client, admin_key, "acme", planId="basic")
    scheduled = await subscribe(client, admin_key, "acme", planId="plus")
    subs = await _subscriptions(pg)
    assert [(plan_id, ends is None) for plan_id, _, ends in subs] == [("basic", False), ("plus", True)]
    # When the same change is asked again (same plan, same instant), explicitly or by default
    for body in ({"planId": "plus"}, {"planId": "plus", "effectiveAt": scheduled["startsAt"]}):
        response = await client.post("/v1/customers/acme/subscriptions", headers=auth(admin_key), json=body)
        # Then 409 saying it is already on that plan then, and nothing changed
        assert_error(response, 409, "already on plan plus")
        assert await _subscriptions(pg) == subs
    # And basic an hour after it started (when it is on basic) is a conflict too
    on_basic = (subs[0][1] + timedelta(hours=1)).isoformat()
    again = await client.post(
        "/v1/customers/acme/subscriptions",
        headers=auth(admin_key),
        json={"planId": "basic", "effectiveAt": on_basic},
    )
    assert_error(again, 409, "already on plan basic")
    assert await _subscriptions(pg) == subs


async def _finalized(
    client: AsyncTestClient[Any], key: str, tz: str = "Asia/Kolkata"
) -> tuple[ClosedPeriod, dict[str, Any]]:
    """acme (USD) on a 10.00 flat plan from the start of a closed period, its invoice approved."""
    closed = closed_period(tz)
    await make_customer(client, key, id="acme", timezone=tz, currency="USD")
    await create_plan(client, key, plan("flat", charges=[BASE]))
    await create_plan(client, key, plan("flat2", charges=[{**BASE, "amount": "20.00"}]))
    await subscribe(
        client,
        key,
        "acme",
        planId="flat",
        startDate=closed.start_date.isoformat(),
        anchorDay=closed.anchor_day,
    )
    invoice = await draft(client, key, "acme", month_of(closed.period, tz))
    approved = await client.post(f"/v1/invoices/{invoice['id']}/approve", headers=auth(key), json={})
    assert approved.status_code == 200, approved.text
    body = dict(approved.json())
    assert (body["state"], body["number"], body["total"]) == ("finalized", "INV-000001", "10.00")
    return closed, body


async def test_a_change_into_an_invoiced_period_is_a_conflict(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: Any,
) -> None:
    # Given acme's closed period is finalized (INV-000001)
    closed, invoice = await _finalized(client, admin_key)
    before, subs = await counts(pg), await _subscriptions(pg)
    # When a change to flat2 is backdated to a day into that period
    at = closed.period.start + timedelta(days=1)
    response = await client.post(
        "/v1/customers/acme/subscriptions",
        headers=auth(admin_key),
        json={"planId": "flat2", "effectiveAt": at.isoformat()},
    )
    # Then 409 naming the invoice, and neither the subscription nor the invoice changed
    assert_error(response, 409, "already invoiced", "INV-000001", "void that invoice first")
    assert await counts(pg) == before
    assert await _subscriptions(pg) == subs
    view = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth(admin_key))).json()
    assert (view["state"], view["number"], view["total"]) == ("finalized", "INV-000001", "10.00")
    # The first instant after the invoiced period is not in it: a change from then is taken
    after = await client.post(
        "/v1/customers/acme/subscriptions",
        headers=auth(admin_key),
        json={"planId": "flat2", "effectiveAt": closed.period.end.isoformat()},
    )
    assert after.status_code == 201, after.text
    assert [(plan_id, starts, ends) for plan_id, starts, ends in await _subscriptions(pg)] == [
        ("flat", subs[0][1], closed.period.end),
        ("flat2", closed.period.end, None),
    ]


# --- credits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("customer", "amount", "status", "fragments"),
    [
        ("acme", "0", 422, ["amount", "greater than 0"]),
        ("acme", "0.00", 422, ["amount", "greater than 0"]),
        ("acme", "-5.00", 422, ["amount", "greater than 0"]),
        ("acme", "1.005", 422, ["amount", "1.005", "USD"]),
        ("acme", "NaN", 422, ["amount"]),
        ("acme", "ten", 422, ["amount"]),
        ("nobody", "10.00", 404, ["no customer 'nobody'"]),
    ],
    ids=[
        "zero",
        "zero-cents",
        "negative",
        "three-decimals-for-usd",
        "nan",
        "not-a-number",
        "unknown-customer",
    ],
)
async def test_a_bad_credit_grant_is_refused(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: Any,
    customer: str,
    amount: str,
    status: int,
    fragments: list[str],
) -> None:
    await make_customer(client, admin_key, id="acme", currency="USD")
    response = await client.post(
        f"/v1/customers/{customer}/credits",
        headers=auth(admin_key),
        json={"amount": amount, "description": "prepaid"},
    )
    assert_error(response, status, *fragments)
    assert await pg.fetchval("SELECT count(*) FROM credit_grants") == 0
    balance = (await client.get("/v1/customers/acme/credits", headers=auth(admin_key))).json()
    assert (balance["balance"], balance["grants"]) == ("0.00", [])


# --- invoices ---------------------------------------------------------------------------------


async def test_an_unknown_invoice_is_404(client: AsyncTestClient[Any], admin_key: str) -> None:
    for method, path in (
        ("GET", "/v1/invoices/999"),
        ("GET", "/v1/invoices/999/adjustments"),
        ("POST", "/v1/invoices/999/approve"),
        ("POST", "/v1/invoices/999/void"),
    ):
        body = {"reason": "x"} if path.endswith("void") else {}
        response = await client.request(
            method, path, headers=auth(admin_key), json=None if method == "GET" else body
        )
        assert_error(response, 404, "no invoice 999")


async def _current_draft(client: AsyncTestClient[Any], key: str) -> dict[str, Any]:
    """acme on a flat plan from today; the current period's draft (still open)."""
    await make_customer(client, key, id="acme", timezone="Asia/Kolkata", currency="USD")
    await create_plan(client, key, plan("flat", charges=[BASE]))
    await subscribe(client, key, "acme", planId="flat")
    invoice = await draft(client, key, "acme")
    assert (invoice["state"], invoice["number"], invoice["total"]) == ("draft", None, "10.00")
    return invoice


async def test_a_draft_still_in_its_period_is_not_approved(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: Any,
) -> None:
    # Given the draft of the period that is still running
    invoice = await _current_draft(client, admin_key)
    before = await counts(pg)
    # When it is approved
    response = await client.post(
        f"/v1/invoices/{invoice['id']}/approve", headers=auth(admin_key), json={"approvedBy": "maria@vendor"}
    )
    # Then 409 saying when it will be ready, and it stays an unnumbered draft
    assert_error(
        response,
        409,
        f"invoice {invoice['id']}",
        "not ready for review until",
        invoice["reviewAfter"].replace("Z", "+00:00"),
    )
    assert await counts(pg) == before
    view = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth(admin_key))).json()
    assert (view["state"], view["number"], view["approvedBy"], view["finalizedAt"]) == (
        "draft",
        None,
        None,
        None,
    )
    assert before["document_numbers"] == 0


async def test_a_draft_is_not_voided(client: AsyncTestClient[Any], admin_key: str, pg: Any) -> None:
    invoice = await _current_draft(client, admin_key)
    before = await counts(pg)
    response = await client.post(
        f"/v1/invoices/{invoice['id']}/void", headers=auth(admin_key), json={"reason": "wrong plan"}
    )
    assert_error(response, 409, "is draft", "only finalized invoices are voided")
    assert await counts(pg) == before
    view = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth(admin_key))).json()
    assert (view["state"], view["voidReason"], view["replacedById"]) == ("draft", None, None)


async def test_an_invoice_is_approved_once(client: AsyncTestClient[Any], admin_key: str, pg: Any) -> None:
    # Given an approved invoice
    _, invoice = await _finalized(client, admin_key)
    before = await counts(pg)
    # When it is approved again
    response = await client.post(
        f"/v1/invoices/{invoice['id']}/approve", headers=auth(admin_key), json={"approvedBy": "someone@else"}
    )
    # Then 409, and it keeps its number and approver; no number was used up
    assert_error(response, 409, "INV-000001 is finalized", "only drafts are approved")
    assert await counts(pg) == before
    view = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth(admin_key))).json()
    assert (view["number"], view["approvedBy"], view["finalizedAt"]) == (
        "INV-000001",
        invoice["approvedBy"],
        invoice["finalizedAt"],
    )
    assert await pg.fetchval("SELECT last FROM document_numbers WHERE series = 'INV'") == 1


@pytest.mark.parametrize(
    "body",
    [{"reason": ""}, {}, {"reason": None}, {"reason": "x" * 501}],
    ids=["empty", "missing", "null", "too-long"],
)
async def test_a_void_without_a_proper_reason_is_refused(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: Any,
    body: dict[str, Any],
) -> None:
    _, invoice = await _finalized(client, admin_key)
    before = await counts(pg)
    response = await client.post(f"/v1/invoices/{invoice['id']}/void", headers=auth(admin_key), json=body)
    assert_error(response, 422, "reason")
    assert await counts(pg) == before
    view = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth(admin_key))).json()
    assert (view["state"], view["voidReason"], view["replacedById"]) == ("finalized", None, None)


async def test_a_void_with_a_blank_reason_is_refused_like_an_empty_one(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: Any,
) -> None:
    """A reason of spaces is as missing as an empty one: a 422 naming the field, like ""."""
    _, invoice = await _finalized(client, admin_key)
    before = await counts(pg)
    response = await client.post(
        f"/v1/invoices/{invoice['id']}/void", headers=auth(admin_key), json={"reason": "   "}
    )
    assert await counts(pg) == before
    view = (await client.get(f"/v1/invoices/{invoice['id']}", headers=auth(admin_key))).json()
    assert (view["state"], view["voidReason"]) == ("finalized", None)
    assert_error(response, 422, "reason")


@pytest.mark.parametrize("period", ["2026-13", "2026-00", "2026-1", "26-01", "2026/01", ""])
async def test_a_draft_for_a_malformed_month_is_refused(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: Any,
    period: str,
) -> None:
    await make_customer(client, admin_key, id="acme", currency="USD")
    await create_plan(client, admin_key, plan("flat", charges=[BASE]))
    await subscribe(client, admin_key, "acme", planId="flat")
    before = await counts(pg)
    response = await client.post(
        "/v1/customers/acme/invoices", headers=auth(admin_key), json={"period": period}
    )
    assert_error(response, 422, "period")
    assert await counts(pg) == before
    assert before["invoices"] == 0


async def test_a_draft_for_a_month_without_a_subscription_or_customer_is_404(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: Any,
) -> None:
    await make_customer(client, admin_key, id="acme", currency="USD")
    # No subscription at all
    none_yet = await client.post("/v1/customers/acme/invoices", headers=auth(admin_key), json={})
    assert_error(none_yet, 404, "acme has no subscription")
    await create_plan(client, admin_key, plan("flat", charges=[BASE]))
    await subscribe(client, admin_key, "acme", planId="flat")
    # A month long before the subscription started
    before = await client.post(
        "/v1/customers/acme/invoices", headers=auth(admin_key), json={"period": "2020-01"}
    )
    assert_error(before, 404, "no subscription in the period")
    unknown = await client.post("/v1/customers/nobody/invoices", headers=auth(admin_key), json={})
    assert_error(unknown, 404, "nobody")
    preview = await client.get("/v1/customers/nobody/invoices/preview", headers=auth(admin_key))
    assert_error(preview, 404, "no customer 'nobody'")
    assert await pg.fetchval("SELECT count(*) FROM invoices") == 0


BAD_QUERIES = [
    ("/v1/invoices", "state=bogus", "state"),
    ("/v1/invoices", "state=Draft", "state"),
    ("/v1/invoices", "limit=0", "limit"),
    ("/v1/invoices", "limit=1001", "limit"),
    ("/v1/invoices", "before=0", "before"),
    ("/v1/invoices", "before=abc", "before"),
    ("/v1/invoices/export.csv", "status=bogus", "status"),
    ("/v1/invoices/export.csv", "from=2026-01-01", "from"),
    ("/v1/invoices/lines.csv", "to=garbage", "to"),
]


@pytest.mark.parametrize(("path", "query", "name"), BAD_QUERIES, ids=[f"{p} {q}" for p, q, _ in BAD_QUERIES])
async def test_a_bad_query_parameter_is_named_as_the_caller_sent_it(
    client: AsyncTestClient[Any],
    admin_key: str,
    path: str,
    query: str,
    name: str,
) -> None:
    response = await client.get(f"{path}?{query}", headers=auth(admin_key))
    # 422 like every other bad field (the app maps validation errors to 422)
    assert response.status_code == 422, response.text
    # The per-field error names the query parameter the caller sent ("state", "from"), not
    # the handler's Python argument ("invoice_state", "period_from"): the detail only repeats
    # the URL, so `key` is what tells the caller which parameter is wrong.
    assert [error["key"] for error in response.json()["extra"]] == [name], response.text


# --- keys -------------------------------------------------------------------------------------

ROUTES = [
    ("GET", "/v1/plans"),
    ("POST", "/v1/invoices/1/approve"),
    ("POST", "/v1/plans"),
    ("GET", "/v1/review-queue"),
    ("GET", "/v1/invoices/export.csv"),
    ("POST", "/v1/customers/acme/credits"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_billing_routes_need_an_admin_key(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    pg: Any,
    method: str,
    path: str,
) -> None:
    await make_customer(client, admin_key, id="acme", currency="USD")
    body = None if method == "GET" else {"amount": "5.00"} if path.endswith("credits") else plan()
    cases: list[tuple[dict[str, str], int, str]] = [
        ({}, 401, "missing API key"),
        ({"Authorization": "Basic abc"}, 401, "missing API key"),
        (auth("not-a-key"), 401, "unknown or revoked API key"),
        (auth(ingest_key), 403, "scope 'ingest'"),
    ]
    before = await counts(pg)
    for headers, status, fragment in cases:
        response = await client.request(method, path, headers=headers, json=body)
        assert_error(response, status, fragment)
    assert await counts(pg) == before
