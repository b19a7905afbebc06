"""`GET /v1/customers/{id}/usage`: a customer's usage of one meter."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from litestar import Controller, get
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, FromQuery

from portal.catalog import service as catalog
from portal.dependencies import Db, Portal, ReadDb
from portal.http.schemas import check_time
from portal.infrastructure.periods import period_for
from portal.usage.anomaly_detection import recent_anomalies
from portal.usage.combine import exact
from portal.usage.completeness import complete_through as read_complete_through
from portal.usage.schemas import AnomalyOut, UsageOut, UsagePointOut
from portal.usage.service import billed_usage, live_usage


class UsageController(Controller):
    path = "/v1/customers/{customer_id:str}/usage"
    tags = ["usage"]
    opt = {"scope": "admin"}

    @get("/")
    async def usage(
        self,
        customer_id: FromPath[str],
        metric: FromQuery[str],
        db: Db,
        read_db: ReadDb,
        portal: Portal,
        start: FromQuery[datetime | None] = None,
        end: FromQuery[datetime | None] = None,
        granularity: FromQuery[Literal["hour", "day"]] = "hour",
        source: FromQuery[Literal["live", "billed"]] = "live",
    ) -> UsageOut:
        """Usage of `metric` in [start, end) (default: the current billing period), as
        exact decimals in strings. Hours are the customer's local hours; days its local
        days. `completeThrough`: every event accepted before it is in Postgres, and in
        the replica this read (the billed numbers) when DATABASE_READ_URL names one."""
        customer = await catalog.get_customer(db, customer_id)
        if customer is None:
            raise NotFoundException(f"no customer {customer_id!r}")
        meter = await catalog.get_meter(db, metric)
        if meter is None:
            raise ValidationException(f"metric: unknown meter {metric!r}")
        for name, value in (("start", start), ("end", end)):
            if value is not None and value.tzinfo is None:
                raise ValidationException(f"{name}: needs an offset (Z or ±hh:mm)")
            try:
                check_time(name, value)
            except ValueError as exc:
                raise ValidationException(str(exc)) from None
        period = period_for(portal.now(), customer.timezone)
        start = start or period.start
        end = end or period.end
        if end <= start:
            raise ValidationException("end: must be after start")
        if (end - start).days > 400:
            raise ValidationException("end: a range covers at most 400 days")
        complete_through = await read_complete_through(portal.live, read_db)
        args = dict(
            customer_id=customer_id,
            tz_name=customer.timezone,
            meter=meter,
            start=start,
            end=end,
            granularity=granularity,
        )
        if source == "live":
            usage = await live_usage(portal.live, **args)  # type: ignore[arg-type]
        else:
            usage = await billed_usage(read_db, **args)  # type: ignore[arg-type]
        return UsageOut(
            customer_id=customer_id,
            metric=metric,
            source=source,
            granularity=granularity,
            start=start,
            end=end,
            complete_through=complete_through,
            total=exact(usage.total),
            series=[UsagePointOut(p.start, exact(p.value)) for p in usage.series],
        )


class AnomalyController(Controller):
    path = "/v1/customers/{customer_id:str}/anomalies"
    tags = ["usage"]
    opt = {"scope": "admin"}

    @get("/")
    async def anomalies(
        self, customer_id: FromPath[str], db: Db, read_db: ReadDb, portal: Portal
    ) -> list[AnomalyOut]:
        """Spikes, drops to zero and unusual silence in the last 48 settled hours of each
        sum or count meter, against the same hours of earlier weeks (or days)."""
        customer = await catalog.get_customer(db, customer_id)
        if customer is None:
            raise NotFoundException(f"no customer {customer_id!r}")
        return await recent_anomalies(read_db, customer, await catalog.list_meters(db), now=portal.now())
