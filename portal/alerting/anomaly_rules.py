"""Anomaly alert rules: notify once per unusual settled hour or day of a customer's usage.

An anomaly rule (`alert_rules.kind = 'anomaly'`) watches one sum or count meter, or all
of them. At most once per settled hour (`anomalies_judged_through`: the evaluation runs on
every sweep and after ingest, settled hours change once an hour), it judges the customer's
last settled local day and the anomalies that began in its last 24 settled hours
(portal/usage/anomaly_detection.py) and records a firing per anomaly with a pending delivery per
channel, in the caller's transaction. The partial unique index on (rule, meter, anomaly
kind, granularity, start) makes judging the same hours again, on the next hour or on
another process, fire nothing new: each anomaly is notified once, and an hour missed by a
failed run is judged on the next one (it stays in the 24 hours). The SQL is in
`portal.alerting.repository`.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from alerts.messages import AnomalyFacts, Notice
from portal.alerting import repository
from portal.alerting.firings import fan_out, notice_json
from portal.alerting.schemas import AnomalyRule
from portal.catalog.schemas import Customer, Meter
from portal.catalog.service import list_meters
from portal.infrastructure import metrics
from portal.infrastructure.periods import hour_bucket, to_datetime
from portal.infrastructure.settings import Settings
from portal.usage.anomaly_detection import Flagged, detect
from portal.usage.anomaly_rule import Anomaly

ALERT_HOURS = timedelta(hours=24)
ALERT_DAYS = 1
# Hours are judged over twice the span notified: a silence that began before the span
# starts before it, and is left alone (it was notified when it began), instead of looking
# like a new silence starting at the first hour judged, every hour.
JUDGED_HOURS = 2 * ALERT_HOURS
# Events of an hour's last seconds are still on their way to Postgres when it ends: judging
# them then could flag a busy hour as dropped to zero, and a notice cannot be taken back.
SETTLE_DELAY = timedelta(minutes=5)


async def anomaly_rules(session: AsyncSession, customer_id: str) -> list[AnomalyRule]:
    return await repository.anomaly_rules(session, customer_id)


async def evaluate_anomalies(
    session: AsyncSession, customer: Customer, *, now: datetime, settings: Settings
) -> list[int]:
    """Fire each anomaly the customer's anomaly rules have not notified yet; the ids of the
    deliveries to send. A no-op for rules already judged through the last settled hour."""
    as_of = now - SETTLE_DELAY
    settled_end = to_datetime(hour_bucket(as_of.timestamp(), customer.timezone))
    due = [
        r
        for r in await anomaly_rules(session, customer.id)
        if r.judged_through is None or r.judged_through < settled_end
    ]
    if not due:
        return []
    meters = {m.metric_name: m for m in await list_meters(session)}
    watched = [m for m in meters.values() if any(r.metric_name in (None, m.metric_name) for r in due)]
    judged = await detect(session, [customer], watched, now=as_of, hours=JUDGED_HOURS, days=ALERT_DAYS)
    found = [
        f
        for f in final_anomalies(judged, settled_end)
        if f.anomaly.granularity == "day" or f.anomaly.start >= settled_end - ALERT_HOURS
    ]
    deliveries: list[int] = []
    for rule in due:
        for flagged in found:
            if rule.metric_name in (None, flagged.metric_name):
                deliveries += await _fire(
                    session,
                    customer,
                    rule,
                    meters[flagged.metric_name],
                    flagged.anomaly,
                    now=now,
                    settings=settings,
                )
    await repository.mark_anomalies_judged(session, [r.id for r in due], settled_end)
    return deliveries


def final_anomalies(found: list[Flagged], settled_end: datetime) -> list[Flagged]:
    """The anomalies that will not turn into another: hourly drops to zero that run up to
    the last settled hour wait for the next one, because one or two empty hours more make
    them a single silence (one notice, not one per hour and then one for the silence)."""
    pending: set[tuple[str, str, datetime]] = set()
    ends = {
        (f.customer_id, f.metric_name, f.anomaly.end)
        for f in found
        if f.anomaly.granularity == "hour" and f.anomaly.kind == "drop_to_zero"
    }
    # Walk each run back from the last settled hour.
    for customer_id, metric, end in ends:
        if end == settled_end:
            at = end
            while (customer_id, metric, at) in ends:
                pending.add((customer_id, metric, at))
                at -= timedelta(hours=1)
    return [
        f
        for f in found
        if (f.customer_id, f.metric_name, f.anomaly.end) not in pending
        or f.anomaly.granularity != "hour"
        or f.anomaly.kind != "drop_to_zero"
    ]


def anomaly_notice(
    customer: Customer,
    rule: AnomalyRule,
    meter: Meter,
    anomaly: Anomaly,
    *,
    now: datetime,
    settings: Settings,
) -> Notice:
    """The notice: `value` what was used, `threshold` what was expected, the period the
    anomaly's span; `level_label` names it ("hour spike", "day drop_to_zero")."""
    return Notice(
        kind="anomaly",
        firing_id=None,
        customer_id=customer.id,
        customer_name=customer.name,
        rule_id=rule.id,
        rule_name=rule.name,
        metric_name=meter.metric_name,
        unit=meter.unit,
        level_label=f"{anomaly.granularity} {anomaly.kind}",
        threshold=anomaly.expected,
        value=anomaly.value,
        currency=customer.currency,
        cost_so_far=None,
        period_start=anomaly.start,
        period_end=anomaly.end,
        forecast_at=None,
        dashboard_url=f"{settings.public_url}/portal/customers/{customer.id}",
        occurred_at=now,
        anomaly=AnomalyFacts(
            anomaly.kind, anomaly.granularity, anomaly.start, anomaly.end, anomaly.expected, customer.timezone
        ),
        time_zone=customer.timezone,
    )


async def _fire(
    session: AsyncSession,
    customer: Customer,
    rule: AnomalyRule,
    meter: Meter,
    anomaly: Anomaly,
    *,
    now: datetime,
    settings: Settings,
) -> list[int]:
    """Record the anomaly's firing (if no evaluation did yet) and its pending deliveries."""
    notice = anomaly_notice(customer, rule, meter, anomaly, now=now, settings=settings)
    firing_id = await repository.insert_anomaly_firing(
        session,
        rule_id=rule.id,
        customer_id=customer.id,
        period_start=anomaly.start,
        period_end=anomaly.end,
        expected=anomaly.expected,
        value=anomaly.value,
        notice_json=notice_json(notice),
        metric_name=meter.metric_name,
        anomaly_kind=anomaly.kind,
        granularity=anomaly.granularity,
    )
    if firing_id is None:
        return []
    metrics.ALERT_FIRINGS.labels("anomaly").inc()
    return await fan_out(
        session, customer.id, rule.channel_ids, firing_id, dataclasses.replace(notice, firing_id=firing_id)
    )
