"""What notices say: email subject/text/HTML, Slack text, the webhook payload."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from alerts.messages import Notice, notice_id, render_email, render_slack, webhook_payload

DASHBOARD = "https://portal.example/portal/customers/acme"


def notice(**changes: Any) -> Notice:
    base = Notice(
        kind="crossing",
        firing_id=41,
        customer_id="acme",
        customer_name="Acme Inc",
        rule_id=7,
        rule_name="API budget",
        metric_name="api_calls",
        unit="call",
        level_label="80%",
        threshold=Decimal("8000"),
        value=Decimal("8000"),
        currency="USD",
        cost_so_far=Decimal("123.4"),
        # November in Berlin: local midnights, 23:00 UTC the day before.
        period_start=datetime(2026, 10, 31, 23, tzinfo=UTC),
        period_end=datetime(2026, 11, 30, 23, tzinfo=UTC),
        forecast_at=None,
        dashboard_url=DASHBOARD,
        occurred_at=datetime(2026, 11, 20, 14, 3, 5, tzinfo=UTC),
        time_zone="Europe/Berlin",
    )
    return dataclasses.replace(base, **changes)


FOOTER = f"""
Dashboard: {DASHBOARD}

--
Sent by the usage portal's alerts for Acme Inc.
"""


def test_crossing_email() -> None:
    subject, text, _ = render_email(notice())
    assert subject == "Acme Inc reached 80% of its API calls budget"
    assert (
        text
        == """\
Acme Inc reached 80% of its API calls budget: 8,000 of 10,000 calls this period

Customer: Acme Inc (acme)
Rule: API budget
Measure: API calls
Level: 80% (8,000 calls)
Usage now: 8,000 calls
Cost so far: USD 123.40
Billing period: 1 Nov 2026 00:00 CET to 1 Dec 2026 00:00 CET
"""
        + FOOTER
    )


def test_recovery_email() -> None:
    subject, text, _ = render_email(notice(kind="recovery", value=Decimal("7250.5")))
    assert subject == "Acme Inc fell back below 80% of its API calls budget"
    assert text.splitlines()[0] == (
        "Acme Inc fell back below 80% of its API calls budget: 7,250.5 of 10,000 calls this period"
    )
    assert "Usage now: 7,250.5 calls" in text


def test_forecast_email() -> None:
    at = datetime(2026, 11, 24, 10, 30, tzinfo=timezone(timedelta(hours=1)))  # 09:30 UTC
    subject, text, _ = render_email(notice(kind="forecast", value=Decimal("5000"), forecast_at=at))
    assert subject == "Acme Inc is on track to reach 80% of its API calls budget"
    assert text.splitlines()[0] == (
        "Acme Inc is on track to reach 80% of its API calls budget (8,000 of 10,000 calls) "
        "around 24 Nov 2026 10:30 CET: 5,000 calls so far this period"
    )
    assert "Expected to reach the level: 24 Nov 2026 10:30 CET" in text


def test_test_email() -> None:
    test = notice(
        kind="test",
        firing_id=None,
        rule_id=None,
        rule_name="Test notice",
        metric_name=None,
        unit="USD",
        level_label="test",
        threshold=Decimal(0),
        value=Decimal(0),
        cost_so_far=None,
    )
    subject, text, _ = render_email(test)
    assert subject == "Test notice for Acme Inc"
    assert (
        text
        == """\
This is a test notice from the usage portal for Acme Inc. If you can read it, this channel works.

Customer: Acme Inc (acme)
Sent at: 20 Nov 2026 15:03 CET
"""
        + FOOTER
    )


def test_absolute_levels_and_spend_rules_read_well() -> None:
    absolute = notice(level_label="1000 calls", threshold=Decimal("1000"), value=Decimal("1050"))
    assert render_email(absolute)[0] == "Acme Inc's API calls usage reached 1,000 calls"
    assert render_slack(absolute).splitlines()[0] == (
        "Acme Inc's API calls usage reached 1,000 calls: 1,050 calls this period"
    )
    one = notice(level_label="1 call", threshold=Decimal("1"), value=Decimal("1"))
    assert (
        render_slack(one).splitlines()[0] == "Acme Inc's API calls usage reached 1 call: 1 call this period"
    )
    spend = notice(metric_name=None, unit="USD", threshold=Decimal("800"), value=Decimal("812.5"))
    assert render_email(spend)[1].splitlines()[0] == (
        "Acme Inc reached 80% of its spend budget: USD 812.50 of USD 1,000.00 this period"
    )
    assert "Spend now: USD 812.50" in render_email(spend)[1]
    spend_absolute = dataclasses.replace(
        spend, level_label="500 USD", threshold=Decimal("500"), kind="recovery", value=Decimal("499.99")
    )
    assert render_email(spend_absolute)[0] == "Acme Inc's spend fell back below USD 500.00"


@pytest.mark.parametrize(
    ("currency", "cost", "shown"),
    [
        ("USD", "35", "Cost so far: USD 35.00"),
        ("EUR", "1234.5", "Cost so far: EUR 1,234.50"),
        ("USD", "0.000125", "Cost so far: USD 0.000125"),
        ("JPY", "1200", "Cost so far: JPY 1,200"),
        ("KWD", "12.5", "Cost so far: KWD 12.500"),
    ],
)
def test_money_keeps_the_currencys_decimals(currency: str, cost: str, shown: str) -> None:
    text = render_email(notice(currency=currency, cost_so_far=Decimal(cost)))[1]
    assert shown in text.splitlines()
    assert shown in render_slack(notice(currency=currency, cost_so_far=Decimal(cost))).splitlines()


def test_times_are_in_the_customers_zone_and_old_notices_read_as_utc() -> None:
    tokyo = render_slack(notice(kind="test", time_zone="Asia/Tokyo"))
    assert "Sent at: 20 Nov 2026 23:03 JST" in tokyo.splitlines()
    # A notice stored before it carried a zone.
    stored = msgspec.json.decode(msgspec.json.Encoder(decimal_format="string").encode(notice(kind="test")))
    del stored["time_zone"]
    old = msgspec.convert(stored, Notice, strict=False)
    assert "Sent at: 20 Nov 2026 14:03 UTC" in render_slack(old).splitlines()


def test_slack_text() -> None:
    assert (
        render_slack(notice())
        == f"""\
