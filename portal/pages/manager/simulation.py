"""Simulate a price change: the account managers' page over `portal.billing.simulation`.

A GET form (a simulation writes nothing, so the address of a comparison can be kept and
shared): a plan, with its prices editable in place (an edited copy, never stored), a
range of months, and all or some of the customers the viewer may see. The comparison
table shows each customer period's real amount beside the simulated one, totals per
currency, and the same rows as CSV.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, get
from litestar.params import FromQuery
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing import simulation
from portal.billing.plans import definition_of, list_plans
from portal.billing.schemas import Charge, Plan, PlanCreate
from portal.billing.simulation_schemas import MAX_CUSTOMERS, MAX_MONTHS, SimulationRequest, SimulationView
from portal.dependencies import Db, Portal
from portal.http.csv_cells import Cell, csv_text
from portal.http.downloads import attachment
from portal.infrastructure.domain_errors import Invalid
from portal.infrastructure.periods import local_date
from portal.pages.access import STAFF_GUARDS
from portal.pages.formatting import metric_label
from portal.pages.manager.common import customer_zones, visible_ids
from portal.pages.web import PageController, page
from portal.reports import repository as reports

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
STATUS_WORDS = {
    "finalized": "Invoice",
    "draft": "Draft, not approved yet",
    "void": "Voided invoice; rated now",
    "not_invoiced": "Not invoiced yet; rated now",
}
OUTCOME_WORDS = {"more": "Would pay more", "less": "Would pay less", "same": "No change"}
OUTCOME_PILLS = {"more": "warning", "less": "success", "same": "info"}


@dataclass(frozen=True, slots=True)
class PriceField:
    """One editable figure of the chosen plan: `name` is the form field."""

    name: str
    charge: str
    label: str
    value: str


def month_text(month: str) -> str:
    """'2026-11' as 'November 2026'."""
    return f"{_MONTH_NAMES[int(month[5:]) - 1]} {month[:4]}"


def skipped_groups(result: SimulationView, zones: dict[str, tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """What was left out, one sentence per reason: (reason, customers with the month)."""
    groups: dict[str, list[str]] = {}
    for s in result.skipped:
        name = zones.get(s.customer_id, (s.customer_id, "UTC"))[0]
        reason = s.reason[:1].upper() + s.reason[1:]
        groups.setdefault(reason, []).append(f"{name} ({month_text(s.month)})" if s.month else name)
    return list(groups.items())


def _months(first: str, last: str) -> list[str]:
    """Every month from `first` to `last` (YYYY-MM), inclusive; Invalid in plain words."""
    for label, value in (("From", first), ("To", last)):
        if not _MONTH.match(value):
            raise Invalid(f"{label}: “{value}” is not a month such as 2026-10.")
    a = int(first[:4]) * 12 + int(first[5:]) - 1
    b = int(last[:4]) * 12 + int(last[5:]) - 1
    if b < a:
        raise Invalid("To: the last month comes before the first.")
    if b - a + 1 > MAX_MONTHS:
        raise Invalid(f"To: at most {MAX_MONTHS} months at once.")
    return [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in range(a, b + 1)]


def _last_month(now: datetime) -> str:
    index = now.year * 12 + now.month - 2
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _charge_name(charge: Charge) -> str:
    """The charge as the invoice words it: its description, else its meter or key, readable."""
    return charge.description or metric_label(charge.meter or charge.key)


def price_fields(plan: Plan) -> list[PriceField]:
    """The figures of each charge a manager may try another value of."""
    out: list[PriceField] = []
    for charge in plan.charges:
        name = _charge_name(charge)
        if charge.model == "flat":
            out.append(
                PriceField(f"amount.{charge.key}", name, "Amount per period", format(charge.amount, "f"))
            )
            continue
        if charge.model == "per_unit":
            out.append(
                PriceField(f"price.{charge.key}", name, "Price per unit", format(charge.unit_price, "f"))
            )
        elif charge.model == "package":
            size = format(charge.package_size, "f")
            out.append(
                PriceField(
                    f"price.{charge.key}", name, f"Price per {size} units", format(charge.package_price, "f")
                )
            )
        else:
            lower = "0"
            for index, tier in enumerate(charge.tiers):
                label = (
                    f"Price per unit above {lower}"
                    if tier.up_to is None
                    else f"Price per unit from {lower} to {format(tier.up_to, 'f')}"
                )
                out.append(
                    PriceField(f"tier.{charge.key}.{index}", name, label, format(tier.unit_price, "f"))
                )
                lower = "0" if tier.up_to is None else format(tier.up_to, "f")
        out.append(
            PriceField(
                f"included.{charge.key}", name, "Included units", format(charge.included_quantity, "f")
            )
        )
    return out


def edited_copy(plan: Plan, values: dict[str, str]) -> PlanCreate | None:
    """The plan with the prices in `values` (form field → text), validated like a new plan;
    None when nothing differs. Raises Invalid naming the charge and figure."""
    definition = definition_of(plan)
    changed = False
    fields = {f.name: f for f in price_fields(plan)}
    for name, field in fields.items():
        given = values.get(name, "").strip().replace(",", "")
        if given == "":
            continue
        try:
            value = Decimal(given)
        except InvalidOperation:
            raise Invalid(
                f"{field.charge}, {field.label.lower()}: “{given}” is not a number such as 0.25."
            ) from None
        if not value.is_finite() or value < 0:
            raise Invalid(f"{field.charge}, {field.label.lower()}: must be a number of 0 or more.")
        if value == Decimal(field.value):
            continue
        changed = True
        kind, key, *rest = name.split(".")
        charge = next(c for c in definition["charges"] if c["key"] == key)
        if kind == "amount":
            charge["amount"] = str(value)
        elif kind == "included":
            charge["includedQuantity"] = str(value)
        elif kind == "tier":
            charge["tiers"][int(rest[0])]["unitPrice"] = str(value)
        elif charge["model"] == "package":
            charge["packagePrice"] = str(value)
        else:
            charge["unitPrice"] = str(value)
    if not changed:
        return None
    definition["name"] = f"{plan.name} (edited)"[:200]
    try:
        return msgspec.convert(definition, PlanCreate)
    except msgspec.ValidationError as exc:
        raise Invalid(f"The edited prices do not make a valid plan: {exc}.") from None


@dataclass(frozen=True, slots=True)
class Form:
    plan_id: str
    first: str
    last: str
    everyone: bool
    chosen: tuple[str, ...]
    prices: dict[str, str]
    run: bool


def _form(request: Request[Any, Any, Any], plans: list[Plan], now: datetime) -> Form:
    query = request.query_params
    default = _last_month(now)
    plan_id = query.get("plan") or (plans[0].id if plans else "")
    # Edits belong to the plan whose fields were on the form (the plan may have been switched).
    prices_for = query.get("prices-for")
    prices = {
        k: v
        for k, v in query.items()
        if isinstance(v, str)
        and k.split(".")[0] in ("amount", "price", "tier", "included")
        and prices_for == plan_id
    }
    return Form(
        plan_id,
        query.get("from") or default,
        query.get("to") or default,
        query.get("who", "all") != "some",
        tuple(v for v in query.getall("customer", []) if v),
        prices,
        query.get("run") == "1",
    )


class SimulationController(PageController):
    guards = STAFF_GUARDS

    @get("/simulation")
    async def simulation_page(
        self, request: Request[Any, Any, Any], db: Db, portal: Portal
    ) -> Template | Response[bytes]:
        """Parameters: plan, prices-for, amount./price./tier./included.<charge key>, from, to
        (months), who (all or some), customer (repeated), run=1, format=csv. Money is
        decided here, so it is read on the primary (`db`), in a read-only transaction."""
        now = portal.now()
        plans = await list_plans(db)
        form = _form(request, plans, now)
        visible, params = visible_ids(request)
        choices = await reports.customer_choices_in(db, customers_sql=visible, customers_params=params)
        plan = next((p for p in plans if p.id == form.plan_id), None)
        context: dict[str, Any] = {
            "plans": plans,
            "plan": plan,
            "form": form,
            "choices": choices,
            "fields": price_fields(plan) if plan else [],
            "max_customers": MAX_CUSTOMERS,
            "month_text": month_text,
            "error": None,
            "result": None,
        }
        if not form.run or not plans:
            return page("manager/simulation.html", request, **context)
        if plan is None:
            context["error"] = "Plan: choose one of the plans in the list."
            return page("manager/simulation.html", request, status_code=422, **context)
        try:
            result = await _simulate(db, request, form, plan, {c[0] for c in choices}, now, visible, params)
        except Invalid as exc:
            message = str(exc)
            context["error"] = message
            return page("manager/simulation.html", request, status_code=422, **context)
        zones = await customer_zones(
            db, {r.customer_id for r in result.rows} | {s.customer_id for s in result.skipped}
        )
        if request.query_params.get("format") == "csv":
            return _csv(result, zones)
        csv_query = [(k, v) for k, v in request.query_params.multi_items() if k != "format"]
        context["result"] = result
        return page(
            "manager/simulation.html",
            request,
            skipped=skipped_groups(result, zones),
            zones=zones,
            status_words=STATUS_WORDS,
            outcome_words=OUTCOME_WORDS,
            outcome_pills=OUTCOME_PILLS,
            csv_url="/portal/simulation?" + urlencode([*csv_query, ("format", "csv")]),
            **context,
        )

    @get("/simulation/prices")
    async def prices(
        self, request: Request[Any, Any, Any], db: Db, plan: FromQuery[str | None] = None
    ) -> Template:
        """The chosen plan's editable prices (htmx swaps them in when the plan changes)."""
        plans = await list_plans(db)
        chosen = next((p for p in plans if p.id == plan), None)
        return page(
            "manager/_simulation_prices.html",
            request,
            plan=chosen,
            fields=price_fields(chosen) if chosen else [],
            form=Form(plan or "", "", "", True, (), {}, False),
        )


