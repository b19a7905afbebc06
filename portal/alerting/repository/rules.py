"""Queries on `alert_rules` and `plan_alert_rules`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Text, bindparam, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.alerting.models import AlertRule as AlertRuleRow
from portal.alerting.models import PlanAlertRule as PlanRuleRow
from portal.alerting.repository.common import NO_SYNC
from portal.alerting.schemas import AnomalyRule, PlanRule, Rule, RuleBody, RuleCreate, RuleRow
from portal.infrastructure.db import values
from portal.usage.combine import exact

# What a rule watches and when it notifies: the columns a plan's rule and a customer's share.
_WATCH = (
    "kind",
    "name",
    "metric_name",
    "basis",
    "budget",
    "levels",
    "notify_recovery",
    "notify_forecast",
)
_RULE = (
    col(AlertRuleRow.id),
    col(AlertRuleRow.customer_id),
    *(col(getattr(AlertRuleRow, name)) for name in _WATCH),
    col(AlertRuleRow.channel_ids),
    col(AlertRuleRow.from_plan_rule_id),
    col(AlertRuleRow.created_at),
    col(AlertRuleRow.disabled_at),
)
_PLAN_RULE = (
    col(PlanRuleRow.id),
    col(PlanRuleRow.plan_id),
    *(col(getattr(PlanRuleRow, name)) for name in _WATCH),
    col(PlanRuleRow.created_at),
)


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else exact(value)


def _watch(data: RuleBody) -> dict[str, Any]:
    return {
        "kind": data.kind,
        "name": data.name,
        "metric_name": data.metric_name,
        "basis": data.basis,
        "budget": data.budget,
        "levels": data.levels,
        "notify_recovery": data.notify_recovery,
        "notify_forecast": data.notify_forecast,
    }


def _rule(row: Any) -> Rule:
    (rid, customer_id, kind, name, metric, basis, budget, levels, recovery, forecast, *rest) = values(row)
    channels, from_plan, created_at, disabled_at = rest
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
        [int(c) for c in channels],
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


# --- alert_rules


async def insert_rule(session: AsyncSession, customer_id: str, data: RuleCreate) -> Rule:
    statement = (
        insert(AlertRuleRow)
        .values(customer_id=customer_id, channel_ids=data.channel_ids, **_watch(data))
        .returning(*_RULE)
    )
    return _rule((await session.execute(statement)).one())


async def active_rules(session: AsyncSession, customer_id: str) -> list[Rule]:
    """The customer's enabled rules of both kinds, oldest first."""
    statement = (
        select(*_RULE)
        .where(col(AlertRuleRow.customer_id) == customer_id, col(AlertRuleRow.disabled_at).is_(None))
        .order_by(col(AlertRuleRow.id))
    )
    return [_rule(row) for row in await session.execute(statement)]


async def rules_by_id(session: AsyncSession, customer_id: str, rule_ids: Iterable[int]) -> list[Rule]:
    """The customer's rules of these ids, deleted (disabled) ones included: what a past
    notice's level and value were measured in."""
    wanted = sorted(set(rule_ids))
    if not wanted:
        return []
    statement = select(*_RULE).where(
        col(AlertRuleRow.customer_id) == customer_id, col(AlertRuleRow.id).in_(wanted)
    )
    return [_rule(row) for row in await session.execute(statement)]


async def active_rule_count(session: AsyncSession, customer_id: str) -> int:
    statement = select(func.count()).where(
        col(AlertRuleRow.customer_id) == customer_id, col(AlertRuleRow.disabled_at).is_(None)
    )
    return int(await session.scalar(statement) or 0)


async def active_rule(
    session: AsyncSession, customer_id: str, rule_id: int, *, lock: bool = False
) -> Rule | None:
    """The customer's enabled rule, locked until the transaction ends when `lock`; None for
    another customer's, a disabled or an unknown rule."""
    statement = select(*_RULE).where(
        col(AlertRuleRow.id) == rule_id,
        col(AlertRuleRow.customer_id) == customer_id,
        col(AlertRuleRow.disabled_at).is_(None),
    )
    if lock:
        statement = statement.with_for_update()
    row = (await session.execute(statement)).first()
    return _rule(row) if row else None


