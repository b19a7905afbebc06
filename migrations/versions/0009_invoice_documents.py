"""Invoice documents: customers' billing details, and the email of each issued document.

- `customers` gets what an invoice is addressed to: a legal name (else the display name),
  a billing address (lines), a tax id (VAT/GST) and the billing contacts' email addresses.
- `invoices.parties` keeps, from the moment an invoice is finalized, who issued it and who
  it is billed to (issuer settings, the customer's billing details, the payment terms): an
  issued invoice is immutable, its PDF downloaded a year later reads as the one emailed.
- `document_emails` holds one row per invoice or note emailed to the customer's billing
  contacts: written in the transaction that issues the document, sent by a job after its
  commit; `status` says whether it went (`sent`), could not go (`not_sent`: no SMTP server,
  or no billing contact) or is still owed (`pending`). Keyed by the document's number and its
  customer like the documents themselves (see 0008).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from portal.operations.migrate import execute_script as _execute

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _execute(
        """
        ALTER TABLE customers
            ADD COLUMN legal_name text,
            ADD COLUMN billing_address text[] NOT NULL DEFAULT '{}',
            ADD COLUMN tax_id text,
            ADD COLUMN billing_emails text[] NOT NULL DEFAULT '{}';
        ALTER TABLE invoices ADD COLUMN parties jsonb;

        CREATE TABLE document_emails (
            number text NOT NULL,
            customer_id text NOT NULL,
            invoice_id bigint NOT NULL,
            adjustment_id bigint,
            status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'not_sent')),
            recipients text[] NOT NULL DEFAULT '{}',
            attempts integer NOT NULL DEFAULT 0,
            error text,
            created_at timestamptz NOT NULL DEFAULT now(),
            sent_at timestamptz,
            CONSTRAINT document_emails_pkey PRIMARY KEY (number, customer_id),
            CONSTRAINT document_emails_invoice_id_fkey FOREIGN KEY (invoice_id, customer_id)
                REFERENCES invoices (id, customer_id),
            CONSTRAINT document_emails_adjustment_id_fkey FOREIGN KEY (adjustment_id, customer_id)
                REFERENCES adjustments (id, customer_id)
        );
        -- The sweep's question: which emails are still owed.
        CREATE INDEX document_emails_pending ON document_emails (created_at) WHERE status = 'pending';
        """
    )


def downgrade() -> None:
    _execute(
        """
        DROP TABLE document_emails;
        ALTER TABLE invoices DROP COLUMN parties;
        ALTER TABLE customers
            DROP COLUMN legal_name,
            DROP COLUMN billing_address,
            DROP COLUMN tax_id,
            DROP COLUMN billing_emails;
        """
    )