async def _simulate(
    db: AsyncSession,
    request: Request[Any, Any, Any],
    form: Form,
    plan: Plan,
    visible: set[str],
    now: datetime,
    scope_sql: str,
    scope_params: dict[str, Any],
) -> SimulationView:
    months = _months(form.first, form.last)
    if not form.everyone:
        if not form.chosen:
            raise Invalid("Customers: choose at least one customer, or all of them.")
        if len(form.chosen) > MAX_CUSTOMERS:
            raise Invalid(f"Customers: at most {MAX_CUSTOMERS} at once.")
        if any(c not in visible for c in form.chosen):
            raise Invalid("Customers: choose customers from the list.")
    edited = edited_copy(plan, form.prices)
    body = SimulationRequest(
        customer_ids=None if form.everyone else sorted(set(form.chosen)),
        periods=months,
        plan_id=None if edited else plan.id,
        plan=edited,
    )
    try:
        return await simulation.simulate(
            db, body, now=now, customers_sql=scope_sql, customers_params=scope_params
        )
    except Invalid as exc:
        # The service names API fields ("periods: …"): the page says the rest in its words.
        raise Invalid(str(exc).split(": ", 1)[-1]) from None


CSV_HEADER = (
    "customer_id",
    "customer_name",
    "period_first_day",
    "period_last_day",
    "currency",
    "invoice_number",
    "invoice_status",
    "actual",
    "simulated",
    "difference",
    "difference_percent",
    "outcome",
)


def _csv(result: SimulationView, zones: dict[str, tuple[str, str]]) -> Response[bytes]:
    """One row per customer period, amounts as numbers a spreadsheet can add up."""
    rows: list[list[Cell]] = []
    for r in result.rows:
        tz = zones.get(r.customer_id, (r.customer_name, "UTC"))[1]
        last_day: date = local_date(r.period_end.timestamp() - 1, tz)
        rows.append(
            [
                r.customer_id,
                r.customer_name,
                local_date(r.period_start.timestamp(), tz).isoformat(),
                last_day.isoformat(),
                r.currency,
                r.actual.invoice_number,
                r.actual.status,
                Decimal(r.actual.amount),
                Decimal(r.simulated.amount),
                Decimal(r.difference),
                None if r.difference_percent is None else Decimal(r.difference_percent),
                r.outcome,
            ]
        )
    return attachment(
        csv_text(CSV_HEADER, rows).encode(),
        media_type="text/csv; charset=utf-8",
        filename="pricing-simulation.csv",
    )
