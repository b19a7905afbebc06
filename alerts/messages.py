"""What an alert says: the notice (everything a message needs, stored with the firing) and
its renderings, email (subject, text, HTML), Slack text, and the webhook payload.

Sentences are built here, in typed code, and the templates under templates/alerts/ lay
them out; the HTML one autoescapes, so a customer named `<script>` is shown, not run.
Human text reads as the portal's pages do (the same pure functions of
`portal.pages.formatting`, the one `portal` module imported here): money with the
currency's decimals ("USD 35.00"), quantities with their unit ("12,000 calls"), meters by
name ("API calls"), instants in the customer's zone with its abbreviation ("24 Nov 2026
14:03 CET"). The webhook payload is the machine form: exact decimal strings and ISO 8601
UTC instants, versioned (docs/webhooks.md).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, Inexact, localcontext
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from portal.infrastructure import bidi
from portal.pages.formatting import grouped, instant, measure, metric_label, money, unit_for

NoticeKind = Literal["crossing", "recovery", "forecast", "anomaly", "test"]
NOTICE_KINDS: tuple[NoticeKind, ...] = ("crossing", "recovery", "forecast", "anomaly", "test")

WEBHOOK_TYPE = "usage_portal.alert"
WEBHOOK_VERSION = 1

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates" / "alerts"


@dataclass(frozen=True, slots=True)
class AnomalyFacts:
    """What was unusual (portal/usage/anomaly_rule.py): `kind` spike, drop_to_zero or silence, in
    an hour (or a span of silent hours) or a whole local day (`granularity` hour or day) of
    the customer's zone `time_zone`; [start, end) as UTC instants; `expected` the median of
    its history. The used amount is the notice's `value`."""

    kind: Literal["spike", "drop_to_zero", "silence"]
    granularity: Literal["hour", "day"]
    start: datetime
    end: datetime
    expected: Decimal
    time_zone: str


