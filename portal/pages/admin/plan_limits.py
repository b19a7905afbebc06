"""A plan's limits on its admin page: per meter a limit per billing period (blank: none),
hard or soft, and whether the plan's customers may lower it for themselves.

Saving replaces the plan's limits in a savepoint (a refused form changes nothing and comes
back, 422, each problem on its field); the service writes the audit entry. Customers' own
limits above a lowered plan limit are held to it when checked.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import quote

from litestar import Request, Response, post
from litestar.datastructures import FormMultiDict
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.plans import get_plan
from portal.billing.repository import plans as plan_store
from portal.catalog import service as catalog
from portal.dependencies import Db, Portal
from portal.entitlements import service as entitlements
from portal.entitlements.limits import Enforcement
from portal.entitlements.schemas import PlanLimitIn, PlanLimits
from portal.infrastructure.domain_errors import Invalid
from portal.pages.access import viewer
from portal.pages.admin.common import ADMIN_PATH, AdminController
from portal.pages.admin.forms import UNPROCESSABLE, Form, text_of
from portal.pages.formatting import metric_label
from portal.pages.limits_view import PlanRow, limit_body, plan_rows, read_quantity
from portal.pages.web import page

DONE = {"limits": "The plan's limits are saved. Checks use them within seconds."}


def _labels(rows: list[PlanRow]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for row in rows:
        name = metric_label(row.meter.metric_name)
        labels[f"limit.{row.meter.metric_name}"] = f"{name}: limit"
        labels[f"enforcement.{row.meter.metric_name}"] = f"{name}: hard or soft"
        labels[f"lower.{row.meter.metric_name}"] = f"{name}: customers may lower"
    return labels


def limits_form(rows: list[PlanRow]) -> Form:
    """The form filled with the plan's limits as they stand."""
    form = Form(labels=_labels(rows))
    for row in rows:
        name = row.meter.metric_name
        form.values[f"limit.{name}"] = "" if row.rule is None else format(row.rule.quantity, "f")
        form.values[f"enforcement.{name}"] = "hard" if row.rule is None else row.rule.enforcement
        form.values[f"lower.{name}"] = row.rule is not None and row.rule.customer_may_lower
    return form


def read_limits_form(rows: list[PlanRow], data: FormMultiDict) -> tuple[Form, PlanLimits | None]:
    """The form as typed, each problem on its field, and the limits to save (None while
    anything is wrong). A meter the form does not name keeps its limit."""
    form = Form(labels=_labels(rows))
    limits: list[PlanLimitIn] = []
    for row in rows:
        name = row.meter.metric_name
        limit_field, enforcement_field, lower_field = f"limit.{name}", f"enforcement.{name}", f"lower.{name}"
        if limit_field not in data:
            if row.rule is not None:
                rule = row.rule
                limits.append(
                    limit_body(
                        PlanLimitIn,
                        name,
                        rule.quantity,
                        rule.enforcement,
                        customer_may_lower=rule.customer_may_lower,
                    )
                )
            continue
        typed = text_of(data, limit_field)
        enforcement = text_of(data, enforcement_field) or "hard"
        may_lower = text_of(data, lower_field) == "1"
        form.values.update({limit_field: typed, enforcement_field: enforcement, lower_field: may_lower})
        if enforcement not in ("hard", "soft"):
            form.fail(enforcement_field, "choose hard or soft")
            continue
        if not typed:
            continue
        quantity, problem = read_quantity(typed, row.meter.unit)
        if quantity is None:
            form.fail(limit_field, (problem or "").rstrip("."))
            continue
        limits.append(
            limit_body(
                PlanLimitIn, name, quantity, cast(Enforcement, enforcement), customer_may_lower=may_lower
            )
        )
    return form, (PlanLimits(limits=limits) if form.ok else None)


async def plan_page(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    plan_id: str,
    *,
    form: Form | None = None,
    status_code: int = 200,
) -> Template:
    """The plan's admin page: charges, discounts, subscribers, and its limits with their form."""
    from portal.pages.admin.plans import MODEL_LABELS  # plans.py imports this module

    plan = await get_plan(db, plan_id)  # NotFound: the 404 page
    subscribers = await plan_store.plan_subscribers(db, plan_id)
    units = {m.metric_name: m.unit for m in await catalog.list_meters(db)}
    rows = await plan_rows(db, plan_id)
    return page(
        "admin/plan.html",
        request,
        status_code=status_code,
        plan=plan,
        subscribers=subscribers,
        models=MODEL_LABELS,
        units=units,
        limit_rows=rows,
        limits_form=form or limits_form(rows),
        limits_notice=DONE.get(request.query_params.get("done") or ""),
    )


class PlanLimitPagesController(AdminController):
    @post("/plans/{plan_id:str}/limits", status_code=303)
    async def set_limits(
        self, request: Request[Any, Any, Any], db: Db, portal: Portal, plan_id: FromPath[str]
    ) -> Response[Any]:
        await get_plan(db, plan_id)  # NotFound: the 404 page
        rows = await plan_rows(db, plan_id)
        form, body = read_limits_form(rows, await request.form())
        if body is not None:
            who = viewer(request)
            try:
                async with db.begin_nested():
                    await entitlements.set_plan_limits(db, plan_id, body, actor=who.email)
            except Invalid as exc:
                form.refuse(str(exc).removeprefix("limits: "), default=next(iter(form.labels), ""))
        if not form.ok:
            return await plan_page(request, db, plan_id, form=form, status_code=UNPROCESSABLE)
        await portal.entitlements.changed()
        url = f"{ADMIN_PATH}/plans/{quote(plan_id, safe='')}?done=limits#limits"
        return Redirect(url, status_code=303)
