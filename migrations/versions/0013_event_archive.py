"""Raw event archive: the monthly partitions of `usage_events` exported, verified and dropped.

- `archived_partitions`: one row per dropped partition, written in the transaction that
  drops it: the month it held, how many events, where its files are and the sha256 of its
  manifest (docs/data-lifecycle.md). Aggregates, invoices and notes are not touched.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from portal.operations.migrate import execute_script as _execute

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _execute(
        """
        CREATE TABLE archived_partitions (
            name text NOT NULL,
            range_start timestamptz NOT NULL,
            range_end timestamptz NOT NULL,
            rows bigint NOT NULL,
            bytes bigint NOT NULL,
            path text NOT NULL,
            manifest_sha256 text NOT NULL,
            archived_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT archived_partitions_pkey PRIMARY KEY (name)
        );
        """
    )


def downgrade() -> None:
    _execute("DROP TABLE archived_partitions;")
