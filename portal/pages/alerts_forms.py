"""The alert forms as a customer fills them in: what was typed (kept on a 422), the request
body it becomes (validated by the API's own msgspec schemas), and each mistake tied to the
field it is about, in words a customer understands. Pure functions: no database."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

from alerts.thresholds import Basis
from portal.alerting.schemas import ChannelCreate, Rule, RuleCreate
from portal.infrastructure.typed_numbers import DECIMAL_HINT, number_hint, typed_decimal
from portal.pages.formatting import grouped

MAX_LEVELS = 10  # what the rule schema allows
BUDGET_LEVELS = "50%, 80%, 100%"  # what "Set a monthly budget" suggests
# What a percentage is of, when the form decides: spend against the budget typed with it,
# a meter against the quantity its plan includes. (Rules on the plan's minimum commitment
# are made through the API; the form edits them as they are.)
PERCENT_OF: dict[bool, Basis] = {True: "budget", False: "included"}
CHANNEL_KINDS = (("email", "Email address"), ("slack", "Slack webhook URL"), ("webhook", "Webhook URL"))
_EMAIL = re.compile(r"^[^@\s/?#:]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_SLACK_PREFIX = "https://hooks.slack.com/services/"
_AT_PATH = re.compile(r"^(?P<message>.*) - at `\$\.(?P<path>[A-Za-z]+)(\[(?P<index>\d+)\])?`$")
_PREFIXED = re.compile(r"^(?P<path>[A-Za-z]+)(\[(?P<index>\d+)\])?: (?P<message>.*)$")
# Between levels: ";", "and", whitespace, or a comma that is not a thousands separator
# ("5,000, 10,000" and "50,80,100" both read as people mean them).
_LEVEL_SEPARATOR = re.compile(r"\s*(?:;|\band\b|,(?!\d{3}(?!\d)))\s*|\s+", re.IGNORECASE)
LEVELS_ID = "rule-levels"
_UNIT_AFTER = re.compile(r"(?<=[\d%])\s+(?!and\b)[^\W\d_][\w/-]*", re.IGNORECASE)  # "5,000 calls"
_CURRENCY_BEFORE = re.compile(r"\b[A-Z]{3}\s*(?=\d)")  # "EUR 500"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One mistake: the input it is about (its id, for the summary's link) and the sentence."""

    field_id: str
    message: str


@dataclass(slots=True)
class RuleForm:
    """A rule form's values as typed (strings), so a refused form shows them again."""

    name: str = ""
    watch: str = ""  # a meter's name, or "" for spend
    levels: str = ""  # "5,000 and 10,000", "50%, 80%, 100%"
    basis: str = "absolute"  # decided from `levels` (fixed when editing)
    budget: str = ""
    channel_ids: list[str] = field(default_factory=list)
    notify_recovery: bool = False
    notify_forecast: bool = False
    kind: str = "threshold"
    errors: list[FieldError] = field(default_factory=list)

    def error(self, field_id: str) -> str | None:
        return next((e.message for e in self.errors if e.field_id == field_id), None)

    @classmethod
    def budget_preset(cls) -> RuleForm:
        """What "Set a monthly budget" opens with: spend against a budget at 50/80/100 %."""
        return cls(name="Monthly budget", basis="budget", levels=BUDGET_LEVELS)

    @classmethod
    def anomaly_preset(cls) -> RuleForm:
        """What "Watch for unusual usage" opens with: anomalies of every meter."""
        return cls(name="Unusual usage", kind="anomaly")

    @classmethod
    def of_rule(cls, rule: Rule) -> RuleForm:
        percent = "%" if rule.basis != "absolute" else ""
        return cls(
            name=rule.name,
            watch=rule.metric_name or "",
            levels=", ".join(f"{grouped(v)}{percent}" for v in rule.levels),
            basis=rule.basis,
            budget=rule.budget or "",
            channel_ids=[str(c) for c in rule.channel_ids],
            notify_recovery=rule.notify_recovery,
            notify_forecast=rule.notify_forecast,
            kind=rule.kind,
        )


