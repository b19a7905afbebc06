"""Customers and meters: list and create, through the same service and schema as the API
(POST /v1/customers, POST /v1/meters), and the same cache invalidation afterwards. Each
creation writes its audit entry in the request's transaction."""

from __future__ import annotations

import typing
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromQuery
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.currencies import is_currency
from portal.catalog import service
from portal.catalog.schemas import Aggregation, Customer, CustomerCreate, Meter, MeterCreate
from portal.dependencies import Db, Portal
from portal.infrastructure.periods import customer_zones
from portal.pages.admin.common import ADMIN_PATH, ADMIN_TZ, AdminController, record
from portal.pages.admin.forms import UNPROCESSABLE, Form, read_form, text_of
from portal.pages.web import page

CUSTOMERS_SHOWN = 200
AGGREGATIONS: tuple[str, ...] = typing.get_args(Aggregation)
AGGREGATION_LABELS = {
    "sum": "sum: add the quantities",
    "count": "count: count the events",
    "max": "max: the largest quantity",
    "unique_count": "unique_count: distinct values of a dimension",
    "latest": "latest: the last quantity sent",
}
_NAMING = "1 to {n} letters, digits or . _ : @ + - (no spaces)"

CUSTOMER_LABELS = {"id": "Customer id", "name": "Name", "timezone": "Time zone", "currency": "Currency"}
CUSTOMER_HINTS = {
    "id": _NAMING.format(n=128),
    "name": "give a name of 1 to 200 characters",
    "currency": "three capital letters, an ISO 4217 code such as EUR or USD",
}
METER_LABELS = {
    "metricName": "Metric name",
    "aggregation": "Aggregation",
    "unit": "Unit",
    "groupBy": "Group-by dimensions",
    "uniqueBy": "Unique by",
}
METER_HINTS = {
    "metricName": _NAMING.format(n=100),
    "aggregation": f"one of {', '.join(AGGREGATIONS)}",
    "unit": "give a unit of 1 to 50 characters (call, GB, seat…)",
    "groupBy": "dimension names of 1 to 64 characters",
    "uniqueBy": "a dimension name of 1 to 64 characters",
}


@lru_cache(maxsize=1)
def time_zones() -> tuple[str, ...]:
    """The zones a customer may be created in (the same list the schema checks against)."""
    return tuple(sorted(customer_zones()))


def customer_form(values: dict[str, str] | None = None) -> Form:
    return Form(
        labels=CUSTOMER_LABELS,
        hints=CUSTOMER_HINTS,
        values=values or {"id": "", "name": "", "timezone": "UTC", "currency": "USD"},
    )


def meter_form(values: dict[str, str] | None = None) -> Form:
    return Form(
        labels=METER_LABELS,
        hints=METER_HINTS,
        values=values or {"metricName": "", "aggregation": "sum", "unit": "", "groupBy": "", "uniqueBy": ""},
    )


def split_dimensions(value: str) -> list[str]:
    """ "region, plan" → ["region", "plan"]: commas separate, blanks are dropped."""
    return [part.strip() for part in value.split(",") if part.strip()]


