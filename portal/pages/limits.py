"""Limits: a customer's usage limits per billing period, with this period's use of each, for
everyone who may see the customer. The customer's own users lower a limit where their plan
lets them (or go back to the plan's); account managers and admins set the customer's own
limits within the plan's on the same page.

Each change runs in a savepoint of the request's transaction, so a refused one changes
nothing and the page comes back (422) with the problem next to the field and what was typed
kept; a saved one redirects (303) to the page with a fixed message key, never user text in
the URL. The service writes the audit entry; this process's entitlement cache forgets the
customer's limits at once (other web processes within `entitlement_cache_seconds`).
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import FormMultiDict
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.catalog.schemas import Customer
from portal.dependencies import Db, Portal
from portal.entitlements import service as entitlements
from portal.entitlements.limits import Enforcement, staff_limit_error
from portal.entitlements.schemas import CustomerLimits as CustomerLimitsIn
from portal.entitlements.schemas import LimitIn
from portal.infrastructure.domain_errors import Invalid
from portal.pages.access import staff_only, viewer, visible_customer
from portal.pages.admin.forms import UNPROCESSABLE, Form, text_of
from portal.pages.formatting import measure, metric_label
from portal.pages.limits_view import (
    ENFORCEMENT_STAFF_TEXT,
    ENFORCEMENT_TEXT,
    CustomerLimits,
    customer_limits,
    limit_body,
    read_quantity,
)
from portal.pages.web import PageController, page
from portal.state import PortalState

DONE = {
    "lowered": "Your new limit is saved. It counts from now on, for this period and the next ones.",
    "plan": "Your plan's limit applies again.",
    "staff": "The customer's own limits are saved. They count from now on.",
}
ENFORCEMENTS = ("hard", "soft")


def _url(customer_id: str, done: str | None = None) -> str:
    url = f"/portal/customers/{quote(customer_id, safe='')}/limits"
    return f"{url}?done={done}" if done else url


async def customer_user_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: the customer's own users lower their limits; staff use the staff form."""
    if viewer(connection).is_staff:  # type: ignore[arg-type]
        raise PermissionDeniedException(
            "This form is for the customer's own users. Set the customer's limits in the form for staff."
        )


def staff_form_labels(state: CustomerLimits) -> dict[str, str]:
    labels: dict[str, str] = {}
    for meter in state.meters:
        name = metric_label(meter.metric_name)
        labels[f"limit.{meter.metric_name}"] = f"{name}: own limit"
        labels[f"enforcement.{meter.metric_name}"] = f"{name}: hard or soft"
    return labels


def staff_form(state: CustomerLimits) -> Form:
    """The staff form filled with the customer's own limits as they stand."""
    form = Form(labels=staff_form_labels(state))
    for row in state.staff_rows:
        name = row.meter.metric_name
        form.values[f"limit.{name}"] = "" if row.own is None else format(row.own.quantity, "f")
        default = row.plan.enforcement if row.plan is not None else "hard"
        form.values[f"enforcement.{name}"] = row.own.enforcement if row.own is not None else default
    return form


async def _render(
    request: Request[Any, Any, Any],
    portal: PortalState,
    db: AsyncSession,
    customer: Customer,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    typed: dict[str, str] | None = None,
    staff: Form | None = None,
) -> Template:
    state = await customer_limits(db, portal.entitlements, customer, now=portal.now())
    is_staff = viewer(request).is_staff
    done = request.query_params.get("done") or ""
    notice = DONE.get(done)
    if notice and done != "plan":
        # A limit set at or below this period's use takes effect at once: say so where the
        # change was made, not only in the card's pill.
        refused = [metric_label(v.metric_name) for v in state.views if v.reached and v.enforcement == "hard"]
        if refused:
            whose = "The customer's" if is_staff else "Your"
            notice += (
                f" {whose} use this period has already reached the hard limit on "
                f"{', '.join(refused)}: further usage there is refused until the period ends."
            )
    return page(
        "limits/home.html",
        request,
        status_code=status_code,
        customer=customer,
        state=state,
        notice=notice,
        errors=errors or {},
        typed=typed or {},
        staff_form=(staff or staff_form(state)) if is_staff else None,
        enforcement_text=ENFORCEMENT_STAFF_TEXT if is_staff else ENFORCEMENT_TEXT,
    )


