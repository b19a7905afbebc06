"""Alert rules: a customer's own, and a plan's defaults copied to each subscriber."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from portal.alerting.schemas import PlanRule, Rule, RuleBody, RuleCreate
from portal.billing.plans import get_plan
from portal.catalog.service import get_customer, get_meter
from portal.db import values
from portal.problems import Conflict, Invalid, NotFound
from portal.usage.combine import exact

_WATCH = "kind, name, metric_name, basis, budget, levels, notify_recovery, notify_forecast"
_RULE_COLUMNS = f"id, customer_id, {_WATCH}, channel_ids, from_plan_rule_id, created_at, disabled_at"
_PLAN_RULE_COLUMNS = f"id, plan_id, {_WATCH}, created_at"


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else exact(value)


def _rule(row: Any) -> Rule:
    (
        rid,
        customer_id,
        kind,
        name,
        metric,
        basis,
        budget,
        levels,
        recovery,
        forecast,
        channels,
        from_plan,
        created_at,
        disabled_at,
    ) = values(row)
    return Rule(
        rid,
        customer_id,
        kind,
        name,
        metric,
        basis,
        _amount(budget),
        [exact(v) for v in levels],
        recovery,
        forecast,
        list(channels),
        from_plan,
        created_at,
        disabled_at,
    )


def _plan_rule(row: Any) -> PlanRule:
    (rid, plan_id, kind, name, metric, basis, budget, levels, recovery, forecast, created_at) = values(row)
    return PlanRule(
        rid,
        plan_id,
        kind,
        name,
        metric,
        basis,
        _amount(budget),
        [exact(v) for v in levels],
        recovery,
        forecast,
        created_at,
    )


async def _check_body(session: AsyncSession, body: RuleBody) -> None:
    if body.metric_name is None:
        return
    meter = await get_meter(session, body.metric_name)
    if meter is None:
        raise Invalid(f"metricName: no meter {body.metric_name!r}")
    if body.kind == "anomaly" and meter.aggregation not in ("sum", "count"):
        # Only volumes have a usual amount per hour (portal/anomalies.py).
        raise Invalid(
            f"metricName: anomalies are judged for sum and count meters; "
            f"{meter.metric_name!r} is a {meter.aggregation} meter"
        )


async def check_channels(session: AsyncSession, customer_id: str, channel_ids: list[int]) -> None:
    """Invalid unless every channel id is an active channel of the customer."""
    if not channel_ids:
        return
    owned = {
        int(values(r)[0])
        for r in await session.execute(
            text(
                "SELECT id FROM alert_channels WHERE customer_id = :c AND disabled_at IS NULL AND id = "
                "ANY(:ids)"
            ),
            {"c": customer_id, "ids": channel_ids},
        )
    }
    missing = sorted(set(channel_ids) - owned)
    if missing:
        raise Invalid(f"channelIds: customer {customer_id} has no channel {missing[0]}")


async def create_rule(session: AsyncSession, customer_id: str, data: RuleCreate) -> Rule:
    """Raises NotFound (customer), Invalid (unknown meter or channel)."""
    if await get_customer(session, customer_id) is None:
        raise NotFound(f"no customer {customer_id!r}")
    await _check_body(session, data)
    await check_channels(session, customer_id, data.channel_ids)
    row = (
        await session.execute(
            text(
                f"INSERT INTO alert_rules (customer_id, {_WATCH}, channel_ids) "
                "VALUES (:c, :k, :n, :m, :b, :budget, :levels, :rec, :fc, :ch) "
                f"RETURNING {_RULE_COLUMNS}"
            ),
            {
                "c": customer_id,
                "k": data.kind,
                "n": data.name,
                "m": data.metric_name,
                "b": data.basis,
                "budget": data.budget,
                "levels": data.levels,
                "rec": data.notify_recovery,
                "fc": data.notify_forecast,
                "ch": data.channel_ids,
            },
        )
    ).one()
    return _rule(row)


async def list_rules(session: AsyncSession, customer_id: str) -> list[Rule]:
    rows = await session.execute(
        text(
            f"SELECT {_RULE_COLUMNS} FROM alert_rules WHERE customer_id = :c AND disabled_at IS NULL "
            "ORDER BY id"
        ),
        {"c": customer_id},
    )
    return [_rule(r) for r in rows]


async def disable_rule(session: AsyncSession, customer_id: str, rule_id: int) -> None:
    done = (
        await session.execute(
            text(
                "UPDATE alert_rules SET disabled_at = now() WHERE id = :id AND customer_id = :c "
                "AND disabled_at IS NULL RETURNING id"
            ),
            {"id": rule_id, "c": customer_id},
        )
    ).first()
    if done is None:
        raise NotFound(f"no alert rule {rule_id} for customer {customer_id}")


async def create_plan_rule(session: AsyncSession, plan_id: str, data: RuleBody) -> PlanRule:
    """A default rule of a plan, copied at once to its current subscribers and later to
    each new one. Raises NotFound (plan), Invalid (meter), Conflict (name taken)."""
    await get_plan(session, plan_id)
    await _check_body(session, data)
    row = (
        await session.execute(
            text(
                f"INSERT INTO plan_alert_rules (plan_id, {_WATCH}) "
                "VALUES (:p, :k, :n, :m, :b, :budget, :levels, :rec, :fc) "
                f"ON CONFLICT (plan_id, name) DO NOTHING RETURNING {_PLAN_RULE_COLUMNS}"
            ),
            {
                "p": plan_id,
                "k": data.kind,
                "n": data.name,
                "m": data.metric_name,
                "b": data.basis,
                "budget": data.budget,
                "levels": data.levels,
                "rec": data.notify_recovery,
                "fc": data.notify_forecast,
            },
        )
    ).first()
    if row is None:
        raise Conflict(f"name: plan {plan_id} already has an alert rule named {data.name!r}")
    subscribers = await session.execute(
        text(
            "SELECT DISTINCT customer_id FROM subscriptions WHERE plan_id = :p "
            "AND (ends_at IS NULL OR ends_at > now())"
        ),
        {"p": plan_id},
    )
    for (customer_id,) in (values(r) for r in subscribers):
        await copy_plan_rules(session, customer_id, plan_id)
    return _plan_rule(row)


async def list_plan_rules(session: AsyncSession, plan_id: str) -> list[PlanRule]:
    rows = await session.execute(
        text(f"SELECT {_PLAN_RULE_COLUMNS} FROM plan_alert_rules WHERE plan_id = :p ORDER BY id"),
        {"p": plan_id},
    )
    return [_plan_rule(r) for r in rows]


async def copy_plan_rules(session: AsyncSession, customer_id: str, plan_id: str) -> int:
    """Give the customer its own copy of each default rule of the plan it does not have
    yet (notifying all its channels); returns how many were copied."""
    result = await session.execute(
        text(
            f"INSERT INTO alert_rules (customer_id, {_WATCH}, from_plan_rule_id) "
            f"SELECT :c, {_WATCH}, p.id FROM plan_alert_rules p WHERE p.plan_id = :p "
            "ON CONFLICT (customer_id, from_plan_rule_id) WHERE from_plan_rule_id IS NOT NULL DO NOTHING "
            "RETURNING id"
        ),
        {"c": customer_id, "p": plan_id},
    )
    return len(result.all())
