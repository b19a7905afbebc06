"""Anomaly alert rules: the API refuses bad ones naming the field; notices say what was
unusual in plain words; end to end, a real worker sends one notice per anomaly however
often the same hours are judged again."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from litestar.testing import AsyncTestClient

from alerts.messages import AnomalyFacts, Notice, render_email, render_slack, webhook_payload
from alerts.signing import verify
from portal.alerting.anomaly_rules import final_anomalies
from portal.alerting.evaluate import evaluate_customer
from portal.infrastructure.db import create_engine, session_factory, transaction
from portal.infrastructure.jobs import enqueue
from portal.infrastructure.periods import hour_bucket, hour_buckets, local_date, local_midnight, to_datetime
from portal.infrastructure.settings import Settings
from portal.usage.anomaly_detection import Flagged
from portal.usage.anomaly_rule import Anomaly
from tests.alerts.conftest import HttpReceiver, SmtpServer
from tests.alerts.test_alerts_e2e import channel, mails_to, posts_to, settled
from tests.conftest import ALERT_HTTP_PORT, WorkerProcess
from tests.factories import auth, make_customer, make_meter, roll_up_days

PARIS = "Europe/Paris"

# --- the API ---------------------------------------------------------------------------------


@pytest.fixture
async def acme(client: AsyncTestClient[Any], admin_key: str) -> None:
    await make_customer(client, admin_key, id="acme", currency="USD")
    await make_meter(client, admin_key, metric="api_calls")
    await make_meter(client, admin_key, metric="seats", aggregation="max")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"levels": ["50"]}, "levels: an anomaly rule has none"),
        ({"basis": "budget", "budget": "10"}, "basis: an anomaly rule has none"),
        ({"budget": "10"}, "budget: an anomaly rule has none"),
        ({"notifyRecovery": True}, "notifyRecovery: an anomaly rule has none"),
        ({"notifyForecast": True}, "notifyForecast: an anomaly rule has none"),
        ({"metricName": "nope"}, "metricName: no meter 'nope'"),
        (
            {"metricName": "seats"},
            "metricName: anomalies are judged for sum and count meters; 'seats' is a max",
        ),
        ({"kind": "weird"}, "kind"),
    ],
    ids=["levels", "basis", "budget", "recovery", "forecast", "unknown-meter", "max-meter", "unknown-kind"],
)
async def test_a_bad_anomaly_rule_is_refused_naming_the_field(
    client: AsyncTestClient[Any],
    admin_key: str,
    acme: None,
    pg: Any,
    body: dict[str, Any],
    message: str,
) -> None:
    response = await client.post(
        "/v1/customers/acme/alert-rules",
        headers=auth(admin_key),
        json={"name": "r", "kind": "anomaly"} | body,
    )
    assert response.status_code == 422, response.text
    assert message in response.text
    assert await pg.fetchval("SELECT count(*) FROM alert_rules") == 0


async def test_a_threshold_rule_still_needs_levels(
    client: AsyncTestClient[Any], admin_key: str, acme: None
) -> None:
    response = await client.post(
        "/v1/customers/acme/alert-rules", headers=auth(admin_key), json={"name": "r"}
    )
    assert response.status_code == 422
    assert "levels: a threshold rule needs at least one level" in response.text


async def test_anomaly_rules_are_created_listed_and_copied_from_plans(
    client: AsyncTestClient[Any],
    admin_key: str,
    acme: None,
) -> None:
    created = await client.post(
        "/v1/customers/acme/alert-rules",
        headers=auth(admin_key),
        json={"name": "Unusual calls", "kind": "anomaly", "metricName": "api_calls"},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["kind"], body["metricName"], body["levels"], body["basis"]) == (
        "anomaly",
        "api_calls",
        [],
        "absolute",
    )
    plan = {
        "id": "basic",
        "name": "Basic",
        "currency": "USD",
        "charges": [{"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.01"}],
    }
    assert (await client.post("/v1/plans", headers=auth(admin_key), json=plan)).status_code == 201
    plan_rule = await client.post(
        "/v1/plans/basic/alert-rules",
        headers=auth(admin_key),
        json={"name": "Anything unusual", "kind": "anomaly"},
    )
    assert plan_rule.status_code == 201 and plan_rule.json()["kind"] == "anomaly", plan_rule.text
    assert (
        await client.post(
            "/v1/customers/acme/subscriptions", headers=auth(admin_key), json={"planId": "basic"}
        )
    ).status_code == 201
    rules = (await client.get("/v1/customers/acme/alert-rules", headers=auth(admin_key))).json()
    assert [(r["name"], r["kind"], r["metricName"], r["fromPlanRuleId"]) for r in rules] == [
        ("Unusual calls", "anomaly", "api_calls", None),
        ("Anything unusual", "anomaly", None, plan_rule.json()["id"]),
    ]


# --- what the notice says (pure) -------------------------------------------------------------


def anomaly_notice(**facts: Any) -> Notice:
    start = datetime(2026, 11, 24, 13, tzinfo=UTC)  # 14:00 in Paris
    a = AnomalyFacts(
        kind="spike",
        granularity="hour",
        start=start,
        end=start + timedelta(hours=1),
        expected=Decimal(1000),
        time_zone=PARIS,
    )
    a = dataclasses.replace(a, **facts)
    return Notice(
        kind="anomaly",
        firing_id=12,
        customer_id="acme",
        customer_name="Acme Inc",
        rule_id=3,
        rule_name="Unusual calls",
        metric_name="api_calls",
        unit="call",
        level_label="hour spike",
        threshold=a.expected,
        value=Decimal(5000),
        currency="USD",
        cost_so_far=None,
        period_start=a.start,
        period_end=a.end,
        forecast_at=None,
        dashboard_url="https://portal.example/portal/customers/acme",
        occurred_at=datetime(2026, 11, 24, 14, 5, tzinfo=UTC),
        anomaly=a,
    )


def test_an_hourly_spike_notice_in_plain_words() -> None:
    subject, text, html = render_email(anomaly_notice())
    assert subject == "Unusual usage for Acme Inc: API calls spike at 14:00–15:00 Europe/Paris on 2026-11-24"
    assert (
        text
        == """\
