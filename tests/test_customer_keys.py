"""Every key of a customer-scoped table includes the customer id (migration 0008), so the
tables can be distributed by customer (portal/operations/citus_layout.py, docs/scaling.md).

Read from the migrated database's catalog, not from the models: a table added later without
the customer in its keys fails here."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command

from portal.infrastructure.settings import Settings
from portal.operations.citus_layout import DISTRIBUTED, LOCAL, REFERENCE, citus_sql
from portal.operations.migrate import alembic_config, migrate
from portal.tables import metadata

_KEYS = """
SELECT c.conrelid::regclass::text AS table_name, c.conname::text AS name, c.contype::text AS kind,
       array_agg(a.attname ORDER BY a.attname) AS columns
FROM pg_constraint c
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
WHERE c.contype IN ('p', 'u', 'f') AND c.connamespace = 'public'::regnamespace
GROUP BY 1, 2, 3
UNION ALL
SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text, 'i',
       array_agg(a.attname ORDER BY a.attname)
FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indisunique AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
  AND i.indrelid::regclass::text NOT LIKE 'usage_events%'
GROUP BY 1, 2, 3
"""


def test_every_table_has_one_place_in_the_distributed_layout() -> None:
    # Given every table of the models
    tables = sorted(table.name for table in metadata.sorted_tables)
    # When the layout's three lists are put together
    placed = sorted([*DISTRIBUTED, *REFERENCE, *LOCAL])
    # Then each table is in exactly one, and the SQL lays each out once
    assert placed == tables
    assert citus_sql().count("SELECT ") == len(tables)


async def test_every_key_of_a_customer_scoped_table_names_the_customer(pg: Any) -> None:
    # Given the migrated schema's tables that hold a customer_id, and those distributed by it
    scoped = {
        r["table_name"]
        for r in await pg.fetch(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name = 'customer_id'"
        )
    }
    distributed = set(DISTRIBUTED)
    assert distributed <= scoped
    # When their primary keys, unique constraints and indexes, and foreign keys are listed
    keys = [r for r in await pg.fetch(_KEYS) if r["table_name"] in distributed]
    # Then each names the customer, except foreign keys to tables every node holds
    missing = [
        (r["table_name"], r["name"])
        for r in keys
        if "customer_id" not in r["columns"]
        and not (r["kind"] == "f" and await _references_a_reference_table(pg, r["name"]))
    ]
    assert missing == []
    # And the tables that hold events, usage, invoices and alerts are all among them
    assert {"event_ledger", "hourly_usage", "invoices", "invoice_lines", "adjustments"} <= distributed
    assert {"credit_applications", "alert_deliveries", "alert_delivery_attempts"} <= distributed


async def _references_a_reference_table(pg: Any, constraint: str) -> bool:
    referenced = await pg.fetchval(
        "SELECT confrelid::regclass::text FROM pg_constraint WHERE conname = $1", constraint
    )
    return referenced in REFERENCE


async def test_0008_copies_each_childs_customer_from_its_parent(settings: Settings, pg: Any) -> None:
    # Given the schema before 0008, with an invoice and its line, note and credit drawn, and
    # an alert delivery and its attempt, for two customers
    config = alembic_config(settings.database_url or "")
    await asyncio.to_thread(command.downgrade, config, "0007")
    try:
        for customer in ("acme", "globex"):
            await _rows_before_0008(pg, customer)
        # When 0008 runs
        await asyncio.to_thread(migrate, settings)
    finally:
        await asyncio.to_thread(migrate, settings)
    # Then every child row carries its parent's customer
    for child, parent, link in (
        ("invoice_lines", "invoices", "invoice_id"),
        ("adjustments", "invoices", "invoice_id"),
        ("credit_applications", "invoices", "invoice_id"),
        ("credit_applications", "credit_grants", "grant_id"),
        ("alert_delivery_attempts", "alert_deliveries", "delivery_id"),
    ):
        rows = await pg.fetch(
            f"SELECT c.customer_id, p.customer_id AS parent FROM {child} c "
            f"JOIN {parent} p ON p.id = c.{link} ORDER BY 1"
        )
        assert [tuple(r) for r in rows] == [("acme", "acme"), ("globex", "globex")], child


async def _rows_before_0008(pg: Any, customer: str) -> None:
    await pg.execute(
        "INSERT INTO customers (id, name, timezone, currency) VALUES ($1, $1, 'UTC', 'EUR')", customer
    )
    invoice = await pg.fetchval(
        "INSERT INTO invoices (customer_id, period_start, period_end, currency, status, number) "
        "VALUES ($1, '2026-11-01', '2026-12-01', 'EUR', 'finalized', $2) RETURNING id",
        customer,
        f"INV-{customer}",
    )
    await pg.execute(
        "INSERT INTO invoice_lines (invoice_id, position, kind, description, quantity, "
        "billable_quantity, amount, plan_id, segment_start, segment_end) "
        "VALUES ($1, 1, 'flat', 'Platform fee', 1, 1, 10, 'basic', '2026-11-01', '2026-12-01')",
        invoice,
    )
    await pg.execute(
        "INSERT INTO adjustments (invoice_id, number, kind, subtotal_delta, discount_delta, amount, "
        "lines, reason) VALUES ($1, $2, 'debit', 1, 0, 1, '[]', 'late')",
        invoice,
        f"DN-{customer}",
    )
    grant = await pg.fetchval(
        "INSERT INTO credit_grants (customer_id, amount, currency) VALUES ($1, 5, 'EUR') RETURNING id",
        customer,
    )
    await pg.execute(
        "INSERT INTO credit_applications (grant_id, invoice_id, amount) VALUES ($1, $2, 5)", grant, invoice
    )
    channel = await pg.fetchval(
        "INSERT INTO alert_channels (customer_id, name, kind, destination_encrypted, destination_masked) "
        "VALUES ($1, 'ops', 'email', '\\x00', 'o***@example.com') RETURNING id",
        customer,
    )
    delivery = await pg.fetchval(
        "INSERT INTO alert_deliveries (channel_id, customer_id, notice, masked_destination) "
        "VALUES ($1, $2, '{}', 'o***@example.com') RETURNING id",
        channel,
        customer,
    )
    await pg.execute(
        "INSERT INTO alert_delivery_attempts (delivery_id, attempt, ok, masked_destination, started_at) "
        "VALUES ($1, 1, true, 'o***@example.com', now())",
        delivery,
    )