@dataclass(slots=True)
class ChannelForm:
    name: str = ""
    kind: str = "email"
    destination: str = ""
    errors: list[FieldError] = field(default_factory=list)

    def error(self, field_id: str) -> str | None:
        return next((e.message for e in self.errors if e.field_id == field_id), None)


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _all(form: Any, name: str) -> list[str]:
    return [v.strip() for v in form.getall(name, []) if isinstance(v, str)]


# "1.000,5": dots grouping thousands and a decimal comma (the European way of writing).
_EUROPEAN = re.compile(r"\d\.\d{3}(?:\.\d{3})*,\d")
# "1,5": a comma between digits that does not group thousands. Between levels a comma is
# followed by a space ("1, 5"); without one it may be a decimal comma (1.5 to a European
# reader), so it is refused rather than read as two levels.
_DIGIT_COMMA_DIGIT = re.compile(r"(\d+),(?!\d{3}(?!\d))(\d+)")


def _number(raw: str) -> Decimal | None:
    """A number as people type it: "1,000", "80 %", "12.5". None if it is not one (also
    "300,50": see `typed_decimal`)."""
    return typed_decimal(raw.replace("%", "").replace(" ", ""))


def is_id(text: str) -> bool:
    """A channel id as a form sends it: ASCII digits, at most 18 (a 64-bit id)."""
    return text.isascii() and text.isdigit() and len(text) <= 18


def split_levels(text: str) -> list[str]:
    """The levels typed in one field, each as typed ("5,000", "80%"); unit words and the
    currency code ("calls", "EUR") are dropped, a lone "%" joins the number before it."""
    text = re.sub(r"\s+%", "%", text.strip())
    text = _CURRENCY_BEFORE.sub("", _UNIT_AFTER.sub("", text))
    return [p for p in _LEVEL_SEPARATOR.split(text) if p]


# The schema's field names → the input and the words the form uses for it.
_RULE_FIELDS = {
    "name": ("rule-name", "Rule name"),
    "metricName": ("rule-watch", "What to watch"),
    "basis": (LEVELS_ID, "Notify at"),
    "budget": ("rule-budget", "Monthly budget"),
    "levels": (LEVELS_ID, "Notify at"),
    "channelIds": ("rule-channels", "Channels"),
    "kind": ("rule-name", "Rule"),
}


def _rule_error(message: str, typed_levels: list[str]) -> FieldError:
    """A schema or service message ("levels[0]: must be…", "Expected … - at `$.name`") as a
    sentence about the form's field; `typed_levels[i]` is the i-th level as typed."""
    match = _AT_PATH.match(message) or _PREFIXED.match(message)
    path, index, detail = (match["path"], match["index"], match["message"]) if match else ("", None, message)
    if path == "levels" and index is not None and int(index) < len(typed_levels):
        return FieldError(LEVELS_ID, f"Notify at: “{typed_levels[int(index)]}”: {_plain(detail)}.")
    field_id, label = _RULE_FIELDS.get(path, ("rule-name", "Rule"))
    if path == "name":
        detail = "give a name of 1 to 100 characters"
    elif path == "levels" and "length" in detail:
        detail = f"give 1 to {MAX_LEVELS} levels"
    elif path == "basis" and "included" in detail:
        detail = "your plan includes no quantity of this meter, so give amounts rather than percentages"
    elif path == "basis" and "commitment" in detail:
        detail = "the minimum commitment is money: this rule must watch spend"
    elif path == "budget" and "only for basis" in detail:
        detail = "a budget is only used with percentages of spend; clear it or give percentages"
    elif path == "channelIds":
        detail = "one of the chosen channels no longer exists; reload the page"
    elif path == "metricName" and detail.startswith("no meter"):
        detail = "there is no such meter"
    return FieldError(field_id, f"{label}: {_plain(detail)}.")


def _plain(detail: str) -> str:
    detail = detail.rstrip(".").replace("metricName", "a meter")
    return re.sub(r"Expected `str` of length >= 1", "must not be empty", detail)


