"""How the tables spread over a distributed Postgres (Citus), as data and as the SQL that
applies it: every table is named once, as distributed by customer, held by every node
(reference), or kept on the coordinator (local). docs/scaling.md explains the choice.

Citus is not installable here (not in Debian bookworm), so this is not run by the product;
tests/test_customer_keys.py checks that every table is classified and that the keys of the
distributed ones include the distribution column, which is what Citus requires."""

from __future__ import annotations

# The distribution column of every distributed table: the customer.
DISTRIBUTION_COLUMN = "customer_id"

# Distributed by customer and co-located with the ledger, so a customer's events, usage,
# invoices and alerts sit on one node and every per-customer join stays on it.
DISTRIBUTED = (
    "event_ledger",
    "usage_events",
    "failed_events",
    "event_conflicts",
    "event_corrections",
    "hourly_usage",
    "hourly_unique_values",
    "daily_usage",
    "live_drift",
    "subscriptions",
    "credit_grants",
    "invoices",
    "invoice_lines",
    "credit_applications",
    "adjustments",
    "document_emails",
    "customer_entitlements",
    "entitlement_crossings",
    "late_events",
    "alert_channels",
    "alert_rules",
    "alert_firings",
    "alert_deliveries",
    "alert_delivery_attempts",
)

# Small, read everywhere, written rarely: a copy on every node, so distributed tables may
# refer to them. `customers` is one: its id is every distributed table's distribution column.
REFERENCE = (
    "customers",
    "meters",
    "plans",
    "plan_alert_rules",
    "plan_entitlements",
    "api_keys",
    "document_numbers",
    "reconcile_runs",
    "users",
    "user_customers",
    "password_tokens",
    "webhook_endpoints",
)

# Staff actions with no customer, and the operator's webhook events (some have no customer,
# and a distribution column may not be NULL) with their deliveries: they stay on the
# coordinator (Citus "local" tables).
LOCAL = (
    "audit_log",
    "webhook_events",
    "webhook_deliveries",
    "webhook_delivery_attempts",
    # What the archive holds, and where: the operator's record of dropped partitions.
    "archived_partitions",
)


def citus_sql() -> str:
    """The statements that lay an already migrated database out on Citus, in order:
    reference tables first (distributed tables refer to them), then the distributed ones,
    each co-located with the first."""
    statements = [f"SELECT create_reference_table('{table}');" for table in REFERENCE]
    statements += [f"SELECT citus_add_local_table_to_metadata('{table}');" for table in LOCAL]
    first, *rest = DISTRIBUTED
    statements.append(f"SELECT create_distributed_table('{first}', '{DISTRIBUTION_COLUMN}');")
    statements += [
        f"SELECT create_distributed_table('{table}', '{DISTRIBUTION_COLUMN}', colocate_with => '{first}');"
        for table in rest
    ]
    return "\n".join(statements)