@dataclass(frozen=True, slots=True)
class Notice:
    """One notice, as stored with its firing (or test delivery) and sent to each channel.

    `unit` is the meter's unit, or the currency for a spend rule (`metric_name` None);
    `threshold` and `value` are in that unit. `level_label` is the level as configured:
    "80%" (a percentage of the rule's base) or "1000 calls" (absolute). `value` is the usage
    (or spend) when the notice was made; `forecast_at` is when the trend reaches the level
    (forecast notices only). All datetimes are timezone-aware."""

    kind: NoticeKind
    firing_id: int | None
    customer_id: str
    customer_name: str
    rule_id: int | None
    rule_name: str
    metric_name: str | None
    unit: str
    level_label: str
    threshold: Decimal
    value: Decimal
    currency: str
    cost_so_far: Decimal | None
    period_start: datetime
    period_end: datetime
    forecast_at: datetime | None
    dashboard_url: str
    occurred_at: datetime
    # Anomaly notices only (kind "anomaly"): then `period_start`/`period_end` are the
    # anomaly's span, `value` what was used and `threshold` what was expected.
    anomaly: AnomalyFacts | None = None
    # The customer's IANA zone, in which the human text shows instants. Notices stored
    # before it existed read as UTC.
    time_zone: str = "UTC"
    # What a percentage level is of, in words: "budget" (a budget, the included quantity or
    # the commitment; notices stored before this field existed) or "limit" (the meter's
    # entitlement limit).
    base_word: str = "budget"

    def __post_init__(self) -> None:
        # Refused here, once, rather than rendered wrong in every message later.
        if self.kind not in NOTICE_KINDS:
            raise ValueError(f"kind: must be one of {', '.join(NOTICE_KINDS)}, not {self.kind!r}")
        if (self.kind == "anomaly") != (self.anomaly is not None):
            raise ValueError("anomaly: an anomaly notice needs its facts, and only it has them")
        if self.anomaly is not None:
            if self.metric_name is None:
                raise ValueError("metric_name: an anomaly is a meter's")
            for name in ("start", "end"):
                if getattr(self.anomaly, name).utcoffset() is None:
                    raise ValueError(f"anomaly.{name}: must be timezone-aware")
            _zone(self.anomaly.time_zone)
        _zone(self.time_zone)
        for name in ("period_start", "period_end", "occurred_at", "forecast_at"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{name}: must be timezone-aware, got {value!r}")
        for name in ("threshold", "value", "cost_so_far"):
            number = getattr(self, name)
            if number is not None and not number.is_finite():
                raise ValueError(f"{name}: must be a finite number, got {number!r}")


def render_email(notice: Notice) -> tuple[str, str, str]:
    """(subject, plain text, HTML) for an email. The subject is one line (whitespace in
    names is collapsed); the HTML escapes every value."""
    view = _view(notice)
    return (
        view["subject"],
        _env().get_template("email.txt").render(view),
        _env().get_template("email.html").render(view),
    )


def render_slack(notice: Notice) -> str:
    """Plain text for Slack, without a trailing newline (Apprise escapes `&`, `<`, `>` when
    it sends it as text, and would strip the newline)."""
    return _env().get_template("slack.txt").render(_view(notice)).rstrip("\n")


def webhook_payload(notice: Notice) -> dict[str, Any]:
    """The version 1 webhook body (docs/webhooks.md): numbers as exact decimal strings,
    instants as ISO 8601 UTC with `Z`, `id` stable across deliveries and retries of the
    same notice (receivers dedupe on it)."""
    return {
        "type": WEBHOOK_TYPE,
        "version": WEBHOOK_VERSION,
        "id": notice_id(notice),
        "kind": notice.kind,
        "occurredAt": _instant(notice.occurred_at),
        "customer": {"id": notice.customer_id, "name": notice.customer_name},
        "rule": {"id": notice.rule_id, "name": notice.rule_name},
        "meter": None if notice.metric_name is None else {"name": notice.metric_name, "unit": notice.unit},
        "level": {"label": notice.level_label, "threshold": _exact(notice.threshold)},
        "value": _exact(notice.value),
        "currency": notice.currency,
        "costSoFar": None
        if notice.cost_so_far is None
        else {"amount": _exact(notice.cost_so_far), "currency": notice.currency},
        "period": {"start": _instant(notice.period_start), "end": _instant(notice.period_end)},
        "forecastAt": None if notice.forecast_at is None else _instant(notice.forecast_at),
        "dashboardUrl": notice.dashboard_url,
        "anomaly": None
        if notice.anomaly is None
        else {
            "kind": notice.anomaly.kind,
            "granularity": notice.anomaly.granularity,
            "start": _instant(notice.anomaly.start),
            "end": _instant(notice.anomaly.end),
            "timeZone": notice.anomaly.time_zone,
            "expected": _exact(notice.anomaly.expected),
        },
    }


def notice_id(notice: Notice) -> str:
    """A delivery-independent id: `firing-<id>` for a recorded firing; otherwise a digest of
    what makes the notice unique: `test-…` (customer, time) for a test notice, and
    `<kind>-…` (customer, rule, level, period) for a firing not recorded yet."""
    if notice.firing_id is not None:
        return f"firing-{notice.firing_id}"
    if notice.kind == "test":
        parts = [notice.customer_id, _instant(notice.occurred_at)]
    elif notice.anomaly is not None:
        a = notice.anomaly
        parts = [
            notice.customer_id,
            str(notice.rule_id),
            notice.metric_name or "",
            a.kind,
            a.granularity,
            _instant(a.start),
        ]
    else:
        parts = [notice.customer_id, str(notice.rule_id), notice.level_label, _instant(notice.period_start)]
    return f"{notice.kind}-{hashlib.sha256(chr(31).join(parts).encode()).hexdigest()[:24]}"


# --- sentences -------------------------------------------------------------------------


def _view(n: Notice) -> dict[str, Any]:
    """Everything the templates show, as ready strings."""
    # Isolated here, not only by the templates' finalize: the name sits inside the sentences
    # built below, whose words after it an override in it would otherwise reverse.
    name = bidi.isolate(" ".join(n.customer_name.split()) or n.customer_id)
    if n.anomaly is not None:
        return _anomaly_view(n, n.anomaly, name)
    spend = n.metric_name is None
    meter = "spend" if n.metric_name is None else metric_label(n.metric_name)

    def amount(x: Decimal) -> str:
        return money(x, n.currency) if spend else measure(x, n.unit)

    value, threshold = amount(n.value), amount(n.threshold)
    base = _base(n)
    when = _when(n.forecast_at, n.time_zone) if n.forecast_at is not None else "before the period ends"
    if n.kind == "test":
        subject = f"Test notice for {name}"
        headline = (
            f"This is a test notice from the usage portal for {name}. If you can read it, this channel works."
        )
    elif base is not None:
        # "80% of its API calls budget: 8,000 of 10,000 calls": the level as a share of its base.
        what = f"{n.level_label} of its {meter} {n.base_word}"
        of_base = money(base, n.currency) if spend else measure(base, n.unit)
        share = f"{money(n.value, n.currency) if spend else grouped(n.value)} of {of_base}"
        reach = f"{money(n.threshold, n.currency) if spend else grouped(n.threshold)} of {of_base}"
        subject, headline = {
            "crossing": (f"{name} reached {what}", f"{name} reached {what}: {share} this period"),
            "recovery": (
                f"{name} fell back below {what}",
                f"{name} fell back below {what}: {share} this period",
            ),
            "forecast": (
                f"{name} is on track to reach {what}",
                f"{name} is on track to reach {what} ({reach}) around {when}: {value} so far this period",
            ),
        }[n.kind]
    else:
        # An absolute level: "Acme Inc's API calls usage reached 1,000 calls".
        what = f"{name}'s spend" if spend else f"{name}'s {meter} usage"
        subject, headline = {
            "crossing": (f"{what} reached {threshold}", f"{what} reached {threshold}: {value} this period"),
            "recovery": (
                f"{what} fell back below {threshold}",
                f"{what} fell back below {threshold}: {value} this period",
            ),
            "forecast": (
                f"{what} is on track to reach {threshold}",
                f"{what} is on track to reach {threshold} around {when}: {value} so far this period",
            ),
        }[n.kind]
    facts: list[tuple[str, str]] = [("Customer", f"{name} ({n.customer_id})")]
    if n.kind == "test":
        facts.append(("Sent at", _when(n.occurred_at, n.time_zone)))
    else:
        facts += [
            ("Rule", bidi.isolate(n.rule_name)),
            ("Measure", "Spend" if spend else meter),
            ("Level", threshold if base is None else f"{n.level_label} ({threshold})"),
            ("Spend now" if spend else "Usage now", value),
        ]
        if n.forecast_at is not None:
            facts.append(("Expected to reach the level", _when(n.forecast_at, n.time_zone)))
        if n.cost_so_far is not None:
            facts.append(("Cost so far", money(n.cost_so_far, n.currency)))
        facts.append(
            (
                "Billing period",
                f"{_when(n.period_start, n.time_zone)} to {_when(n.period_end, n.time_zone)}",
            )
        )
    return {
        # One header line: a newline in a name would end the Subject header.
        "subject": " ".join(subject.split()),
        "headline": headline,
        "facts": facts,
        "dashboard_url": n.dashboard_url,
        # Linked only when it is a web address: escaping does not stop a `javascript:` href.
        "dashboard_link": re.match(r"https?://", n.dashboard_url, re.IGNORECASE) is not None,
        "kind": n.kind,
        "customer_name": name,
    }


ANOMALY_WORDS = {"spike": "spike", "drop_to_zero": "dropped to zero", "silence": "silent"}


def _anomaly_view(n: Notice, a: AnomalyFacts, name: str) -> dict[str, Any]:
    """ "api_calls: spike at 14:00-15:00 Europe/Paris on 2026-11-24: 5,000 against about
    1,000 expected" (an en dash between the hours): the meter, what happened, when in the
    customer's own clock, how much."""
    when = _anomaly_when(a)
    what = ANOMALY_WORDS[a.kind]
    expected = _about(a.expected)
    meter = metric_label(n.metric_name or "")
    subject = f"Unusual usage for {name}: {meter} {what} {when}"
    headline = f"{meter}: {what} {when}: {_number(n.value)} against about {expected} expected"
    facts: list[tuple[str, str]] = [
        ("Customer", f"{name} ({n.customer_id})"),
        ("Rule", bidi.isolate(n.rule_name)),
        ("Measure", meter),
        (
            "What",
            f"{what[0].upper()}{what[1:]} ({'in an hour' if a.granularity == 'hour' else 'over a day'})",
        ),
        ("When", f"{_when(a.start, a.time_zone)} to {_when(a.end, a.time_zone)}"),
        ("Usage", measure(n.value, n.unit)),
        (
            "Expected",
            f"about {expected} {unit_for(a.expected, n.unit)} (the usual amount for this "
            f"{'hour' if a.granularity == 'hour' else 'day'} in recent weeks)",
        ),
    ]
    return {
        "subject": " ".join(subject.split()),
        "headline": headline,
        "facts": facts,
        "dashboard_url": n.dashboard_url,
        "dashboard_link": re.match(r"https?://", n.dashboard_url, re.IGNORECASE) is not None,
        "kind": n.kind,
        "customer_name": name,
    }


def _anomaly_when(a: AnomalyFacts) -> str:
    """In the customer's zone: "at 14:00-15:00 Europe/Paris on 2026-11-24", "from 22:00 on
    2026-11-23 to 02:00 on 2026-11-24 Europe/Paris", "on Monday 2026-11-23 (Europe/Paris)"."""
    tz = _zone(a.time_zone)
    start, end = a.start.astimezone(tz), a.end.astimezone(tz)
    if a.granularity == "day":
        return f"on {start:%A %Y-%m-%d} ({a.time_zone})"
    same_day = end.date() == start.date() or (
        end.hour == 0 and end.minute == 0 and (end - start).total_seconds() <= 86_400
    )
    if a.kind == "silence":
        if same_day:
            return f"from {start:%H:%M} to {end:%H:%M} {a.time_zone} on {start:%Y-%m-%d}"
        return f"from {start:%H:%M} on {start:%Y-%m-%d} to {end:%H:%M} on {end:%Y-%m-%d} {a.time_zone}"
    return f"at {start:%H:%M}–{end:%H:%M} {a.time_zone} on {start:%Y-%m-%d}"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"time_zone: unknown IANA time zone {name!r}") from exc


