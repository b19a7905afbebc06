"""Every query on alerting's tables, `alert_channels`, `alert_rules`, `plan_alert_rules`,
`alert_firings`, `alert_deliveries` and `alert_delivery_attempts`; other modules call these
functions, never the tables. None of them commits.

Reads select columns rather than whole models, so nothing lands in the session's identity
map, and answer alerting's read shapes (`portal.alerting.schemas`). A notice is stored as
the JSON `notice_json` wrote (decimals as strings), cast to jsonb by Postgres: the column
type's own serializer would write it again as a JSON string.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Text,
    and_,
    case,
    cast,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from portal.alerting.models import AlertChannel as ChannelRow
from portal.alerting.models import AlertDelivery as DeliveryRow
from portal.alerting.models import AlertDeliveryAttempt as AttemptRow
from portal.alerting.models import AlertFiring as FiringRow
from portal.alerting.models import AlertRule as AlertRuleRow
from portal.alerting.models import PlanAlertRule as PlanRuleRow
from portal.alerting.schemas import (
    AnomalyRule,
    Attempt,
    Channel,
    ChannelSecrets,
    Delivery,
    Firing,
    PlanRule,
    Rule,
    RuleBody,
    RuleCreate,
    RuleRow,
    StoredChannel,
)
from portal.db import values
from portal.usage.combine import exact

# Only columns are read and written here, never objects a session would have to keep in step.
_NO_SYNC = {"synchronize_session": False}

_CHANNEL = (
    col(ChannelRow.id),
    col(ChannelRow.customer_id),
    col(ChannelRow.name),
    col(ChannelRow.kind),
    col(ChannelRow.destination_masked),
    col(ChannelRow.created_at),
)
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
_DELIVERY = (
    col(DeliveryRow.id),
    col(DeliveryRow.firing_id),
    col(DeliveryRow.channel_id),
    col(ChannelRow.name),
    col(DeliveryRow.customer_id),
    col(DeliveryRow.status),
    col(DeliveryRow.attempts),
    # Only a pending delivery has a next attempt.
    case((col(DeliveryRow.status) == "pending", col(DeliveryRow.next_attempt_at))),
    col(DeliveryRow.last_error),
    col(DeliveryRow.masked_destination),
    col(DeliveryRow.created_at),
    col(DeliveryRow.sent_at),
    col(DeliveryRow.failed_at),
)


def _ids(found: Any) -> list[int]:
    return [int(i) for i in found.all()]


def _notice(notice_json: str) -> ColumnElement[Any]:
    return cast(literal(notice_json, Text), JSONB)


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


def _channel(row: Any) -> Channel:
    return Channel(*values(row))


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


def _delivery(row: Any) -> Delivery:
    return Delivery(*values(row))


# --- alert_channels


async def insert_channel(
    session: AsyncSession,
    *,
    customer_id: str,
    name: str,
    kind: str,
    destination_encrypted: bytes,
    destination_masked: str,
    signing_secret_encrypted: bytes | None,
) -> Channel | None:
    """Store a channel; None when the customer has a channel of this name already."""
    statement = (
        pg_insert(ChannelRow)
        .values(
            customer_id=customer_id,
            name=name,
            kind=kind,
            destination_encrypted=destination_encrypted,
            destination_masked=destination_masked,
            signing_secret_encrypted=signing_secret_encrypted,
        )
        .on_conflict_do_nothing(index_elements=["customer_id", "name"])
        .returning(*_CHANNEL)
    )
    row = (await session.execute(statement)).first()
    return _channel(row) if row else None


async def active_channels(session: AsyncSession, customer_id: str) -> list[Channel]:
    """The customer's enabled channels, oldest first."""
    statement = (
        select(*_CHANNEL)
        .where(col(ChannelRow.customer_id) == customer_id, col(ChannelRow.disabled_at).is_(None))
        .order_by(col(ChannelRow.id))
    )
    return [_channel(row) for row in await session.execute(statement)]


