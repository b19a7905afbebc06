"""Catalog API: customers and meters (admin key)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post, put
from litestar.exceptions import ClientException, NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from portal.accounts import audit
from portal.catalog import service
from portal.catalog.schemas import BillingDetails, Customer, CustomerCreate, Meter, MeterCreate
from portal.dependencies import Db, Portal
from portal.http.created import created
from portal.http.openapi_answers import error_answers
from portal.keys.guard import key_actor

ADMIN = {"scope": "admin"}


class ConflictException(ClientException):
    status_code = 409


class CustomerController(Controller):
    """Customers: the caller's own ids, used as `customerId` in events."""

    path = "/v1/customers"
    tags = ["catalog"]
    opt = ADMIN

    @post("/", status_code=201, responses=error_answers(409))
    async def create(self, data: JSONBody[CustomerCreate], db: Db, portal: Portal) -> Response[Customer]:
        """Create a customer; 409 if the id exists. `Location` says where to read it."""
        try:
            customer = await service.create_customer(db, data)
        except service.AlreadyExists as exc:
            raise ConflictException(str(exc)) from exc
        portal.catalog.invalidate()
        return created(customer, "customers", customer.id)

    @get("/")
    async def list_(
        self,
        db: Db,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        after: FromQuery[str | None] = None,
    ) -> list[Customer]:
        """Customers ordered by id; page with `after=<last id>`."""
        return await service.list_customers(db, limit=limit, after=after)

    @get("/{customer_id:str}")
    async def get_(self, customer_id: FromPath[str], db: Db) -> Customer:
        customer = await service.get_customer(db, customer_id)
        if customer is None:
            raise NotFoundException(f"no customer {customer_id!r}")
        return customer

    @put("/{customer_id:str}/billing-details")
    async def billing_details(
        self,
        customer_id: FromPath[str],
        data: JSONBody[BillingDetails],
        db: Db,
        request: Request[Any, Any, Any],
    ) -> Customer:
        """Who the customer's invoices are addressed to: legal name (None: the name),
        billing address lines, tax id, and the billing contacts who are emailed each
        invoice and note as a PDF. Replaces the previous details; written to the audit log.
        Invoices already issued keep the details they were issued with."""
        before = await service.get_customer(db, customer_id)
        if before is None:
            raise NotFoundException(f"no customer {customer_id!r}")
        customer = await service.set_billing_details(db, customer_id, data)
        await audit.record(
            db,
            user_id=None,
            actor=key_actor(request),
            action="customer.billing_details",
            object_type="customer",
            object_id=customer_id,
            customer_id=customer_id,
            detail={
                "before": msgspec.to_builtins(before.billing_details()),
                "after": msgspec.to_builtins(customer.billing_details()),
            },
        )
        return customer


class MeterController(Controller):
    """Meters: how the events of one metric are aggregated."""

    path = "/v1/meters"
    tags = ["catalog"]
    opt = ADMIN

    @post("/", status_code=201, responses=error_answers(409))
    async def create(self, data: JSONBody[MeterCreate], db: Db, portal: Portal) -> Meter:
        """Create a meter; 409 if the metric name exists."""
        try:
            meter = await service.create_meter(db, data)
        except service.AlreadyExists as exc:
            raise ConflictException(str(exc)) from exc
        portal.catalog.invalidate()
        return meter

    @get("/")
    async def list_(self, db: Db) -> list[Meter]:
        return await service.list_meters(db)
