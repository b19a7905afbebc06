"""The alerts API: bad input is refused naming the problem and stores nothing; plan
default rules reach subscribers; a test notice goes out; the page lists recent alerts."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from tests.alerts.conftest import HttpReceiver
from tests.conftest import ALERT_HTTP_PORT, WorkerProcess, wait_for, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter
from tests.pages.helpers import HTMX, make_user, sign_in

PLAN = {
    "id": "basic",
    "name": "Basic",
    "currency": "USD",
    "charges": [
        {
            "key": "calls",
            "model": "per_unit",
            "meter": "api_calls",
            "unitPrice": "0.01",
            "includedQuantity": "1000",
        }
    ],
}


@pytest.fixture
async def acme(client: AsyncTestClient[Any], admin_key: str) -> None:
    await make_customer(client, admin_key, id="acme", currency="USD")
    await make_customer(client, admin_key, id="other", currency="USD")
    await make_meter(client, admin_key, metric="api_calls")


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"name": "x", "destination": "nonsense"}, 422, "destination"),
        ({"name": "x", "destination": "slack://not-enough"}, 422, "destination"),
        ({"name": "x", "destination": ""}, 422, "destination"),
        ({"name": "", "destination": "mailto://a@b.test"}, 422, "name"),
        ({"destination": "mailto://a@b.test"}, 422, "name"),
        ({"name": "x", "destination": "mailto://a@b.test", "secret": "y"}, 422, "secret"),
    ],
    ids=["not-a-url", "bad-slack", "empty", "empty-name", "no-name", "unknown-field"],
)
async def test_a_bad_channel_is_refused_and_nothing_is_stored(
    client: AsyncTestClient[Any],
    admin_key: str,
    acme: None,
    pg: Any,
    body: dict[str, Any],
    status: int,
    names: str,
) -> None:
    response = await client.post("/v1/customers/acme/alert-channels", headers=auth(admin_key), json=body)
    assert response.status_code == status, response.text
    assert names in response.text
    assert await pg.fetchval("SELECT count(*) FROM alert_channels") == 0


async def test_a_channel_name_is_unique_per_customer(
    client: AsyncTestClient[Any], admin_key: str, acme: None
) -> None:
    body = {"name": "ops", "destination": "mailto://ops@acme.test"}
    assert (
        await client.post("/v1/customers/acme/alert-channels", headers=auth(admin_key), json=body)
    ).status_code == 201
    again = await client.post("/v1/customers/acme/alert-channels", headers=auth(admin_key), json=body)
    assert again.status_code == 409 and "already has a channel named 'ops'" in again.text


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"name": "r", "levels": []}, 422, "levels"),
        ({"name": "r", "levels": ["0"]}, 422, "levels[0]: must be a number greater than 0"),
        ({"name": "r", "levels": ["50", "50"]}, 422, "levels: must not repeat"),
        ({"name": "r", "levels": ["50"], "basis": "budget"}, 422, "budget: a budget rule needs a budget"),
        ({"name": "r", "levels": ["50"], "budget": "10"}, 422, "budget: only for basis 'budget'"),
        ({"name": "r", "levels": ["50"], "basis": "included"}, 422, "give metricName"),
        (
            {"name": "r", "levels": ["50"], "basis": "commitment", "metricName": "api_calls"},
            422,
            "no metricName",
        ),
        ({"name": "r", "levels": ["50"], "basis": "weekly"}, 422, "basis"),
        ({"name": "r", "levels": ["50"], "metricName": "nope"}, 422, "metricName: no meter 'nope'"),
        (
            {"name": "r", "levels": ["50"], "channelIds": [999]},
            422,
            "channelIds: customer acme has no channel 999",
        ),
    ],
    ids=[
        "no-levels",
        "zero-level",
        "repeated",
        "budget-missing",
        "budget-unused",
        "included-spend",
        "commitment-usage",
        "unknown-basis",
        "unknown-meter",
        "foreign-channel",
    ],
)
async def test_a_bad_rule_is_refused_and_nothing_is_stored(
    client: AsyncTestClient[Any],
    admin_key: str,
    acme: None,
    pg: Any,
    body: dict[str, Any],
    status: int,
    message: str,
) -> None:
    response = await client.post("/v1/customers/acme/alert-rules", headers=auth(admin_key), json=body)
    assert response.status_code == status, response.text
    assert message in response.text
    assert await pg.fetchval("SELECT count(*) FROM alert_rules") == 0


async def test_rules_of_another_customer_and_unknown_customers_are_not_found(
    client: AsyncTestClient[Any],
    admin_key: str,
    acme: None,
) -> None:
    created = await client.post(
        "/v1/customers/acme/alert-rules",
        headers=auth(admin_key),
        json={"name": "r", "levels": ["5"], "metricName": "api_calls"},
    )
    rule_id = created.json()["id"]
    assert (
        await client.delete(f"/v1/customers/other/alert-rules/{rule_id}", headers=auth(admin_key))
    ).status_code == 404
    assert (await client.get("/v1/customers/nobody/alert-rules", headers=auth(admin_key))).status_code == 404
    assert (await client.get("/v1/customers/other/alert-rules", headers=auth(admin_key))).json() == []
    assert (
        await client.delete(f"/v1/customers/acme/alert-rules/{rule_id}", headers=auth(admin_key))
    ).status_code == 204
    assert (await client.get("/v1/customers/acme/alert-rules", headers=auth(admin_key))).json() == []


async def test_plan_default_rules_are_copied_to_current_and_new_subscribers(
    client: AsyncTestClient[Any],
    admin_key: str,
    acme: None,
) -> None:
    assert (await client.post("/v1/plans", headers=auth(admin_key), json=PLAN)).status_code == 201
    assert (
        await client.post(
            "/v1/customers/acme/subscriptions", headers=auth(admin_key), json={"planId": "basic"}
        )
    ).status_code == 201
    plan_rule = await client.post(
        "/v1/plans/basic/alert-rules",
        headers=auth(admin_key),
        json={
            "name": "Included calls",
            "metricName": "api_calls",
            "basis": "included",
            "levels": ["80", "100"],
        },
    )
    assert plan_rule.status_code == 201, plan_rule.text
    assert (
        await client.post(
            "/v1/customers/other/subscriptions", headers=auth(admin_key), json={"planId": "basic"}
        )
    ).status_code == 201
    for customer in ("acme", "other"):
        rules = (await client.get(f"/v1/customers/{customer}/alert-rules", headers=auth(admin_key))).json()
        assert [(r["name"], r["basis"], r["levels"], r["fromPlanRuleId"]) for r in rules] == [
            ("Included calls", "included", ["80", "100"], plan_rule.json()["id"])
        ]


async def test_a_test_notice_goes_out_and_its_attempt_is_recorded(
    client: AsyncTestClient[Any],
    admin_key: str,
    acme: None,
    worker: WorkerProcess,
    hook_sink: HttpReceiver,
) -> None:
    created = await client.post(
        "/v1/customers/acme/alert-channels",
        headers=auth(admin_key),
        json={"name": "hook", "destination": f"json://127.0.0.1:{ALERT_HTTP_PORT}/hooks/test-notice"},
    )
    response = await client.post(
        f"/v1/customers/acme/alert-channels/{created.json()['id']}/test", headers=auth(admin_key)
    )
    assert response.status_code == 202, response.text

    async def sent() -> dict[str, Any] | None:
        path = f"/v1/alert-deliveries/{response.json()['id']}"
        found = (await client.get(path, headers=auth(admin_key))).json()
        return found if found["status"] != "pending" else None

    delivery = await wait_for(sent, what="the test delivery")
    assert (delivery["status"], delivery["attempts"], delivery["firingId"]) == ("sent", 1, None)
    assert [(a["attempt"], a["ok"]) for a in delivery["attemptLog"]] == [(1, True)]
    [request] = [r for r in hook_sink.requests if r.path == "/hooks/test-notice"]
    assert request.json()["kind"] == "test" and request.json()["customer"]["id"] == "acme"


async def test_a_customer_has_at_most_20_channels_and_100_rules(
    client: AsyncTestClient[Any], admin_key: str, acme: None, pg: Any
) -> None:
    channels = "/v1/customers/acme/alert-channels"
    for i in range(20):
        body = {"name": f"ops{i}", "destination": f"mailto://ops{i}@acme.test"}
        assert (await client.post(channels, headers=auth(admin_key), json=body)).status_code == 201
    over = await client.post(
        channels, headers=auth(admin_key), json={"name": "one more", "destination": "mailto://x@acme.test"}
    )
    assert over.status_code == 409, over.text
    assert over.json()["detail"] == (
        "channels: customer acme has 20 alert channels, the most one customer may have; "
        "delete one before adding another"
    )
    assert await pg.fetchval("SELECT count(*) FROM alert_channels WHERE customer_id = 'acme'") == 20
    # Another customer's allowance is its own; a deleted channel frees a place.
    body = {"name": "ops", "destination": "mailto://ops@other.test"}
    assert (
        await client.post("/v1/customers/other/alert-channels", headers=auth(admin_key), json=body)
    ).status_code == 201
    first = await pg.fetchval("SELECT min(id) FROM alert_channels WHERE customer_id = 'acme'")
    assert (await client.delete(f"{channels}/{first}", headers=auth(admin_key))).status_code == 204
    again = await client.post(
        channels, headers=auth(admin_key), json={"name": "one more", "destination": "mailto://x@acme.test"}
    )
    assert again.status_code == 201, again.text

    await pg.executemany(
        "INSERT INTO alert_rules (customer_id, name, basis, levels) VALUES ('acme', $1, 'absolute', '{100}')",
        [(f"rule {i}",) for i in range(100)],
    )
    rules = "/v1/customers/acme/alert-rules"
    refused = await client.post(rules, headers=auth(admin_key), json={"name": "r", "levels": ["50"]})
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"] == (
        "rules: customer acme has 100 alert rules, the most one customer may have; "
        "delete one before adding another"
    )
    assert await pg.fetchval("SELECT count(*) FROM alert_rules WHERE customer_id = 'acme'") == 100


async def test_test_notices_are_a_few_an_hour_per_channel(
    client: AsyncTestClient[Any], admin_key: str, acme: None, pg: Any
) -> None:
    made = await client.post(
        "/v1/customers/acme/alert-channels",
        headers=auth(admin_key),
        # An address of its own: a running worker sends these, and other tests count ops@'s mail
        json={"name": "ops", "destination": "mailto://allowance-api@acme.test"},
    )
    test = f"/v1/customers/acme/alert-channels/{made.json()['id']}/test"
    for _ in range(5):
        assert (await client.post(test, headers=auth(admin_key))).status_code == 202
    sixth = await client.post(test, headers=auth(admin_key))
    assert sixth.status_code == 429, sixth.text
    assert sixth.json()["detail"] == (
        "test notices: at most 5 to one address an hour; the next can be sent in 60 minutes"
    )
    assert 3590 <= int(sixth.headers["retry-after"]) <= 3600
    assert await pg.fetchval("SELECT count(*) FROM alert_deliveries") == 5
    # The same address through a channel deleted and added again counts on
    channels = "/v1/customers/acme/alert-channels"
    assert (
        await client.delete(f"{channels}/{made.json()['id']}", headers=auth(admin_key))
    ).status_code == 204
    again = await client.post(
        channels,
        headers=auth(admin_key),
        json={"name": "ops again", "destination": "mailto://allowance-api@acme.test"},
    )
    refused = await client.post(f"{channels}/{again.json()['id']}/test", headers=auth(admin_key))
    assert refused.status_code == 429, refused.text
    # An hour later (by the clock that stamped them) the allowance is back.
    await pg.execute("UPDATE alert_deliveries SET created_at = created_at - interval '61 minutes'")
    back = await client.post(f"{channels}/{again.json()['id']}/test", headers=auth(admin_key))
    assert back.status_code == 202, back.text


async def test_the_customer_page_lists_recent_alerts(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    acme: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: Any,
) -> None:
    await client.post(
        "/v1/customers/acme/alert-rules",
        headers=auth(admin_key),
        json={"name": "Calls watch", "metricName": "api_calls", "levels": ["5"]},
    )
    sent = await client.post("/v1/events", headers=auth(ingest_key), json=event(quantity=7))
    assert sent.status_code == 202
    await wait_until_persisted(redis)

    async def listed() -> str | None:
        panel = (await client.get("/portal/customers/acme/usage", headers=HTMX)).text
        return panel if "Calls watch" in panel else None

    await make_user(pg, "admin@portal.test", role="admin")
    await sign_in(client, "admin@portal.test")
    panel = await wait_for(listed, what="the alert on the page")
    row = re.search(r'<table class="data stack" id="recent-alerts">.*?<tbody>\s*<tr>(.*?)</tr>', panel, re.S)
    assert row is not None
    cells = [re.sub(r"\s+", " ", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]
    # In the rule's terms, as the Alerts tab words them
    assert cells[1:] == ["Reached", "Calls watch", "5 calls", "7 calls", "0 of 0 sent"]
