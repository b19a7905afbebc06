"""Prepaid credit: grants, what is left of them, drawing down and giving back."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing import announcements
from portal.billing.rating import round_money
from portal.billing.repository import credits as credit_store
from portal.billing.schemas import CreditGrantCreate
from portal.billing.views import money_text
from portal.catalog.service import get_customer
from portal.http.schemas import CamelStruct
from portal.infrastructure.domain_errors import Invalid, NotFound
from portal.infrastructure.periods import local_midnight


class CreditGrant(CamelStruct):
    id: int
    customer_id: str
    amount: str
    remaining: str
    currency: str
    description: str
    expires_at: datetime | None
    granted_at: datetime


class CreditBalance(CamelStruct):
    customer_id: str
    currency: str
    balance: str
    grants: list[CreditGrant]


async def grant_credit(session: AsyncSession, customer_id: str, data: CreditGrantCreate) -> CreditGrant:
    customer = await get_customer(session, customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id!r}")
    if round_money(data.amount, customer.currency) != data.amount:
        raise Invalid(f"amount: {data.amount} has more decimals than {customer.currency} allows")
    expires_at = None
    if data.expires_on is not None:
        # A grant "expires on" a day: usable until that day ends in the customer's zone.
        expires_at = local_midnight(data.expires_on + timedelta(days=1), customer.timezone)
    grant_id = await credit_store.insert_credit_grant(
        session,
        customer_id=customer_id,
        amount=data.amount,
        currency=customer.currency,
        description=data.description,
        expires_at=expires_at,
    )
    grants = await credit_balance(session, customer_id, currency=customer.currency)
    return next(g for g in grants.grants if g.id == grant_id)


def _grant(left: credit_store.GrantLeft) -> CreditGrant:
    currency = left.currency.strip()
    return CreditGrant(
        left.id,
        left.customer_id,
        money_text(left.amount, currency),
        money_text(left.remaining, currency),
        currency,
        left.description,
        left.expires_at,
        left.granted_at,
    )


async def credit_balance(
    session: AsyncSession, customer_id: str, *, currency: str, usable_at: datetime | None = None
) -> CreditBalance:
    """Every grant with what is left of it; the balance counts grants usable at
    `usable_at` (default: all unexpired now-or-later grants are listed, all counted)."""
    grants = [_grant(g) for g in await credit_store.grants_left(session, customer_id)]
    balance = sum(
        (
            Decimal(g.remaining)
            for g in grants
            if usable_at is None or g.expires_at is None or g.expires_at > usable_at
        ),
        Decimal(0),
    )
    return CreditBalance(customer_id, currency, money_text(balance, currency), grants)


async def available_credit(session: AsyncSession, customer_id: str, *, usable_at: datetime) -> Decimal:
    """Credit an invoice issued now may draw: what is left of grants not expired at
    `usable_at` (the period's end: credit that expired during the period still counts
    for it)."""
    grants = await credit_store.grants_left(session, customer_id)
    return sum((g.remaining for g in grants if g.expires_at is None or g.expires_at >= usable_at), Decimal(0))


async def draw_credit(
    session: AsyncSession,
    customer_id: str,
    invoice_id: int,
    amount: Decimal,
    *,
    usable_at: datetime,
    now: datetime | None = None,
) -> None:
    """Apply `amount` to the invoice from the grants that expire first (the caller holds
    the customer's billing lock, so no other invoice draws at the same time). Announces
    `credit.low` (at `now`) when this takes the credit left below its low mark."""
    left = amount
    grants = await credit_store.grants_left(session, customer_id)
    usable = [g for g in grants if g.expires_at is None or g.expires_at >= usable_at]
    before = sum((g.remaining for g in usable if g.remaining > 0), Decimal(0))
    # What the grants with credit left gave: a used-up grant no longer counts.
    granted = sum((g.amount for g in usable if g.remaining > 0), Decimal(0))
    for grant in grants:
        gid, remaining, expires_at = grant.id, grant.remaining, grant.expires_at
        if left <= 0:
            break
        if remaining <= 0 or (expires_at is not None and expires_at < usable_at):
            continue
        take = min(left, remaining)
        await credit_store.insert_credit_application(
            session, grant_id=gid, invoice_id=invoice_id, amount=take
        )
        left -= take
    if left > 0:
        raise Invalid(f"credit balance fell short by {left} while finalizing invoice {invoice_id}")
    after = before - amount
    if usable and announcements.credit_crossed_low(granted, before, after):
        await announcements.credit_low(
            session,
            customer_id=customer_id,
            currency=usable[0].currency,
            granted=granted,
            remaining=after,
            invoice_id=invoice_id,
            now=now,
        )


async def release_credit(session: AsyncSession, invoice_id: int) -> None:
    """Give back what a voided invoice drew."""
    await credit_store.release_credit_applications(session, invoice_id)
