"""Money columns hold any amount the accepted usage can produce.

numeric(24, 6) overflowed at 10^18: a customer with 10^20 units (the largest quantity the
ingest accepts) at 1.00 a unit could not be invoiced, and its failure held every other
customer rated in the same chunk hostage. Amounts are rounded to the currency's minor
unit by the rating code (portal/billing/rating.py) before they are stored, so an
unbounded numeric keeps them exact without a scale of its own.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from portal.operations.migrate import execute_script as _execute

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

AMOUNTS = {
    "credit_grants": ("amount",),
    "invoices": ("subtotal", "discount_total", "credits_applied", "total"),
    "invoice_lines": ("amount",),
    "credit_applications": ("amount",),
    "adjustments": ("subtotal_delta", "discount_delta", "amount"),
}


def _alter(type_: str) -> None:
    _execute(
        "\n".join(
            f"ALTER TABLE {table} "
            + ", ".join(f"ALTER COLUMN {column} TYPE {type_}" for column in columns)
            + ";\n"
            for table, columns in AMOUNTS.items()
        )
    )


def upgrade() -> None:
    _alter("numeric")


def downgrade() -> None:
    _alter("numeric(24, 6)")
