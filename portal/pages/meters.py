"""A meter's usage for one customer: chart, table, breakdown by a dimension, CSV export.

The numbers come from where the usage API reads them (`portal.usage.service`): the live
view for ranges it still holds (the current and the previous period), Postgres beyond it;
a breakdown by dimension always from Postgres (`usage_breakdown`). A range that is still
running refreshes itself like the overview: the page polls with the version it shows and
gets 204 while nothing changed.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template
from litestar.status_codes import HTTP_204_NO_CONTENT, HTTP_422_UNPROCESSABLE_ENTITY
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.plans import get_plan
from portal.billing.schemas import Plan
from portal.billing.subscriptions import list_subscriptions
from portal.catalog import service as catalog
from portal.catalog.schemas import Customer, Meter
from portal.dependencies import Db, Portal, ReadDb
from portal.http.csv_cells import Cell, csv_text
from portal.infrastructure.domain_errors import NotFound
from portal.infrastructure.periods import local_midnight
from portal.live import redis_keys as keys
from portal.pages.access import visible_customer
from portal.pages.charts import BarChart, daily_bars, hourly_bars
from portal.pages.formatting import instant, metric_label, to_local, unit_for
from portal.pages.service import TOTAL_LABELS
from portal.pages.usage_breakdown import usage_by_dimension
from portal.pages.usage_selection import (
    GRANULARITIES,
    RANGES,
    RawSelection,
    Selection,
    SelectionError,
    select,
)
from portal.pages.web import PageController, is_htmx, page
from portal.state import PortalState
from portal.usage.combine import exact, trimmed
from portal.usage.completeness import complete_through
from portal.usage.service import Usage, UsagePoint, billed_usage, live_usage

CHART_HEIGHT = 220  # px; the width is the page's
GROUP_CHART_HEIGHT = 120
# Charts drawn for a breakdown, and values listed in its table (a dimension may have
# thousands); the CSV has every value's usage.
MAX_GROUP_CHARTS = 12
MAX_GROUP_ROWS = 100
CSV_SUFFIX = ".csv"


@dataclass(frozen=True, slots=True)
class GroupView:
    value: str
    total: str
    unit: str  # as written after the total ("calls", "1 call")
    chart: BarChart


@dataclass(frozen=True, slots=True)
class MeterView:
    customer_id: str
    tz_name: str
    metric_name: str
    title: str  # the plan's charge description, else the metric name in words
    unit: str
    units: str  # the unit heading a column of values ("calls")
    total_unit: str  # the unit after the total ("calls", "call" after exactly 1)
    total_label: str
    total: str
    granularity: str
    source: str
    range_label: str
    shows_from: str
    shows_to: str
    complete_through: str
    chart: BarChart
    group: str | None
    groups: tuple[GroupView, ...]
    group_totals: tuple[tuple[str, str], ...]  # the largest MAX_GROUP_ROWS values
    group_count: int = 0  # every value seen in the range
    group_scale: str = ""  # the value axis every breakdown chart shares: 0 to this

    @property
    def version(self) -> str:
        """Changes whenever anything the view shows changes (the poll skips equal ones)."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:20]


def _chart(
    series: list[UsagePoint],
    selection: Selection,
    tz_name: str,
    unit: str,
    name: str,
    *,
    height: int = CHART_HEIGHT,
    scale_peak: Decimal | None = None,
) -> BarChart:
    """The whole range on the x axis (a running one shaded where it is still to come)."""
    draw = hourly_bars if selection.granularity == "hour" else daily_bars
    return draw(
        [(p.start, p.value) for p in series],
        height=height,
        tz_name=tz_name,
        unit=unit,
        name=name,
        start=selection.start,
        end=selection.range_end,
        scale_peak=scale_peak,
    )


def meter_title(meter: Meter, plan: Plan | None) -> str:
    """What the customer's plan calls the meter's usage ("API calls"): the description of
    its charge on the meter (one without dimensions first), else the metric name in words."""
    if plan is not None:
        charges = sorted(
            (c for c in plan.charges if c.meter == meter.metric_name and c.description.strip()),
            key=lambda c: bool(c.dimensions),
        )
        if charges:
            return charges[0].description.strip()
    return metric_label(meter.metric_name)


