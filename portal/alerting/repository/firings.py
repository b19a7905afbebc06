"""Queries on `alert_firings`: recording what fired (once), the history, and the accuracy
counts of the billing-health report."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, and_, bindparam, func, literal_column, or_, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from portal.alerting.models import AlertDelivery as DeliveryRow
from portal.alerting.models import AlertFiring as FiringRow
from portal.alerting.models import AlertRule as AlertRuleRow
from portal.alerting.repository.common import jsonb_notice
from portal.alerting.repository.deliveries import firings_deliveries
from portal.alerting.schemas import Firing
from portal.infrastructure.db import values
from portal.usage.combine import exact


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
    fired_at: datetime | None = None,
) -> int | None:
    """Record a level crossed, recovered or forecast, at `fired_at` (default: the database's
    now); None when the rule has this firing in the period already (the fire-once index:
    another evaluation recorded it)."""
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
            notice=jsonb_notice(notice_json),
            **({} if fired_at is None else {"fired_at": fired_at}),
        )
        .on_conflict_do_nothing(
            index_elements=["rule_id", "period_start", "level", "kind", "customer_id"],
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
            notice=jsonb_notice(notice_json),
            metric_name=metric_name,
            anomaly_kind=anomaly_kind,
            granularity=granularity,
        )
        .on_conflict_do_nothing(
            index_elements=[
                "rule_id",
                "metric_name",
                "anomaly_kind",
                "granularity",
                "period_start",
                "customer_id",
            ],
            index_where=col(FiringRow.kind) == literal_column("'anomaly'"),
        )
        .returning(col(FiringRow.id))
    )
    row: Any = (await session.execute(statement)).first()
    return None if row is None else int(row[0])


# Built once: the usage panel reads it at every poll (every 2 s per viewer), and building
# the expression was about half of each call's CPU; the customer and limit are bound per call.
_RECENT_FIRINGS = (
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
    .where(col(FiringRow.customer_id) == bindparam("customer_id"))
    .order_by(col(FiringRow.fired_at).desc(), col(FiringRow.id).desc())
    .limit(bindparam("limit"))
)

# Where a firing sits in that order: (fired_at, id). fired_at is the evaluation's clock, not
# the insert's, so ids alone do not follow it.
FiringPosition = tuple[datetime, int]

# The same, after a position (the last firing of the previous page).
_OLDER_FIRINGS = _RECENT_FIRINGS.where(
    tuple_(col(FiringRow.fired_at), col(FiringRow.id))
    < tuple_(bindparam("older_at", type_=DateTime(timezone=True)), bindparam("older_id", type_=BigInteger))
)


async def firing_position(session: AsyncSession, customer_id: str, firing_id: int) -> FiringPosition | None:
    """(fired_at, id) of the customer's firing, the key `recent_firings` pages by; None for
    no such firing of this customer."""
    statement = select(col(FiringRow.fired_at), col(FiringRow.id)).where(
        col(FiringRow.customer_id) == customer_id, col(FiringRow.id) == firing_id
    )
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    fired_at, id_ = values(row)
    return fired_at, int(id_)


async def recent_firings(
    session: AsyncSession, customer_id: str, *, limit: int, older_than: FiringPosition | None = None
) -> list[Firing]:
    """The customer's `limit` most recent firings, newest first (fired_at, then id), each
    with its deliveries; only those after `older_than` in that order when given."""
    if older_than is None:
        rows = (await session.execute(_RECENT_FIRINGS, {"customer_id": customer_id, "limit": limit})).all()
    else:
        older_at, older_id = older_than
        bound = {"customer_id": customer_id, "limit": limit, "older_at": older_at, "older_id": older_id}
        rows = (await session.execute(_OLDER_FIRINGS, bound)).all()
    deliveries = await firings_deliveries(session, [values(row)[0] for row in rows])
    firings = []
    for row in rows:
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
                deliveries[fid],
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
