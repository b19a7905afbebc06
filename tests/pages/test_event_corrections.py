"""Cancelling an event and changing its quantity from the event explorer (issue 19): the
confirmation's words, the refusals (each a 4xx that changes nothing), the live and billed
totals after a cancel, the event's corrections on its page and the explorer's marks."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from portal.pages.formatting import instant
from portal.pages.manager.event_corrections_view import EventFacts, read_quantity, read_reason, refusal
from tests.billing.conftest import ClosedPeriod, draft
from tests.billing.test_invoice_lifecycle import _month, billed_customer
from tests.conftest import WorkerProcess, wait_for, wait_until_persisted
from tests.factories import auth, event
from tests.ingest.test_corrections import totals
from tests.ingest.test_pipeline import catalog, send
from tests.pages.helpers import Client, make_user, sign_in

__all__ = ["billed_customer", "catalog"]

STAFF = "maria@vendor.test"
ZONE = "Europe/Berlin"


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", html)


async def corrections(pg: asyncpg.Connection) -> int:
    count: int = await pg.fetchval("SELECT count(*) FROM event_corrections")
    return count


async def given_two_events(client: Client, ingest_key: str, redis: Redis, pg: asyncpg.Connection) -> str:
    """Events a (1.5 calls, eu) and b (2 calls, us) of acme, stored; maria signed in (the CSRF token)."""
    sent = [
        event(event_id="a", quantity="1.5", dimensions={"region": "eu"}),
        event(event_id="b", quantity=2, dimensions={"region": "us"}),
    ]
    assert (await send(client, ingest_key, sent))["accepted"] == 2
    await wait_until_persisted(redis)
    await make_user(pg, STAFF, role="account_manager", all_customers=True)
    return await sign_in(client, STAFF)


async def event_time(pg: asyncpg.Connection, event_id: str) -> str:
    at: datetime = await pg.fetchval("SELECT event_time FROM usage_events WHERE event_id = $1", event_id)
    return instant(at, ZONE)


async def test_cancelling_an_event_from_its_page(
    client: Client,
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    csrf = await given_two_events(client, ingest_key, redis, pg)
    when = await event_time(pg, "a")
    shown = text_of((await client.get("/portal/events/acme/a")).text)
    assert '<a class="button danger" href="/portal/events/acme/a/cancel">Cancel event</a>' in shown
    assert "Corrections" not in shown

    confirm = await client.get("/portal/events/acme/a/cancel")
    assert confirm.status_code == 200
    words = text_of(confirm.text)
    assert f"Cancel event <code>a</code> (1.5 calls, {when}) of <strong>Acme Inc</strong>?" in words
    assert "<li>API calls this period drop by 1.5 calls.</li>" in words
    assert "<li>Its period is not invoiced yet: the upcoming invoice counts the change.</li>" in words

    form = {"csrf_token": csrf, "confirm": "yes", "reason": "test key used in production"}
    no_csrf = await client.post("/portal/events/acme/a/cancel", data={**form, "csrf_token": "forged"})
    assert no_csrf.status_code == 403
    without = {k: v for k, v in form.items() if k != "csrf_token"}
    assert (await client.post("/portal/events/acme/a/cancel", data=without)).status_code == 403
    blank = await client.post("/portal/events/acme/a/cancel", data={**form, "reason": "   "})
    assert blank.status_code == 422
    assert "Reason: say why the event is corrected (it is kept in the audit log)." in blank.text
    assert await corrections(pg) == 0 and await totals(client, admin_key, "api_calls") == ("3.5", "3.5")

    done = await client.post("/portal/events/acme/a/cancel", data=form, follow_redirects=False)
    assert (done.status_code, done.headers["location"]) == (303, "/portal/events/acme/a?done=cancelled")
    # The live view is corrected before the answer; billed usage in the same transaction.
    assert await totals(client, admin_key, "api_calls") == ("2", "2")
    page = text_of((await client.get(done.headers["location"])).text)
    assert "Event cancelled: it no longer counts toward usage or the bill." in page
    [made] = await pg.fetch("SELECT created_at FROM event_corrections")
    cancelled_at = instant(made["created_at"], ZONE)
    assert f'id="event-state">Cancelled on {cancelled_at} by {STAFF}: test key used in production</p>' in page
    assert (
        f"<strong>Cancelled</strong> {cancelled_at} by {STAFF} (through the portal): "
        "“test key used in production”.</li>"
    ) in page
    assert "/cancel" not in page and "Change quantity" not in page

    again = await client.get("/portal/events/acme/a/cancel")
    assert again.status_code == 409
    assert f"This event was cancelled on {cancelled_at} by {STAFF}: it counts nowhere" in again.text
    twice = await client.post("/portal/events/acme/a/cancel", data=form)
    assert twice.status_code == 409 and await corrections(pg) == 1
    assert (
        await pg.fetchval(
            "SELECT actor || ' ' || reason FROM audit_log WHERE action = 'event.cancel' AND object_id = 'a'"
        )
        == f"{STAFF} test key used in production"
    )
    listed = text_of((await client.get("/portal/events", params={"customer": "acme"})).text)
    assert '<s>1.5 calls</s> <span class="pill void">Cancelled</span>' in listed
    assert '<td class="num">2 calls</td>' in listed


HOSTILE_QUANTITIES = [
    ("", "New quantity: give the event&#39;s new quantity, such as 5.125."),
    ("-1", "New quantity: “-1” is not a quantity."),
    ("1e3", "New quantity: “1e3” is not a quantity."),
    ("<b>5</b>", "New quantity: “&lt;b&gt;5&lt;/b&gt;” is not a quantity."),
    ("1" + "0" * 20, "New quantity: “100000000000000000000” is not a quantity."),
    ("2.0000000000001", "New quantity: “2.0000000000001” is not a quantity."),
    ("2.000", "New quantity: the event&#39;s quantity is 2 calls already."),
]


async def test_changing_a_quantity_shows_the_change_then_makes_it(
    client: Client,
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    csrf = await given_two_events(client, ingest_key, redis, pg)
    url = "/portal/events/acme/b/quantity"
    form = {"csrf_token": csrf, "quantity": "5.125", "reason": "metering bug: counted 2"}
    for quantity, said in HOSTILE_QUANTITIES:
        wrong = await client.post(url, data={**form, "quantity": quantity, "confirm": "yes"})
        assert wrong.status_code == 422, quantity
        assert said in wrong.text, (quantity, wrong.text)
    for reason in ("two\nlines", "x" * 501, "\x00"):
        wrong = await client.post(url, data={**form, "reason": reason, "confirm": "yes"})
        assert wrong.status_code == 422 and 'id="reason-error"' in wrong.text, reason
    assert await corrections(pg) == 0 and await totals(client, admin_key, "api_calls") == ("3.5", "3.5")

    review = await client.post(url, data=form)  # no confirm=yes: the exact change, asked
    assert review.status_code == 200 and await corrections(pg) == 0
    words = text_of(review.text)
    when = await event_time(pg, "b")
    assert (
        f"Change event <code>b</code> (2 calls, {when}) of <strong>Acme Inc</strong> from "
        '<strong>2 calls</strong> to <strong id="correction-new">5.125 calls</strong>?'
    ) in words
    assert "<li>API calls this period rise by 3.125 calls.</li>" in words
    done = await client.post(url, data={**form, "confirm": "yes"}, follow_redirects=False)
    assert (done.status_code, done.headers["location"]) == (303, "/portal/events/acme/b?done=amended")
    assert await totals(client, admin_key, "api_calls") == ("6.625", "6.625")
    page = text_of((await client.get(done.headers["location"])).text)
    assert "Quantity changed: usage and the bill now count 5.125 calls." in page
    assert "<strong>Quantity 2 → 5.125 calls</strong>" in page
    listed = text_of((await client.get("/portal/events", params={"customer": "acme"})).text)
    assert '5.125 calls <span class="changed">(changed)</span>' in listed


async def test_a_customers_user_and_a_manager_of_others_cannot_correct(
    client: Client,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    await given_two_events(client, ingest_key, redis, pg)
    await make_user(pg, "cleo@acme.test", customer_id="acme")
    csrf = await sign_in(client, "cleo@acme.test")
    form = {"csrf_token": csrf, "confirm": "yes", "reason": "mine"}
    assert (await client.get("/portal/events/acme/a/cancel")).status_code == 403
    assert (await client.post("/portal/events/acme/a/cancel", data=form)).status_code == 403
    await make_user(pg, "otto@vendor.test", role="account_manager")  # assigned no customer
    csrf = await sign_in(client, "otto@vendor.test")
    assert (await client.get("/portal/events/acme/a/quantity")).status_code == 404
    refused = await client.post(
        "/portal/events/acme/a/cancel", data={**form, "csrf_token": csrf}, follow_redirects=False
    )
    assert refused.status_code == 404 and await corrections(pg) == 0


async def test_a_cancel_in_an_invoiced_period_links_its_credit_note(
    client: Client,
    admin_key: str,
    billed_customer: ClosedPeriod,
    pg: asyncpg.Connection,
) -> None:
    invoice = await draft(client, admin_key, "acme", _month(billed_customer))
    assert (
        await client.post(f"/v1/invoices/{invoice['id']}/approve", headers=auth(admin_key), json={})
    ).status_code == 200
    eu = await pg.fetchval("SELECT event_id FROM usage_events WHERE quantity = 200")
    await make_user(pg, STAFF, role="admin")
    csrf = await sign_in(client, STAFF)
    url = f"/portal/events/acme/{eu}"
    confirm = text_of((await client.get(f"{url}/cancel")).text)
    assert (
        "<li>Its period is invoiced (INV-000001): a credit note will follow for the difference.</li>"
        in confirm
    )
    form = {"csrf_token": csrf, "confirm": "yes", "reason": "sent by a test key"}
    assert (await client.post(f"{url}/cancel", data=form, follow_redirects=False)).status_code == 303

    async def noted() -> str | None:
        page = text_of((await client.get(url)).text)
        return page if "billed on note" in page else None

    page = await wait_for(noted, what="the credit note of the cancel")
    assert (
        f'Its period is on <a href="/portal/invoices/{invoice["id"]}">INV-000001</a>: billed on note '
        f'<a href="/portal/invoices/{invoice["id"]}#adjustment-'
    ) in page
    assert '">CN-000001</a>.</li>' in page


NOW = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)


def facts(**changes: Any) -> EventFacts:
    from portal.catalog.schemas import Customer

    customer = Customer(id="acme", name="Acme", timezone="UTC", currency="EUR", created_at=NOW)
    base: dict[str, Any] = {
        "customer": customer,
        "event_id": "a",
        "metric_name": "api_calls",
        "quantity": Decimal(2),
        "event_time": NOW - timedelta(days=1),
        "in_ledger": True,
        "meter": None,
        "corrections": [],
        "invoice": None,
    }
    return EventFacts(**{**base, **changes})


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, None),
        ({"event_time": NOW - timedelta(days=35, seconds=1)}, 422),
        ({"in_ledger": False}, 422),
    ],
)
def test_corrections_close_with_the_lateness_window(changes: dict[str, Any], expected: int | None) -> None:
    refused = refusal(facts(**changes), now=NOW, lateness=timedelta(days=35))
    assert (refused[0] if refused else None) == expected
    if refused:
        assert refused[1] == (
            "This event is older than the 35-day window for corrections: "
            "correct its invoice with a manual note instead."
        )


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("5.125", Decimal("5.125")), (" 7 ", Decimal(7)), ("0", Decimal(0)), ("2", None), ("1.", None)],
)
def test_a_new_quantity_is_read_exactly(typed: str, expected: Decimal | None) -> None:
    assert read_quantity(typed, facts())[0] == expected


def test_a_reason_is_one_printable_line() -> None:
    assert read_reason("  a test key  ") == ("a test key", None)
    assert (
        read_reason("tab\there")[1]
        == "Reason: one line of plain text, without line breaks or control characters."
    )
