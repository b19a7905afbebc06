"""The account managers' customers table: this period's usage, spend so far, the change
against last period, alerts and anomaly flags, sortable and filterable, 50 a page.

Spend is the customer page's "Cost so far": the current period rated at page load with
the same rating (`portal.billing.preview.spend_so_far`, a few bulk reads for all the
customers rated). Sorting by name or alerts and filtering run in SQL over every visible
customer (portal/reports/repository.py) and only the shown page is rated; sorting by
spend or change needs every matching customer rated first (spend sorts by currency, then
amount: amounts in different currencies are never compared). Usage is read for the shown
page only; anomaly flags (portal/usage/anomaly_detection.py) too, unless the "only with
anomalies" filter asks for them over every matching customer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlencode

from litestar import Request, get
from litestar.params import FromQuery
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.preview import spend_so_far
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
RATED_SORTS = ("spend", "change")  # need every matching customer rated before paging


@dataclass(frozen=True, slots=True)
class MeterTotal:
    metric_name: str
    unit: str
    total: str


@dataclass(frozen=True, slots=True)
class CustomerRow:
    customer: Customer
    period_start: datetime
    spend: str | None  # None: no subscription in the current period
    previous: Decimal | None  # last period's adjusted total
    change_pct: str | None
    alerts: int
    anomalies: int | None = None
    usage: tuple[MeterTotal, ...] = ()

    @property
    def share_of_previous(self) -> str | None:
        """This period's spend so far as a share of last period's whole total ("65.0"):
        what the table shows. A change ("-35.0 %") read as a fall every month until the
        period's last days, since it set a part period against a whole one."""
        return None if self.change_pct is None else format(Decimal(self.change_pct) + 100, "f")


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
    for found_row in found:
        currency = found_row.currency.strip()
        customer = Customer(found_row.id, found_row.name, found_row.timezone, currency, found_row.created_at)
        rows.append(
            CustomerRow(
                customer, found_row.period_start, None, found_row.previous, None, int(found_row.alerts)
            )
        )
    return rows, total


def change_pct(spend: Decimal, previous: Decimal | None) -> str | None:
    """Spend against last period's total, in percent to one place, half up (None when
    there is nothing to compare with)."""
    if previous is None or previous <= 0:
        return None
    return format(((spend - previous) * 100 / previous).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP), "f")


async def with_spend(db: AsyncSession, rows: list[CustomerRow], now: datetime) -> list[CustomerRow]:
    """The rows with this period's spend rated now (batched), its change and its period."""
    ratings = await spend_so_far(db, [r.customer for r in rows], now=now)
    out = []
    for row in rows:
        rating = ratings.get(row.customer.id)
        if rating is None:
            out.append(row)
            continue
        spend = money_text(rating.total, row.customer.currency)
        start = min((line.segment_start for line in rating.lines), default=row.period_start)
        out.append(
            replace(row, period_start=start, spend=spend, change_pct=change_pct(Decimal(spend), row.previous))
        )
    return out


def sort_rated(rows: list[CustomerRow], sort: str, order: str) -> list[CustomerRow]:
    """Rows by spend or change, customers without one last either way, ties by id. Spend
    sorts by currency first (A to Z), then amount: amounts in different currencies are
    never compared with each other."""

    def value(row: CustomerRow) -> str | None:
        return row.spend if sort == "spend" else row.change_pct

    by_id = sorted(rows, key=lambda r: r.customer.id)
    present = [r for r in by_id if value(r) is not None]
    absent = [r for r in by_id if value(r) is None]
    present.sort(key=lambda r: Decimal(value(r) or "0"), reverse=order == "desc")  # stable: ties by id
    if sort == "spend":
        present.sort(key=lambda r: r.customer.currency)
    return present + absent


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
        rated = sort_by in RATED_SORTS
        if only_anomalies or rated:
            every, _ = await _rows(
                read_db,
                request,
                q=search,
                only_alerts=only_alerts,
                sort=sort_by if not rated else "name",
                order=direction,
                limit=None,
                offset=0,
                now=now,
            )
            counts: dict[str, int] = {}
            if only_anomalies:
                counts = await anomaly_counts(read_db, [r.customer for r in every], now)
                every = [r for r in every if counts.get(r.customer.id, 0) > 0]
            if rated:
                every = sort_rated(await with_spend(read_db, every, now), sort_by, direction)
            pager = Pager(number, len(every), "/portal/customers", params)
            shown = every[pager.offset : pager.offset + PAGE_SIZE]
            if not only_anomalies:
                counts = await anomaly_counts(read_db, [r.customer for r in shown], now)
            if not rated:
                shown = await with_spend(read_db, shown, now)
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
            shown = await with_spend(read_db, shown, now)
        usage = await _usage(read_db, shown, now)
        rows = [
            replace(r, anomalies=counts.get(r.customer.id, 0), usage=tuple(usage.get(r.customer.id, ())))
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