async def update_rule(session: AsyncSession, customer_id: str, rule_id: int, data: RuleCreate) -> Rule:
    """Set what may change of a rule the caller holds locked (see `active_rule`)."""
    statement = (
        update(AlertRuleRow)
        .where(col(AlertRuleRow.id) == rule_id, col(AlertRuleRow.customer_id) == customer_id)
        .values(
            name=data.name,
            levels=data.levels,
            budget=data.budget,
            notify_recovery=data.notify_recovery,
            notify_forecast=data.notify_forecast,
            channel_ids=data.channel_ids,
        )
        .returning(*_RULE)
        .execution_options(**NO_SYNC)
    )
    return _rule((await session.execute(statement)).one())


async def disable_rule(session: AsyncSession, customer_id: str, rule_id: int) -> bool:
    """Mark the customer's enabled rule disabled now; False when there is no such rule."""
    statement = (
        update(AlertRuleRow)
        .where(
            col(AlertRuleRow.id) == rule_id,
            col(AlertRuleRow.customer_id) == customer_id,
            col(AlertRuleRow.disabled_at).is_(None),
        )
        .values(disabled_at=func.now())
        .returning(col(AlertRuleRow.id))
        .execution_options(**NO_SYNC)
    )
    return (await session.execute(statement)).first() is not None


async def threshold_rules(session: AsyncSession, customer_id: str) -> list[RuleRow]:
    """The customer's enabled threshold rules, as the evaluation reads them, oldest first."""
    statement = (
        select(
            col(AlertRuleRow.id),
            col(AlertRuleRow.name),
            col(AlertRuleRow.metric_name),
            col(AlertRuleRow.basis),
            col(AlertRuleRow.budget),
            col(AlertRuleRow.levels),
            col(AlertRuleRow.notify_recovery),
            col(AlertRuleRow.notify_forecast),
            col(AlertRuleRow.channel_ids),
        )
        .where(
            col(AlertRuleRow.customer_id) == customer_id,
            col(AlertRuleRow.kind) == "threshold",
            col(AlertRuleRow.disabled_at).is_(None),
        )
        .order_by(col(AlertRuleRow.id))
    )
    return [RuleRow(*values(row)) for row in await session.execute(statement)]


async def anomaly_rules(session: AsyncSession, customer_id: str) -> list[AnomalyRule]:
    """The customer's enabled anomaly rules, oldest first."""
    statement = (
        select(
            col(AlertRuleRow.id),
            col(AlertRuleRow.name),
            col(AlertRuleRow.metric_name),
            col(AlertRuleRow.channel_ids),
            col(AlertRuleRow.anomalies_judged_through),
        )
        .where(
            col(AlertRuleRow.customer_id) == customer_id,
            col(AlertRuleRow.kind) == "anomaly",
            col(AlertRuleRow.disabled_at).is_(None),
        )
        .order_by(col(AlertRuleRow.id))
    )
    return [AnomalyRule(*values(row)) for row in await session.execute(statement)]


async def mark_anomalies_judged(session: AsyncSession, rule_ids: list[int], through: datetime) -> None:
    """Record that these rules judged every settled hour before `through` (UTC)."""
    statement = (
        update(AlertRuleRow)
        .where(col(AlertRuleRow.id).in_(rule_ids))
        .values(anomalies_judged_through=through)
        .execution_options(**NO_SYNC)
    )
    await session.execute(statement)


# Built once: the usage panel reads it at every poll; the customer is bound per call.
_BUDGET_RULES = (
    select(col(AlertRuleRow.name), col(AlertRuleRow.metric_name), col(AlertRuleRow.budget))
    .where(
        col(AlertRuleRow.customer_id) == bindparam("customer_id"),
        col(AlertRuleRow.basis) == "budget",
        col(AlertRuleRow.kind) == "threshold",
        col(AlertRuleRow.disabled_at).is_(None),
    )
    .order_by(col(AlertRuleRow.id))
)


