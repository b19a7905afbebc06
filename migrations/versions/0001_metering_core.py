"""Metering core: catalog, API keys, event ledger, partitioned raw events, hourly usage.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from portal.operations.migrate import execute_script as _execute

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    _execute(
        """
        CREATE TABLE customers (
            id          text PRIMARY KEY,
            name        text NOT NULL,
            timezone    text NOT NULL,
            currency    char(3) NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE meters (
            metric_name  text PRIMARY KEY,
            aggregation  text NOT NULL
                CHECK (aggregation IN ('sum', 'count', 'max', 'unique_count', 'latest')),
            unit         text NOT NULL,
            group_by     text[] NOT NULL DEFAULT '{}',
            unique_by    text,
            created_at   timestamptz NOT NULL DEFAULT now(),
            CHECK ((aggregation = 'unique_count') = (unique_by IS NOT NULL))
        );

        CREATE TABLE api_keys (
            id          bigserial PRIMARY KEY,
            name        text NOT NULL,
            scope       text NOT NULL CHECK (scope IN ('ingest', 'admin')),
            prefix      text NOT NULL,
            key_hash    bytea NOT NULL UNIQUE,
            created_at  timestamptz NOT NULL DEFAULT now(),
            revoked_at  timestamptz
        );

        -- One row per accepted event: the dedup guard. Raw events are partitioned by time,
        -- and a partitioned table cannot enforce uniqueness across partitions, so the
        -- guarantee "counted once" lives here, unpartitioned, for the lateness window.
        CREATE TABLE event_ledger (
            customer_id  text NOT NULL,
            event_id     text NOT NULL,
            fingerprint  bytea NOT NULL,
            event_time   timestamptz NOT NULL,
            received_at  timestamptz NOT NULL,
            persisted_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (customer_id, event_id)
        );
        CREATE INDEX event_ledger_event_time ON event_ledger (event_time);

        CREATE TABLE usage_events (
            customer_id  text NOT NULL,
            event_id     text NOT NULL,
            metric_name  text NOT NULL,
            product_id   text NOT NULL DEFAULT '',
            quantity     numeric(32, 12) NOT NULL,
            event_time   timestamptz NOT NULL,
            hour         timestamptz NOT NULL,
            group_key    text NOT NULL DEFAULT '',
            dimensions   jsonb NOT NULL DEFAULT '{}',
            metadata     jsonb NOT NULL DEFAULT '{}',
            received_at  timestamptz NOT NULL,
            persisted_at timestamptz NOT NULL DEFAULT now(),
            message_id   text NOT NULL
        ) PARTITION BY RANGE (event_time);
        CREATE INDEX usage_events_customer_time ON usage_events (customer_id, event_time);

        -- The authoritative hourly aggregate. `hour` is the start of the customer's local
        -- hour (as an instant), so local days and billing periods are whole sums of hours
        -- even in zones with half- and quarter-hour offsets.
        CREATE TABLE hourly_usage (
            customer_id     text NOT NULL,
            metric_name     text NOT NULL,
            hour            timestamptz NOT NULL,
            group_key       text NOT NULL DEFAULT '',
            value           numeric NOT NULL,
            event_count     bigint NOT NULL,
            latest_at       timestamptz,
            latest_event_id text,
            updated_at      timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (customer_id, metric_name, hour, group_key)
        );

        -- Distinct values seen per hour for unique_count meters; a period's unique count
        -- is the distinct count over its hours, never a sum of hourly counts.
        CREATE TABLE hourly_unique_values (
            customer_id  text NOT NULL,
            metric_name  text NOT NULL,
            hour         timestamptz NOT NULL,
            group_key    text NOT NULL DEFAULT '',
            value        text NOT NULL,
            PRIMARY KEY (customer_id, metric_name, hour, group_key, value)
        );

        -- Events kept after the worker could not persist them; replayable.
        CREATE TABLE failed_events (
            id           bigserial PRIMARY KEY,
            message_id   text NOT NULL,
            customer_id  text NOT NULL,
            event_id     text NOT NULL,
            event        jsonb NOT NULL,
            received_at  timestamptz NOT NULL,
            reason       text NOT NULL,
            failed_at    timestamptz NOT NULL DEFAULT now(),
            status       text NOT NULL DEFAULT 'failed'
                CHECK (status IN ('failed', 'replayed', 'discarded')),
            resolved_at  timestamptz,
            UNIQUE (message_id, customer_id, event_id)
        );
        CREATE INDEX failed_events_open ON failed_events (failed_at) WHERE status = 'failed';

        -- Re-uses of an event id with different content: refused and recorded.
        CREATE TABLE event_conflicts (
            id           bigserial PRIMARY KEY,
            customer_id  text NOT NULL,
            event_id     text NOT NULL,
            event        jsonb NOT NULL,
            detected_at  timestamptz NOT NULL DEFAULT now(),
            detected_by  text NOT NULL CHECK (detected_by IN ('ingest', 'worker'))
        );
        CREATE INDEX event_conflicts_event ON event_conflicts (customer_id, event_id);

        -- The last reconcile's findings: live (Redis) minus authoritative (Postgres).
        CREATE TABLE reconcile_runs (
            id            bigserial PRIMARY KEY,
            started_at    timestamptz NOT NULL,
            finished_at   timestamptz NOT NULL,
            window_start  timestamptz NOT NULL,
            window_end    timestamptz NOT NULL,
            full_rebuild  boolean NOT NULL,
            keys_written  integer NOT NULL
        );
        CREATE TABLE live_drift (
            run_id       bigint NOT NULL REFERENCES reconcile_runs (id) ON DELETE CASCADE,
            customer_id  text NOT NULL,
            metric_name  text NOT NULL,
            live_value   numeric NOT NULL,
            billed_value numeric NOT NULL,
            drift        numeric NOT NULL,
            PRIMARY KEY (run_id, customer_id, metric_name)
        );
        """
    )


def downgrade() -> None:
    _execute(
        """
        DROP TABLE live_drift, reconcile_runs, event_conflicts, failed_events,
            hourly_unique_values, hourly_usage, usage_events, event_ledger, api_keys,
            meters, customers;
        """
    )
