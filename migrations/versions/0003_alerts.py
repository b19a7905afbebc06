"""Alerts: channels, rules (per customer and plan defaults), firings, deliveries, attempts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from portal.operations.migrate import execute_script as _execute

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _execute(
        """
        -- Where notices go: an Apprise URL, encrypted at rest with the portal's secret key;
        -- only its masked form is ever shown. Webhooks also get a signing secret.
        CREATE TABLE alert_channels (
            id                       bigserial PRIMARY KEY,
            customer_id              text NOT NULL REFERENCES customers (id),
            name                     text NOT NULL,
            kind                     text NOT NULL CHECK (kind IN ('email', 'slack', 'webhook', 'other')),
            destination_encrypted    bytea NOT NULL,
            destination_masked       text NOT NULL,
            signing_secret_encrypted bytea,
            created_at               timestamptz NOT NULL DEFAULT now(),
            disabled_at              timestamptz,
            UNIQUE (customer_id, name)
        );

        -- Rules a plan gives every subscriber (copied to the customer when it subscribes).
        CREATE TABLE plan_alert_rules (
            id              bigserial PRIMARY KEY,
            plan_id         text NOT NULL REFERENCES plans (id),
            name            text NOT NULL,
            metric_name     text REFERENCES meters (metric_name),
            basis           text NOT NULL CHECK (basis IN ('absolute', 'included', 'commitment', 'budget')),
            budget          numeric,
            levels          numeric[] NOT NULL,
            notify_recovery boolean NOT NULL DEFAULT false,
            notify_forecast boolean NOT NULL DEFAULT false,
            created_at      timestamptz NOT NULL DEFAULT now(),
            UNIQUE (plan_id, name)
        );

        -- A customer's rule: a meter's usage this period (metric_name) or the period's spend
        -- (metric_name NULL), against levels that are absolute or a percentage of a basis.
        CREATE TABLE alert_rules (
            id                 bigserial PRIMARY KEY,
            customer_id        text NOT NULL REFERENCES customers (id),
            name               text NOT NULL,
            metric_name        text REFERENCES meters (metric_name),
            basis              text NOT NULL
                CHECK (basis IN ('absolute', 'included', 'commitment', 'budget')),
            budget             numeric,
            levels             numeric[] NOT NULL,
            notify_recovery    boolean NOT NULL DEFAULT false,
            notify_forecast    boolean NOT NULL DEFAULT false,
            -- Empty: every channel the customer has.
            channel_ids        bigint[] NOT NULL DEFAULT '{}',
            from_plan_rule_id  bigint REFERENCES plan_alert_rules (id),
            created_at         timestamptz NOT NULL DEFAULT now(),
            disabled_at        timestamptz,
            CHECK ((basis = 'budget') = (budget IS NOT NULL))
        );
        CREATE INDEX alert_rules_active ON alert_rules (customer_id) WHERE disabled_at IS NULL;
        CREATE UNIQUE INDEX alert_rules_from_plan ON alert_rules (customer_id, from_plan_rule_id)
            WHERE from_plan_rule_id IS NOT NULL;

        -- Fires once per rule, level, kind and billing period: the constraint is the guarantee
        -- (DESIGN invariant 7), whichever path (fast, sweep) evaluates first.
        CREATE TABLE alert_firings (
            id            bigserial PRIMARY KEY,
            rule_id       bigint NOT NULL REFERENCES alert_rules (id),
            customer_id   text NOT NULL,
            period_start  timestamptz NOT NULL,
            period_end    timestamptz NOT NULL,
            level         numeric NOT NULL,
            kind          text NOT NULL CHECK (kind IN ('crossing', 'recovery', 'forecast')),
            threshold     numeric NOT NULL,
            value         numeric NOT NULL,
            forecast_at   timestamptz,
            notice        jsonb NOT NULL,
            fired_at      timestamptz NOT NULL DEFAULT now(),
            UNIQUE (rule_id, period_start, level, kind)
        );
        CREATE INDEX alert_firings_customer ON alert_firings (customer_id, fired_at DESC);

        -- One delivery per firing and channel (or a test notice), sent after the firing
        -- commits; retried with bounded backoff, then failed. `leased_until` keeps two
        -- workers from sending the same delivery at once.
        CREATE TABLE alert_deliveries (
            id                 bigserial PRIMARY KEY,
            firing_id          bigint REFERENCES alert_firings (id),
            channel_id         bigint NOT NULL REFERENCES alert_channels (id),
            customer_id        text NOT NULL,
            notice             jsonb NOT NULL,
            status             text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'failed')),
            attempts           integer NOT NULL DEFAULT 0,
            next_attempt_at    timestamptz NOT NULL DEFAULT now(),
            leased_until       timestamptz,
            last_error         text,
            masked_destination text NOT NULL,
            created_at         timestamptz NOT NULL DEFAULT now(),
            sent_at            timestamptz,
            failed_at          timestamptz,
            UNIQUE (firing_id, channel_id)
        );
        CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE status = 'pending';
        CREATE INDEX alert_deliveries_customer ON alert_deliveries (customer_id, created_at DESC);

        CREATE TABLE alert_delivery_attempts (
            id                 bigserial PRIMARY KEY,
            delivery_id        bigint NOT NULL REFERENCES alert_deliveries (id),
            attempt            integer NOT NULL,
            ok                 boolean NOT NULL,
            error              text,
            masked_destination text NOT NULL,
            started_at         timestamptz NOT NULL,
            finished_at        timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX alert_delivery_attempts_delivery ON alert_delivery_attempts (delivery_id);
        """
    )


def downgrade() -> None:
    _execute(
        """
        DROP TABLE alert_delivery_attempts, alert_deliveries, alert_firings, alert_rules,
            plan_alert_rules, alert_channels;
        """
    )
