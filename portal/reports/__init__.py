"""Read-only queries joining several domains' tables, for the pages, the invoice run and
the bills' review.

Raw SQL because they are aggregate reports: lateral joins, window counts and scoped
subqueries over customers, invoices, alerts, usage and ingest tables at once, which no one
domain's repository owns. Nothing here writes or commits. Each query that is scoped to the
customers someone may see takes the scope as `customers_sql` (a raw SQL subquery of ids,
from `portal.pages.manager.common.visible_ids`) bound by `customers_params`.
"""
