"""Every query on alerting's tables, `alert_channels`, `alert_rules`, `plan_alert_rules`,
`alert_firings`, `alert_deliveries` and `alert_delivery_attempts`; other modules call these
functions (`repository.insert_channel(...)`), never the tables. None of them commits.

One module per group of tables: `channels` (`alert_channels`), `rules` (`alert_rules`,
`plan_alert_rules`), `firings` (`alert_firings`), `deliveries` (`alert_deliveries`,
`alert_delivery_attempts`); `common` holds what they share.

Reads select columns rather than whole models, so nothing lands in the session's identity
map, and answer alerting's read shapes (`portal.alerting.schemas`). Raw SQL is kept in one
place, with its reason (`rules.customers_watched_among`).
"""

from __future__ import annotations

from portal.alerting.repository.channels import (
    active_channel_count,
    active_channel_ids,
    active_channels,
    disable_channel,
    insert_channel,
    lock_all_channel_secrets,
    owned_active_channel_ids,
    set_channel_secrets,
    stored_channel,
)
from portal.alerting.repository.common import lock_customer_alerting
from portal.alerting.repository.deliveries import (
    claim_delivery,
    deliveries_listing,
    delivery_by_id,
    delivery_counts,
    delivery_schedule,
    due_delivery_ids,
    firings_deliveries,
    insert_attempt,
    insert_firing_deliveries,
    insert_test_delivery,
    mark_failed,
    mark_sent,
    recent_test_deliveries,
    schedule_retry,
)
from portal.alerting.repository.firings import (
    FiringPosition,
    crossings_unnotified,
    fired_levels,
    firing_position,
    forecast_outcomes,
    insert_anomaly_firing,
    insert_threshold_firing,
    recent_firings,
)
from portal.alerting.repository.rules import (
    active_rule,
    active_rule_count,
    active_rules,
    anomaly_rules,
    budget_rules,
    copy_plan_rules,
    customers_watched_among,
    customers_with_rules,
    disable_rule,
    insert_plan_rule,
    insert_rule,
    mark_anomalies_judged,
    plan_rules,
    rules_by_id,
    threshold_rules,
    update_rule,
)

__all__ = [
    "FiringPosition",
    "active_channel_count",
    "active_channel_ids",
    "active_channels",
    "active_rule",
    "active_rule_count",
    "active_rules",
    "anomaly_rules",
    "budget_rules",
    "claim_delivery",
    "copy_plan_rules",
    "crossings_unnotified",
    "customers_watched_among",
    "customers_with_rules",
    "deliveries_listing",
    "delivery_by_id",
    "delivery_counts",
    "delivery_schedule",
    "disable_channel",
    "disable_rule",
    "due_delivery_ids",
    "fired_levels",
    "firing_position",
    "firings_deliveries",
    "forecast_outcomes",
    "insert_anomaly_firing",
    "insert_attempt",
    "insert_channel",
    "insert_firing_deliveries",
    "insert_plan_rule",
    "insert_rule",
    "insert_test_delivery",
    "insert_threshold_firing",
    "lock_all_channel_secrets",
    "lock_customer_alerting",
    "mark_anomalies_judged",
    "mark_failed",
    "mark_sent",
    "owned_active_channel_ids",
    "plan_rules",
    "recent_firings",
    "recent_test_deliveries",
    "rules_by_id",
    "schedule_retry",
    "set_channel_secrets",
    "stored_channel",
    "threshold_rules",
    "update_rule",
]