async def budget_rules(session: AsyncSession, customer_id: str) -> list[tuple[str, str | None, Decimal]]:
    """The customer's enabled budget rules: (rule name, meter or None for spend, budget), oldest first."""
    rows = await session.execute(_BUDGET_RULES, {"customer_id": customer_id})
    return [(str(name), metric, Decimal(budget)) for name, metric, budget in map(values, rows)]


async def customers_with_rules(session: AsyncSession) -> list[str]:
    """Every customer with an enabled rule, by id."""
    statement = (
        select(col(AlertRuleRow.customer_id))
        .where(col(AlertRuleRow.disabled_at).is_(None))
        .distinct()
        .order_by(col(AlertRuleRow.customer_id))
    )
    return [str(c) for c in (await session.scalars(statement)).all()]


# Customers an alert evaluation has something to do for after new usage: an enabled rule
# (threshold, budget or anomaly), or a limit of their own or of a plan they are (or were)
# on, whose crossing the evaluation records and announces as `entitlement.exceeded` whether
# or not the customer has rules. Read here, across the entitlements tables, because it is
# this evaluation's to-do list; an ended subscription only costs a needless evaluation.
_WATCHED_AMONG = """
    SELECT customer_id FROM alert_rules WHERE disabled_at IS NULL AND customer_id = ANY($1)
    UNION SELECT customer_id FROM customer_entitlements WHERE customer_id = ANY($1)
    UNION SELECT s.customer_id FROM subscriptions s
        WHERE s.customer_id = ANY($1)
        AND EXISTS (SELECT 1 FROM plan_entitlements p WHERE p.plan_id = s.plan_id)
"""


async def customers_watched_among(conn: Any, customer_ids: Iterable[str]) -> list[str]:
    """Which of `customer_ids` an evaluation has something to do for (`_WATCHED_AMONG`),
    on an asyncpg connection.

    Raw SQL because the persist transaction that asks runs on a bare asyncpg connection (it
    COPYs the raw events), not on a session."""
    rows = await conn.fetch(_WATCHED_AMONG, sorted(customer_ids))
    return sorted(str(r["customer_id"]) for r in rows)


# --- plan_alert_rules


async def insert_plan_rule(session: AsyncSession, plan_id: str, data: RuleBody) -> PlanRule | None:
    """Store a plan's default rule; None when the plan has a rule of this name already."""
    statement = (
        pg_insert(PlanRuleRow)
        .values(plan_id=plan_id, **_watch(data))
        .on_conflict_do_nothing(index_elements=["plan_id", "name"])
        .returning(*_PLAN_RULE)
    )
    row = (await session.execute(statement)).first()
    return _plan_rule(row) if row else None


async def plan_rules(session: AsyncSession, plan_id: str) -> list[PlanRule]:
    statement = select(*_PLAN_RULE).where(col(PlanRuleRow.plan_id) == plan_id).order_by(col(PlanRuleRow.id))
    return [_plan_rule(row) for row in await session.execute(statement)]


async def copy_plan_rules(session: AsyncSession, customer_id: str, plan_id: str) -> int:
    """Give the customer its own copy of each default rule of the plan it does not have yet
    (no channels listed: every channel of the customer); how many were copied."""
    source = select(
        literal(customer_id, Text),
        *(col(getattr(PlanRuleRow, name)) for name in _WATCH),
        col(PlanRuleRow.id),
    ).where(col(PlanRuleRow.plan_id) == plan_id)
    statement = (
        pg_insert(AlertRuleRow)
        .from_select(["customer_id", *_WATCH, "from_plan_rule_id"], source)
        .on_conflict_do_nothing(
            index_elements=["customer_id", "from_plan_rule_id"],
            index_where=col(AlertRuleRow.from_plan_rule_id).is_not(None),
        )
        .returning(col(AlertRuleRow.id))
    )
    return len((await session.execute(statement)).all())