async def _total_usage(
    portal: PortalState,
    db: AsyncSession,
    customer: Customer,
    meter: Meter,
    selection: Selection,
    now: datetime,
) -> tuple[Usage, str]:
    args: dict[str, Any] = dict(
        customer_id=customer.id,
        tz_name=customer.timezone,
        meter=meter,
        start=selection.start,
        end=selection.end,
        granularity=selection.granularity,
    )
    # The live view keeps an hour's keys for two longest periods after it starts.
    if selection.start >= now - 2 * keys.MAX_PERIOD:
        return await live_usage(portal.live, **args), "live"
    return await billed_usage(db, **args), "stored"


async def meter_view(
    portal: PortalState,
    db: AsyncSession,
    customer: Customer,
    meter: Meter,
    selection: Selection,
    *,
    now: datetime,
    title: str = "",
    for_csv: bool = False,
) -> tuple[MeterView, Usage, list[Any]]:
    """The page's numbers, plus the raw series and groups (for the CSV). `title` names the
    usage in the charts (by default the metric name in words). `for_csv`: every value of a
    breakdown gets its series (sparse: the points with usage), not only the charted ones."""
    tz = customer.timezone
    title = title or metric_label(meter.metric_name)
    watermark = await complete_through(portal.live, db)
    usage, source = await _total_usage(portal, db, customer, meter, selection, now)
    groups: list[Any] = []
    if selection.group is not None:
        groups = await usage_by_dimension(
            db,
            customer_id=customer.id,
            tz_name=tz,
            meter=meter,
            dimension=selection.group,
            start=selection.start,
            end=selection.end,
            granularity=selection.granularity,
            series_for=None if for_csv else MAX_GROUP_CHARTS,
            sparse=for_csv,
        )
    charted = [] if for_csv else groups[:MAX_GROUP_CHARTS]
    # One value axis for every breakdown chart, so that their bars compare.
    shared = max((p.value for g in charted for p in g.series), default=Decimal(0))
    group_charts = tuple(
        _chart(
            g.series,
            selection,
            tz,
            meter.unit,
            f"{title} ({selection.group} {g.value})",
            height=GROUP_CHART_HEIGHT,
            scale_peak=shared,
        )
        for g in charted
    )
    view = MeterView(
        customer_id=customer.id,
        tz_name=tz,
        metric_name=meter.metric_name,
        title=title,
        unit=meter.unit,
        units=unit_for(2, meter.unit),
        total_unit=unit_for(usage.total, meter.unit),
        total_label=TOTAL_LABELS.get(meter.aggregation, "Total").replace("this period", "in this range"),
        total=exact(usage.total),
        granularity=selection.granularity,
        source=source,
        range_label=RANGES[selection.range],
        shows_from=instant(selection.start, tz),
        shows_to=instant(selection.range_end, tz),
        complete_through=instant(watermark, tz),
        chart=_chart(usage.series, selection, tz, meter.unit, title),
        group=selection.group,
        groups=tuple(
            GroupView(g.value, exact(g.total), unit_for(g.total, meter.unit), chart)
            for g, chart in zip(charted, group_charts, strict=True)
        ),
        group_totals=tuple((g.value, exact(g.total)) for g in groups[:MAX_GROUP_ROWS]),
        group_count=len(groups),
        group_scale=group_charts[0].scale_top if group_charts else "",
    )
    return view, usage, groups


def _point_end(start: datetime, granularity: str, tz_name: str) -> datetime:
    if granularity == "hour":
        return start + timedelta(hours=1)
    return local_midnight(to_local(start, tz_name).date() + timedelta(days=1), tz_name)


def usage_csv(meter: Meter, selection: Selection, tz_name: str, usage: Usage, groups: list[Any]) -> str:
    """One row per point (with a breakdown, per point and dimension value where that value
    had usage): ISO instants with the customer's offset, exact decimal values. Dimension
    values are the customer's own text: `csv_text` keeps a spreadsheet from running them."""
    head = ["start", "end", "meter"] + ([selection.group] if selection.group else []) + ["value", "unit"]
    rows: list[list[Cell]] = []

    def iso(at: datetime) -> str:
        return to_local(at, tz_name).isoformat()

    if selection.group is None:
        for p in usage.series:
            end = _point_end(p.start, selection.granularity, tz_name)
            rows.append([iso(p.start), iso(end), meter.metric_name, trimmed(p.value), meter.unit])
    else:
        for g in groups:
            for p in g.series:
                end = _point_end(p.start, selection.granularity, tz_name)
                rows.append(
                    [iso(p.start), iso(end), meter.metric_name, g.value, trimmed(p.value), meter.unit]
                )
    return csv_text(head, rows)