async def disable_channel(session: AsyncSession, customer_id: str, channel_id: int) -> bool:
    """Mark the customer's enabled channel disabled now; False when there is no such channel."""
    statement = (
        update(ChannelRow)
        .where(
            col(ChannelRow.id) == channel_id,
            col(ChannelRow.customer_id) == customer_id,
            col(ChannelRow.disabled_at).is_(None),
        )
        .values(disabled_at=func.now())
        .returning(col(ChannelRow.id))
        .execution_options(**_NO_SYNC)
    )
    return (await session.execute(statement)).first() is not None


async def active_channel_ids(session: AsyncSession, customer_id: str) -> list[int]:
    statement = (
        select(col(ChannelRow.id))
        .where(col(ChannelRow.customer_id) == customer_id, col(ChannelRow.disabled_at).is_(None))
        .order_by(col(ChannelRow.id))
    )
    return _ids(await session.scalars(statement))


async def owned_active_channel_ids(
    session: AsyncSession, customer_id: str, channel_ids: list[int]
) -> set[int]:
    """Which of `channel_ids` are enabled channels of the customer."""
    statement = select(col(ChannelRow.id)).where(
        col(ChannelRow.customer_id) == customer_id,
        col(ChannelRow.disabled_at).is_(None),
        col(ChannelRow.id).in_(channel_ids),
    )
    return set(_ids(await session.scalars(statement)))


async def stored_channel(session: AsyncSession, channel_id: int) -> StoredChannel | None:
    """The channel (enabled or not) with its secrets still encrypted; None for no such channel."""
    statement = select(
        col(ChannelRow.id),
        col(ChannelRow.name),
        col(ChannelRow.kind),
        col(ChannelRow.destination_encrypted),
        col(ChannelRow.destination_masked),
        col(ChannelRow.signing_secret_encrypted),
    ).where(col(ChannelRow.id) == channel_id)
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    cid, name, kind, encrypted, masked, signing = values(row)
    return StoredChannel(
        int(cid), name, kind, bytes(encrypted), masked, None if signing is None else bytes(signing)
    )


async def lock_all_channel_secrets(session: AsyncSession) -> list[ChannelSecrets]:
    """Every channel's encrypted values, by id, locked until the transaction ends (a rotation
    rewrites them all, and a channel changed meanwhile would be overwritten)."""
    statement = (
        select(
            col(ChannelRow.id),
            col(ChannelRow.customer_id),
            col(ChannelRow.name),
            col(ChannelRow.disabled_at).is_not(None),
            col(ChannelRow.destination_encrypted),
            col(ChannelRow.signing_secret_encrypted),
        )
        .order_by(col(ChannelRow.id))
        .with_for_update()
    )
    out = []
    for row in await session.execute(statement):
        cid, customer_id, name, disabled, destination, signing = values(row)
        out.append(
            ChannelSecrets(
                int(cid),
                customer_id,
                name,
                bool(disabled),
                bytes(destination),
                None if signing is None else bytes(signing),
            )
        )
    return out


async def set_channel_secrets(
    session: AsyncSession, rewritten: Sequence[tuple[int, bytes, bytes | None]]
) -> None:
    """Store each (channel id, destination, signing secret), encrypted, in one batch."""
    if not rewritten:
        return
    # SQLAlchemy's bulk UPDATE by primary key: one statement executed for every row.
    await session.execute(
        update(ChannelRow),
        [
            {"id": cid, "destination_encrypted": destination, "signing_secret_encrypted": signing}
            for cid, destination, signing in rewritten
        ],
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
        .execution_options(**_NO_SYNC)
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
        .execution_options(**_NO_SYNC)
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
        .execution_options(**_NO_SYNC)
    )
    await session.execute(statement)


