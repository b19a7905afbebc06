"""What the alerts home shows: the customer's rules in words, its channels, and the history
(recent notices with their deliveries, and test notices). Reads through the alerting
services the API uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from urllib.parse import unquote, urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from portal.alerting import channels as channel_service
from portal.alerting import deliveries as delivery_service
from portal.alerting import rules as rule_service
from portal.alerting.schemas import Channel, Delivery, Firing, Rule
from portal.billing.currencies import minor_units
from portal.billing.plans import get_plan
from portal.billing.subscriptions import list_subscriptions
from portal.catalog.schemas import Customer, Meter
from portal.catalog.service import list_meters
from portal.infrastructure.domain_errors import NotFound
from portal.pages.alerts_forms import RuleForm, is_id, split_levels
from portal.pages.formatting import grouped, measure, metric_label, money

HISTORY_SHOWN = 25
TESTS_SHOWN = 10

BASIS_TEXT = {
    "absolute": "Amounts",
    "budget": "% of monthly budget",
    "included": "% of included quantity",
    "commitment": "% of minimum commitment",
    "limit": "% of the usage limit",
}
KIND_TEXT = {
    "crossing": "Reached",
    "recovery": "Back below",
    "forecast": "Forecast",
    "anomaly": "Unusual usage",
}


@dataclass(frozen=True, slots=True)
class RuleView:
    rule: Rule
    watches: str  # "API calls" or "Spend"
    basis: str
    levels: list[str]  # as a customer reads them: "1,000 calls", "EUR 500.00", "80%"
    budget: str | None
    channels: str
    last_fired: datetime | None


@dataclass(frozen=True, slots=True)
class FiringView:
    firing: Firing
    kind: str
    level: str
    value: str


@dataclass(frozen=True, slots=True)
class AlertsHome:
    rules: list[RuleView]
    channels: list[Channel]
    firings: list[FiringView]
    tests: list[Delivery]


def shown_destination(masked: str) -> str:
    """The masked URL without Apprise's option query (retry=0&wait=0.5&…): noise to a customer."""
    return masked.split("?", 1)[0]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a channel sends, as its owner typed it: `summary` ("Webhook to
    hooks.example.com", "Email to ops@acme.test", "Slack #alerts") and, for a webhook, the
    `address` ("https://hooks.example.com/x"). Secret parts stay masked; Slack's webhook
    URL is all secret, so it is never shown."""

    summary: str
    address: str | None


def channel_target(kind: str, masked: str) -> Target:
    """The readable target of a channel from its masked Apprise URL (never the URL itself:
    `json://` is how Apprise names a webhook, not how its owner typed it)."""
    scheme, _, rest = shown_destination(masked).partition("://")
    where, _, path = rest.partition("/")
    if kind == "email":
        recipients = [unquote(p) for p in path.split("/") if "@" in unquote(p)]
        return Target(f"Email to {', '.join(recipients) or where}", None)
    if kind == "slack":
        parts = [unquote(p) for p in path.split("/") if p]
        room = next((p for p in parts if p.startswith(("#", "@"))), None)
        return Target(f"Slack {room}" if room else "Slack, through its incoming webhook", None)
    if kind == "webhook" and scheme in ("json", "jsons", "portal-json", "portal-jsons"):
        web = "https" if scheme.endswith("s") else "http"
        host = urlsplit(f"{web}://{where}").hostname or where
        return Target(f"Webhook to {host}", f"{web}://{rest}")
    return Target(f"Other service ({scheme})", shown_destination(masked))


def spend(value: object, currency: str) -> str:
    """'EUR 500.00' for a budget typed as 500: padded to the currency's minor unit, as
    invoices show amounts, and never rounded (a stored 12.345 stays 12.345)."""
    text = str(value)
    try:
        decimals = minor_units(currency)
    except ValueError:
        return money(text, currency)
    whole, dot, fraction = text.partition(".")
    if whole.lstrip("-").isdigit() and len(fraction) < decimals and (fraction.isdigit() or not dot):
        text = f"{whole}.{fraction.ljust(decimals, '0')}"
    return money(text, currency)


def amount(value: str, rule_basis: str, unit: str | None, currency: str) -> str:
    """A level or value in the rule's own terms: a percentage, a quantity, or money."""
    if rule_basis != "absolute":
        return f"{grouped(value)}%"
    return measure(value, unit) if unit is not None else spend(value, currency)


def describe_rule(
    rule: Rule, meters: dict[str, Meter], channels: dict[int, str], currency: str, last_fired: datetime | None
) -> RuleView:
    unit = meters[rule.metric_name].unit if rule.metric_name in meters else None
    if rule.kind == "anomaly":
        watches = f"Unusual usage of {metric_label(rule.metric_name) if rule.metric_name else 'every meter'}"
    else:
        watches = metric_label(rule.metric_name) if rule.metric_name else "Spend"
    names = [channels.get(c, f"channel {c}") for c in rule.channel_ids]
    return RuleView(
        rule=rule,
        watches=watches,
        basis=BASIS_TEXT.get(rule.basis, rule.basis),
        levels=[amount(v, rule.basis, unit if rule.metric_name else None, currency) for v in rule.levels],
        budget=None if rule.budget is None else spend(rule.budget, currency),
        channels=", ".join(names) if names else "All channels",
        last_fired=last_fired,
    )


def meter_units(meters: list[Meter]) -> dict[str, Meter]:
    return {m.metric_name: m for m in meters}


async def alerts_home(db: AsyncSession, customer: Customer) -> AlertsHome:
    rules = await rule_service.list_rules(db, customer.id)
    channels = await channel_service.list_channels(db, customer.id)
    meters = meter_units(await list_meters(db))
    firings = await delivery_service.list_firings(db, customer.id, limit=HISTORY_SHOWN)
    last: dict[int, datetime] = {}
    for f in firings:
        last[f.rule_id] = max(last.get(f.rule_id, f.fired_at), f.fired_at)
    names = {c.id: c.name for c in channels}
    views = [describe_rule(r, meters, names, customer.currency, last.get(r.id)) for r in rules]
    by_id = await rule_service.rules_of(db, customer.id, firings)
    history = [firing_view(f, by_id.get(f.rule_id), meters, customer.currency) for f in firings]
    recent = await delivery_service.list_deliveries(db, customer_id=customer.id, status=None, limit=200)
    tests = [d for d in recent if d.firing_id is None][:TESTS_SHOWN]
    return AlertsHome(views, channels, history, tests)


def firing_view(firing: Firing, rule: Rule | None, meters: dict[str, Meter], currency: str) -> FiringView:
    kind = KIND_TEXT.get(firing.kind, firing.kind)
    if firing.kind == "anomaly":
        found = meters.get(firing.metric_name or "")
        meter_unit = "" if found is None else found.unit
        return FiringView(
            firing,
            f"{kind} ({(firing.anomaly_kind or '').replace('_', ' ')})",
            f"expected {measure(firing.threshold, meter_unit)}",
            measure(firing.value, meter_unit),
        )
    if rule is None:  # not found (its customer's rules were removed): plain numbers
        return FiringView(firing, kind, grouped(firing.level), grouped(firing.value))
    meter = meters.get(rule.metric_name or "")
    unit = None if meter is None else meter.unit
    basis = rule.basis
    level = amount(firing.level, basis, unit, currency)
    threshold = amount(firing.threshold, "absolute", unit, currency)
    if basis != "absolute":
        level = f"{level} ({threshold})"
    return FiringView(firing, kind, level, amount(firing.value, "absolute", unit, currency))


async def plan_meters(db: AsyncSession, customer: Customer, now: datetime) -> list[Meter]:
    """The meters the customer's plan charges for (the plan in force at `now`, else its
    latest); every meter when it has no plan yet, so that rules can be set up first."""
    meters = await list_meters(db)
    subscriptions = await list_subscriptions(db, customer.id)
    current = [s for s in subscriptions if s.starts_at <= now and (s.ends_at is None or now < s.ends_at)]
    chosen = current or sorted(subscriptions, key=lambda s: s.starts_at)[-1:]
    if not chosen:
        return meters
    try:
        plan = await get_plan(db, chosen[-1].plan_id)
    except NotFound:
        return meters
    charged = {c.meter for c in plan.charges if c.meter}
    return [m for m in meters if m.metric_name in charged]


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def rule_summary(
    form: RuleForm, meters: dict[str, Meter], channels: dict[int, str], currency: str
) -> str | None:
    """One sentence saying what the form's rule will do ("Notify Ops webhook when API calls
    usage reaches 5,000 calls and 10,000 calls in a billing period."); None while its
    levels cannot be read yet."""
    chosen = [channels[int(c)] for c in form.channel_ids if is_id(c) and int(c) in channels]
    who = _and([f"“{n}”" for n in chosen]) if chosen else "every channel"
    meter = meters.get(form.watch)
    if form.kind == "anomaly":
        what = metric_label(meter.metric_name) if meter else "any meter"
        return (
            f"Notify {who} when usage of {what} is unusual for the hour or day: "
            "a spike, a drop to zero, or silence."
        )
    typed = split_levels(form.levels)
    numbers = [_number_or_none(t) for t in typed]
    if not typed or any(n is None or n <= 0 for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    percent = any(t.endswith("%") for t in typed) or form.basis != "absolute"
    subject = "spend" if meter is None else f"{metric_label(meter.metric_name)} usage"
    if percent:
        shares = _and([f"{grouped(v)}%" for v in values])
        if form.basis == "commitment":
            of = "of the plan's minimum commitment"
        elif meter is not None:
            of = "of the quantity your plan includes"
        else:
            budget = _number_or_none(form.budget)
            of = (
                f"of {money(budget, currency)}"
                if budget is not None and budget > 0
                else "of your monthly budget"
            )
        levels = f"{shares} {of}"
    else:
        levels = _and([money(v, currency) if meter is None else measure(v, meter.unit) for v in values])
    extra = []
    if form.notify_recovery:
        extra.append("when it falls back below")
    if form.notify_forecast:
        extra.append("when the trend says it will get there before the period ends")
    also = f", and {' and '.join(extra)}" if extra else ""
    return f"Notify {who} when {subject} reaches {levels} in a billing period{also}."


def _number_or_none(text: str) -> Decimal | None:
    """A typed number the summary can show: finite, below 10^20 (as rules allow) and with at
    most 20 decimals, so a typed "1e999999" cannot make a million-digit sentence."""
    try:
        value = Decimal(text.replace(",", "").replace("%", "").replace(" ", ""))
    except ArithmeticError:
        return None
    if not value.is_finite():
        return None
    exponent = value.as_tuple().exponent
    if (value and not -20 <= value.adjusted() < 20) or (isinstance(exponent, int) and exponent < -20):
        return None
    return value
