"""Emailing an issued invoice or note (its PDF attached) to the customer's billing
contacts, through the portal's SMTP server (`PORTAL_SMTP_URL`, the path account mail and
email alerts take: alerts.smtp).

Each document is emailed once: its `document_emails` row is locked while it is sent and
marked `sent` in the same transaction, so a retried job or the sweep finds it sent. (A
crash between the server's acceptance and that commit sends it again: at least once.)
No SMTP server or no billing contact: marked `not_sent` with the reason, never an error
for whoever approved the invoice."""

from __future__ import annotations

import asyncio
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.smtp import SmtpSettingsError, portal_smtp, submit
from portal.billing.documents import PDF, Document, invoice_document, note_document
from portal.billing.pdf.render import due_date
from portal.billing.pdf.text import money_text, period_text
from portal.billing.repository import documents as document_store
from portal.infrastructure.db import transaction
from portal.infrastructure.settings import Settings

# Attempts before an email that keeps failing is given up (status not_sent, error kept).
MAX_ATTEMPTS = 5


class EmailNotSent(Exception):
    """The SMTP server did not take the email this time; the job is retried."""


def document_message(
    document: Document, settings: Settings, sender: tuple[str, str], *, now: datetime
) -> EmailMessage:
    """The email: a short summary in words, a link to the invoice page, the PDF attached."""
    invoice, customer, issuer = document.invoice, document.customer, document.parties.issuer
    tz, cur = customer.timezone, invoice.currency
    period = period_text(invoice.period_start, invoice.period_end, tz)
    link = f"{settings.public_url.rstrip('/')}/portal/invoices/{invoice.id}"
    note = document.note
    if note is None:
        assert invoice.finalized_at is not None
        due = due_date(invoice.finalized_at, tz, document.parties.payment_terms_days)
        subject = f"Invoice {invoice.number} from {issuer.name}: {money_text(invoice.total, cur)} due {due}"
        summary = (
            f"Your invoice {invoice.number} for {period} is attached.\n\n"
            f"Amount due: {money_text(invoice.total, cur)}\nDue date: {due}\n"
        )
    else:
        name = "Credit note" if note.kind == "credit" else "Debit note"
        amount = money_text(note.amount, cur)
        subject = f"{name} {note.number} from {issuer.name} on invoice {invoice.number}: {amount}"
        summary = (
            f"{name} {note.number} corrects invoice {invoice.number} ({period}) by "
            f"{money_text(note.amount, cur)}.\nReason: {note.reason}\n"
        )
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = formataddr((issuer.name, sender[1]))
    message["To"] = ", ".join(customer.billing_emails)
    if issuer.email:
        message["Reply-To"] = issuer.email
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=sender[1].rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"
    contact = f" Questions: reply to this email or write to {issuer.email}." if issuer.email else ""
    message.set_content(
        f"Hello {customer.billed_name},\n\n{summary}\n"
        f"See it in the usage portal: {link}\n\n{issuer.name}.{contact}\n"
    )
    maintype, _, subtype = PDF.partition("/")
    message.add_attachment(document.content, maintype=maintype, subtype=subtype, filename=document.filename)
    return message


async def _document(
    session: AsyncSession, settings: Settings, invoice_id: int, adjustment_id: int | None
) -> Document:
    if adjustment_id is None:
        return await invoice_document(session, invoice_id, issuer=settings.issuer)
    return await note_document(session, invoice_id, adjustment_id, issuer=settings.issuer)


async def send_document_email(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    customer_id: str,
    number: str,
    *,
    now: datetime,
) -> str:
    """Send the document's email if it is still owed; returns what became of it (`sent`,
    `not_sent`, `already`, `unknown`). Raises EmailNotSent when the server did not take it
    and it should be tried again."""
    async with transaction(sessions) as session:
        owed = await document_store.email_for_update(session, customer_id, number)
        if owed is None:
            return "unknown"
        if owed.status != "pending":
            return "already"
        document = await _document(session, settings, owed.invoice_id, owed.adjustment_id)
        recipients = list(document.customer.billing_emails)

        async def record(status: str, error: str | None, sent_at: datetime | None = None) -> str:
            await document_store.record_attempt(
                session,
                customer_id,
                number,
                status=status,
                recipients=recipients,
                error=error,
                sent_at=sent_at,
            )
            return status

        if not recipients:
            return await record("not_sent", "the customer has no billing contacts (billingEmails)")
        if settings.smtp_url is None:
            return await record("not_sent", "the portal has no SMTP server configured (PORTAL_SMTP_URL)")
        try:
            server = portal_smtp(settings.smtp_url)
        except SmtpSettingsError as exc:
            return await record("not_sent", f"the portal's SMTP settings (PORTAL_SMTP_URL): {exc}")
        message = document_message(document, settings, server.sender, now=now)
        ok, error = await asyncio.to_thread(
            submit, server, message, recipients, timeout_s=settings.alert_send_timeout_s
        )
        if ok:
            return await record("sent", error, now)
        if owed.attempts + 1 >= MAX_ATTEMPTS:
            return await record("not_sent", error)
        await record("pending", error)
    raise EmailNotSent(error or "the SMTP server did not take the email")
