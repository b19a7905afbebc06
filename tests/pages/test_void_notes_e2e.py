"""Voiding an invoice voids its debit and credit notes with it, everywhere the customer looks:
the note's PDF, the invoice's page and PDF, the list of invoices. The reissue bills the late
usage once."""

from __future__ import annotations

import io
import re
from datetime import datetime

import asyncpg
import pypdf
from redis.asyncio import Redis

from portal.billing.pdf.text import day_text, local_date
from tests.conftest import WorkerProcess, wait_for
from tests.factories import auth, event
from tests.pages.helpers import Client
from tests.pages.test_invoices_pages import TZ, as_admin, as_customer, issued_with_late_calls

REASON = "Reissued with the late usage"


def pdf_lines(content: bytes) -> list[str]:
    assert content.startswith(b"%PDF-")
    text = "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(content)).pages)
    return text.splitlines()


async def test_voiding_an_invoice_voids_its_late_event_debit_note(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    # Given INV-000001 (USD 22.00: 1,500 calls) and DN-000001 (USD 0.50) for 100 late calls
    issued, during = await issued_with_late_calls(client, admin_key, ingest_key, redis)
    invoice_id = issued["id"]
    late = await client.post(
        "/v1/events/batch",
        headers=auth(ingest_key),
        json={"events": [event(quantity=100, timestamp=during, event_id="late-1")]},
    )
    assert late.status_code == 202, late.text

    async def adjusted() -> list[dict[str, str]] | None:
        view = (await client.get(f"/v1/invoices/{invoice_id}", headers=auth(admin_key))).json()
        return list(view["adjustments"]) or None

    [note] = await wait_for(adjusted, what="the late-event debit note")
    assert (note["number"], note["amount"]) == ("DN-000001", "0.50")

    # When an account manager opens the void confirmation, it names the note voided with it
    await as_admin(pg, client)
    confirm = await client.get(f"/portal/invoices/{invoice_id}/void?back=invoice")
    assert confirm.status_code == 200, confirm.text
    assert '<p id="confirm-notes">This note is voided with it:</p>' in confirm.text
    assert "<li>Debit note DN-000001: USD 0.50 (the new draft includes its usage)</li>" in confirm.text

    # And the invoice is voided and its reissue approved
    voided = await client.post(
        f"/v1/invoices/{invoice_id}/void", headers=auth(admin_key), json={"reason": REASON}
    )
    assert voided.status_code == 200, voided.text
    reissue_id = voided.json()["id"]
    # Meanwhile the customer reads that the invoice is no longer payable and that its
    # replacement, not yet reviewed (so not shown with amounts), is being prepared
    await as_customer(pg, client)
    void_page = await client.get(f"/portal/invoices/{invoice_id}")
    assert '<p class="callout warning">This invoice was voided: it is no longer payable.' in void_page.text
    waiting = await client.get("/portal/customers/acme/invoices")
    assert waiting.text.count('<p class="callout info preparing">Being prepared: the invoice for ') == 1
    assert f"/portal/invoices/{reissue_id}" not in waiting.text
    reissued = await client.post(f"/v1/invoices/{reissue_id}/approve", headers=auth(admin_key), json={})
    assert reissued.status_code == 200, reissued.text
    # Then the reissue bills the late usage once
    assert (reissued.json()["number"], reissued.json()["total"]) == ("INV-000002", "22.50")
    view = (await client.get(f"/v1/invoices/{invoice_id}", headers=auth(admin_key))).json()
    assert view["state"] == "void"
    # its note is void with it: the API's adjusted total adds nothing, in the view and the list
    assert (view["total"], view["adjustedTotal"]) == ("22.00", "22.00")
    listed = (await client.get("/v1/invoices?customerId=acme", headers=auth(admin_key))).json()
    assert {i["number"]: i["adjustedTotal"] for i in listed} == {"INV-000001": "22.00", "INV-000002": "22.50"}
    voided_on = day_text(local_date(datetime.fromisoformat(view["voidedAt"]), TZ))

    # And the note's PDF is stamped VOID with its invoice, and nothing is due on it
    note_pdf = await client.get(
        f"/v1/invoices/{invoice_id}/adjustments/{note['id']}/pdf", headers=auth(admin_key)
    )
    assert note_pdf.status_code == 200, note_pdf.text
    lines = pdf_lines(note_pdf.content)
    assert lines[0] == "Debit note DN-000001"
    assert "VOID" in lines
    assert f"VOID: voided on {voided_on} with invoice INV-000001. {REASON}" in lines
    assert "Total USD 0.50" in lines
    assert "Nothing is due on a void note." in lines
    assert not any(entry.startswith(("Total due", "Amount due", "Due date")) for entry in lines)

    # And the void invoice's PDF lists the note as void, with no total after adjustments
    invoice_pdf = await client.get(f"/v1/invoices/{invoice_id}/pdf", headers=auth(admin_key))
    lines = pdf_lines(invoice_pdf.content)
    listed = "Debit note DN-000001: USD 0.50 (void with this invoice)."
    assert f"{listed} 1 event arrived after INV-000001 was finalized" in lines
    assert "Total USD 22.00" in lines
    assert "Nothing is due on a void invoice." in lines
    assert not any("after adjustments" in entry or "22.50" in entry for entry in lines)

    # And the customer sees the same: in the list, no adjusted total for the void invoice
    listing = await client.get("/portal/customers/acme/invoices")
    assert listing.status_code == 200, listing.text
    rows = {
        number: re.findall(r'<td class="num" data-label="[^"]+">(.*?)</td>', row)
        for number, row in re.findall(r'">(INV-\d+)</a></th>(.*?)</tr>', listing.text, re.S)
    }
    assert rows == {
        "INV-000002": ["USD 22.50", "USD 22.50"],
        "INV-000001": ["USD 22.00", '<span class="note">void</span>'],
    }
    # On its page: the note marked void, nothing due, no total after adjustments
    page = await client.get(f"/portal/invoices/{invoice_id}")
    assert page.status_code == 200, page.text
    assert 'Debit note DN-000001: USD 0.50 <span class="state state-void">Void</span></h3>' in page.text
    assert "Void with this invoice: nothing is due on it." in page.text
    assert (
        '<p class="payment" id="invoice-payment">Nothing is due on a void invoice or its notes.</p>'
        in page.text
    )
    assert "Total after adjustments" not in page.text and "22.50" not in page.text
    assert "Being prepared" not in listing.text  # the reissue is issued now
    assert 'id="invoice-total">USD 22.00<' in page.text
    # And the note's PDF downloads from the portal as from the API
    download = await client.get(f"/portal/invoices/{invoice_id}/notes/{note['id']}/pdf")
    assert download.status_code == 200 and download.content == note_pdf.content
