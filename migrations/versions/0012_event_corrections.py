"""Event corrections: cancelling or amending an accepted event, with its reason.

- `usage_events.cancelled_at`: a cancelled event stays in the raw store (what was sent is
  never lost) but counts nowhere; an amended one carries its new quantity (the old one is
  in its correction).
- `event_corrections`: one row per correction, in the order they were made (`id`): who,
  when, why, the quantity before and after, the hour it changed; for an event in a period
  whose invoice was already finalized, that invoice and, once settled, the credit or debit
  note the correction produced (`adjustment_id`).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from portal.operations.migrate import execute_script as _execute

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _execute(
        """
        ALTER TABLE usage_events ADD COLUMN cancelled_at timestamptz;

        CREATE TABLE event_corrections (
            id bigserial NOT NULL,
            customer_id text NOT NULL,
            event_id text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('cancel', 'amend')),
            metric_name text NOT NULL,
            event_time timestamptz NOT NULL,
            hour timestamptz NOT NULL,
            group_key text NOT NULL DEFAULT '',
            quantity_before numeric NOT NULL,
            quantity_after numeric,
            reason text NOT NULL,
            actor text NOT NULL,
            user_id bigint,
            source text NOT NULL CHECK (source IN ('api', 'stripe', 'portal')),
            created_at timestamptz NOT NULL DEFAULT now(),
            invoice_id bigint,
            adjustment_id bigint,
            settled_at timestamptz,
            CONSTRAINT event_corrections_pkey PRIMARY KEY (id, customer_id),
            CONSTRAINT event_corrections_shape CHECK ((kind = 'cancel') = (quantity_after IS NULL)),
            CONSTRAINT event_corrections_customer_id_fkey FOREIGN KEY (customer_id)
                REFERENCES customers (id),
            CONSTRAINT event_corrections_invoice_id_fkey FOREIGN KEY (invoice_id, customer_id)
                REFERENCES invoices (id, customer_id),
            CONSTRAINT event_corrections_adjustment_id_fkey FOREIGN KEY (adjustment_id, customer_id)
                REFERENCES adjustments (id, customer_id)
        );
        CREATE INDEX event_corrections_event ON event_corrections (customer_id, event_id);
        -- The settle job's question: which corrections of a finalized invoice await their note.
        CREATE INDEX event_corrections_unsettled ON event_corrections (invoice_id)
            WHERE invoice_id IS NOT NULL AND settled_at IS NULL;
        """
    )


def downgrade() -> None:
    _execute(
        """
        DROP TABLE event_corrections;
        ALTER TABLE usage_events DROP COLUMN cancelled_at;
        """
    )