async def budget_rules(session: AsyncSession, customer_id: str) -> list[tuple[str, str | None, Decimal]]:
    """The customer's enabled budget rules: (rule name, meter or None for spend, budget), oldest first."""
    statement = (
        select(col(AlertRuleRow.name), col(AlertRuleRow.metric_name), col(AlertRuleRow.budget))
        .where(
            col(AlertRuleRow.customer_id) == customer_id,
            col(AlertRuleRow.basis) == "budget",
            col(AlertRuleRow.kind) == "threshold",
            col(AlertRuleRow.disabled_at).is_(None),
        )
        .order_by(col(AlertRuleRow.id))
    )
    return [
        (str(name), metric, Decimal(budget))
        for name, metric, budget in map(values, await session.execute(statement))
    ]


async def customers_with_rules(session: AsyncSession) -> list[str]:
    """Every customer with an enabled rule, by id."""
    statement = (
        select(col(AlertRuleRow.customer_id))
        .where(col(AlertRuleRow.disabled_at).is_(None))
        .distinct()
        .order_by(col(AlertRuleRow.customer_id))
    )
    return [str(c) for c in (await session.scalars(statement)).all()]


async def customers_with_rules_among(conn: Any, customer_ids: Iterable[str]) -> list[str]:
    """Which of `customer_ids` have an enabled rule, on an asyncpg connection.

    Raw SQL because the persist transaction that asks runs on a bare asyncpg connection (it
    COPYs the raw events), not on a session."""
    rows = await conn.fetch(
        "SELECT DISTINCT customer_id FROM alert_rules WHERE disabled_at IS NULL AND customer_id = ANY($1)",
        sorted(customer_ids),
    )
    return [str(r["customer_id"]) for r in rows]


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


# --- alert_firings


async def fired_levels(
    session: AsyncSession, rule_ids: list[int], period_start: datetime
) -> dict[int, set[tuple[Decimal, Any]]]:
    """Rule id → the (level, kind) of each threshold firing it has in the period starting at
    `period_start`."""
    statement = select(col(FiringRow.rule_id), col(FiringRow.level), col(FiringRow.kind)).where(
        col(FiringRow.rule_id).in_(rule_ids),
        col(FiringRow.period_start) == period_start,
        col(FiringRow.kind) != "anomaly",
    )
    out: dict[int, set[tuple[Decimal, Any]]] = {}
    for rule_id, level, kind in await session.execute(statement):
        out.setdefault(rule_id, set()).add((level, kind))
    return out


async def insert_threshold_firing(
    session: AsyncSession,
    *,
    rule_id: int,
    customer_id: str,
    period_start: datetime,
    period_end: datetime,
    level: Decimal,
    kind: str,
    threshold: Decimal,
    value: Decimal,
    forecast_at: datetime | None,
    notice_json: str,
) -> int | None:
    """Record a level crossed, recovered or forecast; None when the rule has this firing in
    the period already (the fire-once index: another evaluation recorded it)."""
    statement = (
        pg_insert(FiringRow)
        .values(
            rule_id=rule_id,
            customer_id=customer_id,
            period_start=period_start,
            period_end=period_end,
            level=level,
            kind=kind,
            threshold=threshold,
            value=value,
            forecast_at=forecast_at,
            notice=_notice(notice_json),
        )
        .on_conflict_do_nothing(
            index_elements=["rule_id", "period_start", "level", "kind"],
            # A constant, not a parameter: Postgres matches it against the partial index's own.
            index_where=col(FiringRow.kind) != literal_column("'anomaly'"),
        )
        .returning(col(FiringRow.id))
    )
    row: Any = (await session.execute(statement)).first()
    return None if row is None else int(row[0])


