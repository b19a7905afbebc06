"""The drift report: what the last reconcile found between the live view (Redis) and the
authoritative hourly usage (Postgres), per customer and meter the viewer may see."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.params import FromQuery
from litestar.response import Template
from sqlalchemy import text

from portal.dependencies import Db
from portal.infrastructure.db import values
from portal.live import repository as live_repository
from portal.pages.access import STAFF_GUARDS
from portal.pages.manager.common import customer_zones, text_param, visible_ids
from portal.pages.web import PageController, page
from portal.usage.combine import exact


class DriftController(PageController):
    guards = STAFF_GUARDS

    @get("/drift")
    async def drift(
        self, request: Request[Any, Any, Any], db: Db, customer: FromQuery[str | None] = None
    ) -> Template:
        """Parameter: customer (an id)."""
        customer_id = text_param("customer", customer)
        run = await live_repository.latest_run(db)
        rows: list[tuple[Any, ...]] = []
        if run is not None:
            visible, params = visible_ids(request)
            result = await db.execute(
                text(
                    "SELECT customer_id, metric_name, live_value, billed_value, drift FROM live_drift "
                    f"WHERE run_id = :run AND customer_id IN {visible} "
                    "AND (CAST(:c AS text) IS NULL OR customer_id = :c) "
                    "ORDER BY abs(drift) DESC, customer_id, metric_name LIMIT 500"
                ),
                {**params, "run": run[0], "c": customer_id},
            )
            rows = [
                (cid, metric, exact(live), exact(billed), exact(diff))
                for cid, metric, live, billed, diff in (values(r) for r in result)
            ]
        names = await customer_zones(db, {str(r[0]) for r in rows})
        return page(
            "manager/drift.html", request, run=run, rows=rows, names=names, customer=customer_id or ""
        )
