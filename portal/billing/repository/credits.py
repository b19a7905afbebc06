"""Every query on `credit_grants` and `credit_applications`: prepaid credit and what
invoices drew from it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.billing.models import CreditApplication, CreditGrant, Invoice
from portal.billing.repository import NO_SYNC

# --- credit_grants and credit_applications: prepaid credit and what invoices drew from it


class GrantLeft(NamedTuple):
    """A grant with what is left of it (its amount less what unreleased applications drew)."""

    id: int
    customer_id: str
    amount: Decimal
    remaining: Decimal
    currency: str
    description: str
    expires_at: datetime | None
    granted_at: datetime


async def insert_credit_grant(
    session: AsyncSession,
    *,
    customer_id: str,
    amount: Decimal,
    currency: str,
    description: str,
    expires_at: datetime | None,
) -> int:
    """Store a grant (amount in the currency's units, exact); returns its id."""
    statement = (
        insert(CreditGrant)
        .values(
            customer_id=customer_id,
            amount=amount,
            currency=currency,
            description=description,
            expires_at=expires_at,
        )
        .returning(col(CreditGrant.id))
    )
    grant_id = (await session.execute(statement)).scalar_one()
    assert grant_id is not None  # a bigserial
    return grant_id


async def grants_left(session: AsyncSession, customer_id: str) -> list[GrantLeft]:
    """The customer's grants, those expiring first first (then oldest), each with what is left."""
    drawn = func.sum(col(CreditApplication.amount)).filter(col(CreditApplication.released_at).is_(None))
    statement = (
        select(
            col(CreditGrant.id),
            col(CreditGrant.customer_id),
            col(CreditGrant.amount),
            col(CreditGrant.amount) - func.coalesce(drawn, 0),
            col(CreditGrant.currency),
            col(CreditGrant.description),
            col(CreditGrant.expires_at),
            col(CreditGrant.granted_at),
        )
        .outerjoin(CreditApplication, col(CreditApplication.grant_id) == col(CreditGrant.id))
        .where(col(CreditGrant.customer_id) == customer_id)
        .group_by(col(CreditGrant.id), col(CreditGrant.customer_id))
        .order_by(
            col(CreditGrant.expires_at).asc().nulls_last(), col(CreditGrant.granted_at), col(CreditGrant.id)
        )
    )
    rows: Any = await session.execute(statement)
    return [GrantLeft(*tuple(row)) for row in rows]


async def credit_left_by_grant(
    session: AsyncSession, customer_ids: Sequence[str]
) -> list[tuple[str, datetime | None, Decimal]]:
    """(customer id, expires at, what is left) of every grant of these customers, unordered."""
    drawn = (
        select(func.sum(col(CreditApplication.amount)))
        .where(
            col(CreditApplication.grant_id) == col(CreditGrant.id),
            col(CreditApplication.released_at).is_(None),
        )
        .scalar_subquery()
    )
    statement = select(
        col(CreditGrant.customer_id),
        col(CreditGrant.expires_at),
        col(CreditGrant.amount) - func.coalesce(drawn, 0),
    ).where(col(CreditGrant.customer_id).in_(list(customer_ids)))
    return [(str(c), expires_at, left) for c, expires_at, left in await session.execute(statement)]


async def draft_credit_claims(
    session: AsyncSession, customer_ids: Sequence[str]
) -> list[tuple[str, datetime, Decimal]]:
    """(customer id, period end, amount before credit) of every draft of these customers
    that charges something: the most approving it may draw from their prepaid credit (its
    total as last rated plus the credit it applied then)."""
    chargeable = col(Invoice.total) + col(Invoice.credits_applied)
    statement = select(col(Invoice.customer_id), col(Invoice.period_end), chargeable).where(
        col(Invoice.customer_id).in_(list(customer_ids)),
        col(Invoice.status) == "draft",
        chargeable > 0,
    )
    return [(str(c), end, amount) for c, end, amount in await session.execute(statement)]


async def insert_credit_application(
    session: AsyncSession, *, grant_id: int, invoice_id: int, amount: Decimal
) -> None:
    """Record that the invoice drew `amount` (exact, in the currency's units) from the grant."""
    await session.execute(
        insert(CreditApplication).values(
            # The invoice's customer, copied (the table is keyed by customer: migration 0008).
            customer_id=select(col(Invoice.customer_id))
            .where(col(Invoice.id) == invoice_id)
            .scalar_subquery(),
            grant_id=grant_id,
            invoice_id=invoice_id,
            amount=amount,
        )
    )


async def release_credit_applications(session: AsyncSession, invoice_id: int) -> None:
    """Give back, now, what the invoice drew and has not given back yet."""
    statement = (
        update(CreditApplication)
        .where(col(CreditApplication.invoice_id) == invoice_id, col(CreditApplication.released_at).is_(None))
        .values(released_at=func.now())
        .execution_options(**NO_SYNC)
    )
    await session.execute(statement)