class LimitPagesController(PageController):
    """The limits page and its two forms (PAGE_GUARDS: signed in, customer visible, CSRF)."""

    @get("/customers/{customer_id:str}/limits")
    async def limits(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str], db: Db, portal: Portal
    ) -> Template:
        """Read on the primary: the page right after a change shows the new limit."""
        customer = await visible_customer(request, db, customer_id)
        return await _render(request, portal, db, customer)

    @post("/customers/{customer_id:str}/limits/own", guards=[customer_user_only], status_code=303)
    async def set_own(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str], db: Db, portal: Portal
    ) -> Response[Any]:
        """A customer's user lowers its limit on one meter (`action=lower`, `limit`), or
        goes back to the plan's (`action=plan`)."""
        customer = await visible_customer(request, db, customer_id)
        data = await request.form()
        metric = text_of(data, "meter")
        action = text_of(data, "action") or "lower"
        typed = text_of(data, "limit")
        now = portal.now()
        state = await customer_limits(db, portal.entitlements, customer, now=now)
        view = state.view(metric)
        problem: str | None = None
        if view is None or not view.customer_may_change or action not in ("lower", "plan"):
            # Only a hand-made request names such a meter or action: the page has no form for it.
            return await _render(
                request,
                portal,
                db,
                customer,
                status_code=UNPROCESSABLE,
                errors={"": "That limit cannot be changed here. Nothing was saved."},
            )
        quantity = None
        if action == "lower":
            quantity, problem = read_quantity(typed, view.unit)
            if quantity is not None and view.plan_quantity is not None and quantity > view.plan_quantity:
                problem = (
                    f"Your plan's limit is {measure(view.plan_quantity, view.unit)}: you can set a lower "
                    "limit, not a higher one."
                )
        elif view.source == "plan":
            return Redirect(_url(customer.id, "plan"), status_code=303)  # already the plan's
        if problem is None:
            who = viewer(request)
            try:
                async with db.begin_nested():
                    await entitlements.set_own_limit(
                        db, customer.id, metric, quantity, user_id=who.user_id, actor=who.email, now=now
                    )
            except Invalid as exc:
                said = str(exc)
                problem = said[:1].upper() + said[1:] + "."
        if problem is not None:
            return await _render(
                request,
                portal,
                db,
                customer,
                status_code=UNPROCESSABLE,
                errors={metric: problem},
                typed={metric: typed},
            )
        await portal.entitlements.changed(customer.id)
        return Redirect(_url(customer.id, "lowered" if action == "lower" else "plan"), status_code=303)

    @post("/customers/{customer_id:str}/limits/staff", guards=[staff_only], status_code=303)
    async def set_customer_limits(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str], db: Db, portal: Portal
    ) -> Response[Any]:
        """Staff replace the customer's own limits: per meter `limit.<meter>` (blank: the
        plan's applies) and `enforcement.<meter>` (hard or soft). A meter the form does not
        name keeps its own limit."""
        customer = await visible_customer(request, db, customer_id)
        now = portal.now()
        state = await customer_limits(db, portal.entitlements, customer, now=now)
        form, body = read_staff_form(state, await request.form())
        if body is not None:
            who = viewer(request)
            try:
                async with db.begin_nested():
                    await entitlements.set_customer_limits(db, customer.id, body, actor=who.email, now=now)
            except Invalid as exc:
                form.refuse(str(exc).removeprefix("limits: "), default=next(iter(form.labels), ""))
        if not form.ok:
            return await _render(request, portal, db, customer, status_code=UNPROCESSABLE, staff=form)
        await portal.entitlements.changed(customer.id)
        return Redirect(_url(customer.id, "staff"), status_code=303)


def read_staff_form(state: CustomerLimits, data: FormMultiDict) -> tuple[Form, CustomerLimitsIn | None]:
    """The staff form as typed, with each problem on its field, and the limits to save
    (None while anything is wrong)."""
    form = Form(labels=staff_form_labels(state))
    limits: list[LimitIn] = []
    for row in state.staff_rows:
        name = row.meter.metric_name
        limit_field, enforcement_field = f"limit.{name}", f"enforcement.{name}"
        if limit_field not in data:
            if row.own is not None:  # not on the form the person saw: kept as it is
                limits.append(limit_body(LimitIn, name, row.own.quantity, row.own.enforcement))
            continue
        typed = text_of(data, limit_field)
        enforcement = text_of(data, enforcement_field) or "hard"
        form.values[limit_field] = typed
        form.values[enforcement_field] = enforcement
        if enforcement not in ENFORCEMENTS:
            form.fail(enforcement_field, "choose hard or soft")
            continue
        if not typed:
            continue
        quantity, problem = read_quantity(typed, row.meter.unit)
        if quantity is None:
            form.fail(limit_field, (problem or "").rstrip("."))
            continue
        chosen = cast(Enforcement, enforcement)
        refused = staff_limit_error(row.plan, quantity, chosen)
        if refused and row.plan is not None and quantity > row.plan.quantity:
            form.fail(
                limit_field,
                f"the plan's limit is {measure(row.plan.quantity, row.meter.unit)}: "
                "a customer's own limit can only be lower or the same",
            )
        elif refused:
            form.fail(enforcement_field, "the plan's limit is hard, so the customer's own limit is hard too")
        else:
            limits.append(limit_body(LimitIn, name, quantity, chosen))
    return form, (CustomerLimitsIn(limits=limits) if form.ok else None)


limit_page_handlers: list[Any] = [LimitPagesController]