class MeterPagesController(PageController):
    """A meter's usage for every role that may see the customer."""

    @get("/customers/{customer_id:str}/meters/{metric_name:str}")
    async def meter(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        metric_name: FromPath[str],
        db: Db,
        read_db: ReadDb,
        portal: Portal,
        range_: Annotated[str, QueryParameter(name="range")] = "this_period",
        granularity: Annotated[str, QueryParameter(name="granularity")] = "hour",
        group: Annotated[str, QueryParameter(name="group")] = "",
        from_: Annotated[str, QueryParameter(name="from")] = "",
        to: Annotated[str, QueryParameter(name="to")] = "",
        seen: Annotated[str | None, QueryParameter(name="seen")] = None,
    ) -> Response[Any]:
        """The page, its live partial (htmx), or its CSV (`<metric>.csv`). The customer
        and the meter are read on the primary (one just made is found at once), the usage
        on the read replica when there is one."""
        customer = await visible_customer(request, db, customer_id)
        meter, as_csv = await _meter_of(db, metric_name)
        now = portal.now()
        subs = await list_subscriptions(read_db, customer.id)
        plan = await _plan_of(read_db, subs[-1].plan_id) if subs else None
        title = meter_title(meter, plan)
        raw = RawSelection(range_, granularity, group, from_, to)
        try:
            selection = select(
                raw,
                meter=meter,
                tz_name=customer.timezone,
                anchor_day=subs[-1].anchor_day if subs else 1,
                now=now,
                future_tolerance=portal.settings.future_tolerance,
            )
        except SelectionError as error:
            if as_csv:
                return Response(
                    str(error), status_code=HTTP_422_UNPROCESSABLE_ENTITY, media_type="text/plain"
                )
            return page(
                "customer/meter.html",
                request,
                status_code=HTTP_422_UNPROCESSABLE_ENTITY,
                customer=customer,
                meter=meter,
                title=title,
                units=unit_for(2, meter.unit),
                raw=raw,
                error=error,
                view=None,
                selection=None,
                ranges=RANGES,
                granularities=GRANULARITIES,
            )
        view, usage, groups = await meter_view(
            portal, read_db, customer, meter, selection, now=now, title=title, for_csv=as_csv
        )
        if as_csv:
            filename = f"{customer.id}-{meter.metric_name}-{selection.first_day}-{selection.last_day}.csv"
            # As long as the stored usage it lists: written in a thread, not on the event loop.
            body = await asyncio.to_thread(usage_csv, meter, selection, customer.timezone, usage, groups)
            return Response(
                body,
                media_type="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{filename}"'},
            )
        if is_htmx(request):
            if seen is not None and seen == view.version:
                return Response(content=None, status_code=HTTP_204_NO_CONTENT)
            return Template(
                template_name="customer/meter_panel.html", context={"view": view, "selection": selection}
            )
        return page(
            "customer/meter.html",
            request,
            customer=customer,
            meter=meter,
            title=title,
            units=unit_for(2, meter.unit),
            raw=raw,
            error=None,
            view=view,
            selection=selection,
            ranges=RANGES,
            granularities=GRANULARITIES,
        )


async def _plan_of(db: AsyncSession, plan_id: str) -> Plan | None:
    try:
        return await get_plan(db, plan_id)
    except NotFound:  # a plan removed after the subscription: the metric name will do
        return None


async def _meter_of(db: AsyncSession, metric_name: str) -> tuple[Meter, bool]:
    """The meter a path names, and whether its CSV is asked for (`api_calls.csv`). Metric
    names may contain dots: a meter named exactly so wins over the export of another."""
    meter = await catalog.get_meter(db, metric_name)
    if meter is not None:
        return meter, False
    if metric_name.endswith(CSV_SUFFIX):
        meter = await catalog.get_meter(db, metric_name[: -len(CSV_SUFFIX)])
        if meter is not None:
            return meter, True
    raise NotFoundException(f"There is no meter “{metric_name}”.")


meter_handlers = [MeterPagesController]