async def insert_anomaly_firing(
    session: AsyncSession,
    *,
    rule_id: int,
    customer_id: str,
    period_start: datetime,
    period_end: datetime,
    expected: Decimal,
    value: Decimal,
    notice_json: str,
    metric_name: str,
    anomaly_kind: str,
    granularity: str,
) -> int | None:
    """Record an anomaly; None when the rule has it recorded already (the fire-once index)."""
    statement = (
        pg_insert(FiringRow)
        .values(
            rule_id=rule_id,
            customer_id=customer_id,
            period_start=period_start,
            period_end=period_end,
            level=0,
            kind="anomaly",
            threshold=expected,
            value=value,
            notice=_notice(notice_json),
            metric_name=metric_name,
            anomaly_kind=anomaly_kind,
            granularity=granularity,
        )
        .on_conflict_do_nothing(
            index_elements=["rule_id", "metric_name", "anomaly_kind", "granularity", "period_start"],
            index_where=col(FiringRow.kind) == literal_column("'anomaly'"),
        )
        .returning(col(FiringRow.id))
    )
    row: Any = (await session.execute(statement)).first()
    return None if row is None else int(row[0])


async def recent_firings(session: AsyncSession, customer_id: str, *, limit: int) -> list[Firing]:
    """The customer's `limit` most recent firings, newest first, each with its deliveries."""
    statement = (
        select(
            col(FiringRow.id),
            col(FiringRow.rule_id),
            col(AlertRuleRow.name),
            col(FiringRow.customer_id),
            col(FiringRow.kind),
            col(FiringRow.level),
            col(FiringRow.threshold),
            col(FiringRow.value),
            col(FiringRow.period_start),
            col(FiringRow.period_end),
            col(FiringRow.forecast_at),
            col(FiringRow.fired_at),
            col(FiringRow.metric_name),
            col(FiringRow.anomaly_kind),
            col(FiringRow.granularity),
        )
        .select_from(FiringRow)
        .join(AlertRuleRow, col(AlertRuleRow.id) == col(FiringRow.rule_id))
        .where(col(FiringRow.customer_id) == customer_id)
        .order_by(col(FiringRow.fired_at).desc(), col(FiringRow.id).desc())
        .limit(limit)
    )
    firings = []
    for row in (await session.execute(statement)).all():
        (fid, rule_id, rule_name, cid, kind, level, threshold, value, start, end, *rest) = values(row)
        forecast_at, fired_at, metric_name, anomaly_kind, granularity = rest
        firings.append(
            Firing(
                fid,
                rule_id,
                rule_name,
                cid,
                kind,
                exact(level),
                exact(threshold),
                exact(value),
                start,
                end,
                forecast_at,
                fired_at,
                await firing_deliveries(session, fid),
                metric_name,
                anomaly_kind,
                granularity,
            )
        )
    return firings


async def forecast_outcomes(session: AsyncSession, *, start: datetime, end: datetime) -> tuple[int, int]:
    """(judged, followed): forecasts fired in [start, end) whose outcome is known (the level
    was crossed, or the period is over by `end`), and of those, how many were crossed."""
    forecast = aliased(FiringRow, name="f")
    crossing = aliased(FiringRow, name="c")
    statement = (
        select(func.count(), func.count(col(crossing.id)))
        .select_from(forecast)
        .outerjoin(
            crossing,
            and_(
                col(crossing.rule_id) == col(forecast.rule_id),
                col(crossing.period_start) == col(forecast.period_start),
                col(crossing.level) == col(forecast.level),
                col(crossing.kind) == "crossing",
            ),
        )
        .where(
            col(forecast.kind) == "forecast",
            col(forecast.fired_at) >= start,
            col(forecast.fired_at) < end,
            or_(col(crossing.id).is_not(None), col(forecast.period_end) <= end),
        )
    )
    judged, followed = (await session.execute(statement)).one()
    return int(judged), int(followed)


async def crossings_unnotified(session: AsyncSession, *, start: datetime, end: datetime) -> tuple[int, int]:
    """(crossings, unnotified): levels crossed in [start, end), and of those, how many have
    no delivery sent."""
    sent = (
        select(col(DeliveryRow.id))
        .where(col(DeliveryRow.firing_id) == col(FiringRow.id), col(DeliveryRow.status) == "sent")
        .exists()
    )
    statement = (
        select(func.count(), func.count().filter(~sent))
        .select_from(FiringRow)
        .where(
            col(FiringRow.kind) == "crossing", col(FiringRow.fired_at) >= start, col(FiringRow.fired_at) < end
        )
    )
    crossings, unnotified = (await session.execute(statement)).one()
    return int(crossings), int(unnotified)


