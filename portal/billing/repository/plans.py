"""Every query on `plans` and `subscriptions`: the billing catalog."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import delete, distinct, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.billing.models import Plan as PlanRow
from portal.billing.models import Subscription as SubscriptionRow
from portal.billing.repository import NO_SYNC
from portal.billing.schemas import Discount, Plan, Subscription, plan_from_definition

_SUBSCRIPTION = (
    col(SubscriptionRow.id),
    col(SubscriptionRow.customer_id),
    col(SubscriptionRow.plan_id),
    col(SubscriptionRow.anchor_day),
    col(SubscriptionRow.starts_at),
    col(SubscriptionRow.ends_at),
    col(SubscriptionRow.discounts),
)


def _subscription(row: Any) -> Subscription:
    sid, customer_id, plan_id, anchor_day, starts_at, ends_at, discounts = tuple(row)
    return Subscription(
        sid,
        customer_id,
        plan_id,
        anchor_day,
        starts_at,
        ends_at,
        msgspec.convert(discounts, tuple[Discount, ...]),
    )


# --- plans (immutable: inserted once, never updated)


async def insert_plan(
    session: AsyncSession, *, plan_id: str, name: str, currency: str, definition: dict[str, Any]
) -> bool:
    """Store the plan; False (and nothing written) when a plan with this id exists already.

    `definition` must be JSON builtins (Decimals as strings, see `plans.definition_of`)."""
    statement = (
        pg_insert(PlanRow)
        .values(id=plan_id, name=name, currency=currency, definition=definition)
        .on_conflict_do_nothing(index_elements=[col(PlanRow.id)])
        .returning(col(PlanRow.id))
    )
    return (await session.execute(statement)).first() is not None


async def plan_by_id(session: AsyncSession, plan_id: str) -> Plan | None:
    statement = select(col(PlanRow.definition)).where(col(PlanRow.id) == plan_id)
    row = (await session.execute(statement)).first()
    return plan_from_definition(row[0]) if row else None


async def plans_listing(session: AsyncSession) -> list[Plan]:
    """Every plan, by id."""
    rows = await session.execute(select(col(PlanRow.definition)).order_by(col(PlanRow.id)))
    return [plan_from_definition(definition) for (definition,) in rows]


async def plans_by_id(session: AsyncSession, plan_ids: Iterable[str]) -> dict[str, Plan]:
    """Plan id → plan, for those of `plan_ids` that exist."""
    statement = select(col(PlanRow.id), col(PlanRow.definition)).where(col(PlanRow.id).in_(sorted(plan_ids)))
    return {str(pid): plan_from_definition(d) for pid, d in await session.execute(statement)}


async def plan_count(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(PlanRow))).scalar_one())


def _subscribed() -> Any:
    # A subscription counts while it runs or before it starts (a plan change next period).
    return or_(col(SubscriptionRow.ends_at).is_(None), col(SubscriptionRow.ends_at) > func.now())


async def plans_with_subscriber_counts(session: AsyncSession) -> list[tuple[Plan, int]]:
    """Every plan, by id, with how many customers are (or will be) subscribed to it."""
    subscribers = (
        select(func.count(distinct(col(SubscriptionRow.customer_id))))
        .where(col(SubscriptionRow.plan_id) == col(PlanRow.id), _subscribed())
        .scalar_subquery()
    )
    statement = select(col(PlanRow.definition), subscribers).order_by(col(PlanRow.id))
    rows: Any = await session.execute(statement)
    return [(plan_from_definition(d), int(n)) for d, n in rows]


async def plan_subscribers(session: AsyncSession, plan_id: str) -> list[str]:
    """The customers subscribed to the plan now or later, by id."""
    statement = (
        select(col(SubscriptionRow.customer_id))
        .distinct()
        .where(col(SubscriptionRow.plan_id) == plan_id, _subscribed())
        .order_by(col(SubscriptionRow.customer_id))
    )
    return [str(c) for c in (await session.scalars(statement)).all()]


# --- subscriptions (never overlapping per customer: an exclusion constraint)


async def customer_subscriptions(session: AsyncSession, customer_id: str) -> list[Subscription]:
    """The customer's subscriptions, by start."""
    statement = (
        select(*_SUBSCRIPTION)
        .where(col(SubscriptionRow.customer_id) == customer_id)
        .order_by(col(SubscriptionRow.starts_at))
    )
    return [_subscription(row) for row in await session.execute(statement)]


async def subscriptions_overlapping(
    session: AsyncSession, customer_ids: Sequence[str] | None, start: datetime, end: datetime
) -> list[Subscription]:
    """Subscriptions overlapping [start, end) of the customers `customer_ids` (all if None),
    by customer then start."""
    statement = (
        select(*_SUBSCRIPTION)
        .where(
            col(SubscriptionRow.starts_at) < end,
            or_(col(SubscriptionRow.ends_at).is_(None), col(SubscriptionRow.ends_at) > start),
        )
        .order_by(col(SubscriptionRow.customer_id), col(SubscriptionRow.starts_at))
    )
    if customer_ids is not None:
        statement = statement.where(col(SubscriptionRow.customer_id).in_(list(customer_ids)))
    return [_subscription(row) for row in await session.execute(statement)]


async def cut_subscriptions_at(session: AsyncSession, customer_id: str, at: datetime) -> None:
    """Make room for a subscription starting at `at`: the customer's subscriptions starting
    at or after it are deleted, the one running at `at` ends there."""
    await session.execute(
        delete(SubscriptionRow)
        .where(col(SubscriptionRow.customer_id) == customer_id, col(SubscriptionRow.starts_at) >= at)
        .execution_options(**NO_SYNC)
    )
    await session.execute(
        update(SubscriptionRow)
        .where(
            col(SubscriptionRow.customer_id) == customer_id,
            col(SubscriptionRow.starts_at) < at,
            or_(col(SubscriptionRow.ends_at).is_(None), col(SubscriptionRow.ends_at) > at),
        )
        .values(ends_at=at)
        .execution_options(**NO_SYNC)
    )


async def insert_subscription(
    session: AsyncSession,
    *,
    customer_id: str,
    plan_id: str,
    anchor_day: int,
    starts_at: datetime,
    discounts: Sequence[Discount],
) -> Subscription:
    """Store an open-ended subscription; an overlap with another of the customer's is refused
    by the exclusion constraint (IntegrityError)."""
    statement = (
        insert(SubscriptionRow)
        .values(
            customer_id=customer_id,
            plan_id=plan_id,
            anchor_day=anchor_day,
            starts_at=starts_at,
            discounts=msgspec.to_builtins(tuple(discounts)),
        )
        .returning(*_SUBSCRIPTION)
    )
    return _subscription((await session.execute(statement)).one())
