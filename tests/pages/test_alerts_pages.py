"""Alerts self-service pages: rules (and the monthly budget), channels, test notices and the
history, for every role that may see the customer; another customer's people get 404."""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
from redis.asyncio import Redis

from portal.alerting.evaluate import evaluate_customer
from portal.infrastructure.db import create_engine, session_factory, transaction
from portal.infrastructure.settings import Settings
from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter
from tests.pages.helpers import Client, make_user, sign_in

ALICE = "alice@acme.test"  # a customer user of acme
BASE = "/portal/customers/acme/alerts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def acme_user(client: Client, admin_key: str, pg: asyncpg.Connection, **customer: Any) -> str:
    """Customer acme (EUR, Europe/Berlin unless told) and its user alice, signed in; her CSRF token."""
    await make_customer(client, admin_key, **{"timezone": "Europe/Berlin", **customer})
    await make_user(pg, ALICE, customer_id="acme")
    return await sign_in(client, ALICE)


async def api_rules(client: Client, admin_key: str, customer: str = "acme") -> list[dict[str, Any]]:
    response = await client.get(f"/v1/customers/{customer}/alert-rules", headers=auth(admin_key))
    assert response.status_code == 200, response.text
    rules: list[dict[str, Any]] = response.json()
    for rule in rules:
        rule.pop("createdAt")
    return rules


def rule_form(csrf: str, **fields: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "csrf_token": csrf,
        "name": "Calls",
        "watch": "",
        "budget": "",
        "levels": "",
    }
    form.update(fields)
    return form


def levels_input(value: str) -> str:
    return f'id="rule-levels" name="levels" type="text" inputmode="decimal" value="{value}"'


async def post_form(client: Client, url: str, form: dict[str, Any]) -> Any:
    return await client.post(url, data=form, follow_redirects=False)


async def add_channel(client: Client, csrf: str, name: str, kind: str, destination: str) -> Any:
    return await post_form(
        client,
        f"{BASE}/channels/new",
        {"csrf_token": csrf, "name": name, "kind": kind, "destination": destination},
    )


async def count(pg: asyncpg.Connection, table: str) -> int:
    value: int = await pg.fetchval(f"SELECT count(*) FROM {table}")
    return value


# --- the home -------------------------------------------------------------------------------


