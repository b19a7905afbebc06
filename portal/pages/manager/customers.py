"""The account managers' customers table: this period's usage, spend so far, the change
against last period, alerts and anomaly flags, sortable and filterable, 50 a page.

Spend is the current period's draft invoice as the invoice run last rated it ("as of" its
time): one query rates nothing, so the page costs the same for 50 customers as for 5.
Sorting and filtering run in SQL over every visible customer (the queries:
portal/reports/repository.py); usage is read for the shown page only; anomaly flags
(portal/usage/anomaly_detection.py) too, unless the "only with anomalies" filter asks for
them over every matching customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from litestar import Request, get
from litestar.params import FromQuery
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.views import money_text
from portal.catalog.schemas import Customer
from portal.dependencies import Portal, ReadDb
from portal.pages.access import STAFF_GUARDS
from portal.pages.manager.common import (
    PAGE_SIZE,
    Pager,
    choice,
    flag,
    page_number,
    query_items,
    text_param,
    visible_ids,
)
from portal.pages.web import PageController, page
from portal.reports import repository as reports
from portal.usage.anomaly_detection import PAGE as ANOMALY_PAGE
from portal.usage.anomaly_detection import flagged_customers
from portal.usage.combine import exact

SORTS = ("name", "spend", "change", "alerts")
ORDERS = ("asc", "desc")
# Names read A to Z; the rest biggest first, which is what a manager looks for.
DEFAULT_ORDER = {"name": "asc", "spend": "desc", "change": "desc", "alerts": "desc"}
USAGE_SHOWN = 3  # meters listed in a row; the rest are counted


@dataclass(frozen=True, slots=True)
class MeterTotal:
    metric_name: str
    unit: str
    total: str


@dataclass(frozen=True, slots=True)
class CustomerRow:
    customer: Customer
    period_start: datetime
    spend: str | None
    spend_as_of: datetime | None
    change_pct: str | None
    alerts: int
    anomalies: int | None = None
    usage: tuple[MeterTotal, ...] = ()


async def _rows(
    db: AsyncSession,
    request: Request[Any, Any, Any],
    *,
    q: str | None,
    only_alerts: bool,
    sort: str,
    order: str,
    limit: int | None,
    offset: int,
    now: datetime,
) -> tuple[list[CustomerRow], int]:
    visible, params = visible_ids(request)
    found, total = await reports.customers_table(
        db,
        customers_sql=visible,
        customers_params=params,
        q=q,
        only_alerts=only_alerts,
        sort=sort,
        order=order,
        limit=limit,
        offset=offset,
        now=now,
    )
    rows = []
    for cid, name, tz, currency, created_at, period_start, spend, as_of, change, alerts in found:
        currency = str(currency).strip()
        customer = Customer(cid, name, tz, currency, created_at)
        rows.append(
            CustomerRow(
                customer,
                period_start,
                None if spend is None else money_text(Decimal(spend), currency),
                as_of,
                None if change is None else format(change, "f"),
                int(alerts),
            )
        )
    return rows, total


async def _usage(db: AsyncSession, rows: list[CustomerRow], now: datetime) -> dict[str, list[MeterTotal]]:
    """This period's totals of the sum, count and max meters of the shown customers, in one
    query (latest and distinct-count meters have no total an hour-sum gives)."""
    if not rows:
        return {}
    totals = await reports.period_usage(
        db, customer_ids=[r.customer.id for r in rows], starts=[r.period_start for r in rows], now=now
    )
    out: dict[str, list[MeterTotal]] = {}
    for cid, metric, unit, total in totals:
        out.setdefault(cid, []).append(MeterTotal(metric, unit, exact(Decimal(total))))
    return out


async def anomaly_counts(db: AsyncSession, customers: list[Customer], now: datetime) -> dict[str, int]:
    """Anomaly flags per customer, asked in the pages `flagged_customers` is built for."""
    counts: dict[str, int] = {}
    for start in range(0, len(customers), ANOMALY_PAGE):
        counts.update(await flagged_customers(db, customers[start : start + ANOMALY_PAGE], now))
    return counts


class ManagerCustomersController(PageController):
    guards = STAFF_GUARDS

    @get("/customers")
    async def customers(
        self,
        request: Request[Any, Any, Any],
        read_db: ReadDb,
        portal: Portal,
        q: FromQuery[str | None] = None,
        sort: FromQuery[str | None] = None,
        order: FromQuery[str | None] = None,
        alerts: FromQuery[str | None] = None,
        anomalies: FromQuery[str | None] = None,
    ) -> Template:
        """Every customer the viewer may see, with this period's numbers. Parameters (all
        bookmarkable): q, sort (name, spend, change, alerts), order (asc, desc), alerts=1,
        anomalies=1, page. A report: read on the replica when there is one."""
        now = portal.now()
        search = text_param("q", q)
        sort_by = choice("sort", sort, SORTS, "name")
        direction = choice("order", order, ORDERS, DEFAULT_ORDER[sort_by])
        only_alerts = flag("alerts", alerts)
        only_anomalies = flag("anomalies", anomalies)
        number = page_number(request.query_params.get("page"))
        params = query_items(request)
        if only_anomalies:
            every, _ = await _rows(
                read_db,
                request,
                q=search,
                only_alerts=only_alerts,
                sort=sort_by,
                order=direction,
                limit=None,
                offset=0,
                now=now,
            )
            counts = await anomaly_counts(read_db, [r.customer for r in every], now)
            matching = [r for r in every if counts.get(r.customer.id, 0) > 0]
            pager = Pager(number, len(matching), "/portal/customers", params)
            shown = matching[pager.offset : pager.offset + PAGE_SIZE]
        else:
            shown, total = await _rows(
                read_db,
                request,
                q=search,
                only_alerts=only_alerts,
                sort=sort_by,
                order=direction,
                limit=PAGE_SIZE,
                offset=(number - 1) * PAGE_SIZE,
                now=now,
            )
            pager = Pager(number, total, "/portal/customers", params)
            counts = await anomaly_counts(read_db, [r.customer for r in shown], now)
        usage = await _usage(read_db, shown, now)
        rows = [
            CustomerRow(
                r.customer,
                r.period_start,
                r.spend,
                r.spend_as_of,
                r.change_pct,
                r.alerts,
                counts.get(r.customer.id, 0),
                tuple(usage.get(r.customer.id, ())),
            )
            for r in shown
        ]
        filtered = bool(search or only_alerts or only_anomalies)
        return page(
            "manager/customers.html",
            request,
            rows=rows,
            pager=pager,
            q=search or "",
            sort=sort_by,
            order=direction,
            only_alerts=only_alerts,
            only_anomalies=only_anomalies,
            filtered=filtered,
            sorts=SORTS,
            usage_shown=USAGE_SHOWN,
            sort_url=lambda key: _sort_url(request, key, sort_by, direction),
        )


def _sort_url(request: Request[Any, Any, Any], key: str, current: str, direction: str) -> str:
    """The column header's link: sort by it, or flip the order when it is already the sort."""
    params = {k: v for k, v in query_items(request) if k not in ("sort", "order", "page")}
    params["sort"] = key
    if key == current:
        params["order"] = "asc" if direction == "desc" else "desc"
    return "/portal/customers?" + urlencode(params)
