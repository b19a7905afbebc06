"""Anomaly alerts: rules that fire when usage is unusual, one firing per anomaly.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from portal.operations.migrate import execute_script as _execute

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _execute(
        """
        -- A rule watches thresholds (levels of usage or spend, as before) or anomalies
        -- (portal/usage/anomaly_rule.py: spikes, drops to zero, silences) of one meter or all of them.
        -- An anomaly rule has no levels, basis or budget to watch.
        ALTER TABLE alert_rules
            ADD COLUMN kind text NOT NULL DEFAULT 'threshold' CHECK (kind IN ('threshold', 'anomaly')),
            -- The end of the last settled hour an anomaly rule was judged through: the sweep
            -- runs every minute, settled hours change once an hour.
            ADD COLUMN anomalies_judged_through timestamptz,
            ADD CONSTRAINT alert_rules_kind_shape CHECK ((kind = 'anomaly') = (cardinality(levels) = 0)
                AND (kind = 'threshold' OR (basis = 'absolute' AND budget IS NULL
                     AND NOT notify_recovery AND NOT notify_forecast)));
        ALTER TABLE plan_alert_rules
            ADD COLUMN kind text NOT NULL DEFAULT 'threshold' CHECK (kind IN ('threshold', 'anomaly')),
            ADD CONSTRAINT plan_alert_rules_kind_shape CHECK ((kind = 'anomaly') = (cardinality(levels) = 0)
                AND (kind = 'threshold' OR (basis = 'absolute' AND budget IS NULL
                     AND NOT notify_recovery AND NOT notify_forecast)));

        -- An anomaly firing: period_start/period_end are the anomaly's span (an hour, a run of
        -- silent hours, a local day), value what was used, threshold what was expected, level 0.
        ALTER TABLE alert_firings DROP CONSTRAINT alert_firings_kind_check;
        ALTER TABLE alert_firings
            ADD CONSTRAINT alert_firings_kind_check
                CHECK (kind IN ('crossing', 'recovery', 'forecast', 'anomaly')),
            ADD COLUMN metric_name text,
            ADD COLUMN anomaly_kind text CHECK (anomaly_kind IN ('spike', 'drop_to_zero', 'silence')),
            ADD COLUMN granularity text CHECK (granularity IN ('hour', 'day')),
            ADD CONSTRAINT alert_firings_anomaly_shape CHECK ((kind = 'anomaly') = (
                metric_name IS NOT NULL AND anomaly_kind IS NOT NULL AND granularity IS NOT NULL));

        -- Once per rule, level, kind and period for thresholds (as before); once per rule,
        -- meter, anomaly kind, granularity and start for anomalies, however often the same
        -- settled hours are judged again. The constraint is the guarantee (invariant 7).
        ALTER TABLE alert_firings DROP CONSTRAINT alert_firings_rule_id_period_start_level_kind_key;
        CREATE UNIQUE INDEX alert_firings_threshold_once ON alert_firings (rule_id, period_start, level, kind)
            WHERE kind <> 'anomaly';
        CREATE UNIQUE INDEX alert_firings_anomaly_once
            ON alert_firings (rule_id, metric_name, anomaly_kind, granularity, period_start)
            WHERE kind = 'anomaly';
        """
    )


def downgrade() -> None:
    # Anomaly rules and their notices have no form in 0004: they go.
    _execute(
        """
        DELETE FROM alert_delivery_attempts WHERE delivery_id IN (SELECT d.id FROM alert_deliveries d
            JOIN alert_firings f ON f.id = d.firing_id WHERE f.kind = 'anomaly');
        DELETE FROM alert_deliveries WHERE firing_id IN (SELECT id FROM alert_firings WHERE kind = 'anomaly');
        DELETE FROM alert_firings WHERE kind = 'anomaly' OR rule_id IN (
            SELECT id FROM alert_rules WHERE kind = 'anomaly');
        DELETE FROM alert_rules WHERE kind = 'anomaly';
        UPDATE alert_rules SET from_plan_rule_id = NULL WHERE from_plan_rule_id IN (
            SELECT id FROM plan_alert_rules WHERE kind = 'anomaly');
        DELETE FROM plan_alert_rules WHERE kind = 'anomaly';
        DROP INDEX alert_firings_anomaly_once;
        DROP INDEX alert_firings_threshold_once;
        ALTER TABLE alert_firings
            DROP CONSTRAINT alert_firings_anomaly_shape,
            DROP CONSTRAINT alert_firings_kind_check,
            DROP COLUMN granularity, DROP COLUMN anomaly_kind, DROP COLUMN metric_name,
            ADD CONSTRAINT alert_firings_kind_check CHECK (kind IN ('crossing', 'recovery', 'forecast')),
            ADD CONSTRAINT alert_firings_rule_id_period_start_level_kind_key
                UNIQUE (rule_id, period_start, level, kind);
        ALTER TABLE plan_alert_rules DROP CONSTRAINT plan_alert_rules_kind_shape, DROP COLUMN kind;
        ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_kind_shape, DROP COLUMN anomalies_judged_through,
            DROP COLUMN kind;
        """
    )