API calls: spike at 14:00–15:00 Europe/Paris on 2026-11-24: 5,000 against about 1,000 expected

Customer: Acme Inc (acme)
Rule: Unusual calls
Measure: API calls
What: Spike (in an hour)
When: 24 Nov 2026 14:00 CET to 24 Nov 2026 15:00 CET
Usage: 5,000 calls
Expected: about 1,000 calls (the usual amount for this hour in recent weeks)

Dashboard: https://portal.example/portal/customers/acme

--
Sent by the usage portal's alerts for Acme Inc.
"""
    )
    assert (
        "<strong>API calls: spike at 14:00–15:00 Europe/Paris on 2026-11-24: 5,000 against about 1,000 "
        "expected</strong>" in html
    )
    assert render_slack(anomaly_notice()).splitlines()[0] == (
        "API calls: spike at 14:00–15:00 Europe/Paris on 2026-11-24: 5,000 against about 1,000 expected"
    )


def test_a_day_dropped_to_zero_and_a_silence_in_plain_words() -> None:
    day = dataclasses.replace(
        anomaly_notice(
            kind="drop_to_zero",
            granularity="day",
            start=datetime(2026, 11, 22, 23, tzinfo=UTC),
            end=datetime(2026, 11, 23, 23, tzinfo=UTC),
            expected=Decimal("24012.5"),
        ),
        value=Decimal(0),
    )
    assert render_slack(day).splitlines()[0] == (
        "API calls: dropped to zero on Monday 2026-11-23 (Europe/Paris): 0 against about 24,013 expected"
    )
    silence = dataclasses.replace(
        anomaly_notice(
            kind="silence",
            start=datetime(2026, 11, 24, 9, tzinfo=UTC),
            end=datetime(2026, 11, 24, 14, tzinfo=UTC),
            expected=Decimal("4.125"),
        ),
        value=Decimal(0),
    )
    assert render_email(silence)[0] == (
        "Unusual usage for Acme Inc: API calls silent from 10:00 to 15:00 Europe/Paris on 2026-11-24"
    )
    assert render_slack(silence).splitlines()[0] == (
        "API calls: silent from 10:00 to 15:00 Europe/Paris on 2026-11-24: 0 against about 4.13 expected"
    )


def test_the_webhook_payload_of_an_anomaly() -> None:
    payload = webhook_payload(anomaly_notice())
    assert payload["kind"] == "anomaly" and payload["id"] == "firing-12"
    assert (payload["value"], payload["level"], payload["period"], payload["anomaly"]) == (
        "5000",
        {"label": "hour spike", "threshold": "1000"},
        {"start": "2026-11-24T13:00:00Z", "end": "2026-11-24T14:00:00Z"},
        {
            "kind": "spike",
            "granularity": "hour",
            "start": "2026-11-24T13:00:00Z",
            "end": "2026-11-24T14:00:00Z",
            "timeZone": PARIS,
            "expected": "1000",
        },
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"anomaly": None}, "anomaly: an anomaly notice needs its facts"),
        ({"kind": "crossing"}, "anomaly: an anomaly notice needs its facts"),
        ({"metric_name": None}, "metric_name: an anomaly is a meter's"),
    ],
)
def test_inconsistent_anomaly_notices_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(anomaly_notice(), **changes)


def test_drops_to_zero_up_to_the_last_settled_hour_wait_as_they_may_become_a_silence() -> None:
    def at(hour: int) -> datetime:
        return datetime(2026, 11, 24, hour, tzinfo=UTC)

    def drop(start: int, metric: str = "api_calls") -> Flagged:
        return Flagged(
            "acme", metric, Anomaly("drop_to_zero", at(start), at(start + 1), Decimal(0), Decimal(9))
        )

    day = Flagged(
        "acme",
        "api_calls",
        Anomaly("drop_to_zero", at(0) - timedelta(days=1), at(0), Decimal(0), Decimal(99), "day"),
    )
    silence = Flagged("acme", "api_calls", Anomaly("silence", at(1), at(4), Decimal(0), Decimal(27)))
    found = [silence, drop(6), drop(10), drop(11), drop(11, "storage"), drop(9, "storage"), day]
    # 10:00 and 11:00 run up to the last settled hour (12:00); 6:00 and the day are over.
    assert final_anomalies(found, at(12)) == [silence, drop(6), drop(9, "storage"), day]


# --- end to end: a real worker, real SMTP and HTTP sinks ----------------------------------------


async def test_a_spike_is_notified_once_through_every_channel_and_never_again(
    client: AsyncTestClient[Any],
    admin_key: str,
    worker: WorkerProcess,
    pg: Any,
    settings: Settings,
    mail_sink: SmtpServer,
    hook_sink: HttpReceiver,
) -> None:
    await make_customer(client, admin_key, id="acme", timezone=PARIS, currency="USD")
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    # Five weeks of 1,000 calls every hour up to now, and one hour three hours ago at 5,000.
    # Ingest refuses events that old, so the hourly aggregates are written directly. A day
    # with the spike is 24,000 + 4,000: no daily anomaly, whatever time the test runs.
    now = datetime.now(UTC)
    settled_end = to_datetime(hour_bucket(now.timestamp(), PARIS))
    spike = settled_end - timedelta(hours=3)
    first_day = local_date(now.timestamp(), PARIS) - timedelta(days=36)
    rows = [
        (to_datetime(h), Decimal(5000 if to_datetime(h) == spike else 1000))
        for h in hour_buckets(local_midnight(first_day, PARIS), now, PARIS)
    ]
    await pg.executemany(
        "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
        "VALUES ('acme', 'api_calls', $1, $2, 1)",
        rows,
    )
    await roll_up_days(pg)
    await channel(client, admin_key, "acme", "ops mail", "mailto://anomalies@acme.test")
    hook = await channel(
        client, admin_key, "acme", "ops hook", f"json://127.0.0.1:{ALERT_HTTP_PORT}/hooks/anomaly"
    )
    created = await client.post(
        "/v1/customers/acme/alert-rules",
        headers=auth(admin_key),
        json={"name": "Unusual calls", "kind": "anomaly", "metricName": "api_calls"},
    )
    assert created.status_code == 201, created.text

    # No usage arrives, so only the sweep evaluates the rule.
    await enqueue("sweep_alerts", "alerts")
    sent = await settled(client, admin_key, "acme", 2)
    assert sorted(d["status"] for d in sent) == ["sent", "sent"]

    local = spike.astimezone(ZoneInfo(PARIS))
    when = f"at {local:%H:%M}–{local + timedelta(hours=1):%H:%M} Europe/Paris on {local:%Y-%m-%d}"
    [mail] = mails_to(mail_sink, "anomalies@acme.test")
    assert mail.message["Subject"] == f"Unusual usage for Acme Inc: API calls spike {when}"
    text = mail.message.get_body(("plain",))
    assert text is not None
    assert text.get_content().splitlines()[0] == (
        f"API calls: spike {when}: 5,000 against about 1,000 expected"
    )
    [request] = posts_to(hook_sink, "/hooks/anomaly")
    assert verify(
        hook["signingSecret"],
        request.header("X-Usage-Portal-Timestamp") or "",
        request.body,
        request.header("X-Usage-Portal-Signature") or "",
        now=time.time(),
    )
    payload = request.json()
    start, end = (
        spike.isoformat().replace("+00:00", "Z"),
        (spike + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
    )
    assert (
        payload["type"],
        payload["version"],
        payload["kind"],
        payload["value"],
        payload["level"],
        payload["meter"],
        payload["period"],
        payload["anomaly"],
    ) == (
        "usage_portal.alert",
        1,
        "anomaly",
        "5000",
        {"label": "hour spike", "threshold": "1000"},
        {"name": "api_calls", "unit": "call"},
        {"start": start, "end": end},
        {
            "kind": "spike",
            "granularity": "hour",
            "start": start,
            "end": end,
            "timeZone": PARIS,
            "expected": "1000",
        },
    )
    firings = (await client.get("/v1/customers/acme/alert-firings", headers=auth(admin_key))).json()
    assert [
        (
            f["kind"],
            f["metricName"],
            f["anomalyKind"],
            f["granularity"],
            f["periodStart"],
            f["value"],
            f["threshold"],
        )
        for f in firings
    ] == [("anomaly", "api_calls", "spike", "hour", start, "5000", "1000")]

    # Judging the same hours again (the hour mark forgotten, as after the next hour) fires
    # nothing: the firing is unique per rule, meter, kind, granularity and start.
    await pg.execute("UPDATE alert_rules SET anomalies_judged_through = NULL")
    engine = create_engine(settings.database_url or "", pool_size=1)
    async with transaction(session_factory(engine)) as session:
        assert await evaluate_customer(session, "acme", now=datetime.now(UTC), settings=settings) == []
    await engine.dispose()
    assert await pg.fetchval("SELECT anomalies_judged_through FROM alert_rules") is not None
    assert len(await settled(client, admin_key, "acme", 2)) == 2
    assert len(mails_to(mail_sink, "anomalies@acme.test")) == 1
    assert len(posts_to(hook_sink, "/hooks/anomaly")) == 1
