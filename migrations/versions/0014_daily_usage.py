"""Daily rollups of sum, count and max meters (issue 15, target 7).

- `daily_usage`: per customer, meter, local day and group, the day's hourly_usage rows
  combined by the meter's aggregation (added; the largest for max), with the day's end.
  The persist transaction keeps it in step with hourly_usage; an invoice run reads whole
  days here and only a window's edge hours from hourly_usage.
- Filled here from hourly_usage, each day in its customer's zone (Postgres' zone rules; a
  customer's zone never changes once it has usage).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from portal.operations.migrate import execute_script as _execute

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _execute(
        """
        CREATE TABLE daily_usage (
            customer_id text NOT NULL,
            metric_name text NOT NULL,
            day         timestamptz NOT NULL,
            group_key   text NOT NULL DEFAULT '',
            day_end     timestamptz NOT NULL,
            value       numeric NOT NULL,
            event_count bigint NOT NULL,
            updated_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (customer_id, metric_name, day, group_key)
        );

        INSERT INTO daily_usage (customer_id, metric_name, day, group_key, day_end, value, event_count)
        SELECT h.customer_id, h.metric_name, d.day, h.group_key,
               (d.day AT TIME ZONE c.timezone + interval '1 day') AT TIME ZONE c.timezone,
               CASE WHEN m.aggregation = 'max' THEN max(h.value) ELSE sum(h.value) END,
               sum(h.event_count)
        FROM hourly_usage h
        JOIN customers c ON c.id = h.customer_id
        JOIN meters m ON m.metric_name = h.metric_name AND m.aggregation IN ('sum', 'count', 'max')
        CROSS JOIN LATERAL (SELECT date_trunc('day', h.hour, c.timezone) AS day) d
        GROUP BY h.customer_id, h.metric_name, d.day, h.group_key, c.timezone, m.aggregation;
        """
    )


def downgrade() -> None:
    _execute("DROP TABLE daily_usage;")
