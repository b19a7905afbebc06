"""The customer id in every key of customer-scoped tables.

A distributed Postgres (Citus) spreads a table over nodes by one column and can enforce a
primary key, unique constraint or foreign key only when it includes that column. Every
customer-scoped table is distributed by its customer (docs/scaling.md), so:

- the tables keyed by a surrogate `id` get the primary key `(id, customer_id)`: `id` stays
  first, so a lookup by id uses the key's index as before;
- the children of an invoice, credit grant or alert delivery that had no customer column get
  one, copied from their parent, and refer to the parent by `(id, customer_id)`;
- the unique constraints that did not name the customer now do. An id already determines
  its customer, so these keys allow exactly the rows they allowed before. The one exception
  is the document numbers of invoices and notes: they stay unique because the gapless series
  in `document_numbers` issues each number once, under a row lock.

Adding the column rewrites the child tables once (they are small beside the event tables).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from portal.operations.migrate import execute_script as _execute

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Foreign keys that point at a key this migration replaces: (table, constraint).
_FOREIGN_KEYS = (
    ("invoices", "invoices_replaces_id_fkey"),
    ("invoice_lines", "invoice_lines_invoice_id_fkey"),
    ("credit_applications", "credit_applications_grant_id_fkey"),
    ("credit_applications", "credit_applications_invoice_id_fkey"),
    ("adjustments", "adjustments_invoice_id_fkey"),
    ("late_events", "late_events_invoice_id_fkey"),
    ("late_events", "late_events_adjustment_id_fkey"),
    ("alert_firings", "alert_firings_rule_id_fkey"),
    ("alert_deliveries", "alert_deliveries_firing_id_fkey"),
    ("alert_deliveries", "alert_deliveries_channel_id_fkey"),
    ("alert_delivery_attempts", "alert_delivery_attempts_delivery_id_fkey"),
)

# Tables whose surrogate key becomes (id, customer_id).
_BY_ID = (
    "subscriptions",
    "credit_grants",
    "invoices",
    "credit_applications",
    "adjustments",
    "alert_channels",
    "alert_rules",
    "alert_firings",
    "alert_deliveries",
    "alert_delivery_attempts",
    "failed_events",
    "event_conflicts",
)


def _drop_foreign_keys() -> str:
    return "\n".join(f"ALTER TABLE {table} DROP CONSTRAINT {name};" for table, name in _FOREIGN_KEYS)


def upgrade() -> None:
    _execute(
        f"""
        ALTER TABLE invoice_lines ADD COLUMN customer_id text;
        UPDATE invoice_lines l SET customer_id = i.customer_id FROM invoices i WHERE i.id = l.invoice_id;
        ALTER TABLE invoice_lines ALTER COLUMN customer_id SET NOT NULL;

        ALTER TABLE adjustments ADD COLUMN customer_id text;
        UPDATE adjustments a SET customer_id = i.customer_id FROM invoices i WHERE i.id = a.invoice_id;
        ALTER TABLE adjustments ALTER COLUMN customer_id SET NOT NULL;

        ALTER TABLE credit_applications ADD COLUMN customer_id text;
        UPDATE credit_applications c SET customer_id = i.customer_id
            FROM invoices i WHERE i.id = c.invoice_id;
        ALTER TABLE credit_applications ALTER COLUMN customer_id SET NOT NULL;

        ALTER TABLE alert_delivery_attempts ADD COLUMN customer_id text;
        UPDATE alert_delivery_attempts a SET customer_id = d.customer_id
            FROM alert_deliveries d WHERE d.id = a.delivery_id;
        ALTER TABLE alert_delivery_attempts ALTER COLUMN customer_id SET NOT NULL;

        {_drop_foreign_keys()}

        {
            "".join(
                f'''
        ALTER TABLE {table} DROP CONSTRAINT {table}_pkey,
            ADD CONSTRAINT {table}_pkey PRIMARY KEY (id, customer_id);'''
                for table in _BY_ID
            )
        }
        ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_pkey,
            ADD CONSTRAINT invoice_lines_pkey PRIMARY KEY (invoice_id, position, customer_id);

        ALTER TABLE invoices DROP CONSTRAINT invoices_number_key,
            ADD CONSTRAINT invoices_number_key UNIQUE (number, customer_id);
        ALTER TABLE adjustments DROP CONSTRAINT adjustments_number_key,
            ADD CONSTRAINT adjustments_number_key UNIQUE (number, customer_id);
        ALTER TABLE alert_deliveries DROP CONSTRAINT alert_deliveries_firing_id_channel_id_key,
            ADD CONSTRAINT alert_deliveries_firing_id_channel_id_key
                UNIQUE (firing_id, channel_id, customer_id);
        DROP INDEX alert_firings_threshold_once;
        CREATE UNIQUE INDEX alert_firings_threshold_once
            ON alert_firings (rule_id, period_start, level, kind, customer_id) WHERE kind <> 'anomaly';
        DROP INDEX alert_firings_anomaly_once;
        CREATE UNIQUE INDEX alert_firings_anomaly_once
            ON alert_firings (rule_id, metric_name, anomaly_kind, granularity, period_start, customer_id)
            WHERE kind = 'anomaly';

        ALTER TABLE invoices ADD CONSTRAINT invoices_replaces_id_fkey
            FOREIGN KEY (replaces_id, customer_id) REFERENCES invoices (id, customer_id);
        ALTER TABLE invoice_lines ADD CONSTRAINT invoice_lines_invoice_id_fkey
            FOREIGN KEY (invoice_id, customer_id) REFERENCES invoices (id, customer_id) ON DELETE CASCADE;
        ALTER TABLE credit_applications ADD CONSTRAINT credit_applications_grant_id_fkey
            FOREIGN KEY (grant_id, customer_id) REFERENCES credit_grants (id, customer_id);
        ALTER TABLE credit_applications ADD CONSTRAINT credit_applications_invoice_id_fkey
            FOREIGN KEY (invoice_id, customer_id) REFERENCES invoices (id, customer_id);
        ALTER TABLE adjustments ADD CONSTRAINT adjustments_invoice_id_fkey
            FOREIGN KEY (invoice_id, customer_id) REFERENCES invoices (id, customer_id);
        ALTER TABLE late_events ADD CONSTRAINT late_events_invoice_id_fkey
            FOREIGN KEY (invoice_id, customer_id) REFERENCES invoices (id, customer_id);
        ALTER TABLE late_events ADD CONSTRAINT late_events_adjustment_id_fkey
            FOREIGN KEY (adjustment_id, customer_id) REFERENCES adjustments (id, customer_id);
        ALTER TABLE alert_firings ADD CONSTRAINT alert_firings_rule_id_fkey
            FOREIGN KEY (rule_id, customer_id) REFERENCES alert_rules (id, customer_id);
        ALTER TABLE alert_deliveries ADD CONSTRAINT alert_deliveries_firing_id_fkey
            FOREIGN KEY (firing_id, customer_id) REFERENCES alert_firings (id, customer_id);
        ALTER TABLE alert_deliveries ADD CONSTRAINT alert_deliveries_channel_id_fkey
            FOREIGN KEY (channel_id, customer_id) REFERENCES alert_channels (id, customer_id);
        ALTER TABLE alert_delivery_attempts ADD CONSTRAINT alert_delivery_attempts_delivery_id_fkey
            FOREIGN KEY (delivery_id, customer_id) REFERENCES alert_deliveries (id, customer_id);
        """
    )


def downgrade() -> None:
    _execute(
        f"""
        {_drop_foreign_keys()}

        DROP INDEX alert_firings_anomaly_once;
        CREATE UNIQUE INDEX alert_firings_anomaly_once
            ON alert_firings (rule_id, metric_name, anomaly_kind, granularity, period_start)
            WHERE kind = 'anomaly';
        DROP INDEX alert_firings_threshold_once;
        CREATE UNIQUE INDEX alert_firings_threshold_once
            ON alert_firings (rule_id, period_start, level, kind) WHERE kind <> 'anomaly';
        ALTER TABLE alert_deliveries DROP CONSTRAINT alert_deliveries_firing_id_channel_id_key,
            ADD CONSTRAINT alert_deliveries_firing_id_channel_id_key UNIQUE (firing_id, channel_id);
        ALTER TABLE adjustments DROP CONSTRAINT adjustments_number_key,
            ADD CONSTRAINT adjustments_number_key UNIQUE (number);
        ALTER TABLE invoices DROP CONSTRAINT invoices_number_key,
            ADD CONSTRAINT invoices_number_key UNIQUE (number);

        {
            "".join(
                f'''
        ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, ADD CONSTRAINT {table}_pkey PRIMARY KEY (id);'''
                for table in _BY_ID
            )
        }
        ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_pkey,
            ADD CONSTRAINT invoice_lines_pkey PRIMARY KEY (invoice_id, position);

        ALTER TABLE invoices ADD CONSTRAINT invoices_replaces_id_fkey
            FOREIGN KEY (replaces_id) REFERENCES invoices (id);
        ALTER TABLE invoice_lines ADD CONSTRAINT invoice_lines_invoice_id_fkey
            FOREIGN KEY (invoice_id) REFERENCES invoices (id) ON DELETE CASCADE;
        ALTER TABLE credit_applications ADD CONSTRAINT credit_applications_grant_id_fkey
            FOREIGN KEY (grant_id) REFERENCES credit_grants (id);
        ALTER TABLE credit_applications ADD CONSTRAINT credit_applications_invoice_id_fkey
            FOREIGN KEY (invoice_id) REFERENCES invoices (id);
        ALTER TABLE adjustments ADD CONSTRAINT adjustments_invoice_id_fkey
            FOREIGN KEY (invoice_id) REFERENCES invoices (id);
        ALTER TABLE late_events ADD CONSTRAINT late_events_invoice_id_fkey
            FOREIGN KEY (invoice_id) REFERENCES invoices (id);
        ALTER TABLE late_events ADD CONSTRAINT late_events_adjustment_id_fkey
            FOREIGN KEY (adjustment_id) REFERENCES adjustments (id);
        ALTER TABLE alert_firings ADD CONSTRAINT alert_firings_rule_id_fkey
            FOREIGN KEY (rule_id) REFERENCES alert_rules (id);
        ALTER TABLE alert_deliveries ADD CONSTRAINT alert_deliveries_firing_id_fkey
            FOREIGN KEY (firing_id) REFERENCES alert_firings (id);
        ALTER TABLE alert_deliveries ADD CONSTRAINT alert_deliveries_channel_id_fkey
            FOREIGN KEY (channel_id) REFERENCES alert_channels (id);
        ALTER TABLE alert_delivery_attempts ADD CONSTRAINT alert_delivery_attempts_delivery_id_fkey
            FOREIGN KEY (delivery_id) REFERENCES alert_deliveries (id);

        ALTER TABLE alert_delivery_attempts DROP COLUMN customer_id;
        ALTER TABLE credit_applications DROP COLUMN customer_id;
        ALTER TABLE adjustments DROP COLUMN customer_id;
        ALTER TABLE invoice_lines DROP COLUMN customer_id;
        """
    )
