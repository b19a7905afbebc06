"""Every query on `document_emails`, and on `invoices.parties` (who an issued invoice is
from and to, kept when it is finalized)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.billing.models import DocumentEmail, Invoice
from portal.billing.repository import NO_SYNC


@dataclass(frozen=True, slots=True)
class EmailRow:
    number: str
    customer_id: str
    invoice_id: int
    adjustment_id: int | None
    status: str
    recipients: list[str]
    attempts: int
    error: str | None
    created_at: datetime
    sent_at: datetime | None


_EMAIL = (
    col(DocumentEmail.number),
    col(DocumentEmail.customer_id),
    col(DocumentEmail.invoice_id),
    col(DocumentEmail.adjustment_id),
    col(DocumentEmail.status),
    col(DocumentEmail.recipients),
    col(DocumentEmail.attempts),
    col(DocumentEmail.error),
    col(DocumentEmail.created_at),
    col(DocumentEmail.sent_at),
)


def _email(row: Any) -> EmailRow:
    data = list(row)
    data[5] = list(data[5])
    return EmailRow(*data)


async def set_parties(session: AsyncSession, invoice_id: int, parties: dict[str, Any]) -> None:
    statement = (
        update(Invoice)
        .where(col(Invoice.id) == invoice_id)
        .values(parties=parties)
        .execution_options(**NO_SYNC)
    )
    await session.execute(statement)


async def parties_of(session: AsyncSession, invoice_id: int) -> dict[str, Any] | None:
    """The parties kept on the invoice (None: a draft, or finalized before they were kept)."""
    value: Any = (
        await session.execute(select(col(Invoice.parties)).where(col(Invoice.id) == invoice_id))
    ).scalar_one_or_none()
    return dict(value) if value is not None else None


async def owe_email(
    session: AsyncSession, *, number: str, customer_id: str, invoice_id: int, adjustment_id: int | None
) -> bool:
    """Record that the document is owed to the customer's billing contacts; False when it
    was recorded already (a document is emailed once)."""
    statement = (
        pg_insert(DocumentEmail)
        .values(number=number, customer_id=customer_id, invoice_id=invoice_id, adjustment_id=adjustment_id)
        .on_conflict_do_nothing(index_elements=["number", "customer_id"])
        .returning(col(DocumentEmail.number))
    )
    return (await session.execute(statement)).first() is not None


async def email_for_update(session: AsyncSession, customer_id: str, number: str) -> EmailRow | None:
    """The email of that document, its row locked until the transaction ends (a second
    sender waits, then finds it sent)."""
    statement = (
        select(*_EMAIL)
        .where(col(DocumentEmail.customer_id) == customer_id, col(DocumentEmail.number) == number)
        .with_for_update()
    )
    row = (await session.execute(statement)).first()
    return _email(row) if row else None


async def email_of(session: AsyncSession, customer_id: str, number: str) -> EmailRow | None:
    statement = select(*_EMAIL).where(
        col(DocumentEmail.customer_id) == customer_id, col(DocumentEmail.number) == number
    )
    row = (await session.execute(statement)).first()
    return _email(row) if row else None


async def record_attempt(
    session: AsyncSession,
    customer_id: str,
    number: str,
    *,
    status: str,
    recipients: list[str],
    error: str | None,
    sent_at: datetime | None,
) -> None:
    statement = (
        update(DocumentEmail)
        .where(col(DocumentEmail.customer_id) == customer_id, col(DocumentEmail.number) == number)
        .values(
            status=status,
            recipients=recipients,
            error=error,
            sent_at=sent_at,
            attempts=col(DocumentEmail.attempts) + 1,
        )
        .execution_options(**NO_SYNC)
    )
    await session.execute(statement)


async def pending_emails(
    session: AsyncSession, *, now: datetime, older_than: timedelta
) -> list[tuple[str, str]]:
    """(customer id, number) of the emails still owed that were recorded before `now - older_than`."""
    statement = (
        select(col(DocumentEmail.customer_id), col(DocumentEmail.number))
        .where(col(DocumentEmail.status) == "pending", col(DocumentEmail.created_at) < now - older_than)
        .order_by(col(DocumentEmail.created_at))
        .limit(500)
    )
    return [(str(c), str(n)) for c, n in await session.execute(statement)]
