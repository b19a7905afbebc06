"""Billing: plans, subscriptions, prepaid credit, invoices, adjustments, late events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from portal.operations.migrate import execute_script as _execute

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _execute(
        """
        CREATE EXTENSION IF NOT EXISTS btree_gist;

        -- Plans are data and immutable: an invoice keeps a copy of the definition it was
        -- rated on, and a price change is a new plan.
        CREATE TABLE plans (
            id          text PRIMARY KEY,
            name        text NOT NULL,
            currency    char(3) NOT NULL,
            definition  jsonb NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now()
        );

        -- A customer's plan over time: [starts_at, ends_at), never overlapping.
        CREATE TABLE subscriptions (
            id          bigserial PRIMARY KEY,
            customer_id text NOT NULL REFERENCES customers (id),
            plan_id     text NOT NULL REFERENCES plans (id),
            anchor_day  smallint NOT NULL CHECK (anchor_day BETWEEN 1 AND 31),
            starts_at   timestamptz NOT NULL,
            ends_at     timestamptz,
            discounts   jsonb NOT NULL DEFAULT '[]',
            created_at  timestamptz NOT NULL DEFAULT now(),
            CHECK (ends_at IS NULL OR ends_at > starts_at),
            EXCLUDE USING gist (customer_id WITH =, tstzrange(starts_at, ends_at) WITH &&)
        );

        CREATE TABLE credit_grants (
            id          bigserial PRIMARY KEY,
            customer_id text NOT NULL REFERENCES customers (id),
            amount      numeric(24, 6) NOT NULL CHECK (amount > 0),
            currency    char(3) NOT NULL,
            description text NOT NULL DEFAULT '',
            expires_at  timestamptz,
            granted_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX credit_grants_customer ON credit_grants (customer_id);

        -- Gapless document numbers (invoices, credit and debit notes), taken inside the
        -- transaction that issues the document.
        CREATE TABLE document_numbers (
            series  text PRIMARY KEY,
            last    bigint NOT NULL
        );

        CREATE TABLE invoices (
            id               bigserial PRIMARY KEY,
            customer_id      text NOT NULL REFERENCES customers (id),
            period_start     timestamptz NOT NULL,
            period_end       timestamptz NOT NULL,
            currency         char(3) NOT NULL,
            status           text NOT NULL DEFAULT 'draft'
                CHECK (status IN ('draft', 'finalized', 'void')),
            number           text UNIQUE,
            subtotal         numeric(24, 6) NOT NULL DEFAULT 0,
            discount_total   numeric(24, 6) NOT NULL DEFAULT 0,
            credits_applied  numeric(24, 6) NOT NULL DEFAULT 0,
            total            numeric(24, 6) NOT NULL DEFAULT 0,
            -- What it was rated on: each segment's plan definition, bounds and fraction.
            segments         jsonb NOT NULL DEFAULT '[]',
            computed_at      timestamptz NOT NULL DEFAULT now(),
            complete_through timestamptz,
            finalized_at     timestamptz,
            approved_by      text,
            voided_at        timestamptz,
            void_reason      text,
            replaces_id      bigint REFERENCES invoices (id),
            created_at       timestamptz NOT NULL DEFAULT now(),
            CHECK (period_end > period_start),
            CHECK ((status = 'draft') = (number IS NULL) OR status = 'void')
        );
        -- One live invoice per customer and period; voided ones stay for the record.
        CREATE UNIQUE INDEX invoices_one_per_period ON invoices (customer_id, period_start)
            WHERE status <> 'void';
        CREATE INDEX invoices_finalized ON invoices (customer_id, period_end)
            WHERE status = 'finalized';
        CREATE INDEX invoices_status ON invoices (status, period_end);

        CREATE TABLE invoice_lines (
            invoice_id        bigint NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
            position          integer NOT NULL,
            kind              text NOT NULL CHECK (kind IN ('usage', 'flat', 'minimum', 'discount')),
            charge_key        text,
            meter             text,
            description       text NOT NULL,
            quantity          numeric NOT NULL,
            included_quantity numeric NOT NULL DEFAULT 0,
            billable_quantity numeric NOT NULL,
            unit_price        numeric,
            tiers             jsonb NOT NULL DEFAULT '[]',
            proration         numeric NOT NULL DEFAULT 1,
            amount            numeric(24, 6) NOT NULL,
            plan_id           text NOT NULL,
            segment_start     timestamptz NOT NULL,
            segment_end       timestamptz NOT NULL,
            PRIMARY KEY (invoice_id, position)
        );

        -- Prepaid credit drawn by a finalized invoice; released when it is voided.
        CREATE TABLE credit_applications (
            id          bigserial PRIMARY KEY,
            grant_id    bigint NOT NULL REFERENCES credit_grants (id),
            invoice_id  bigint NOT NULL REFERENCES invoices (id),
            amount      numeric(24, 6) NOT NULL CHECK (amount > 0),
            applied_at  timestamptz NOT NULL DEFAULT now(),
            released_at timestamptz
        );
        CREATE INDEX credit_applications_grant ON credit_applications (grant_id);

        -- Debit and credit notes: what changed on a finalized invoice after it was issued.
        CREATE TABLE adjustments (
            id              bigserial PRIMARY KEY,
            invoice_id      bigint NOT NULL REFERENCES invoices (id),
            number          text NOT NULL UNIQUE,
            kind            text NOT NULL CHECK (kind IN ('debit', 'credit')),
            subtotal_delta  numeric(24, 6) NOT NULL,
            discount_delta  numeric(24, 6) NOT NULL,
            amount          numeric(24, 6) NOT NULL CHECK (amount <> 0),
            lines           jsonb NOT NULL,
            reason          text NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX adjustments_invoice ON adjustments (invoice_id);

        -- Events persisted after their period's invoice was finalized. The worker writes
        -- these in the transaction that persists the events; the adjustment job settles them.
        CREATE TABLE late_events (
            invoice_id    bigint NOT NULL REFERENCES invoices (id),
            customer_id   text NOT NULL,
            event_id      text NOT NULL,
            metric_name   text NOT NULL,
            quantity      numeric NOT NULL,
            event_time    timestamptz NOT NULL,
            recorded_at   timestamptz NOT NULL DEFAULT now(),
            adjustment_id bigint REFERENCES adjustments (id),
            settled_at    timestamptz,
            PRIMARY KEY (invoice_id, customer_id, event_id)
        );
        CREATE INDEX late_events_unsettled ON late_events (recorded_at) WHERE settled_at IS NULL;
        """
    )


def downgrade() -> None:
    _execute(
        """
        DROP TABLE late_events, adjustments, credit_applications, invoice_lines, invoices,
            document_numbers, credit_grants, subscriptions, plans;
        """
    )
