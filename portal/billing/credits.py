"""Prepaid credit: grants, what is left of them, drawing down and giving back."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.rating import round_money
from portal.billing.schemas import CreditGrantCreate
from portal.billing.views import money_text
from portal.catalog.service import get_customer
from portal.db import values
from portal.periods import local_midnight
from portal.problems import Invalid, NotFound
from portal.schemas import CamelStruct


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


_REMAINING = """
    SELECT g.id, g.customer_id, g.amount, g.amount - COALESCE(sum(a.amount)
               FILTER (WHERE a.released_at IS NULL), 0) AS remaining,
           g.currency, g.description, g.expires_at, g.granted_at
    FROM credit_grants g LEFT JOIN credit_applications a ON a.grant_id = g.id
    WHERE g.customer_id = :c
    GROUP BY g.id
    ORDER BY g.expires_at NULLS LAST, g.granted_at, g.id
"""


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
    row = (
        await session.execute(
            text(
                "INSERT INTO credit_grants (customer_id, amount, currency, description, expires_at) "
                "VALUES (:c, :a, :cur, :d, :e) RETURNING id"
            ),
            {
                "c": customer_id,
                "a": data.amount,
                "cur": customer.currency,
                "d": data.description,
                "e": expires_at,
            },
        )
    ).one()
    grants = await credit_balance(session, customer_id, currency=customer.currency)
    return next(g for g in grants.grants if g.id == values(row)[0])


def _grant(row: Any) -> CreditGrant:
    gid, customer_id, amount, remaining, currency, description, expires_at, granted_at = values(row)
    cur = str(currency).strip()
    return CreditGrant(
        gid,
        customer_id,
        money_text(amount, cur),
        money_text(remaining, cur),
        cur,
        description,
        expires_at,
        granted_at,
    )


async def credit_balance(
    session: AsyncSession, customer_id: str, *, currency: str, usable_at: datetime | None = None
) -> CreditBalance:
    """Every grant with what is left of it; the balance counts grants usable at
    `usable_at` (default: all unexpired now-or-later grants are listed, all counted)."""
    rows = await session.execute(text(_REMAINING), {"c": customer_id})
    grants = [_grant(r) for r in rows]
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
    rows = await session.execute(text(_REMAINING), {"c": customer_id})
    return sum(
        (Decimal(values(r)[3]) for r in rows if values(r)[6] is None or values(r)[6] >= usable_at), Decimal(0)
    )


async def draw_credit(
    session: AsyncSession, customer_id: str, invoice_id: int, amount: Decimal, *, usable_at: datetime
) -> None:
    """Apply `amount` to the invoice from the grants that expire first (the caller holds
    the customer's billing lock, so no other invoice draws at the same time)."""
    left = amount
    rows = await session.execute(text(_REMAINING), {"c": customer_id})
    for row in rows.all():
        gid, remaining, expires_at = values(row)[0], Decimal(values(row)[3]), values(row)[6]
        if left <= 0:
            break
        if remaining <= 0 or (expires_at is not None and expires_at < usable_at):
            continue
        take = min(left, remaining)
        await session.execute(
            text("INSERT INTO credit_applications (grant_id, invoice_id, amount) VALUES (:g, :i, :a)"),
            {"g": gid, "i": invoice_id, "a": take},
        )
        left -= take
    if left > 0:
        raise Invalid(f"credit balance fell short by {left} while finalizing invoice {invoice_id}")


async def release_credit(session: AsyncSession, invoice_id: int) -> None:
    """Give back what a voided invoice drew."""
    await session.execute(
        text(
            "UPDATE credit_applications SET released_at = now() WHERE invoice_id = :i AND released_at IS NULL"
        ),
        {"i": invoice_id},
    )
