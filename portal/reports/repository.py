"""The cross-domain reports: each reads several domains' tables in one statement.

Raw SQL throughout (the reason is given per query): these are aggregate reports whose
lateral joins, window counts and scope subqueries an expression would only obscure. None
of them writes, commits or takes a lock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from portal.infrastructure.db import values
from portal.reports.schemas import CustomerAnchor, CustomerSpend, DriftLine, MeterPeriodTotal

# --- the account managers' customers table (customers, invoices, adjustments, alert_firings)

# The table's sort keys and the columns each orders by.
CUSTOMER_SORTS = {"name": "lower(name), id", "spend": "spend", "change": "change_pct", "alerts": "alerts"}

# Per visible customer: the current period at :now (its draft's, else the local calendar
# month; :now, not the database's clock, so the page is "as of" the request's instant), the
# draft's total, the latest live invoice ended by :now (the previous period's) with its
# adjustments, alerts fired
# since the period began.
_CUSTOMERS_TABLE = """
WITH c AS (
    SELECT id, name, timezone, currency, created_at FROM customers
    WHERE id IN {visible}
      AND (CAST(:q AS text) IS NULL OR id ILIKE :pattern OR name ILIKE :pattern)
), d AS (
    SELECT c.*, cur.total AS spend, cur.computed_at AS spend_as_of,
           COALESCE(cur.period_start, date_trunc('month', CAST(:now AS timestamptz) AT TIME ZONE c.timezone)
                                      AT TIME ZONE c.timezone) AS period_start,
           prev.amount AS previous
    FROM c
    LEFT JOIN LATERAL (
        SELECT i.total, i.computed_at, i.period_start FROM invoices i
        WHERE i.customer_id = c.id AND i.status = 'draft' AND i.period_start <= :now AND i.period_end > :now
        ORDER BY i.period_start DESC LIMIT 1) cur ON TRUE
    LEFT JOIN LATERAL (
        SELECT p.total + COALESCE((SELECT sum(a.amount) FROM adjustments a WHERE a.invoice_id = p.id), 0)
               AS amount
        FROM invoices p WHERE p.customer_id = c.id AND p.status <> 'void' AND p.period_end <= :now
        ORDER BY p.period_end DESC LIMIT 1) prev ON TRUE
), r AS (
    SELECT d.*,
           CASE WHEN previous > 0 THEN round((spend - previous) * 100 / previous, 1) END AS change_pct,
           (SELECT count(*) FROM alert_firings f WHERE f.customer_id = d.id
               AND f.fired_at >= d.period_start) AS alerts
    FROM d
)
SELECT id, name, timezone, currency, created_at, period_start, spend, spend_as_of, change_pct, alerts,
       previous, count(*) OVER () AS total