def _about(value: Decimal) -> str:
    """An expected amount (a median) as people say it: whole from 10 up, else to the
    hundredth: 1,012.5 → 1,013; 2.345 → 2.35."""
    step = Decimal(1) if abs(value) >= 10 else Decimal("0.01")
    return _number(value.quantize(step, rounding=ROUND_HALF_UP))


_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")


def _base(n: Notice) -> Decimal | None:
    """What a percentage level is a percentage of (threshold = base * level / 100), when the
    label is a percentage and the division is exact; None otherwise."""
    match = _PERCENT.fullmatch(n.level_label)
    if match is None or Decimal(match.group(1)) <= 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        ctx.traps[Inexact] = True
        try:
            return n.threshold * 100 / Decimal(match.group(1))
        except Inexact:
            return None


def _number(value: Decimal) -> str:
    """Grouped and exact, without exponent or trailing fractional zeros: 8,000 · 1,234.5."""
    text = f"{value:,f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _when(value: datetime, time_zone: str) -> str:
    """'24 Nov 2026 14:03 CET': in the customer's zone, with its abbreviation."""
    return instant(value, time_zone)


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _exact(value: Decimal) -> str:
    """The exact decimal as a string, never in exponent form: 1E+3 → "1000"."""
    return format(value, "f")


@functools.cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        # Only the .html template escapes: the text ones would show `&amp;` literally.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        finalize=bidi.finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
