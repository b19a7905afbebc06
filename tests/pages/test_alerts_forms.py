"""The alerts forms' pure parts: levels as people type them, the rule's one-sentence
summary, and a channel's target in its owner's words (table-driven, no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from litestar.datastructures import MultiDict

from alerts.channels import mask
from portal.catalog.schemas import Meter
from portal.pages.alerts_forms import RuleForm, parse_rule_form, split_levels
from portal.pages.alerts_view import channel_target, rule_summary

CALLS = Meter("api_calls", "sum", "call", [], None, datetime(2026, 1, 1, tzinfo=UTC))
METERS = {"api_calls": CALLS}
CHANNELS = {1: "Ops webhook", 2: "Finance"}


@pytest.mark.parametrize(
    ("typed", "levels"),
    [
        ("5,000, 10,000", ["5,000", "10,000"]),
        ("5,000 calls and 10,000 calls", ["5,000", "10,000"]),
        ("50%, 80%, 100%", ["50%", "80%", "100%"]),
        ("50 %;80 %", ["50%", "80%"]),
        ("EUR 500 and EUR 1,000.50", ["500", "1,000.50"]),
        ("1000 2000", ["1000", "2000"]),
        ("12.5 GB", ["12.5"]),
        ("80, abc", ["80", "abc"]),  # kept, so that the form can say it is not a number
        ("", []),
    ],
)
def test_levels_read_as_typed(typed: str, levels: list[str]) -> None:
    assert split_levels(typed) == levels


@pytest.mark.parametrize(
    ("form", "sentence"),
    [
        (
            RuleForm(watch="api_calls", levels="5000 and 10000", channel_ids=["1"]),
            "Notify “Ops webhook” when API calls usage reaches 5,000 calls and 10,000 calls "
            "in a billing period.",
        ),
        (
            RuleForm(levels="50%, 80%, 100%", budget="500", channel_ids=["1", "2"]),
            "Notify “Ops webhook” and “Finance” when spend reaches 50%, 80% and 100% of EUR 500.00 "
            "in a billing period.",
        ),
        (
            RuleForm(levels="1", watch="api_calls", notify_recovery=True),
            "Notify every channel when API calls usage reaches 1 call in a billing period, "
            "and when it falls back below.",
        ),
        (
            RuleForm(levels="250.5"),
            "Notify every channel when spend reaches EUR 250.50 in a billing period.",
        ),
        (
            RuleForm(levels="80%", watch="api_calls"),
            "Notify every channel when API calls usage reaches 80% of the quantity your plan includes "
            "in a billing period.",
        ),
        (
            RuleForm(kind="anomaly", watch=""),
            "Notify every channel when usage of any meter is unusual for the hour or day: "
            "a spike, a drop to zero, or silence.",
        ),
        (RuleForm(levels="20k"), None),
        (RuleForm(levels="1e999999"), None),  # not a million-digit sentence
        (
            RuleForm(levels="80%", budget="1e999999"),
            "Notify every channel when spend reaches 80% of your monthly budget in a billing period.",
        ),
        (RuleForm(levels=""), None),
    ],
)
def test_the_rule_summary_says_what_the_rule_will_do(form: RuleForm, sentence: str | None) -> None:
    assert rule_summary(form, METERS, CHANNELS, "EUR") == sentence


@pytest.mark.parametrize(
    ("kind", "url", "summary", "address"),
    [
        ("email", "mailto://ops@acme.test", "Email to ops@acme.test", None),
        (
            "webhook",
            "jsons://hooks.example.com/x",
            "Webhook to hooks.example.com",
            "https://hooks.example.com/x",
        ),
        (
            "webhook",
            "json://user:pass@10.0.0.5:8080/in?token=1",
            "Webhook to 10.0.0.5",
            "http://user:****@10.0.0.5:8080/in",
        ),
        (
            "slack",
            "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
            "Slack, through its incoming webhook",
            None,
        ),
        ("slack", "slack://T000/B000/XXXX/#alerts", "Slack #alerts", None),
    ],
)
def test_a_channel_reads_as_its_owner_typed_it(
    kind: str, url: str, summary: str, address: str | None
) -> None:
    target = channel_target(kind, mask(url))
    assert (target.summary, target.address) == (summary, address)


@pytest.mark.parametrize(
    ("levels", "budget", "saved", "problem"),
    [
        # Thousands with commas and decimals with a point are read as typed
        ("80%", "1,000.50", ("1000.50", ["80"]), None),
        ("50%, 100%", "300.50", ("300.50", ["50", "100"]), None),
        # A decimal comma is refused, never read as 30,050 or as 300.50
        ("80%", "300,50", None, "Monthly budget: “300,50” is not an amount: write decimals with a point"),
        ("80%", "1,00", None, "Monthly budget: “1,00” is not an amount: write decimals with a point"),
        # Dots grouping thousands with a decimal comma (1.000,5) are refused as a whole
        ("1.000,5", "", None, "Notify at: “1.000,5”: write decimals with a point"),
        # "5.000" is five to some readers, five thousand to others: neither is guessed
        (
            "5.000",
            "",
            None,
            "Notify at: “5.000” is not a number: a point before three digits may mean thousands",
        ),
        ("80%", "1.500", None, "Monthly budget: “1.500” is not an amount: a point before three digits"),
        ("0.125, 2.5", "", ("None", ["0.125", "2.5"]), None),
        # "1,5" is one decimal number or two levels: the form asks rather than splits
        (
            "1,5",
            "",
            None,
            "Notify at: “1,5” could be one number or two levels: write 1.5 for one, or 1, 5 (a comma "
            "and a space) for two.",
        ),
        ("50,80,100", "", None, "Notify at: “50,80” could be one number or two levels"),
        ("1, 5", "", ("None", ["1", "5"]), None),
        ("5.000%", "500", None, "Notify at: “5.000%” is not a number: a point before three digits"),
        # A budget typed beside amounts would be dropped without a word
        ("80", "abc", None, "Monthly budget: a budget is only used with percentages"),
        ("80", "500", None, "Monthly budget: a budget is only used with percentages"),
        ("1,500", "", ("None", ["1500"]), None),
    ],
)
def test_a_decimal_comma_is_refused_with_a_hint_not_misread(
    levels: str, budget: str, saved: tuple[str, list[str]] | None, problem: str | None
) -> None:
    form = MultiDict({"name": "Budget", "watch": "", "levels": levels, "budget": budget, "channel": "1"})
    typed, rule = parse_rule_form(form)
    if saved is None:
        assert rule is None and problem is not None
        assert any(e.message.startswith(problem) for e in typed.errors), typed.errors
    else:
        assert rule is not None, typed.errors
        assert (str(rule.budget), [str(level) for level in rule.levels]) == saved