# --- alert_deliveries and alert_delivery_attempts


async def insert_firing_deliveries(
    session: AsyncSession, *, firing_id: int, customer_id: str, channel_ids: list[int], notice_json: str
) -> list[int]:
    """A pending delivery of the firing's notice to each of `channel_ids` still enabled,
    by channel; their ids."""
    source = (
        select(
            literal(firing_id, BigInteger),
            col(ChannelRow.id),
            literal(customer_id, Text),
            _notice(notice_json),
            col(ChannelRow.destination_masked),
        )
        .where(col(ChannelRow.id).in_(channel_ids), col(ChannelRow.disabled_at).is_(None))
        .order_by(col(ChannelRow.id))
    )
    statement = (
        insert(DeliveryRow)
        .from_select(["firing_id", "channel_id", "customer_id", "notice", "masked_destination"], source)
        .returning(col(DeliveryRow.id))
    )
    return _ids(await session.scalars(statement))


async def insert_test_delivery(
    session: AsyncSession, customer_id: str, channel_id: int, notice_json: str
) -> int | None:
    """A pending delivery without a firing to the customer's enabled channel; its id, or None
    for no such channel."""
    source = select(
        col(ChannelRow.id),
        col(ChannelRow.customer_id),
        _notice(notice_json),
        col(ChannelRow.destination_masked),
    ).where(
        col(ChannelRow.id) == channel_id,
        col(ChannelRow.customer_id) == customer_id,
        col(ChannelRow.disabled_at).is_(None),
    )
    statement = (
        insert(DeliveryRow)
        .from_select(["channel_id", "customer_id", "notice", "masked_destination"], source)
        .returning(col(DeliveryRow.id))
    )
    row: Any = (await session.execute(statement)).first()
    return None if row is None else int(row[0])


async def claim_delivery(
    session: AsyncSession, delivery_id: int, *, now: datetime, until: datetime
) -> tuple[int, Any, int] | None:
    """Count an attempt and lease the delivery until `until`, if it is pending, due at `now`
    and not leased; (attempt, notice, channel id), or None.

    The row is taken with FOR UPDATE SKIP LOCKED: of workers claiming at once, one gets it and
    the others move on at once, instead of waiting to find the lease taken."""
    candidate = aliased(DeliveryRow, name="candidate")
    claimable = (
        select(col(candidate.id))
        .where(
            col(candidate.id) == delivery_id,
            col(candidate.status) == "pending",
            col(candidate.next_attempt_at) <= now,
            or_(col(candidate.leased_until).is_(None), col(candidate.leased_until) < now),
        )
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        update(DeliveryRow)
        .where(col(DeliveryRow.id) == claimable)
        .values(attempts=col(DeliveryRow.attempts) + 1, leased_until=until)
        .returning(col(DeliveryRow.attempts), col(DeliveryRow.notice), col(DeliveryRow.channel_id))
        .execution_options(**_NO_SYNC)
    )
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    attempt, notice, channel_id = values(row)
    return int(attempt), notice, int(channel_id)


async def insert_attempt(
    session: AsyncSession,
    *,
    delivery_id: int,
    attempt: int,
    ok: bool,
    error: str | None,
    masked_destination: str,
    started_at: datetime,
) -> None:
    statement = insert(AttemptRow).values(
        delivery_id=delivery_id,
        attempt=attempt,
        ok=ok,
        error=error,
        masked_destination=masked_destination,
        started_at=started_at,
    )
    await session.execute(statement)


async def _settle(session: AsyncSession, delivery_id: int, **changes: Any) -> None:
    statement = (
        update(DeliveryRow)
        .where(col(DeliveryRow.id) == delivery_id)
        .values(leased_until=None, **changes)
        .execution_options(**_NO_SYNC)
    )
    await session.execute(statement)


