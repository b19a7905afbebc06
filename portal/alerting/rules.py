"""Alert rules: a customer's own, and a plan's defaults copied to each subscriber. The SQL is in
`portal.alerting.repository` (and billing's, for a plan's subscribers); nothing here commits."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from portal.alerting import repository
from portal.alerting.schemas import Firing, PlanRule, Rule, RuleBody, RuleCreate
from portal.billing.plans import get_plan
from portal.billing.repository import plans as billing_plans
from portal.catalog.service import get_customer, get_meter
from portal.infrastructure.domain_errors import Conflict, Invalid, NotFound

# Enabled rules one customer may have (with up to 10 levels each): what a crossing can send
# stays bounded, and so does each evaluation's work.
MAX_ACTIVE_RULES = 100


async def _check_body(session: AsyncSession, body: RuleBody) -> None:
    if body.metric_name is None:
        return
    meter = await get_meter(session, body.metric_name)
    if meter is None:
        raise Invalid(f"metricName: no meter {body.metric_name!r}")
    if body.kind == "anomaly" and meter.aggregation not in ("sum", "count"):
        # Only volumes have a usual amount per hour (portal/usage/anomaly_rule.py).
        raise Invalid(
            f"metricName: anomalies are judged for sum and count meters; "
            f"{meter.metric_name!r} is a {meter.aggregation} meter"
        )


async def check_channels(session: AsyncSession, customer_id: str, channel_ids: list[int]) -> None:
    """Invalid unless every channel id is an active channel of the customer."""
    if not channel_ids:
        return
    owned = await repository.owned_active_channel_ids(session, customer_id, channel_ids)
    missing = sorted(set(channel_ids) - owned)
    if missing:
        raise Invalid(f"channelIds: customer {customer_id} has no channel {missing[0]}")


async def create_rule(session: AsyncSession, customer_id: str, data: RuleCreate) -> Rule:
    """Raises NotFound (customer), Invalid (unknown meter or channel)."""
    if await get_customer(session, customer_id) is None:
        raise NotFound(f"no customer {customer_id!r}")
    await _check_body(session, data)
    await check_channels(session, customer_id, data.channel_ids)
    await repository.lock_customer_alerting(session, customer_id)
    if await repository.active_rule_count(session, customer_id) >= MAX_ACTIVE_RULES:
        raise Conflict(
            f"rules: customer {customer_id} has {MAX_ACTIVE_RULES} alert rules, the most one customer "
            "may have; delete one before adding another"
        )
    return await repository.insert_rule(session, customer_id, data)


async def list_rules(session: AsyncSession, customer_id: str) -> list[Rule]:
    return await repository.active_rules(session, customer_id)


async def rules_of(session: AsyncSession, customer_id: str, firings: list[Firing]) -> dict[int, Rule]:
    """The rules these notices came from, by id, deleted ones included (their history
    still reads in the rule's units and currency)."""
    rules = await repository.rules_by_id(session, customer_id, (f.rule_id for f in firings))
    return {r.id: r for r in rules}


async def disable_rule(session: AsyncSession, customer_id: str, rule_id: int) -> None:
    if not await repository.disable_rule(session, customer_id, rule_id):
        raise NotFound(f"no alert rule {rule_id} for customer {customer_id}")


async def create_plan_rule(session: AsyncSession, plan_id: str, data: RuleBody) -> PlanRule:
    """A default rule of a plan, copied at once to its current subscribers and later to
    each new one. Raises NotFound (plan), Invalid (meter), Conflict (name taken)."""
    await get_plan(session, plan_id)
    await _check_body(session, data)
    rule = await repository.insert_plan_rule(session, plan_id, data)
    if rule is None:
        raise Conflict(f"name: plan {plan_id} already has an alert rule named {data.name!r}")
    for customer_id in await billing_plans.plan_subscribers(session, plan_id):
        await copy_plan_rules(session, customer_id, plan_id)
    return rule


async def list_plan_rules(session: AsyncSession, plan_id: str) -> list[PlanRule]:
    return await repository.plan_rules(session, plan_id)


async def copy_plan_rules(session: AsyncSession, customer_id: str, plan_id: str) -> int:
    """Give the customer its own copy of each default rule of the plan it does not have
    yet (notifying all its channels); returns how many were copied."""
    return await repository.copy_plan_rules(session, customer_id, plan_id)
