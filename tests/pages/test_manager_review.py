"""Bill review: the queue's flags, approve / void / manual notes with their audit trail,
and the audit log page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from tests.billing.test_invoice_documents import text_of
from tests.factories import auth, make_customer
from tests.pages.helpers import Client, make_user, sign_in

ADMIN = "ada@vendor.test"
MANAGER = "max@vendor.test"


async def draft(
    pg: asyncpg.Connection,
    customer: str = "acme",
    *,
    start: datetime,
    end: datetime,
    total: str = "250.00",
    status: str = "draft",
    number: str | None = None,
) -> int:
    invoice_id: int = await pg.fetchval(
        "INSERT INTO invoices (customer_id, period_start, period_end, currency, status, number, subtotal, "
        "total, finalized_at) VALUES ($1, $2, $3, 'EUR', $4, $5, $6, $6, "
        "CASE WHEN $4 = 'finalized' THEN now() END) RETURNING id",
        customer,
        start,
        end,
        status,
        number,
        Decimal(total),
    )
    return invoice_id


SEPT = (datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC))


async def world(client: Client, admin_key: str, pg: asyncpg.Connection) -> str:
    await make_customer(client, admin_key, id="acme", name="Acme <script>alert(1)</script>")
    await make_customer(client, admin_key, id="globex", name="Globex")
    await make_user(pg, ADMIN, role="admin")
    return await sign_in(client, ADMIN)


async def test_queue_shows_flags_as_badges_with_a_sentence(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await world(client, admin_key, pg)
    invoice_id = await draft(pg, start=SEPT[0], end=SEPT[1])
    page = await client.get("/portal/review")
    assert page.status_code == 200
    assert f'id="invoice-{invoice_id}"' in page.text
    assert "First invoice</span> This customer has no earlier finalized invoice to compare with." in page.text
    assert "EUR 250.000000" not in page.text and "EUR 250.00" in page.text
    assert f'href="/portal/invoices/{invoice_id}"' in page.text
    assert "Acme &lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>alert(1)</script>" not in page.text


def words(html: str) -> str:
    """The page's text as a reader sees it: tags dropped, white space collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