def _levels(typed: RuleForm, fixed: Rule | None) -> tuple[list[str], Basis | None, list[FieldError]]:
    """The levels as numbers for the schema, and the basis they imply: percentages of the
    budget (spend) or of the included quantity (a meter), else amounts; an edited rule
    keeps its own basis, so its "%" signs may be left out."""
    if _EUROPEAN.search(typed.levels):
        return [], None, [FieldError(LEVELS_ID, f"Notify at: “{typed.levels}”: {DECIMAL_HINT}.")]
    if (pair := _DIGIT_COMMA_DIGIT.search(typed.levels)) is not None:
        first, second = pair.groups()
        return (
            [],
            None,
            [
                FieldError(
                    LEVELS_ID,
                    f"Notify at: “{pair.group(0)}” could be one number or two levels: write "
                    f"{first}.{second} for one, or {first}, {second} (a comma and a space) for two.",
                )
            ],
        )
    raw = split_levels(typed.levels)
    if not raw:
        return [], None, [FieldError(LEVELS_ID, "Notify at: give at least one level, such as 5,000 or 80%.")]
    errors: list[FieldError] = []
    numbers: list[str] = []
    for text in raw:
        number = _number(text)
        if number is None:
            hint = f": {said}" if (said := number_hint(text.replace("%", "").replace(" ", ""))) else ""
            errors.append(FieldError(LEVELS_ID, f"Notify at: “{text}” is not a number{hint}."))
        elif number <= 0:  # also checked by the schema; here so every mistake is listed at once
            errors.append(FieldError(LEVELS_ID, f"Notify at: “{text}” must be greater than 0."))
        else:
            numbers.append(str(number))
    if len(raw) > MAX_LEVELS:
        errors.append(FieldError(LEVELS_ID, f"Notify at: give at most {MAX_LEVELS} levels."))
    percents = {t.endswith("%") for t in raw}
    if fixed is not None:
        basis: Basis | None = fixed.basis
        if fixed.basis == "absolute" and True in percents:
            errors.append(
                FieldError(LEVELS_ID, "Notify at: this rule's levels are amounts, not percentages.")
            )
    elif len(percents) > 1:
        basis = None
        errors.append(FieldError(LEVELS_ID, "Notify at: give either amounts or percentages, not both."))
    else:
        basis = PERCENT_OF[typed.watch == ""] if True in percents else "absolute"
    return numbers, basis, errors


def parse_rule_form(form: Any, *, fixed: Rule | None = None) -> tuple[RuleForm, RuleCreate | None]:
    """The typed values and, if they make a valid rule, the body to save. `fixed` is the
    rule being edited: what it watches (kind, meter, basis) comes from it, not the form."""
    typed = RuleForm(
        name=_text(form, "name"),
        watch=_text(form, "watch"),
        levels=_text(form, "levels"),
        budget=_text(form, "budget"),
        channel_ids=_all(form, "channel"),
        notify_recovery=_text(form, "notify_recovery") != "",
        notify_forecast=_text(form, "notify_forecast") != "",
    )
    if fixed is not None:
        typed.kind, typed.watch, typed.basis = fixed.kind, fixed.metric_name or "", fixed.basis
    elif _text(form, "kind") == "anomaly":
        # Anomaly rules have no levels, basis or budget: whatever else was posted is ignored.
        typed.kind, typed.basis, typed.budget, typed.levels = "anomaly", "absolute", "", ""
        typed.notify_recovery, typed.notify_forecast = False, False
    errors: list[FieldError] = []
    levels: list[str] = []
    if typed.kind != "anomaly":
        levels, basis, errors = _levels(typed, fixed)
        typed.basis = basis or typed.basis
    budget: str | None = None
    if typed.basis == "budget":
        number = _number(typed.budget) if typed.budget else None
        if not typed.budget:
            errors.append(
                FieldError(
                    "rule-budget", "Monthly budget: give the amount your percentages are of, such as 500."
                )
            )
        elif number is None:
            hint = f": {said}" if (said := number_hint(typed.budget)) else ""
            errors.append(
                FieldError("rule-budget", f"Monthly budget: “{typed.budget}” is not an amount{hint}.")
            )
        elif number <= 0:
            errors.append(FieldError("rule-budget", f"Monthly budget: “{typed.budget}” must be more than 0."))
        else:
            budget = str(number)
    elif typed.budget.strip() and typed.kind != "anomaly" and not errors:
        # Saved without it, the typed budget would vanish without a word.
        errors.append(
            FieldError(
                "rule-budget",
                "Monthly budget: a budget is only used with percentages (such as 80%); clear it, "
                "or give the levels as percentages of it.",
            )
        )
    channel_ids = [int(c) for c in typed.channel_ids if is_id(c)]
    if len(channel_ids) != len(typed.channel_ids):
        errors.append(FieldError("rule-channels", "Channels: choose channels from the list."))
    if errors:
        typed.errors = errors
        return typed, None
    body: dict[str, Any] = {
        "name": typed.name,
        "levels": levels,
        "metricName": typed.watch or None,
        "basis": typed.basis,
        "budget": budget,
        "notifyRecovery": typed.notify_recovery,
        "notifyForecast": typed.notify_forecast,
        "kind": typed.kind,
        "channelIds": channel_ids,
    }
    try:
        return typed, msgspec.convert(body, RuleCreate)
    except msgspec.ValidationError as exc:
        typed.errors = [_rule_error(str(exc), split_levels(typed.levels))]
        return typed, None