class CatalogPagesController(AdminController):
    @get("/customers")
    async def customers(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        after: FromQuery[str | None] = None,
        created: FromQuery[str | None] = None,
    ) -> Template:
        return await _customers_page(request, db, customer_form(), after=after, created=created)

    @post("/customers", status_code=303)
    async def create_customer(self, request: Request[Any, Any, Any], db: Db, portal: Portal) -> Response[Any]:
        data = await read_form(request)
        form = customer_form({name: text_of(data, name) for name in CUSTOMER_LABELS})
        customer = await _new_customer(db, form)
        if customer is None:
            return await _customers_page(request, db, form, status_code=UNPROCESSABLE)
        await record(
            db,
            request,
            action="customer.created",
            object_type="customer",
            object_id=customer.id,
            customer_id=customer.id,
            detail={"name": customer.name, "timezone": customer.timezone, "currency": customer.currency},
        )
        # As POST /v1/customers does: ingest on this process sees the customer at once.
        portal.catalog.invalidate()
        return Redirect(f"{ADMIN_PATH}/customers?created={quote(customer.id, safe='')}", status_code=303)

    @get("/meters")
    async def meters(
        self, request: Request[Any, Any, Any], db: Db, created: FromQuery[str | None] = None
    ) -> Template:
        return await _meters_page(request, db, meter_form(), created=created)

    @post("/meters", status_code=303)
    async def create_meter(self, request: Request[Any, Any, Any], db: Db, portal: Portal) -> Response[Any]:
        data = await read_form(request)
        form = meter_form({name: text_of(data, name) for name in METER_LABELS})
        meter = await _new_meter(db, form)
        if meter is None:
            return await _meters_page(request, db, form, status_code=UNPROCESSABLE)
        await record(
            db,
            request,
            action="meter.created",
            object_type="meter",
            object_id=meter.metric_name,
            detail={
                "aggregation": meter.aggregation,
                "unit": meter.unit,
                "group_by": list(meter.group_by),
                "unique_by": meter.unique_by,
            },
        )
        # As POST /v1/meters does: ingest on this process accepts the meter's events at once.
        portal.catalog.invalidate()
        return Redirect(f"{ADMIN_PATH}/meters?created={quote(meter.metric_name, safe='')}", status_code=303)


async def _new_customer(db: AsyncSession, form: Form) -> Customer | None:
    """The customer the form describes, created; None with the form's errors set."""
    form.require("id", "name", "currency")
    if not form.ok:
        return None
    # "eur" is EUR to whoever typed it (the API, read by programs, keeps its exact pattern);
    # a form shown again keeps what was typed.
    values = {**form.values, "currency": str(form.values["currency"]).strip().upper()}
    try:
        body = msgspec.convert(values, CustomerCreate)
    except msgspec.ValidationError as exc:
        form.refuse(str(exc), default="id")
        return None
    if not is_currency(body.currency):
        form.fail("currency", f"{body.currency} is not an ISO 4217 currency code")
        return None
    try:
        return await service.create_customer(db, body)
    except service.AlreadyExists:
        form.fail("id", f"a customer “{body.id}” already exists")
        return None


async def _new_meter(db: AsyncSession, form: Form) -> Meter | None:
    """The meter the form describes, created; None with the form's errors set."""
    form.require("metricName", "unit")
    if not form.ok:
        return None
    body_in: dict[str, Any] = {
        **form.values,
        "groupBy": split_dimensions(form.values["groupBy"]),
        "uniqueBy": form.values["uniqueBy"] or None,
    }
    try:
        body = msgspec.convert(body_in, MeterCreate)
    except msgspec.ValidationError as exc:
        form.refuse(str(exc), default="metricName")
        return None
    try:
        return await service.create_meter(db, body)
    except service.AlreadyExists:
        form.fail("metricName", f"a meter “{body.metric_name}” already exists")
        return None


async def _customers_page(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    form: Form,
    *,
    after: str | None = None,
    created: str | None = None,
    status_code: int = 200,
) -> Template:
    customers = await service.list_customers(db, limit=CUSTOMERS_SHOWN + 1, after=after)
    more = len(customers) > CUSTOMERS_SHOWN
    customers = customers[:CUSTOMERS_SHOWN]
    next_url = (
        f"{ADMIN_PATH}/customers?after={quote(customers[-1].id, safe='')}" if more and customers else None
    )
    return page(
        "admin/customers.html",
        request,
        status_code=status_code,
        customers=customers,
        form=form,
        zones=time_zones(),
        created=created,
        after=after,
        next_url=next_url,
        tz=ADMIN_TZ,
    )


async def _meters_page(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    form: Form,
    *,
    created: str | None = None,
    status_code: int = 200,
) -> Template:
    meters = await service.list_meters(db)
    return page(
        "admin/meters.html",
        request,
        status_code=status_code,
        meters=meters,
        form=form,
        aggregations=[(a, AGGREGATION_LABELS.get(a, a)) for a in AGGREGATIONS],
        created=created,
        tz=ADMIN_TZ,
    )
