"""Approving and voiding an invoice, each behind a confirmation page that names the
customer, the period and the total.

The confirmation is a server-rendered page (it works without JavaScript): the review
queue's and the invoice page's buttons open it, and a POST that does not carry
`confirm=yes` answers with it instead of acting. Approving also carries the total the
reviewer confirmed: if the last re-rating under the lock comes to another amount (events
arrived in between), nothing is approved and the confirmation is shown again with the new
total, so a bill is never issued for an amount nobody saw.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import audit
from portal.billing import invoices, lifecycle
from portal.billing.schemas import InvoiceRow
from portal.billing.views import InvoiceView, money_text
from portal.catalog.schemas import Customer
from portal.catalog.service import get_customer
from portal.dependencies import Db, Portal
from portal.infrastructure.domain_errors import Conflict, Invalid
from portal.pages.access import STAFF_GUARDS, viewer
from portal.pages.formatting import instant, invoice_label, money, period_text
from portal.pages.manager.review import (
    FormState,
    complete_through_now,
    form_fields,
    invoice_of,
    review_page,
    sentence,
)
from portal.pages.web import PageController, page
from portal.state import PortalState

# Where a confirmation was opened from, so Cancel and the result go back there.
BACKS = ("review", "invoice")


class TotalMoved(Exception):
    """The re-rating under the lock came to another total than the one confirmed."""


def back_of(value: str | None) -> str:
    return value if value in BACKS else "review"


def back_url(back: str, invoice_id: int) -> str:
    return f"/portal/invoices/{invoice_id}" if back == "invoice" else f"/portal/review#invoice-{invoice_id}"


async def _rated(
    request: Request[Any, Any, Any], db: AsyncSession, portal: PortalState, invoice_id: int
) -> tuple[InvoiceRow, InvoiceView, Customer]:
    """The invoice the viewer may see (404 otherwise), a draft re-rated as the invoice page does."""
    row = await invoice_of(request, db, invoice_id)
    view = await invoices.get_invoice(
        db,
        invoice_id,
        now=portal.now(),
        grace=portal.settings.invoice_grace,
        complete_through=await complete_through_now(portal),
    )
    customer = await get_customer(db, row.customer_id)
    assert customer is not None  # invoices reference their customer
    return row, view, customer


def _confirm_page(
    template: str,
    request: Request[Any, Any, Any],
    view: InvoiceView,
    customer: Customer,
    back: str,
    *,
    status_code: int = 200,
    problem: str | None = None,
    values: dict[str, str] | None = None,
) -> Template:
    tz = customer.timezone
    return page(
        template,
        request,
        status_code=status_code,
        invoice=view,
        customer=customer,
        label=invoice_label(view.number, view.period_start, tz),
        period=period_text(view.period_start, view.period_end, tz),
        total=money(view.total, view.currency),
        review_after=instant(view.review_after, tz),
        back=back,
        cancel_url=back_url(back, view.id),
        problem=problem,
        values=values or {},
    )


class InvoiceActionsController(PageController):
    """Approve and void for account managers and admins (404 for invoices they may not see)."""

    guards = STAFF_GUARDS

    @get("/invoices/{invoice_id:int}/approve")
    async def confirm_approve(
        self, request: Request[Any, Any, Any], invoice_id: FromPath[int], db: Db, portal: Portal
    ) -> Template:
        """The confirmation: customer, period and the total as re-rated now. `back`
        (review or invoice) is where Cancel and the result lead."""
        _, view, customer = await _rated(request, db, portal, invoice_id)
        back = back_of(request.query_params.get("back"))
        return _confirm_page("manager/approve.html", request, view, customer, back)

    @post("/invoices/{invoice_id:int}/approve")
    async def approve(
        self, request: Request[Any, Any, Any], invoice_id: FromPath[int], db: Db, portal: Portal
    ) -> Response[Any]:
        """Approves only with `confirm=yes`; `total` (the amount confirmed, as the page
        showed it) must still be the total after the last re-rating."""
        invoice = await invoice_of(request, db, invoice_id)
        data = await form_fields(request)
        back = back_of(data.get("back"))
        if data.get("confirm") != "yes":
            _, view, customer = await _rated(request, db, portal, invoice_id)
            return _confirm_page("manager/approve.html", request, view, customer, back)
        session = viewer(request)
        confirmed = data.get("total")
        try:
            async with db.begin_nested():
                approved = await lifecycle.approve(
                    db,
                    invoice_id,
                    approved_by=session.email,
                    now=portal.now(),
                    grace=portal.settings.invoice_grace,
                    complete_through=await complete_through_now(portal),
                )
                total = money_text(approved.total, approved.currency)
                if confirmed is not None and total != confirmed:
                    raise TotalMoved(total)
                await audit.record(
                    db,
                    user_id=session.user_id,
                    actor=session.email,
                    action="invoice.approve",
                    object_type="invoice",
                    object_id=str(invoice_id),
                    customer_id=invoice.customer_id,
                    detail={"number": approved.number, "total": total},
                )
        except TotalMoved:
            _, view, customer = await _rated(request, db, portal, invoice_id)
            was = money(confirmed, view.currency)
            return _confirm_page(
                "manager/approve.html",
                request,
                view,
                customer,
                back,
                status_code=409,
                problem=f"The total changed from {was} since the confirmation was shown "
                "(events arrived in between). Nothing was approved: check the new total and confirm again.",
            )
        except (Conflict, Invalid) as exc:
            if back == "invoice":
                _, view, customer = await _rated(request, db, portal, invoice_id)
                return _confirm_page(
                    "manager/approve.html",
                    request,
                    view,
                    customer,
                    back,
                    status_code=409,
                    problem=sentence(exc),
                )
            return await review_page(
                request, db, portal, status_code=409, form=FormState(invoice_id, "approve", sentence(exc), {})
            )
        if back == "invoice":
            return Redirect(f"/portal/invoices/{invoice_id}?done=approved", status_code=303)
        return Redirect(f"/portal/review?done=approved&invoice={invoice_id}", status_code=303)

    @get("/invoices/{invoice_id:int}/void")
    async def confirm_void(
        self, request: Request[Any, Any, Any], invoice_id: FromPath[int], db: Db, portal: Portal
    ) -> Template:
        """The confirmation, with the reason to give."""
        _, view, customer = await _rated(request, db, portal, invoice_id)
        back = back_of(request.query_params.get("back"))
        return _confirm_page("manager/void.html", request, view, customer, back)

    @post("/invoices/{invoice_id:int}/void")
    async def void(
        self, request: Request[Any, Any, Any], invoice_id: FromPath[int], db: Db, portal: Portal
    ) -> Response[Any]:
        """A reason is required (422 with the form again without one); voids only with
        `confirm=yes`, otherwise answers with the confirmation, the reason kept."""
        invoice = await invoice_of(request, db, invoice_id)
        session = viewer(request)
        data = await form_fields(request)
        back = back_of(data.get("back"))
        reason = data.get("reason", "").strip()
        missing = "Reason: say why the invoice is voided."
        if not reason and back == "review" and data.get("confirm") != "yes":
            return await review_page(
                request, db, portal, status_code=422, form=FormState(invoice_id, "void", missing, data)
            )
        # A reason that could not be stored is refused before the confirmation, not after it.
        problem = (
            missing
            if not reason
            else "Reason: it must not contain NUL characters."
            if "\x00" in reason
            else None
        )
        if problem or data.get("confirm") != "yes":
            _, view, customer = await _rated(request, db, portal, invoice_id)
            return _confirm_page(
                "manager/void.html",
                request,
                view,
                customer,
                back,
                status_code=422 if problem else 200,
                problem=problem,
                values={"reason": data.get("reason", "").replace("\x00", "")},
            )
        try:
            async with db.begin_nested():
                _, reissued = await lifecycle.void(
                    db,
                    invoice_id,
                    reason=reason,
                    now=portal.now(),
                    complete_through=await complete_through_now(portal),
                )
                await audit.record(
                    db,
                    user_id=session.user_id,
                    actor=session.email,
                    action="invoice.void",
                    object_type="invoice",
                    object_id=str(invoice_id),
                    customer_id=invoice.customer_id,
                    reason=reason,
                    detail={
                        "number": invoice.number,
                        "reissued_id": None if reissued is None else reissued.id,
                    },
                )
        except (Conflict, Invalid) as exc:
            _, view, customer = await _rated(request, db, portal, invoice_id)
            return _confirm_page(
                "manager/void.html",
                request,
                view,
                customer,
                back,
                status_code=409 if isinstance(exc, Conflict) else 422,
                problem=sentence(exc),
                values={"reason": data.get("reason", "")},
            )
        if back == "invoice":
            return Redirect(f"/portal/invoices/{invoice_id}?done=voided", status_code=303)
        return Redirect(f"/portal/review?done=voided&invoice={invoice_id}", status_code=303)