async def test_home_says_what_to_do_when_empty(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await acme_user(client, admin_key, pg)
    home = await client.get(BASE)
    assert home.status_code == 200
    assert "No rules yet. Set a monthly budget" in home.text
    assert "No channels yet." in home.text
    assert "No notices yet." in home.text
    assert f'href="{BASE}/rules/new?preset=budget"' in home.text
    assert "<strong>Europe/Berlin</strong>" in home.text


async def test_home_shows_rules_channels_and_history(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    csrf = await acme_user(client, admin_key, pg)
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    hook = await client.post(
        "/v1/customers/acme/alert-channels",
        headers=auth(admin_key),
        json={"name": "ops hook", "destination": "jsons://hooks.example.test/alerts?token=s3cret"},
    )
    assert hook.status_code == 201, hook.text
    made = await client.post(
        "/v1/customers/acme/alert-rules",
        headers=auth(admin_key),
        json={
            "name": "Calls",
            "metricName": "api_calls",
            "levels": ["1000", "25000"],
            "notifyRecovery": True,
        },
    )
    assert made.status_code == 201, made.text
    rule_id, channel_id = made.json()["id"], hook.json()["id"]
    # A firing with a failed delivery, as the evaluator and the worker would have left them.
    firing_id = await pg.fetchval(
        "INSERT INTO alert_firings (rule_id, customer_id, period_start, period_end, level, kind, threshold, "
        "value, notice, fired_at) VALUES ($1, 'acme', '2026-11-01T00:00:00+01', '2026-12-01T00:00:00+01', "
        "25000, 'crossing', 25000, 25310.5, '{}', '2026-11-24T13:05:00Z') RETURNING id",
        rule_id,
    )
    await pg.execute(
        "INSERT INTO alert_deliveries (firing_id, channel_id, customer_id, notice, status, attempts, "
        "last_error, masked_destination, failed_at) VALUES ($1, $2, 'acme', '{}', 'failed', 3, "
        "'HTTP 500 from the receiver', 'jsons://hooks.example.test/alerts', '2026-11-24T13:09:00Z')",
        firing_id,
        channel_id,
    )
    home = await client.get(BASE)
    assert home.status_code == 200
    text = home.text
    assert '<th scope="row">Calls</th>' in text
    assert '<td data-label="Watches">API calls</td>' in text
    assert '<li class="num">1,000 calls</li><li class="num">25,000 calls</li>' in text
    assert "when back below" in text
    assert "All channels" in text
    assert "last notice 24 Nov 2026 14:05 CET" in text
    # The channel as its owner would say it, never the Apprise URL (jsons://…).
    assert f'<th scope="row"><a href="{BASE}/channels/{channel_id}">ops hook</a></th>' in text
    assert (
        '<td data-label="Sends to">Webhook to hooks.example.test<br><code class="alerts-destination">'
        "https://hooks.example.test/alerts</code></td>"
    ) in text
    assert "s3cret" not in text and "jsons://" not in text
    # The history: when (customer's zone), what, rule, level, value, and the delivery's outcome.
    # with the billing period it was about: a notice sent after its period ended says which
    assert (
        '<td data-label="When">24 Nov 2026 14:05 CET<br>'
        '<span class="meta">billing period 1–30 Nov 2026</span></td>' in text
    )
    assert '<td data-label="What">Reached</td>' in text
    assert '<td data-label="Level" class="num">25,000 calls</td>' in text
    assert '<td data-label="Value" class="num">25,310.5 calls</td>' in text
    assert '<span class="alerts-status alerts-status-failed">Failed</span>' in text
    assert "24 Nov 2026 14:09 CET" in text
    assert "(3 attempts)" in text
    assert "Last error: HTTP 500 from the receiver" in text
    assert f'action="{BASE}/channels/{channel_id}/test"' in text
    assert csrf in text
    # A deleted rule's history still reads in its units
    deleted = await client.delete(f"/v1/customers/acme/alert-rules/{rule_id}", headers=auth(admin_key))
    assert deleted.status_code == 204
    after = (await client.get(BASE)).text
    assert '<th scope="row">Calls</th>' not in after
    assert '<td data-label="Level" class="num">25,000 calls</td>' in after
    assert '<td data-label="Value" class="num">25,310.5 calls</td>' in after


# --- rules and budgets ----------------------------------------------------------------------


async def test_monthly_budget_through_the_form(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    csrf = await acme_user(client, admin_key, pg)
    form = await client.get(f"{BASE}/rules/new?preset=budget")
    assert form.status_code == 200
    assert '<label for="rule-budget">Monthly budget (EUR)</label>' in form.text
    assert "<h1>Set a monthly budget</h1>" in form.text
    assert levels_input("50%, 80%, 100%") in form.text
    assert 'name="basis"' not in form.text  # percentages of spend are of the budget: no choice to make
    assert "Notify every channel when spend reaches 50%, 80% and 100% of your monthly budget" in form.text

    saved = await post_form(
        client,
        f"{BASE}/rules/new",
        rule_form(csrf, name="Monthly budget", budget="1,500.50", levels="50%, 80%, 100%"),
    )
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == f"{BASE}?done=budget-created"
    rules = await api_rules(client, admin_key)
    assert rules == [
        {
            "id": rules[0]["id"],
            "customerId": "acme",
            "kind": "threshold",
            "name": "Monthly budget",
            "metricName": None,
            "basis": "budget",
            "budget": "1500.5",
            "levels": ["50", "80", "100"],
            "notifyRecovery": False,
            "notifyForecast": False,
            "channelIds": [],
            "fromPlanRuleId": None,
            "disabledAt": None,
        }
    ]
    home = await client.get(saved.headers["location"])
    assert "Your monthly budget was saved." in home.text
    assert '<td data-label="Budget" class="num">EUR 1,500.50</td>' in home.text
    assert '<li class="num">50%</li><li class="num">80%</li><li class="num">100%</li>' in home.text


async def test_an_anomaly_rule_through_the_form(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    csrf = await acme_user(client, admin_key, pg)
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    form = await client.get(f"{BASE}/rules/new?preset=anomaly")
    assert form.status_code == 200
    assert "<h1>Watch for unusual usage</h1>" in form.text
    assert '<input type="hidden" name="kind" value="anomaly">' in form.text
    assert "Notify at" not in form.text and "Monthly budget" not in form.text
    # Levels or a budget posted anyway are ignored: an anomaly rule has none.
    saved = await post_form(
        client,
        f"{BASE}/rules/new",
        rule_form(
            csrf,
            kind="anomaly",
            name="Odd <calls>",
            watch="api_calls",
            budget="9",
            levels="5%",
        ),
    )
    assert saved.status_code == 303, saved.text
    rules = await api_rules(client, admin_key)
    assert rules == [
        {
            "id": rules[0]["id"],
            "customerId": "acme",
            "kind": "anomaly",
            "name": "Odd <calls>",
            "metricName": "api_calls",
            "basis": "absolute",
            "budget": None,
            "levels": [],
            "notifyRecovery": False,
            "notifyForecast": False,
            "channelIds": [],
            "fromPlanRuleId": None,
            "disabledAt": None,
        }
    ]
    home = await client.get(saved.headers["location"])
    assert "Odd &lt;calls&gt;" in home.text and "Odd <calls>" not in home.text


async def test_create_then_edit_a_meter_rule(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    csrf = await acme_user(client, admin_key, pg)
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    await make_meter(client, admin_key, metric="storage_gb", aggregation="max", unit="GB")
    email = await add_channel(client, csrf, "Ops mail", "email", "ops@acme.test")
    assert email.status_code == 303, email.text
    slack = await add_channel(
        client,
        csrf,
        "Ops Slack",
        "slack",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    )
    assert slack.status_code == 303, slack.text
    mail_id, slack_id = [r["id"] for r in await pg.fetch("SELECT id FROM alert_channels ORDER BY id")]

    created = await post_form(
        client,
        f"{BASE}/rules/new",
        rule_form(
            csrf,
            name="Calls",
            watch="api_calls",
            levels="1,000 calls and 5000 calls",
            channel=[str(slack_id)],
            notify_forecast="1",
        ),
    )
    assert created.status_code == 303, created.text
    [rule] = await api_rules(client, admin_key)
    assert rule == {
        "id": rule["id"],
        "customerId": "acme",
        "kind": "threshold",
        "name": "Calls",
        "metricName": "api_calls",
        "basis": "absolute",
        "budget": None,
        "levels": ["1000", "5000"],
        "notifyRecovery": False,
        "notifyForecast": True,
        "channelIds": [slack_id],
        "fromPlanRuleId": None,
        "disabledAt": None,
    }

    edit_url = f"{BASE}/rules/{rule['id']}/edit"
    form = await client.get(edit_url)
    assert form.status_code == 200
    assert levels_input("1,000, 5,000") in form.text
    assert f'id="rule-channel-{slack_id}" name="channel" value="{slack_id}" checked' in form.text
    assert "Watches <strong>API calls</strong>" in form.text
    assert (
        "Notify “Ops Slack” when API calls usage reaches 1,000 calls and 5,000 calls in a billing period, "
        "and when the trend says it will get there before the period ends."
    ) in form.text
    # What a rule watches is fixed: a posted meter or basis is ignored, the rest changes in place.
    changed = await post_form(
        client,
        edit_url,
        rule_form(
            csrf,
            name="Calls (raised)",
            watch="storage_gb",
            levels="2000; 7,500",
            channel=[str(mail_id), str(slack_id)],
            notify_recovery="1",
        ),
    )
    assert changed.status_code == 303, changed.text
    assert changed.headers["location"] == f"{BASE}?done=rule-updated"
    assert await api_rules(client, admin_key) == [
        {
            **rule,
            "name": "Calls (raised)",
            "levels": ["2000", "7500"],
            "channelIds": [mail_id, slack_id],
            "notifyRecovery": True,
            "notifyForecast": False,
        }
    ]
    home = await client.get(changed.headers["location"])
    assert "Ops mail, Ops Slack" in home.text


async def test_an_anomaly_rule_is_shown_and_renamed(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    """Anomaly rules (made through the API) have no levels: their form edits name and channels."""
    csrf = await acme_user(client, admin_key, pg)
    made = await client.post(
        "/v1/customers/acme/alert-rules",
        headers=auth(admin_key),
        json={"name": "Odd usage", "kind": "anomaly"},
    )
    assert made.status_code == 201, made.text
    rule = made.json()
    home = await client.get(BASE)
    assert '<td data-label="Watches">Unusual usage of every meter</td>' in home.text
    form = await client.get(f"{BASE}/rules/{rule['id']}/edit")
    assert form.status_code == 200
    assert 'name="levels"' not in form.text and 'name="budget"' not in form.text
    renamed = await post_form(client, f"{BASE}/rules/{rule['id']}/edit", {"csrf_token": csrf, "name": "Odd"})
    assert renamed.status_code == 303, renamed.text
    [after] = await api_rules(client, admin_key)
    assert after == {**{k: v for k, v in rule.items() if k != "createdAt"}, "name": "Odd"}


async def test_deleting_a_rule_asks_first(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    csrf = await acme_user(client, admin_key, pg)
    await post_form(client, f"{BASE}/rules/new", rule_form(csrf, name="Spend", levels="100"))
    [rule] = await api_rules(client, admin_key)
    confirm = await client.get(f"{BASE}/rules/{rule['id']}/delete")
    assert confirm.status_code == 200
    assert "<h1>Delete the rule “Spend”?</h1>" in confirm.text
    assert f'<form method="post" action="{BASE}/rules/{rule["id"]}/delete"' in confirm.text
    assert await api_rules(client, admin_key) == [rule]  # asking changed nothing
    deleted = await post_form(client, f"{BASE}/rules/{rule['id']}/delete", {"csrf_token": csrf})
    assert deleted.status_code == 303
    assert await api_rules(client, admin_key) == []
    assert await pg.fetchval("SELECT disabled_at IS NOT NULL FROM alert_rules WHERE id = $1", rule["id"])
    again = await post_form(client, f"{BASE}/rules/{rule['id']}/delete", {"csrf_token": csrf})
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("fields", "field_id", "message"),
    [
        ({"levels": "80, abc"}, "rule-levels", "Notify at: “abc” is not a number."),
        ({"levels": "20k"}, "rule-levels", "Notify at: “20k” is not a number."),
        ({"levels": "5, 0"}, "rule-levels", "Notify at: “0” must be greater than 0."),
        ({"levels": ""}, "rule-levels", "Notify at: give at least one level, such as 5,000 or 80%."),
        ({"levels": "80, 80"}, "rule-levels", "Notify at: must not repeat."),
        (
            {"levels": ";".join(str(n) for n in range(1, 12))},
            "rule-levels",
            "Notify at: give at most 10 levels.",
        ),
        ({"levels": "50%, 5,000"}, "rule-levels", "Notify at: give either amounts or percentages, not both."),
        (
            {"levels": "80%"},
            "rule-budget",
            "Monthly budget: give the amount your percentages are of, such as 500.",
        ),
        ({"levels": "80%", "budget": "-5"}, "rule-budget", "Monthly budget: “-5” must be more than 0."),
        ({"levels": "80%", "budget": "lots"}, "rule-budget", "Monthly budget: “lots” is not an amount."),
        ({"name": ""}, "rule-name", "Rule name: give a name of 1 to 100 characters."),
        ({"watch": "nope"}, "rule-watch", "What to watch: there is no such meter."),
        ({"channel": ["999999"]}, "rule-channels", "Channels: one of the chosen channels no longer exists"),
        ({"channel": ["9" * 5000]}, "rule-channels", "Channels: choose channels from the list."),
        ({"channel": ["²"]}, "rule-channels", "Channels: choose channels from the list."),
    ],
)
async def test_a_rule_form_with_a_mistake_is_refused(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
    fields: dict[str, Any],
    field_id: str,
    message: str,
) -> None:
    csrf = await acme_user(client, admin_key, pg)
    form = rule_form(csrf, **{"name": "Keep <me>", "levels": "80", **fields})
    answer = await post_form(client, f"{BASE}/rules/new", form)
    assert answer.status_code == 422, answer.text
    assert "There is a problem; nothing was saved" in answer.text
    assert re.search(rf'<li><a href="#{field_id}">{re.escape(message)}', answer.text), answer.text
    assert f'id="{field_id}-error"' in answer.text
    if fields.get("name") is None:
        assert 'value="Keep &lt;me&gt;"' in answer.text  # what was typed is kept
    assert levels_input(form["levels"]) in answer.text
    assert await count(pg, "alert_rules") == 0


async def test_an_edit_with_a_mistake_changes_nothing(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    csrf = await acme_user(client, admin_key, pg)
    await post_form(
        client,
        f"{BASE}/rules/new",
        rule_form(csrf, name="Budget", budget="200", levels="80%"),
    )
    [rule] = await api_rules(client, admin_key)
    answer = await post_form(
        client,
        f"{BASE}/rules/{rule['id']}/edit",
        rule_form(csrf, name="Budget 2", budget="", levels="90, -5"),
    )
    assert answer.status_code == 422
    assert '<a href="#rule-levels">Notify at: “-5” must be greater than 0.</a>' in answer.text
    assert 'value="Budget 2"' in answer.text and levels_input("90, -5") in answer.text
    assert await api_rules(client, admin_key) == [rule]
    blank_budget = await post_form(
        client,
        f"{BASE}/rules/{rule['id']}/edit",
        rule_form(csrf, name="Budget", budget="", levels="90"),
    )
    assert blank_budget.status_code == 422
    assert "Monthly budget: give the amount your percentages are of, such as 500." in blank_budget.text
    assert await api_rules(client, admin_key) == [rule]


async def evaluate(settings: Settings) -> None:
    """One evaluation of acme's rules, as the sweep runs it every minute."""
    engine = create_engine(settings.database_url or "", pool_size=1)
    async with transaction(session_factory(engine)) as session:
        await evaluate_customer(session, "acme", now=datetime.now(UTC), settings=settings)
    await engine.dispose()


async def test_edited_levels_fire_once_each(
    client: Client,
    admin_key: str,
    ingest_key: str,
    pg: asyncpg.Connection,
    redis: Redis,
    worker: WorkerProcess,
    settings: Settings,
) -> None:
    """A new level (raised or lowered) has not fired this period and fires at the next
    evaluation once usage reaches it; a level kept as it was does not fire twice."""
    csrf = await acme_user(client, admin_key, pg)
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    made = await post_form(client, f"{BASE}/rules/new", rule_form(csrf, watch="api_calls", levels="10"))
    assert made.status_code == 303
    [rule] = await api_rules(client, admin_key)
    sent = await client.post(
        "/v1/events/batch", headers=auth(ingest_key), json={"events": [event(quantity=5)]}
    )
    assert sent.status_code == 202, sent.text
    await wait_until_persisted(redis)

    async def fired() -> list[tuple[str, str]]:
        await evaluate(settings)
        rows = await pg.fetch(
            "SELECT level, kind FROM alert_firings WHERE rule_id = $1 ORDER BY id", rule["id"]
        )
        return [(str(r["level"]), r["kind"]) for r in rows]

    assert await fired() == []
    edit = f"{BASE}/rules/{rule['id']}/edit"
    lowered = await post_form(client, edit, rule_form(csrf, levels="4"))
    assert lowered.status_code == 303
    assert await fired() == [("4", "crossing")]
    kept = await post_form(client, edit, rule_form(csrf, name="Calls again", levels="4, 6"))
    assert kept.status_code == 303
    assert await fired() == [("4", "crossing")]
    lower_again = await post_form(client, edit, rule_form(csrf, levels="3"))
    assert lower_again.status_code == 303
    assert await fired() == [("4", "crossing"), ("3", "crossing")]
    history = (await client.get(BASE)).text.split('id="history-title"', 1)[1]
    assert history.count('<td data-label="What">Reached</td>') == 2
    assert (
        '<td data-label="Level" class="num">3 calls</td>' in history
        and '<td data-label="Level" class="num">4 calls</td>' in history
    )


# --- channels and test notices --------------------------------------------------------------


async def test_webhook_signing_secret_is_shown_once(
    client: Client, admin_key: str, pg: asyncpg.Connection, redis: Redis
) -> None:
    csrf = await acme_user(client, admin_key, pg)
    created = await add_channel(client, csrf, "Billing hook", "webhook", "https://hooks.acme.test/usage")
    # Post/Redirect/Get: reloading the channel's page cannot add it a second time.
    assert created.status_code == 303, created.text
    channel_id = await pg.fetchval("SELECT id FROM alert_channels WHERE name = 'Billing hook'")
    assert created.headers["location"] == f"{BASE}/channels/{channel_id}?done=channel-created"
    assert [k async for k in redis.scan_iter("alerts-secret:*")] != []
    shown = await client.get(created.headers["location"])
    assert shown.status_code == 200
    assert "<h1>Channel “Billing hook” added</h1>" in shown.text
    assert (
        "Notices go to <strong>Webhook to hooks.acme.test</strong>:\n"
        '  <code class="alerts-destination">https://hooks.acme.test/usage</code>.'
    ) in shown.text
    secret = re.search(
        r'id="signing-secret" class="alerts-secret-value" type="text" readonly '
        r'value="(whsec_[^"]+)"',
        shown.text,
    )
    assert secret, shown.text
    assert '<button type="button" class="secondary" data-copy="signing-secret">Copy</button>' in shown.text
    assert "It is shown only once" in shown.text
    assert [k async for k in redis.scan_iter("alerts-secret:*")] == []
    again = await client.get(created.headers["location"])
    assert again.status_code == 200
    assert secret.group(1) not in again.text and "whsec_" not in again.text
    assert "If you no longer have it, delete the channel" in again.text
    row = await pg.fetchrow("SELECT kind, destination_masked FROM alert_channels WHERE name = 'Billing hook'")
    assert row["kind"] == "webhook" and row["destination_masked"].startswith("jsons://hooks.acme.test/usage")
    home = await client.get(BASE)
    assert secret.group(1) not in home.text
    assert '<code class="alerts-destination">https://hooks.acme.test/usage</code>' in home.text
    email = await add_channel(client, csrf, "Mail", "email", "ops@acme.test")
    assert email.status_code == 303
    mail = await client.get(email.headers["location"])
    assert "Notices go to <strong>Email to ops@acme.test</strong>." in mail.text
    assert "whsec_" not in mail.text and "mailto:" not in mail.text


async def test_channels_read_as_their_owner_typed_them(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    csrf = await acme_user(client, admin_key, pg)
    for name, kind, destination in (
        (
            "Ops Slack",
            "slack",
            "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        ),
        ("Finance", "email", "finance@acme.test"),
        ("Hook", "webhook", "http://hooks.acme.test:8080/in"),
    ):
        assert (await add_channel(client, csrf, name, kind, destination)).status_code == 303
    text = (await client.get(BASE)).text
    assert '<td data-label="Sends to">Slack, through its incoming webhook</td>' in text
    assert '<td data-label="Sends to">Email to finance@acme.test</td>' in text
    assert (
        '<td data-label="Sends to">Webhook to hooks.acme.test<br><code class="alerts-destination">http://hooks.acme.test:8080/in</code></td>'
    ) in text
    assert "XXXXXXXX" not in text and "json://" not in text and "slack://" not in text


@pytest.mark.parametrize(
    ("fields", "field_id", "message"),
    [
        (
            {"kind": "email", "destination": "not-an-address"},
            "channel-destination",
            "Email address: “not-an-address” is not an email address such as ops@example.com.",
        ),
        (
            {"kind": "slack", "destination": "https://example.com/x"},
            "channel-destination",
            "Slack webhook URL: it starts with https://hooks.slack.com/services/",
        ),
        (
            {"kind": "webhook", "destination": "ftp://example.com"},
            "channel-destination",
            "Webhook URL: give an address starting with https:// (or http://).",
        ),
        (
            {"kind": "slack", "destination": "https://hooks.slack.com/services/x"},
            "channel-destination",
            "Slack webhook URL: it cannot be used",
        ),
        ({"name": ""}, "channel-name", "Channel name: give a name of 1 to 100 characters."),
        ({"name": "Taken"}, "channel-name", "Channel name: you already have a channel named “Taken”"),
    ],
)
async def test_a_channel_form_with_a_mistake_is_refused(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
    fields: dict[str, str],
    field_id: str,
    message: str,
) -> None:
    csrf = await acme_user(client, admin_key, pg)
    assert (await add_channel(client, csrf, "Taken", "email", "a@acme.test")).status_code == 303
    form = {"csrf_token": csrf, "name": "New", "kind": "email", "destination": "b@acme.test", **fields}
    answer = await post_form(client, f"{BASE}/channels/new", form)
    assert answer.status_code == 422, answer.text
    assert re.search(rf'<li><a href="#{field_id}">{re.escape(message)}', answer.text), answer.text
    assert f'value="{form["destination"]}"' in answer.text
    assert f'id="channel-kind-{form["kind"]}" name="kind" value="{form["kind"]}" checked' in answer.text
    assert await count(pg, "alert_channels") == 1


async def test_test_notice_records_a_delivery(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    csrf = await acme_user(client, admin_key, pg)
    port = free_port()  # nothing listens there: the send would fail, but it is recorded first
    made = await add_channel(client, csrf, "Local hook", "webhook", f"http://127.0.0.1:{port}/x")
    assert made.status_code == 303
    channel_id = await pg.fetchval("SELECT id FROM alert_channels WHERE name = 'Local hook'")
    sent = await post_form(client, f"{BASE}/channels/{channel_id}/test", {"csrf_token": csrf})
    assert sent.status_code == 303
    assert sent.headers["location"] == f"{BASE}?done=test-queued#history"
    row = await pg.fetchrow(
        "SELECT firing_id, channel_id, customer_id, status, notice->>'kind' AS kind FROM alert_deliveries"
    )
    assert dict(row) == {
        "firing_id": None,
        "channel_id": channel_id,
        "customer_id": "acme",
        "status": "pending",
        "kind": "test",
    }
    home = await client.get(sent.headers["location"])
    assert "A test notice is on its way. Its status under Test notices updates by itself." in home.text
    assert "Reload" not in home.text
    tests = home.text.split("<h3>Test notices</h3>", 1)[1]
    assert "<strong>Local hook</strong>:" in tests
    assert '<span class="alerts-status alerts-status-pending">Pending</span>' in tests
    delivery_id = await pg.fetchval("SELECT id FROM alert_deliveries")
    status_url = f"{BASE}/tests/{delivery_id}"
    assert f'hx-get="{status_url}" hx-trigger="every 1s" hx-swap="outerHTML"' in tests
    # The line polls itself while pending, and says 286 (stop) once the outcome is known.
    pending = await client.get(status_url)
    assert pending.status_code == 200 and 'hx-trigger="every 1s"' in pending.text
    await pg.execute(
        "UPDATE alert_deliveries SET status = 'sent', attempts = 1, sent_at = '2026-11-24T13:09:00Z' "
        "WHERE id = $1",
        delivery_id,
    )
    sent_line = await client.get(status_url)
    assert sent_line.status_code == 286
    assert "hx-trigger" not in sent_line.text
    assert '<span class="alerts-status alerts-status-sent">Sent</span>' in sent_line.text
    assert "24 Nov 2026 14:09 CET" in sent_line.text and "(1 attempt)" in sent_line.text
    assert (await client.get(f"{BASE}/tests/{delivery_id + 1000}")).status_code == 404


async def test_a_sixth_test_notice_in_an_hour_is_refused_on_the_page(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    csrf = await acme_user(client, admin_key, pg)
    # An address of its own: a running worker sends these, and other tests count ops@'s mail
    await add_channel(client, csrf, "Mail", "email", "allowance-page@acme.test")
    channel_id = await pg.fetchval("SELECT id FROM alert_channels")
    for _ in range(5):
        sent = await post_form(client, f"{BASE}/channels/{channel_id}/test", {"csrf_token": csrf})
        assert sent.status_code == 303
    refused = await post_form(client, f"{BASE}/channels/{channel_id}/test", {"csrf_token": csrf})
    assert refused.status_code == 429
    assert "Not just now" in refused.text
    assert "test notices: at most 5 to one address an hour" in refused.text
    assert 3590 <= int(refused.headers["retry-after"]) <= 3600
    assert await count(pg, "alert_deliveries") == 5


async def test_the_channel_form_says_when_a_customer_has_the_most_channels(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    csrf = await acme_user(client, admin_key, pg)
    for i in range(20):
        assert (await add_channel(client, csrf, f"Mail {i}", "email", f"ops{i}@acme.test")).status_code == 303
    refused = await add_channel(client, csrf, "Mail 20", "email", "ops20@acme.test")
    assert refused.status_code == 422
    assert (
        "Channels: customer acme has 20 alert channels, the most one customer may have; "
        "delete one before adding another." in refused.text
    )
    assert await count(pg, "alert_channels") == 20


async def test_deleting_a_channel(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    csrf = await acme_user(client, admin_key, pg)
    await add_channel(client, csrf, "Mail", "email", "ops@acme.test")
    channel_id = await pg.fetchval("SELECT id FROM alert_channels")
    confirm = await client.get(f"{BASE}/channels/{channel_id}/delete")
    assert confirm.status_code == 200 and "<h1>Delete the channel “Mail”?</h1>" in confirm.text
    done = await post_form(client, f"{BASE}/channels/{channel_id}/delete", {"csrf_token": csrf})
    assert done.status_code == 303
    assert await pg.fetchval("SELECT disabled_at IS NOT NULL FROM alert_channels WHERE id = $1", channel_id)
    assert "No channels yet." in (await client.get(BASE)).text
    refused = await post_form(client, f"{BASE}/channels/{channel_id}/test", {"csrf_token": csrf})
    assert refused.status_code == 404
    assert await count(pg, "alert_deliveries") == 0


# --- text people typed is escaped ---------------------------------------------------------


async def test_names_are_escaped(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    csrf = await acme_user(client, admin_key, pg)
    evil = "<script>alert(1)</script>"
    assert (await add_channel(client, csrf, evil, "email", "ops@acme.test")).status_code == 303
    saved = await post_form(client, f"{BASE}/rules/new", rule_form(csrf, name=evil, levels="5"))
    assert saved.status_code == 303
    [rule] = await api_rules(client, admin_key)
    channel_id = await pg.fetchval("SELECT id FROM alert_channels")
    for path in (
        BASE,
        f"{BASE}/rules/{rule['id']}/edit",
        f"{BASE}/rules/{rule['id']}/delete",
        f"{BASE}/channels/{channel_id}/delete",
        f"{BASE}/channels/{channel_id}",
        f"{BASE}/rules/new",
    ):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path
        assert evil not in page.text, path


# --- who may see what ---------------------------------------------------------------------


async def acme_objects(client: Client, admin_key: str) -> tuple[int, int]:
    """A rule and a channel of acme, made through the API; their ids."""
    channel = await client.post(
        "/v1/customers/acme/alert-channels",
        headers=auth(admin_key),
        json={"name": "acme mail", "destination": "mailto://ops@acme.test"},
    )
    rule = await client.post(
        "/v1/customers/acme/alert-rules",
        headers=auth(admin_key),
        json={"name": "acme spend", "levels": ["100"]},
    )
    assert channel.status_code == 201 and rule.status_code == 201
    return int(rule.json()["id"]), int(channel.json()["id"])


def id_routes(customer: str, rule_id: int, channel_id: int) -> list[tuple[str, str]]:
    base = f"/portal/customers/{customer}/alerts"
    return [
        ("GET", base),
        ("GET", f"{base}/rules/new"),
        ("POST", f"{base}/rules/new"),
        ("GET", f"{base}/channels/new"),
        ("POST", f"{base}/channels/new"),
        ("GET", f"{base}/rules/{rule_id}/edit"),
        ("POST", f"{base}/rules/{rule_id}/edit"),
        ("GET", f"{base}/rules/{rule_id}/delete"),
        ("POST", f"{base}/rules/{rule_id}/delete"),
        ("GET", f"{base}/channels/{channel_id}"),
        ("GET", f"{base}/channels/{channel_id}/delete"),
        ("POST", f"{base}/channels/{channel_id}/delete"),
        ("POST", f"{base}/channels/{channel_id}/test"),
    ]


async def test_another_customers_user_gets_404_everywhere(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await make_customer(client, admin_key)
    await make_customer(client, admin_key, id="globex", name="Globex")
    rule_id, channel_id = await acme_objects(client, admin_key)
    await make_user(pg, "gus@globex.test", customer_id="globex")
    csrf = await sign_in(client, "gus@globex.test")
    form = rule_form(csrf, name="hijack", levels="1")
    # acme's pages, and acme's ids under globex's own customer: both 404, nothing changes.
    for customer in ("acme", "globex"):
        for method, path in id_routes(customer, rule_id, channel_id):
            if customer == "globex" and str(rule_id) not in path and str(channel_id) not in path:
                continue
            answer = await (client.get(path) if method == "GET" else post_form(client, path, form))
            assert answer.status_code == 404, (method, path, answer.status_code)
    assert [r["name"] for r in await api_rules(client, admin_key)] == ["acme spend"]
    assert await api_rules(client, admin_key, "globex") == []
    assert await count(pg, "alert_deliveries") == 0
    assert await pg.fetchval("SELECT count(*) FROM alert_channels WHERE disabled_at IS NULL") == 1


async def test_staff_who_may_see_the_customer_manage_its_alerts(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await make_customer(client, admin_key)
    await make_customer(client, admin_key, id="globex", name="Globex")
    rule_id, _ = await acme_objects(client, admin_key)
    await make_user(pg, "mia@vendor.test", role="account_manager", assigned=("acme",))
    await make_user(pg, "max@vendor.test", role="account_manager", assigned=("globex",))
    await make_user(pg, "ada@vendor.test", role="admin")
    for email, expected in (("max@vendor.test", 404), ("mia@vendor.test", 200), ("ada@vendor.test", 200)):
        client.cookies.clear()
        csrf = await sign_in(client, email)
        assert (await client.get(BASE)).status_code == expected, email
        assert (await client.get(f"{BASE}/rules/{rule_id}/edit")).status_code == expected, email
        if expected == 200:
            changed = await post_form(
                client,
                f"{BASE}/rules/{rule_id}/edit",
                rule_form(csrf, name=f"by {email}", levels="150"),
            )
            assert changed.status_code == 303
            assert (await api_rules(client, admin_key))[0]["name"] == f"by {email}"


async def test_changes_need_the_csrf_token_and_a_session(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await acme_user(client, admin_key, pg)
    refused = await post_form(client, f"{BASE}/rules/new", rule_form("wrong", levels="5"))
    assert refused.status_code == 403
    assert await count(pg, "alert_rules") == 0
    client.cookies.clear()
    anonymous = await client.get(BASE, follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == f"/portal/login?next={quote(BASE, safe='')}"


async def test_the_rule_summary_follows_the_form(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await acme_user(client, admin_key, pg)
    summary = await client.get(
        f"{BASE}/rules/summary",
        params={"levels": "50%, 80%", "budget": "1,000", "channel": ["9" * 5000, "²"]},
    )
    assert summary.status_code == 200
    assert summary.text.strip() == (
        '<p class="alerts-summary" id="rule-summary" aria-live="polite">\n'
        "  Notify every channel when spend reaches 50% and 80% of EUR 1,000.00 in a billing period.\n</p>"
    )
    unreadable = await client.get(f"{BASE}/rules/summary", params={"levels": "1e999999"})
    assert unreadable.status_code == 200
    assert "Give the levels to see what this rule will do." in unreadable.text
