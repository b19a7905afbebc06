"""The drift report: what the last reconcile found between the live view (Redis) and the
authoritative hourly usage (Postgres), per customer and meter the viewer may see."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.params import FromQuery
from litestar.response import Template

from portal.catalog import service as catalog
from portal.dependencies import ReadDb
from portal.live import repository as live_repository
from portal.pages.access import STAFF_GUARDS
from portal.pages.manager.common import customer_zones, text_param, visible_ids
from portal.pages.web import PageController, page
from portal.reports import repository as reports
from portal.usage.combine import exact


class DriftController(PageController):
    guards = STAFF_GUARDS

    @get("/drift")
    async def drift(
        self, request: Request[Any, Any, Any], read_db: ReadDb, customer: FromQuery[str | None] = None
    ) -> Template:
        """Parameter: customer (an id). A report: read on the replica when there is one."""
        customer_id = text_param("customer", customer)
        run = await live_repository.latest_run(read_db)
        rows: list[tuple[Any, ...]] = []
        if run is not None:
            visible, params = visible_ids(request)
            found = await reports.drift_lines(
                read_db,
                run_id=run[0],
                customer_id=customer_id,
                customers_sql=visible,
                customers_params=params,
            )
            rows = [
                (cid, metric, exact(live), exact(billed), exact(diff))
                for cid, metric, live, billed, diff in found
            ]
        names = await customer_zones(read_db, {str(r[0]) for r in rows})
        units = {m.metric_name: m.unit for m in await catalog.list_meters(read_db)}
        return page(
            "manager/drift.html",
            request,
            run=run,
            rows=rows,
            names=names,
            units=units,
            customer=customer_id or "",
        )
