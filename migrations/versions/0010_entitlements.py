"""Entitlements: how much of a meter a customer may use in a billing period.

- `plan_entitlements`: a plan's limit per meter, `hard` (checks answer "not allowed" once the
  period's usage reaches it) or `soft` (allowed, flagged as exceeded); `customer_may_lower`
  lets the plan's customers set a lower limit for themselves in the portal. Plans are
  immutable as prices, but a limit is not a price: a plan's limits are edited in place (no
  invoice changes when they do).
- `customer_entitlements`: one customer's own limit for a meter, within what its plan
  allows (never above the plan's limit); `set_by` says whether staff or the customer's own
  users set it.
- `entitlement_crossings`: each limit a customer reached in a period, once (the key), the
  record that notifies the alert channels and announces `entitlement.exceeded`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from portal.operations.migrate import execute_script as _execute

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _execute(
        """
        CREATE TABLE plan_entitlements (
            plan_id text NOT NULL REFERENCES plans (id),
            metric_name text NOT NULL REFERENCES meters (metric_name),
            limit_quantity numeric NOT NULL CHECK (limit_quantity >= 0),
            enforcement text NOT NULL CHECK (enforcement IN ('hard', 'soft')),
            customer_may_lower boolean NOT NULL DEFAULT false,
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT plan_entitlements_pkey PRIMARY KEY (plan_id, metric_name)
        );

        CREATE TABLE customer_entitlements (
            customer_id text NOT NULL REFERENCES customers (id),
            metric_name text NOT NULL REFERENCES meters (metric_name),
            limit_quantity numeric NOT NULL CHECK (limit_quantity >= 0),
            enforcement text NOT NULL CHECK (enforcement IN ('hard', 'soft')),
            set_by text NOT NULL CHECK (set_by IN ('staff', 'customer')),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT customer_entitlements_pkey PRIMARY KEY (customer_id, metric_name)
        );

        CREATE TABLE entitlement_crossings (
            customer_id text NOT NULL REFERENCES customers (id),
            metric_name text NOT NULL,
            period_start timestamptz NOT NULL,
            period_end timestamptz NOT NULL,
            limit_quantity numeric NOT NULL,
            enforcement text NOT NULL CHECK (enforcement IN ('hard', 'soft')),
            used numeric NOT NULL,
            crossed_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT entitlement_crossings_pkey
                PRIMARY KEY (customer_id, metric_name, period_start, limit_quantity)
        );

        -- Alert rules may measure a meter against its limit ("notify at 80%, 100% of the
        -- limit"): crossing a limit notifies through the alert channels.
        ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_basis_check,
            ADD CONSTRAINT alert_rules_basis_check
                CHECK (basis IN ('absolute', 'included', 'commitment', 'budget', 'limit'));
        ALTER TABLE plan_alert_rules DROP CONSTRAINT plan_alert_rules_basis_check,
            ADD CONSTRAINT plan_alert_rules_basis_check
                CHECK (basis IN ('absolute', 'included', 'commitment', 'budget', 'limit'));
        """
    )


def downgrade() -> None:
    _execute(
        """
        DELETE FROM alert_rules WHERE basis = 'limit';
        DELETE FROM plan_alert_rules WHERE basis = 'limit';
        ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_basis_check,
            ADD CONSTRAINT alert_rules_basis_check
                CHECK (basis IN ('absolute', 'included', 'commitment', 'budget'));
        ALTER TABLE plan_alert_rules DROP CONSTRAINT plan_alert_rules_basis_check,
            ADD CONSTRAINT plan_alert_rules_basis_check
                CHECK (basis IN ('absolute', 'included', 'commitment', 'budget'));
        DROP TABLE entitlement_crossings;
        DROP TABLE customer_entitlements;
        DROP TABLE plan_entitlements;
        """
    )