FROM r WHERE (NOT CAST(:only_alerts AS boolean) OR alerts > 0)
ORDER BY {order} NULLS LAST, id
"""


async def customers_table(
    session: AsyncSession,
    *,
    customers_sql: str,
    customers_params: dict[str, Any],
    q: str | None,
    only_alerts: bool,
    sort: str,
    order: str,
    limit: int | None,
    offset: int,
    now: datetime,
) -> tuple[list[CustomerSpend], int]:
    """The customers in `customers_sql` whose id or name contains `q` (None: all; case
    aside, taken literally), with alerts only if `only_alerts`, sorted by `sort` (a key of
    CUSTOMER_SORTS) in `order` ("asc" or "desc"; nulls last, then by id), `limit` of them
    (None: all) after `offset`; and how many match in all (0 when none is returned)."""
    # Raw SQL: two lateral joins, a window count and the pages' scope subquery in one report.
    direction = "ASC" if order == "asc" else "DESC"
    order_sql = ", ".join(f"{column} {direction}" for column in CUSTOMER_SORTS[sort].split(", "))
    sql = _CUSTOMERS_TABLE.format(visible=customers_sql, order=order_sql)
    if limit is not None:
        sql += " LIMIT :limit OFFSET :offset"
    # ILIKE's own wildcards in what was typed are matched literally.
    pattern = None if q is None else "%" + re.sub(r"([\\%_])", r"\\\1", q) + "%"
    result = await session.execute(
        text(sql),
        {
            **customers_params,
            "q": q,
            "pattern": pattern,
            "only_alerts": only_alerts,
            "now": now,
            "limit": limit,
            "offset": offset,
        },
    )
    rows, total = [], 0
    for *row, count in (values(r) for r in result):
        rows.append(CustomerSpend(*row))
        total = int(count)
    return rows, total


async def period_usage(
    session: AsyncSession, *, customer_ids: Sequence[str], starts: Sequence[datetime], now: datetime
) -> list[MeterPeriodTotal]:
    """Each customer's totals of its sum, count and max meters from its start (the same
    position in `starts`) to `now`, by customer then metric (latest and distinct-count
    meters have no total an hour-sum gives)."""
    # Raw SQL: unnest pairs each customer with its own start, joined to hourly_usage and meters.
    result = await session.execute(
        text(
            "SELECT h.customer_id, h.metric_name, m.unit, "
            "CASE WHEN m.aggregation = 'max' THEN max(h.value) ELSE sum(h.value) END "
            "FROM unnest(CAST(:ids AS text[]), CAST(:starts AS timestamptz[])) AS p (customer_id, start) "
            "JOIN hourly_usage h ON h.customer_id = p.customer_id AND h.hour >= p.start AND h.hour <= :now "
            "JOIN meters m ON m.metric_name = h.metric_name AND m.aggregation IN ('sum', 'count', 'max') "
            "GROUP BY h.customer_id, h.metric_name, m.unit, m.aggregation ORDER BY h.customer_id, "
            "h.metric_name"
        ),
        {"ids": list(customer_ids), "starts": list(starts), "now": now},
    )
    return [MeterPeriodTotal(*values(r)) for r in result]


# --- the drift page (live_drift, scoped by customers)


async def drift_lines(
    session: AsyncSession,
    *,
    run_id: int,
    customer_id: str | None,
    customers_sql: str,
    customers_params: dict[str, Any],
) -> list[DriftLine]:
    """The run's drift rows of the customers in `customers_sql` (only `customer_id`'s when
    given), the largest drift either way first, at most 500."""
    # Raw SQL: filtered by the pages' scope subquery on customers.
    result = await session.execute(
        text(
            "SELECT customer_id, metric_name, live_value, billed_value, drift FROM live_drift "
            f"WHERE run_id = :run AND customer_id IN {customers_sql} "
            "AND (CAST(:c AS text) IS NULL OR customer_id = :c) "
            "ORDER BY abs(drift) DESC, customer_id, metric_name LIMIT 500"
        ),
        {**customers_params, "run": run_id, "c": customer_id},
    )
    return [DriftLine(*values(r)) for r in result]


# --- the invoice run (customers, subscriptions)


async def customers_with_anchor_day(session: AsyncSession) -> list[CustomerAnchor]:
    """Every customer, by id, with the anchor day of its latest-starting subscription (None
    when it has none)."""
    # Raw SQL: a correlated subquery on billing's subscriptions per catalog customer.
    rows = await session.execute(
        text(
            "SELECT c.id, c.timezone, c.currency, (SELECT s.anchor_day FROM subscriptions s "
            "WHERE s.customer_id = c.id ORDER BY s.starts_at DESC LIMIT 1) FROM customers c ORDER BY c.id"
        )
    )
    return [CustomerAnchor(*values(r)) for r in rows]


# --- pricing simulation (customers, subscriptions)


async def simulation_customers(
    session: AsyncSession,
    *,
    customer_ids: Sequence[str] | None,
    subscribed_from: datetime,
    subscribed_to: datetime,
    currency: str | None = None,
    customers_sql: str = "",
    customers_params: dict[str, Any] | None = None,
    limit: int,
) -> list[tuple[str, str, str, str, int | None]]:
    """(id, name, time zone, currency, anchor day of the latest subscription) by id: the
    customers `customer_ids` that exist, or when None those with a subscription overlapping
    [subscribed_from, subscribed_to) and billed in `currency` (when given); only those in
    `customers_sql` (a scope subquery of ids, `portal.catalog.repository.customer_ids_sql`)
    when given; at most `limit` rows."""
    # Raw SQL: catalog customers with billing's latest anchor day, filtered by a scope subquery.
    where = ["TRUE"]
    params: dict[str, Any] = {**(customers_params or {}), "lim": limit}
    if customer_ids is not None:
        where.append("c.id = ANY(CAST(:ids AS text[]))")
        params["ids"] = list(customer_ids)
    else:
        where.append(
            "EXISTS (SELECT 1 FROM subscriptions s WHERE s.customer_id = c.id AND s.starts_at < :hi "
            "AND (s.ends_at IS NULL OR s.ends_at > :lo))"
        )
        params.update(lo=subscribed_from, hi=subscribed_to)
        if currency is not None:
            where.append("c.currency = :cur")
            params["cur"] = currency
    if customers_sql:
        where.append(f"c.id IN {customers_sql}")
    rows = await session.execute(
        text(
            "SELECT c.id, c.name, c.timezone, c.currency, (SELECT s.anchor_day FROM subscriptions s "
            "WHERE s.customer_id = c.id ORDER BY s.starts_at DESC LIMIT 1) FROM customers c "
            f"WHERE {' AND '.join(where)} ORDER BY c.id LIMIT :lim"
        ),
        params,
    )
    return [(str(i), str(n), str(tz), str(cur).strip(), _anchor(a)) for i, n, tz, cur, a in rows]


async def customer_choices_in(
    session: AsyncSession, *, customers_sql: str, customers_params: dict[str, Any]
) -> list[tuple[str, str, str]]:
    """(id, name, currency) of the customers in a scope subquery of ids, by name (case aside),
    for a form's choice list."""
    # Raw SQL: the scope subquery (portal.pages.access.customer_scope) is raw SQL.
    rows = await session.execute(
        text(
            f"SELECT c.id, c.name, c.currency FROM customers c WHERE c.id IN {customers_sql} "
            "ORDER BY lower(c.name), c.id"
        ),
        customers_params,
    )
    return [(str(i), str(n), str(cur).strip()) for i, n, cur in rows]


def _anchor(value: object) -> int | None:
    return None if value is None else int(str(value))
