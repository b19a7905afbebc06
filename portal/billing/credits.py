"""Prepaid credit: grants, what is left of them, drawing down and giving back."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing import announcements
from portal.billing.rating import round_money
from portal.billing.repository import credits as credit_store
from portal.billing.repository import invoices as invoice_store
from portal.billing.schemas import CreditGrantCreate
from portal.billing.views import money_text
from portal.catalog.service import get_customer
from portal.http.schemas import CamelStruct
from portal.infrastructure.broker import MAINTENANCE_QUEUE
from portal.infrastructure.domain_errors import Invalid, NotFound
from portal.infrastructure.jobs import after_commit
from portal.infrastructure.periods import local_midnight

# The job that re-rates a draft of an ended period (workers/billing.py).
REFRESH_DRAFT_ACTOR = "refresh_ended_draft"


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
    """Grant prepaid credit; the customer's drafts (of ended periods, awaiting review, and
    of the running one) are re-rated after the commit, so the review queue, exports and
    previews show the credit they will draw."""
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
    # Every draft, the running period's too: exports and the review queue read drafts as
    # stored, and would show the credit undrawn until the next scheduled refresh.
    for invoice_id in await invoice_store.draft_ids(session, customer_id):
        after_commit(session, REFRESH_DRAFT_ACTOR, MAINTENANCE_QUEUE, invoice_id)
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
    """Credit the customer's invoice for a period ending at `usable_at` may draw
    (`credits_usable`)."""
    return (await credits_usable(session, {customer_id: usable_at})).get(customer_id, Decimal(0))


async def credits_usable(session: AsyncSession, usable_at: dict[str, datetime]) -> dict[str, Decimal]:
    """For each customer, the credit its invoice for the period ending at its instant may
    draw: what is left of grants not expired then (credit that expired during the period
    still counts for it), less what its drafts of earlier periods will draw when approved
    (each as much as it charges before credit, from what is left for it).
    Without that, credit granted while a period awaits review was shown on that draft and
    again on the next period's cost. One read for all the customers, a second only for
    those with credit left (the dashboard's cost preview asks on every poll)."""
    if not usable_at:
        return {}
    grants: dict[str, list[tuple[datetime | None, Decimal]]] = {}
    for customer_id, expires_at, remaining in await credit_store.credit_left_by_grant(
        session, list(usable_at)
    ):
        if remaining > 0:
            grants.setdefault(customer_id, []).append((expires_at, remaining))
    if not grants:
        return {}
    claims: dict[str, list[tuple[datetime, Decimal]]] = {}
    for customer_id, period_end, applied in await credit_store.draft_credit_claims(session, list(grants)):
        if period_end < usable_at[customer_id]:
            claims.setdefault(customer_id, []).append((period_end, applied))
    return {
        cid: left_after_claims(grants.get(cid, []), claims.get(cid, []), at)
        for cid, at in usable_at.items()
        if cid in grants
    }


def left_after_claims(
    grants: list[tuple[datetime | None, Decimal]], claims: list[tuple[datetime, Decimal]], usable_at: datetime
) -> Decimal:
    """Credit usable at `usable_at` from `grants` (expiry, what is left) once each claim
    (an earlier period's end, what it charges before credit) has drawn what it will, as
    `draw_credit` draws: up to its amount, from the grants usable at its period's end, the
    soonest to expire first."""
    expiries = sorted((g for g in grants if g[1] > 0), key=lambda g: (g[0] is None, g[0]))
    remaining = [r for _, r in expiries]
    for period_end, amount in sorted(claims):
        for i, (expires_at, _) in enumerate(expiries):
            if amount <= 0:
                break
            if expires_at is not None and expires_at < period_end:
                continue
            taken = min(remaining[i], amount)
            remaining[i] -= taken
            amount -= taken
    return sum(
        (r for (e, _), r in zip(expiries, remaining, strict=True) if e is None or e >= usable_at), Decimal(0)
    )


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