async def mark_sent(session: AsyncSession, delivery_id: int, *, now: datetime) -> None:
    await _settle(session, delivery_id, status="sent", sent_at=now, last_error=None)


async def mark_failed(session: AsyncSession, delivery_id: int, *, now: datetime, error: str | None) -> None:
    await _settle(session, delivery_id, status="failed", failed_at=now, last_error=error)


async def schedule_retry(session: AsyncSession, delivery_id: int, *, at: datetime, error: str | None) -> None:
    """Release the lease; the delivery is due again at `at`."""
    await _settle(session, delivery_id, next_attempt_at=at, last_error=error)


async def delivery_schedule(
    session: AsyncSession, delivery_id: int
) -> tuple[str, datetime | None, datetime | None] | None:
    """(status, leased until, next attempt at) of the delivery; None for no such delivery."""
    statement = select(
        col(DeliveryRow.status), col(DeliveryRow.leased_until), col(DeliveryRow.next_attempt_at)
    ).where(col(DeliveryRow.id) == delivery_id)
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    status, leased_until, next_attempt_at = values(row)
    return status, leased_until, next_attempt_at


async def due_delivery_ids(session: AsyncSession, *, now: datetime, limit: int) -> list[int]:
    """Pending deliveries due at `now` and not leased, the longest due first."""
    statement = (
        select(col(DeliveryRow.id))
        .where(
            col(DeliveryRow.status) == "pending",
            col(DeliveryRow.next_attempt_at) <= now,
            or_(col(DeliveryRow.leased_until).is_(None), col(DeliveryRow.leased_until) < now),
        )
        .order_by(col(DeliveryRow.next_attempt_at))
        .limit(limit)
    )
    return _ids(await session.scalars(statement))


def _deliveries() -> Any:
    return (
        select(*_DELIVERY)
        .select_from(DeliveryRow)
        .join(ChannelRow, col(ChannelRow.id) == col(DeliveryRow.channel_id))
    )


async def deliveries_listing(
    session: AsyncSession, *, customer_id: str | None, status: str | None, limit: int
) -> list[Delivery]:
    """The newest `limit` deliveries, of one customer and in one status when given."""
    statement = _deliveries()
    if customer_id is not None:
        statement = statement.where(col(DeliveryRow.customer_id) == customer_id)
    if status is not None:
        statement = statement.where(col(DeliveryRow.status) == status)
    statement = statement.order_by(col(DeliveryRow.id).desc()).limit(limit)
    return [_delivery(row) for row in await session.execute(statement)]


async def delivery_by_id(session: AsyncSession, delivery_id: int) -> Delivery | None:
    """The delivery with its attempts, oldest first; None for no such delivery."""
    row = (await session.execute(_deliveries().where(col(DeliveryRow.id) == delivery_id))).first()
    if row is None:
        return None
    delivery = _delivery(row)
    statement = (
        select(
            col(AttemptRow.attempt),
            col(AttemptRow.ok),
            col(AttemptRow.error),
            col(AttemptRow.masked_destination),
            col(AttemptRow.started_at),
            col(AttemptRow.finished_at),
        )
        .where(col(AttemptRow.delivery_id) == delivery_id)
        .order_by(col(AttemptRow.id))
    )
    delivery.attempt_log = [Attempt(*values(a)) for a in await session.execute(statement)]
    return delivery


async def firing_deliveries(session: AsyncSession, firing_id: int) -> list[Delivery]:
    statement = _deliveries().where(col(DeliveryRow.firing_id) == firing_id).order_by(col(DeliveryRow.id))
    return [_delivery(row) for row in await session.execute(statement)]


async def delivery_counts(session: AsyncSession) -> tuple[int, int]:
    """(pending, failed): how many deliveries are in each status."""
    status = col(DeliveryRow.status)
    statement = select(
        func.count().filter(status == "pending"), func.count().filter(status == "failed")
    ).select_from(DeliveryRow)
    pending, failed = (await session.execute(statement)).one()
    return int(pending), int(failed)