def rule_service_error(typed: RuleForm, message: str) -> RuleForm:
    """The form again with a service's refusal (unknown meter or channel) on its field."""
    typed.errors = [_rule_error(message, split_levels(typed.levels))]
    return typed


def parse_channel_form(form: Any) -> tuple[ChannelForm, ChannelCreate | None]:
    """The typed values and, if they are usable, the API body: an email address becomes a
    mailto:// URL, a webhook URL a json(s):// one; a Slack webhook URL is used as is."""
    typed = ChannelForm(
        name=_text(form, "name"), kind=_text(form, "kind") or "email", destination=_text(form, "destination")
    )
    errors: list[FieldError] = []
    if not typed.name or len(typed.name) > 100:
        errors.append(FieldError("channel-name", "Channel name: give a name of 1 to 100 characters."))
    url = ""
    if typed.kind == "email":
        if not _EMAIL.match(typed.destination):
            errors.append(
                FieldError(
                    "channel-destination",
                    f"Email address: “{typed.destination}” is not an email address such as ops@example.com.",
                )
            )
        url = f"mailto://{typed.destination}"
    elif typed.kind == "slack":
        if not typed.destination.startswith(_SLACK_PREFIX):
            errors.append(
                FieldError(
                    "channel-destination",
                    "Slack webhook URL: it starts with "
                    f"{_SLACK_PREFIX} (Slack shows it when you add an incoming webhook).",
                )
            )
        url = typed.destination
    elif typed.kind == "webhook":
        scheme, _, rest = typed.destination.partition("://")
        if scheme not in ("http", "https") or not rest:
            errors.append(
                FieldError(
                    "channel-destination", "Webhook URL: give an address starting with https:// (or http://)."
                )
            )
        url = f"{'jsons' if scheme == 'https' else 'json'}://{rest}"
    else:
        errors.append(FieldError("channel-kind", "Send to: choose email, Slack or webhook."))
    if errors:
        typed.errors = errors
        return typed, None
    try:
        return typed, msgspec.convert({"name": typed.name, "destination": url}, ChannelCreate)
    except msgspec.ValidationError:
        typed.errors = [FieldError("channel-destination", "Address: at most 2,000 characters.")]
        return typed, None


def channel_service_error(typed: ChannelForm, message: str, *, conflict: bool) -> ChannelForm:
    """The form again with the service's refusal: a name in use, the most channels a
    customer may have, or an address the sender cannot use (its reason, which never
    repeats the secret parts of the URL)."""
    if conflict and message.startswith("channels: "):
        detail = message.removeprefix("channels: ").split(", the most", 1)[0]
        typed.errors = [
            FieldError(
                "channel-name",
                f"Channels: {detail}, the most one customer may have; delete one before adding another.",
            )
        ]
        return typed
    if conflict:
        typed.errors = [
            FieldError(
                "channel-name",
                f"Channel name: you already have a channel named “{typed.name}”; choose another name.",
            )
        ]
        return typed
    detail = message.split(": ", 1)[-1].rstrip(".")
    label = dict(CHANNEL_KINDS).get(typed.kind, "Address")
    typed.errors = [FieldError("channel-destination", f"{label}: it cannot be used ({detail}).")]
    return typed
