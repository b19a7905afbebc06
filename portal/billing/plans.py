"""Plans: stored as their validated definition (JSON), immutable once created. The SQL is in
`portal.billing.repository.plans`."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.repository import plans as plan_store
from portal.billing.schemas import Plan, PlanCreate, plan_from_definition
from portal.catalog import repository as catalog
from portal.infrastructure.domain_errors import Conflict, Invalid, NotFound


def definition_of(plan: PlanCreate | Plan) -> dict[str, Any]:
    """The plan as stored: camelCase JSON with every field present."""
    data: dict[str, Any] = msgspec.to_builtins(plan)
    return data


async def check_meters(session: AsyncSession, plan: PlanCreate) -> None:
    """Every charged meter exists, and every charge dimension is one of its groupBy."""
    meters = await catalog.meter_group_bys(session)
    for charge in plan.charges:
        if charge.meter is None:
            continue
        if charge.meter not in meters:
            raise Invalid(f"charge {charge.key}.meter: no meter {charge.meter!r}")
        for dimension in charge.dimensions:
            if dimension not in meters[charge.meter]:
                raise Invalid(
                    f"charge {charge.key}.dimensions: {dimension!r} is not in meter "
                    f"{charge.meter}'s groupBy {meters[charge.meter]} (prices can only depend on "
                    "dimensions the meter groups by)"
                )


async def create_plan(session: AsyncSession, data: PlanCreate) -> tuple[Plan, bool]:
    """Store a plan; (plan, created). Creating the same definition again is a no-op;
    the same id with another definition is a Conflict (plans are immutable)."""
    await check_meters(session, data)
    definition = definition_of(data)
    created = await plan_store.insert_plan(
        session, plan_id=data.id, name=data.name, currency=data.currency, definition=definition
    )
    if created:
        return plan_from_definition(definition), True
    existing = await get_plan(session, data.id)
    if definition_of(existing) != definition:
        raise Conflict(
            f"plan {data.id!r} exists with another definition; plans are immutable "
            "(create a new plan id and move subscriptions to it)"
        )
    return existing, False


async def get_plan(session: AsyncSession, plan_id: str) -> Plan:
    plan = await plan_store.plan_by_id(session, plan_id)
    if plan is None:
        raise NotFound(f"no plan {plan_id!r}")
    return plan


async def list_plans(session: AsyncSession) -> list[Plan]:
    return await plan_store.plans_listing(session)
