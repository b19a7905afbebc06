"""The ledger records which persist message admitted each event.

Dedup markers in Redis became short-lived (issue 15), so an event resent after its marker
expired is counted live at once, and the persist worker takes it out of the live counters
again when the ledger refuses it. A redelivered message must not take out its own events,
which the ledger refuses too: `message_key` (64 bits of a hash of the message id) tells
them apart. Adding a column with a constant default rewrites nothing (Postgres 11+).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from portal.operations.migrate import execute_script as _execute

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _execute("ALTER TABLE event_ledger ADD COLUMN message_key bigint NOT NULL DEFAULT 0;")


def downgrade() -> None:
    _execute("ALTER TABLE event_ledger DROP COLUMN message_key;")
