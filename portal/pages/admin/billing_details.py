"""A customer's billing details (who its invoices are addressed to, and who receives them
by email), edited by an admin: the same schema and service as
`PUT /v1/customers/{id}/billing-details`, written to the audit log."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.catalog import service
from portal.catalog.schemas import BillingDetails, Customer
from portal.dependencies import Db
from portal.pages.admin.common import ADMIN_PATH, AdminController, record
from portal.pages.admin.forms import UNPROCESSABLE, Form, read_form
from portal.pages.web import page

LABELS = {
    "legalName": "Legal name",
    "billingAddress": "Billing address",
    "taxId": "Tax id",
    "billingEmails": "Billing contacts",
}
HINTS = {
    "legalName": "at most 200 characters on one line",
    "billingAddress": "at most 6 lines of at most 120 characters",
    "taxId": "at most 64 characters on one line",
    "billingEmails": "email addresses such as ap@example.com, one a line, at most 10, each once",
}


def _lines(value: Any) -> list[str]:
    text = value if isinstance(value, str) else ""
    return [line.strip() for line in text.splitlines() if line.strip()]


def details_form(customer: Customer) -> Form:
    return Form(
        labels=LABELS,
        hints=HINTS,
        values={
            "legalName": customer.legal_name or "",
            "billingAddress": "\n".join(customer.billing_address),
            "taxId": customer.tax_id or "",
            "billingEmails": "\n".join(customer.billing_emails),
        },
    )


async def _customer(db: AsyncSession, customer_id: str) -> Customer:
    customer = await service.get_customer(db, customer_id)
    if customer is None:
        raise NotFoundException("There is no such customer.")
    return customer


class BillingDetailsPagesController(AdminController):
    @get("/customers/{customer_id:str}/billing")
    async def show(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        db: Db,
        saved: FromQuery[str | None] = None,
    ) -> Template:
        customer = await _customer(db, customer_id)
        return page(
            "admin/customer_billing.html",
            request,
            customer=customer,
            form=details_form(customer),
            saved=saved,
        )

    @post("/customers/{customer_id:str}/billing", status_code=303)
    async def save(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str], db: Db
    ) -> Response[Any]:
        customer = await _customer(db, customer_id)
        data = await read_form(request)
        form = Form(labels=LABELS, hints=HINTS, values={name: str(data.get(name) or "") for name in LABELS})
        try:
            details = msgspec.convert(
                {
                    "legalName": form.values["legalName"].strip() or None,
                    "billingAddress": _lines(form.values["billingAddress"]),
                    "taxId": form.values["taxId"].strip() or None,
                    "billingEmails": _lines(form.values["billingEmails"]),
                },
                BillingDetails,
            )
        except msgspec.ValidationError as exc:
            form.refuse(str(exc), default="legalName")
            return page(
                "admin/customer_billing.html",
                request,
                status_code=UNPROCESSABLE,
                customer=customer,
                form=form,
                saved=None,
            )
        updated = await service.set_billing_details(db, customer.id, details)
        await record(
            db,
            request,
            action="customer.billing_details",
            object_type="customer",
            object_id=customer.id,
            customer_id=customer.id,
            detail={
                "before": msgspec.to_builtins(customer.billing_details()),
                "after": msgspec.to_builtins(updated.billing_details()),
            },
        )
        return Redirect(
            f"{ADMIN_PATH}/customers/{quote(customer.id, safe='')}/billing?saved=1", status_code=303
        )
