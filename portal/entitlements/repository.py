"""Every query on the entitlement tables (`plan_entitlements`, `customer_entitlements`,
`entitlement_crossings`); other modules call these functions, never the tables. None commits."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.entitlements.limits import CustomerRule, Enforcement, PlanRule, SetBy
from portal.entitlements.models import CustomerEntitlement, EntitlementCrossing, PlanEntitlement


async def plan_rules(session: AsyncSession, plan_ids: Iterable[str]) -> dict[str, list[PlanRule]]:
    """Each plan's limits, by plan id (plans without any are left out)."""
    statement = (
        select(
            col(PlanEntitlement.plan_id),
            col(PlanEntitlement.metric_name),
            col(PlanEntitlement.limit_quantity),
            col(PlanEntitlement.enforcement),
            col(PlanEntitlement.customer_may_lower),
        )
        .where(col(PlanEntitlement.plan_id).in_(sorted(set(plan_ids))))
        .order_by(col(PlanEntitlement.plan_id), col(PlanEntitlement.metric_name))
    )
    out: dict[str, list[PlanRule]] = {}
    for plan_id, metric, quantity, enforcement, may_lower in await session.execute(statement):
        out.setdefault(plan_id, []).append(
            PlanRule(metric, Decimal(quantity), cast(Enforcement, enforcement), bool(may_lower))
        )
    return out


async def customer_rules(session: AsyncSession, customer_ids: Iterable[str]) -> dict[str, list[CustomerRule]]:
    """Each customer's own limits, by customer id."""
    statement = (
        select(
            col(CustomerEntitlement.customer_id),
            col(CustomerEntitlement.metric_name),
            col(CustomerEntitlement.limit_quantity),
            col(CustomerEntitlement.enforcement),
            col(CustomerEntitlement.set_by),
        )
        .where(col(CustomerEntitlement.customer_id).in_(sorted(set(customer_ids))))
        .order_by(col(CustomerEntitlement.customer_id), col(CustomerEntitlement.metric_name))
    )
    out: dict[str, list[CustomerRule]] = {}
    for customer_id, metric, quantity, enforcement, set_by in await session.execute(statement):
        out.setdefault(customer_id, []).append(
            CustomerRule(metric, Decimal(quantity), cast(Enforcement, enforcement), cast(SetBy, set_by))
        )
    return out


async def replace_plan_rules(session: AsyncSession, plan_id: str, rules: list[PlanRule]) -> None:
    await session.execute(delete(PlanEntitlement).where(col(PlanEntitlement.plan_id) == plan_id))
    if rules:
        await session.execute(
            insert(PlanEntitlement),
            [
                {
                    "plan_id": plan_id,
                    "metric_name": r.metric_name,
                    "limit_quantity": r.quantity,
                    "enforcement": r.enforcement,
                    "customer_may_lower": r.customer_may_lower,
                }
                for r in rules
            ],
        )


async def replace_customer_rules(session: AsyncSession, customer_id: str, rules: list[CustomerRule]) -> None:
    await session.execute(
        delete(CustomerEntitlement).where(col(CustomerEntitlement.customer_id) == customer_id)
    )
    if rules:
        await session.execute(
            insert(CustomerEntitlement),
            [
                {
                    "customer_id": customer_id,
                    "metric_name": r.metric_name,
                    "limit_quantity": r.quantity,
                    "enforcement": r.enforcement,
                    "set_by": r.set_by,
                }
                for r in rules
            ],
        )


async def set_customer_rule(session: AsyncSession, customer_id: str, rule: CustomerRule) -> None:
    """One customer limit, inserted or replaced."""
    statement = pg_insert(CustomerEntitlement).values(
        customer_id=customer_id,
        metric_name=rule.metric_name,
        limit_quantity=rule.quantity,
        enforcement=rule.enforcement,
        set_by=rule.set_by,
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["customer_id", "metric_name"],
            set_={
                "limit_quantity": statement.excluded.limit_quantity,
                "enforcement": statement.excluded.enforcement,
                "set_by": statement.excluded.set_by,
                "updated_at": datetime.now().astimezone(),
            },
        )
    )


async def clear_customer_rule(session: AsyncSession, customer_id: str, metric_name: str) -> bool:
    result = await session.execute(
        delete(CustomerEntitlement).where(
            col(CustomerEntitlement.customer_id) == customer_id,
            col(CustomerEntitlement.metric_name) == metric_name,
        )
    )
    return bool(getattr(result, "rowcount", 0))


async def record_crossing(
    session: AsyncSession,
    *,
    customer_id: str,
    metric_name: str,
    period_start: datetime,
    period_end: datetime,
    quantity: Decimal,
    enforcement: str,
    used: Decimal,
    crossed_at: datetime,
) -> bool:
    """Record that the customer reached this limit in this period; False when it was recorded
    before (the key makes it once, whichever process sees it first)."""
    statement = (
        pg_insert(EntitlementCrossing)
        .values(
            customer_id=customer_id,
            metric_name=metric_name,
            period_start=period_start,
            period_end=period_end,
            limit_quantity=quantity,
            enforcement=enforcement,
            used=used,
            crossed_at=crossed_at,
        )
        .on_conflict_do_nothing()
        .returning(col(EntitlementCrossing.customer_id))
    )
    return (await session.execute(statement)).first() is not None
