"""Alert request and response bodies (camelCase, validated at the edge), and the read shapes
the repository answers to the services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

from alerts.channels import ChannelKind
from alerts.thresholds import Basis
from portal.http.request_checks import ID_MAX
from portal.http.schemas import NO_NUL, CamelStruct

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=NO_NUL)]
ChannelId = Annotated[int, msgspec.Meta(ge=1, le=ID_MAX)]
MAX_LEVELS = 10
# Levels and budgets: as large and as fine as an event quantity may be (numeric(32, 12)).
MAX_LEVEL_DIGITS = 20
MAX_LEVEL_PLACES = 12


def _check_level(field: str, value: Decimal) -> None:
    """ValueError naming `field` unless 0 < value < 10^20 with at most 12 decimal places;
    judged by exponent and digits, so a huge exponent costs nothing."""
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{field}: must be a number greater than 0")
    if value.adjusted() >= MAX_LEVEL_DIGITS:
        raise ValueError(f"{field}: must be less than 10^{MAX_LEVEL_DIGITS}")
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    if -(exponent + trailing_zeros) > MAX_LEVEL_PLACES:
        raise ValueError(f"{field}: at most {MAX_LEVEL_PLACES} decimal places")


class ChannelCreate(CamelStruct):
    """A destination for notices: any Apprise URL (mailto://, slack://, json://, ...)."""

    name: Name
    destination: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]


class Channel(CamelStruct):
    id: int
    customer_id: str
    name: str
    kind: ChannelKind
    destination: str  # masked
    created_at: datetime
    # Only in the answer that creates a webhook channel: the key to verify signatures with.
    signing_secret: str | None = None


RuleKind = Literal["threshold", "anomaly"]


class RuleBody(CamelStruct):
    """What to watch and when to notify.

    A `threshold` rule (the default): `metricName` watches that meter's usage this period;
    without it the rule watches the period's spend (before prepaid credit, in the
    customer's currency). `levels` are amounts when `basis` is absolute, else percentages
    of the meter's included quantity (`included`), the plan's minimum commitment
    (`commitment`) or `budget`.

    An `anomaly` rule notifies once per unusual settled hour or day (a spike, a drop to
    zero, a silence) of `metricName`, or of every sum and count meter without it; it has no
    levels, basis, budget, recovery or forecast."""

    name: Name
    levels: Annotated[list[Decimal], msgspec.Meta(max_length=MAX_LEVELS)] = msgspec.field(
        default_factory=list
    )
    metric_name: Annotated[str, msgspec.Meta(pattern=NO_NUL)] | None = None
    basis: Basis = "absolute"
    budget: Decimal | None = None
    notify_recovery: bool = False
    notify_forecast: bool = False
    kind: RuleKind = "threshold"

    def __post_init__(self) -> None:
        if self.kind == "anomaly":
            self._check_anomaly()
            return
        if not self.levels:
            raise ValueError("levels: a threshold rule needs at least one level")
        for i, level in enumerate(self.levels):
            _check_level(f"levels[{i}]", level)
        if len(set(self.levels)) != len(self.levels):
            raise ValueError("levels: must not repeat")
        if self.basis == "budget":
            if self.budget is None or not self.budget.is_finite() or self.budget <= 0:
                raise ValueError("budget: a budget rule needs a budget greater than 0")
            _check_level("budget", self.budget)
        elif self.budget is not None:
            raise ValueError("budget: only for basis 'budget'")
        if self.basis in ("included", "limit") and self.metric_name is None:
            raise ValueError(f"basis: {self.basis!r} is a quantity of a meter; give metricName")
        if self.basis == "commitment" and self.metric_name is not None:
            raise ValueError("basis: 'commitment' is an amount of money; a spend rule has no metricName")

    def _check_anomaly(self) -> None:
        # Refused rather than ignored: a caller who sends levels expects them to matter.
        for field, given in (
            ("levels", bool(self.levels)),
            ("basis", self.basis != "absolute"),
            ("budget", self.budget is not None),
            ("notifyRecovery", self.notify_recovery),
            ("notifyForecast", self.notify_forecast),
        ):
            if given:
                raise ValueError(f"{field}: an anomaly rule has none (it notifies unusual usage, not levels)")


class RuleCreate(RuleBody):
    # Channels to notify; empty means every channel of the customer.
    channel_ids: list[ChannelId] = msgspec.field(default_factory=list)


class Rule(CamelStruct):
    id: int
    customer_id: str
    kind: RuleKind
    name: str
    metric_name: str | None
    basis: Basis
    budget: str | None
    levels: list[str]
    notify_recovery: bool
    notify_forecast: bool
    channel_ids: list[int]
    from_plan_rule_id: int | None
    created_at: datetime
    disabled_at: datetime | None


class PlanRule(CamelStruct):
    id: int
    plan_id: str
    kind: RuleKind
    name: str
    metric_name: str | None
    basis: Basis
    budget: str | None
    levels: list[str]
    notify_recovery: bool
    notify_forecast: bool
    created_at: datetime


DeliveryStatus = Literal["pending", "sent", "failed"]


class Attempt(CamelStruct):
    attempt: int
    ok: bool
    error: str | None
    destination: str
    started_at: datetime
    finished_at: datetime


class Delivery(CamelStruct):
    id: int
    firing_id: int | None
    channel_id: int
    channel_name: str
    customer_id: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    destination: str
    created_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None
    attempt_log: list[Attempt] = msgspec.field(default_factory=list)


class Firing(CamelStruct):
    id: int
    rule_id: int
    rule_name: str
    customer_id: str
    kind: Literal["crossing", "recovery", "forecast", "anomaly"]
    level: str
    threshold: str
    value: str
    period_start: datetime
    period_end: datetime
    forecast_at: datetime | None
    fired_at: datetime
    deliveries: list[Delivery]
    # Anomaly firings only: the meter, what was unusual, and whether an hour or a day. Their
    # periodStart/periodEnd are the anomaly's span, value the usage, threshold the expected
    # usage, level 0.
    metric_name: str | None = None
    anomaly_kind: Literal["spike", "drop_to_zero", "silence"] | None = None
    granularity: Literal["hour", "day"] | None = None


# --- Read shapes of the repository (not part of the API)


@dataclass(frozen=True, slots=True)
class RuleRow:
    """An active threshold rule, as the evaluation reads it."""

    id: int
    name: str
    metric_name: str | None
    basis: Basis
    budget: Decimal | None
    levels: list[Decimal]
    notify_recovery: bool
    notify_forecast: bool
    channel_ids: list[int]


@dataclass(frozen=True, slots=True)
class AnomalyRule:
    """An active anomaly rule, and the settled hour it was last judged through."""

    id: int
    name: str
    metric_name: str | None
    channel_ids: list[int]
    judged_through: datetime | None


@dataclass(frozen=True, slots=True)
class StoredChannel:
    """A channel as stored: its destination and signing secret still encrypted."""

    channel_id: int
    name: str
    kind: str
    destination_encrypted: bytes
    masked: str
    signing_secret_encrypted: bytes | None


@dataclass(frozen=True, slots=True)
class ChannelSecrets:
    """A channel's encrypted values, for re-encryption under a new key."""

    channel_id: int
    customer_id: str
    name: str
    disabled: bool
    destination_encrypted: bytes
    signing_secret_encrypted: bytes | None