Acme Inc reached 80% of its API calls budget: 8,000 of 10,000 calls this period

Customer: Acme Inc (acme)
Rule: API budget
Measure: API calls
Level: 80% (8,000 calls)
Usage now: 8,000 calls
Cost so far: USD 123.40
Billing period: 1 Nov 2026 00:00 CET to 1 Dec 2026 00:00 CET
Dashboard: {DASHBOARD}"""
    )


def test_html_escapes_every_value() -> None:
    hostile = notice(customer_name="<script>alert(1)</script> & Co", rule_name='"><img src=x>')
    subject, text, html = render_email(hostile)
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in html
    assert "&#34;&gt;&lt;img src=x&gt;" in html
    assert f'<a href="{DASHBOARD}"' in html
    # Text renderings stay literal.
    assert "<script>alert(1)</script> & Co reached 80%" in text
    assert subject.startswith("<script>alert(1)</script> & Co reached")


def test_a_non_web_dashboard_url_is_not_linked() -> None:
    _, _, html = render_email(notice(dashboard_url="javascript:alert(1)"))
    assert "href=" not in html
    assert "Dashboard: javascript:alert(1)" in html


def test_subject_is_one_line() -> None:
    assert render_email(notice(customer_name="Acme\r\nBcc: victim@example.com"))[0] == (
        "Acme Bcc: victim@example.com reached 80% of its API calls budget"
    )


def test_webhook_payload() -> None:
    at = datetime(2026, 11, 24, 9, 30, 0, 250000, tzinfo=UTC)
    payload = webhook_payload(
        notice(kind="forecast", value=Decimal("5000.50"), forecast_at=at, threshold=Decimal("8E+3"))
    )
    assert payload == {
        "type": "usage_portal.alert",
        "version": 1,
        "id": "firing-41",
        "kind": "forecast",
        "occurredAt": "2026-11-20T14:03:05Z",
        "customer": {"id": "acme", "name": "Acme Inc"},
        "rule": {"id": 7, "name": "API budget"},
        "meter": {"name": "api_calls", "unit": "call"},
        "level": {"label": "80%", "threshold": "8000"},
        "value": "5000.50",
        "currency": "USD",
        "costSoFar": {"amount": "123.4", "currency": "USD"},
        "period": {"start": "2026-10-31T23:00:00Z", "end": "2026-11-30T23:00:00Z"},
        "forecastAt": "2026-11-24T09:30:00.250000Z",
        "dashboardUrl": DASHBOARD,
        "anomaly": None,
    }


def test_webhook_payload_of_a_spend_rule_and_of_a_test() -> None:
    spend = webhook_payload(notice(metric_name=None, unit="USD", cost_so_far=None))
    assert spend["meter"] is None and spend["costSoFar"] is None and spend["currency"] == "USD"
    test = webhook_payload(notice(kind="test", firing_id=None, rule_id=None, rule_name="Test notice"))
    assert test["rule"] == {"id": None, "name": "Test notice"}
    assert test["id"].startswith("test-")


def test_ids_are_stable_and_distinct() -> None:
    assert notice_id(notice()) == "firing-41"
    test = notice(kind="test", firing_id=None)
    assert (
        notice_id(test)
        == notice_id(dataclasses.replace(test))
        != notice_id(dataclasses.replace(test, occurred_at=test.occurred_at + timedelta(seconds=1)))
    )
    unrecorded = notice(firing_id=None)
    assert notice_id(unrecorded).startswith("crossing-")
    # The same rule, level and period: the same id, whenever it is evaluated.
    assert notice_id(unrecorded) == notice_id(
        dataclasses.replace(unrecorded, value=Decimal(9000), occurred_at=datetime.now(UTC))
    )
    assert notice_id(unrecorded) != notice_id(dataclasses.replace(unrecorded, level_label="100%"))


def test_notices_survive_the_json_they_are_stored_as() -> None:
    # How the portal stores a notice (alert_firings.notice, alert_deliveries.notice).
    original = notice(kind="forecast", forecast_at=datetime(2026, 11, 24, 9, 30, tzinfo=UTC))
    stored = msgspec.json.Encoder(decimal_format="string").encode(original)
    assert msgspec.convert(msgspec.json.decode(stored), Notice, strict=False) == original


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"period_start": datetime(2026, 11, 1)}, "period_start: must be timezone-aware"),
        ({"forecast_at": datetime(2026, 11, 1)}, "forecast_at: must be timezone-aware"),
        ({"kind": "crossed"}, "kind: must be one of"),
        ({"value": Decimal("NaN")}, "value: must be a finite number"),
        ({"time_zone": "Mars/Olympus"}, "time_zone: unknown IANA time zone"),
    ],
)
def test_bad_notices_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        notice(**changes)