async def test_approve_asks_for_confirmation_naming_customer_period_and_total(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    csrf = await world(client, admin_key, pg)
    invoice_id = await draft(pg, start=SEPT[0], end=SEPT[1], total="240.30")
    # The queue's button opens the confirmation; nothing is approved by it.
    queue = await client.get("/portal/review")
    assert f'<form method="get" action="/portal/invoices/{invoice_id}/approve">' in queue.text
    assert "1–30 Sep 2026" in queue.text
    confirm = await client.get(f"/portal/invoices/{invoice_id}/approve", params={"back": "review"})
    assert confirm.status_code == 200, confirm.text
    assert (
        "Approve the invoice for Acme &lt;script&gt;alert(1)&lt;/script&gt; , 1–30 Sep 2026 , EUR 240.30 ? "
        "It will be numbered and issued"
    ) in words(confirm.text)
    assert f'<a href="/portal/review#invoice-{invoice_id}">Cancel</a>' in confirm.text
    # A POST without the confirmation answers with it, and changes nothing.
    unconfirmed = await client.post(f"/portal/invoices/{invoice_id}/approve", data={"csrf_token": csrf})
    assert unconfirmed.status_code == 200 and "Approve and issue" in unconfirmed.text
    assert await pg.fetchval("SELECT status FROM invoices WHERE id = $1", invoice_id) == "draft"
    assert await pg.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_approve_finalizes_and_writes_the_audit_log(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    csrf = await world(client, admin_key, pg)
    invoice_id = await draft(pg, start=SEPT[0], end=SEPT[1])
    confirmed = {"csrf_token": csrf, "confirm": "yes", "total": "250.00", "back": "review"}
    done = await client.post(f"/portal/invoices/{invoice_id}/approve", data=confirmed, follow_redirects=False)
    assert done.status_code == 303, done.text
    row = await pg.fetchrow("SELECT status, number, approved_by FROM invoices WHERE id = $1", invoice_id)
    assert tuple(row) == ("finalized", "INV-000001", ADMIN)
    audit = await pg.fetch("SELECT actor, action, object_type, object_id, customer_id FROM audit_log")
    assert [tuple(a) for a in audit] == [(ADMIN, "invoice.approve", "invoice", str(invoice_id), "acme")]
    page = await client.get(done.headers["location"])
    assert "Invoice INV-000001 was approved and numbered." in page.text
    # It now shows among the finalized invoices, with its history.
    assert "<strong>invoice.approve</strong> by ada@vendor.test" in page.text

    again = await client.post(f"/portal/invoices/{invoice_id}/approve", data=confirmed)
    assert again.status_code == 409
    assert "is finalized; only drafts are approved" in again.text
    assert await pg.fetchval("SELECT count(*) FROM audit_log") == 1


async def test_approve_is_refused_when_the_total_moved_since_the_confirmation(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    csrf = await world(client, admin_key, pg)
    invoice_id = await draft(pg, start=SEPT[0], end=SEPT[1])
    stale = {"csrf_token": csrf, "confirm": "yes", "total": "199.00", "back": "invoice"}
    refused = await client.post(f"/portal/invoices/{invoice_id}/approve", data=stale)
    assert refused.status_code == 409
    assert "The total changed from EUR 199.00 since the confirmation was shown" in refused.text
    assert 'id="confirm-total">EUR 250.00<' in refused.text
    row = await pg.fetchrow("SELECT status, number FROM invoices WHERE id = $1", invoice_id)
    assert tuple(row) == ("draft", None)
    assert await pg.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_approving_in_the_grace_period_is_refused_with_the_reason(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    csrf = await world(client, admin_key, pg)
    end = datetime.now(UTC) - timedelta(hours=1)
    invoice_id = await draft(pg, start=end - timedelta(days=30), end=end)
    confirm = await client.get(f"/portal/invoices/{invoice_id}/approve")
    assert "cannot be approved yet" in confirm.text and "Approve and issue" not in confirm.text
    refused = await client.post(
        f"/portal/invoices/{invoice_id}/approve", data={"csrf_token": csrf, "confirm": "yes"}
    )
    assert refused.status_code == 409
    assert "is not ready for review until" in refused.text
    assert await pg.fetchval("SELECT status FROM invoices WHERE id = $1", invoice_id) == "draft"
    assert await pg.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_the_invoice_page_offers_approve_and_void_to_staff_only(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    csrf = await world(client, admin_key, pg)
    invoice_id = await draft(pg, start=SEPT[0], end=SEPT[1])
    staff_view = await client.get(f"/portal/invoices/{invoice_id}")
    assert "Review Staff only" in words(staff_view.text)
    assert f'<form method="get" action="/portal/invoices/{invoice_id}/approve">' in staff_view.text
    confirm = await client.get(f"/portal/invoices/{invoice_id}/approve", params={"back": "invoice"})
    assert f'<a href="/portal/invoices/{invoice_id}">Cancel</a>' in confirm.text
    done = await client.post(
        f"/portal/invoices/{invoice_id}/approve",
        data={"csrf_token": csrf, "confirm": "yes", "total": "250.00", "back": "invoice"},
        follow_redirects=False,
    )
    assert done.headers["location"] == f"/portal/invoices/{invoice_id}?done=approved"
    issued = await client.get(done.headers["location"])
    assert "Invoice INV-000001 was approved and numbered." in issued.text
    assert f'<form method="get" action="/portal/invoices/{invoice_id}/void">' in issued.text
    void = await client.get(f"/portal/invoices/{invoice_id}/void", params={"back": "invoice"})
    assert (
        "Void invoice INV-000001 for Acme &lt;script&gt;alert(1)&lt;/script&gt; , "
        "1–30 Sep 2026 , EUR 250.00 ?"
    ) in words(void.text)
    await client.post("/portal/logout", data={"csrf_token": csrf})
    await make_user(pg, "cu@acme.test", role="customer", customer_id="acme")
    await sign_in(client, "cu@acme.test")
    customer_view = await client.get(f"/portal/invoices/{invoice_id}")
    assert customer_view.status_code == 200
    assert "Staff only" not in customer_view.text and f"/invoices/{invoice_id}/void" not in customer_view.text
    assert (await client.get(f"/portal/invoices/{invoice_id}/void")).status_code == 403


async def test_void_needs_a_reason_a_confirmation_and_is_audited(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    csrf = await world(client, admin_key, pg)
    invoice_id = await draft(pg, start=SEPT[0], end=SEPT[1], status="finalized", number="INV-000007")
    refused = await client.post(
        f"/portal/invoices/{invoice_id}/void", data={"csrf_token": csrf, "reason": "  "}
    )
    assert refused.status_code == 422
    assert "Reason: say why the invoice is voided." in refused.text
    assert await pg.fetchval("SELECT status FROM invoices WHERE id = $1", invoice_id) == "finalized"

    # The review page's form leads to the confirmation, the reason kept.
    asked = await client.post(
        f"/portal/invoices/{invoice_id}/void", data={"csrf_token": csrf, "reason": "wrong plan <b>"}
    )
    assert asked.status_code == 200
    assert "Void invoice INV-000007 for" in words(asked.text)
    assert 'value="wrong plan &lt;b&gt;"' in asked.text
    assert await pg.fetchval("SELECT status FROM invoices WHERE id = $1", invoice_id) == "finalized"
    empty = await client.post(
        f"/portal/invoices/{invoice_id}/void", data={"csrf_token": csrf, "reason": "", "confirm": "yes"}
    )
    assert empty.status_code == 422 and "Reason: say why the invoice is voided." in empty.text

    done = await client.post(
        f"/portal/invoices/{invoice_id}/void",
        data={"csrf_token": csrf, "reason": "wrong plan <b>", "confirm": "yes"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    row = await pg.fetchrow("SELECT status, void_reason FROM invoices WHERE id = $1", invoice_id)
    assert tuple(row) == ("void", "wrong plan <b>")
    entry = await pg.fetchrow("SELECT actor, action, reason FROM audit_log")
    assert tuple(entry) == (ADMIN, "invoice.void", "wrong plan <b>")
    log = await client.get("/portal/audit", params={"customer": "acme"})
    assert log.status_code == 200
    assert "wrong plan &lt;b&gt;" in log.text and "invoice.void" in log.text


async def test_manual_credit_note_counts_in_the_adjusted_total(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    csrf = await world(client, admin_key, pg)
    invoice_id = await draft(pg, start=SEPT[0], end=SEPT[1], status="finalized", number="INV-000001")
    missing = await client.post(
        f"/portal/invoices/{invoice_id}/adjustments",
        data={"csrf_token": csrf, "kind": "credit", "amount": "10.00", "reason": ""},
    )
    assert missing.status_code == 422
    assert "Reason: say why the invoice is adjusted." in missing.text
    assert 'value="10.00"' in missing.text  # what was typed is kept
    bad = await client.post(
        f"/portal/invoices/{invoice_id}/adjustments",
        data={"csrf_token": csrf, "kind": "credit", "amount": "1.5005", "reason": "x"},
    )
    assert bad.status_code == 422
    assert "Amount: EUR amounts have at most 2 decimals." in bad.text
    # "1.005" could be a thousand and five: neither reading is guessed
    thousands = await client.post(
        f"/portal/invoices/{invoice_id}/adjustments",
        data={"csrf_token": csrf, "kind": "credit", "amount": "1.005", "reason": "x"},
    )
    assert thousands.status_code == 422
    assert "Amount: a point before three digits may mean thousands" in thousands.text
    # A decimal comma is refused with a hint, never read as 250.00 (or 2.50)
    for typed in ("2,50", "1.000,50", "1e3", "1_000"):
        comma = await client.post(
            f"/portal/invoices/{invoice_id}/adjustments",
            data={"csrf_token": csrf, "kind": "credit", "amount": typed, "reason": "x"},
        )
        assert comma.status_code == 422, typed
        hint = "write decimals with a point" if "," in typed else "write a number such as 12.50"
        assert f"Amount: {hint}" in comma.text, typed
    assert await pg.fetchval("SELECT count(*) FROM adjustments") == 0

    # The form's note is first shown for confirmation, with its sign and what is due after it;
    # nothing is issued until it is confirmed
    asked = {"csrf_token": csrf, "kind": "credit", "amount": "10.00", "reason": "goodwill for the outage"}
    confirm = await client.post(f"/portal/invoices/{invoice_id}/adjustments", data=asked)
    assert confirm.status_code == 200, confirm.text
    assert "<h1>Issue this credit note?</h1>" in confirm.text
    assert '<span id="confirm-amount">EUR -10.00</span>' in confirm.text
    assert '<strong id="confirm-due">EUR 240.00</strong>' in confirm.text
    assert "“goodwill for the outage”" in confirm.text
    assert '<input type="hidden" name="confirm" value="yes">' in confirm.text
    assert await pg.fetchval("SELECT count(*) FROM adjustments") == 0
    done = await client.post(
        f"/portal/invoices/{invoice_id}/adjustments", data={**asked, "confirm": "yes"}, follow_redirects=False
    )
    assert done.status_code == 303, done.text
    notes = (await client.get(f"/v1/invoices/{invoice_id}/adjustments", headers=auth(admin_key))).json()
    assert [(n["number"], n["kind"], n["amount"], n["reason"]) for n in notes] == [
        ("CN-000001", "credit", "-10.00", "goodwill for the outage")
    ]
    invoice = (await client.get(f"/v1/invoices/{invoice_id}", headers=auth(admin_key))).json()
    assert invoice["adjustedTotal"] == "240.00"
    entry = await pg.fetchrow("SELECT action, reason, detail->>'number' AS n FROM audit_log")
    assert tuple(entry) == ("invoice.adjust", "goodwill for the outage", "CN-000001")
    debit = await client.post(
        f"/portal/invoices/{invoice_id}/adjustments",
        data={"csrf_token": csrf, "kind": "debit", "amount": "2.50", "reason": "fee", "confirm": "yes"},
    )
    assert debit.status_code == 200  # followed the redirect
    notes = (await client.get(f"/v1/invoices/{invoice_id}/adjustments", headers=auth(admin_key))).json()
    assert [n["number"] for n in notes] == ["CN-000001", "DN-000001"]
    page = await client.get("/portal/review")
    assert "EUR 242.50" in page.text
    # A credit note gives back at most what the invoice comes to after its notes (242.50)
    too_much = await client.post(
        f"/portal/invoices/{invoice_id}/adjustments",
        data={"csrf_token": csrf, "kind": "credit", "amount": "242.51", "reason": "typo"},
    )
    assert too_much.status_code == 422
    assert "Amount: at most EUR 242.50 can be credited" in too_much.text
    assert await pg.fetchval("SELECT count(*) FROM adjustments") == 2
    everything = await client.post(
        f"/portal/invoices/{invoice_id}/adjustments",
        data={
            "csrf_token": csrf,
            "kind": "credit",
            "amount": "242.50",
            "reason": "cancelled in full",
            "confirm": "yes",
        },
    )
    assert everything.status_code == 200
    invoice = (await client.get(f"/v1/invoices/{invoice_id}", headers=auth(admin_key))).json()
    assert invoice["adjustedTotal"] == "0.00"
    nothing_left = await client.post(
        f"/portal/invoices/{invoice_id}/adjustments",
        data={"csrf_token": csrf, "kind": "credit", "amount": "0.01", "reason": "again"},
    )
    assert nothing_left.status_code == 422
    assert "Amount: at most EUR 0.00 can be credited" in nothing_left.text


async def test_a_draft_cannot_be_adjusted(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    csrf = await world(client, admin_key, pg)
    invoice_id = await draft(pg, start=SEPT[0], end=SEPT[1])
    refused = await client.post(
        f"/portal/invoices/{invoice_id}/adjustments",
        data={"csrf_token": csrf, "kind": "credit", "amount": "1", "reason": "x"},
    )
    assert refused.status_code == 409
    assert "only finalized invoices are adjusted" in refused.text
    assert await pg.fetchval("SELECT count(*) FROM adjustments") == 0


async def test_account_manager_sees_and_touches_only_assigned_customers(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await make_customer(client, admin_key, id="acme")
    await make_customer(client, admin_key, id="globex", name="Globex")
    theirs = await draft(pg, "acme", start=SEPT[0], end=SEPT[1])
    mine = await draft(pg, "globex", start=SEPT[0], end=SEPT[1])
    await make_user(pg, MANAGER, role="account_manager", assigned=("globex",))
    csrf = await sign_in(client, MANAGER)
    page = await client.get("/portal/review")
    assert f'id="invoice-{mine}"' in page.text and f'id="invoice-{theirs}"' not in page.text
    for action in ("approve", "void", "adjustments"):
        refused = await client.post(
            f"/portal/invoices/{theirs}/{action}",
            data={"csrf_token": csrf, "reason": "x", "kind": "credit", "amount": "1", "confirm": "yes"},
        )
        assert refused.status_code == 404, action
    for action in ("approve", "void"):
        assert (await client.get(f"/portal/invoices/{theirs}/{action}")).status_code == 404, action
    assert await pg.fetchval("SELECT status FROM invoices WHERE id = $1", theirs) == "draft"
    missing = await client.post("/portal/invoices/999999/approve", data={"csrf_token": csrf})
    assert missing.status_code == 404


async def test_customer_users_are_kept_out_and_csrf_is_required(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await make_customer(client, admin_key, id="acme")
    invoice_id = await draft(pg, start=SEPT[0], end=SEPT[1])
    await make_user(pg, "cu@acme.test", role="customer", customer_id="acme")
    await sign_in(client, "cu@acme.test")
    for path in ("/portal/review", "/portal/audit"):
        assert (await client.get(path)).status_code == 403
    await client.post("/portal/logout", data={})
    await make_user(pg, ADMIN, role="admin")
    await sign_in(client, ADMIN)
    refused = await client.post(f"/portal/invoices/{invoice_id}/approve", data={"confirm": "yes"})
    assert refused.status_code == 403
    assert await pg.fetchval("SELECT status FROM invoices WHERE id = $1", invoice_id) == "draft"


async def test_a_credit_note_beyond_what_was_paid_in_money_leaves_a_balance_owed_to_the_customer(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    """An invoice of EUR 46.70 after EUR 20.00 of prepaid credit: a credit note may give
    back up to 66.70 (the credit was paid for too). A 50.00 note leaves nothing due and
    3.30 owed to the customer, which every surface says in those words, never as "Amount
    due: EUR -3.30 by" a date."""
    csrf = await world(client, admin_key, pg)
    invoice_id = await draft(
        pg, start=SEPT[0], end=SEPT[1], total="46.70", status="finalized", number="INV-000001"
    )
    await pg.execute(
        "UPDATE invoices SET credits_applied = 20.00, subtotal = 66.70 WHERE id = $1", invoice_id
    )
    asked = {"csrf_token": csrf, "kind": "credit", "amount": "50.00", "reason": "outage"}
    confirm = await client.post(f"/portal/invoices/{invoice_id}/adjustments", data=asked)
    assert confirm.status_code == 200, confirm.text
    assert (
        'Nothing is then due on the invoice, and <strong id="confirm-due">EUR 3.30</strong> '
        "is owed to the customer"
    ) in confirm.text
    done = await client.post(
        f"/portal/invoices/{invoice_id}/adjustments", data={**asked, "confirm": "yes"}, follow_redirects=False
    )
    assert done.status_code == 303, done.text
    owed = "Nothing is due: EUR 3.30 is owed to the customer, since its credit notes give back more than it"
    page = await client.get(f"/portal/invoices/{invoice_id}")
    assert page.status_code == 200
    assert f'<p class="payment" id="invoice-payment"><strong>{owed}' in page.text
    assert "-3.30" not in page.text.split('id="invoice-payment"')[1].split("</p>")[0]
    pdf = await client.get(f"/portal/invoices/{invoice_id}/pdf")
    assert pdf.status_code == 200
    text = " ".join(text_of(pdf.content).split())
    assert owed in text and "Amount due" not in text

    # Exactly what was charged in money and credit: nothing due, nothing owed
    other = await draft(
        pg,
        start=SEPT[1],
        end=SEPT[1] + timedelta(days=31),
        total="46.70",
        status="finalized",
        number="INV-000002",
    )
    even = await client.post(
        f"/portal/invoices/{other}/adjustments",
        data={**asked, "amount": "46.70", "confirm": "yes"},
        follow_redirects=False,
    )
    assert even.status_code == 303, even.text
    page = await client.get(f"/portal/invoices/{other}")
    assert "Nothing is due: its credit notes give back all it charged." in page.text
