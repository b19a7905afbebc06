"""The limits page: a customer's user sees each limit with this period's use (the numbers the
entitlement check answers) and lowers it where the plan allows; staff set the customer's own
limits and the plan's limits. Another customer's people get 404; a form without the CSRF token
changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from portal.billing.pdf.text import period_text
from portal.infrastructure.periods import period_for
from portal.state import PortalState
from tests.billing.conftest import create_plan, subscribe
from tests.factories import auth, event, make_customer, make_meter
from tests.ingest.test_pipeline import send
from tests.pages.helpers import Client, make_user, sign_in

ALICE = "alice@acme.test"
ADA = "ada@vendor.test"
PAGE = "/portal/customers/acme/limits"
PLAN = {
    "id": "metered",
    "name": "Metered",
    "currency": "EUR",
    "charges": [{"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.01"}],
}


@pytest.fixture(autouse=True)
def fresh_book(client: Client) -> None:
    """The app is shared by every test: forget the limits a previous test's customers had."""
    portal: PortalState = client.app.state.portal
    portal.entitlements.invalidate()


async def plan_limits(client: Client, admin_key: str, limits: list[dict[str, Any]]) -> None:
    response = await client.put("/v1/plans/metered/limits", headers=auth(admin_key), json={"limits": limits})
    assert response.status_code == 200, response.text


async def acme_on_plan(
    client: Client, admin_key: str, ingest_key: str, *, used: int = 7250, may_lower: bool = True
) -> str:
    """acme (UTC) on a plan with a hard limit of 10,000 calls a period, `used` calls so far;
    the period's text as the page words it."""
    await make_customer(client, admin_key)
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    await make_meter(client, admin_key, metric="storage_gb", aggregation="max", unit="GB")
    await create_plan(client, admin_key, PLAN)
    subscription = await subscribe(client, admin_key, "acme", planId="metered")
    await plan_limits(
        client,
        admin_key,
        [{"meter": "api_calls", "limit": "10000", "enforcement": "hard", "customerMayLower": may_lower}],
    )
    if used:
        await send(client, ingest_key, [event(quantity=used)])
    period = period_for(datetime.now(UTC), "UTC", subscription["anchorDay"])
    return period_text(period.start, period.end, "UTC")


async def limit_of(client: Client, ingest_key: str) -> tuple[str | None, bool]:
    """What the entitlement check answers now: the limit and whether more is allowed."""
    response = await client.post(
        "/v1/entitlements/check",
        headers=auth(ingest_key),
        json={"checks": [{"customerId": "acme", "meter": "api_calls"}]},
    )
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    return result["limit"], result["allowed"]


async def lower(client: Client, csrf: str, limit: str, action: str = "lower") -> Any:
    form = {"csrf_token": csrf, "meter": "api_calls", "limit": limit, "action": action}
    return await client.post(f"{PAGE}/own", data=form, follow_redirects=False)


async def own_rules(pg: asyncpg.Connection) -> list[tuple[str, str, str]]:
    rows = await pg.fetch(
        "SELECT metric_name, limit_quantity::text AS q, set_by FROM customer_entitlements ORDER BY 1"
    )
    return [(r["metric_name"], r["q"], r["set_by"]) for r in rows]


async def test_a_customer_sees_its_limit_with_this_periods_use(
    client: Client, admin_key: str, ingest_key: str, pg: asyncpg.Connection
) -> None:
    period = await acme_on_plan(client, admin_key, ingest_key)
    await make_user(pg, ALICE, customer_id="acme")
    await sign_in(client, ALICE)
    html = (await client.get(PAGE)).text
    assert '<a href="/portal/customers/acme/limits" aria-current="page">Limits</a>' in html
    assert "<strong>7,250 of 10,000 calls</strong> — 72%" in html
    assert 'max="10000" value="7250"' in html
    assert "<dt>Remaining</dt><dd>2,750 calls</dd>" in html
    assert "Hard limit: usage beyond it is refused" in html
    assert f"<dt>Period</dt><dd>{period}</dd>" in html
    assert "Your plan" in html and "Limit reached" not in html
    assert "At most 10,000 calls, your plan's limit." in html
    # The overview's meter card says the limit too.
    overview = (await client.get("/portal/customers/acme")).text
    assert "72% of the 10,000 calls hard limit this period." in overview


async def test_a_customer_lowers_its_limit_and_goes_back_to_the_plans(
    client: Client, admin_key: str, ingest_key: str, pg: asyncpg.Connection
) -> None:
    await acme_on_plan(client, admin_key, ingest_key)
    await make_user(pg, ALICE, customer_id="acme")
    csrf = await sign_in(client, ALICE)
    response = await lower(client, csrf, "5,000")
    assert response.status_code == 303
    assert response.headers["location"] == f"{PAGE}?done=lowered"
    html = (await client.get(response.headers["location"])).text
    assert "Your new limit is saved." in html
    assert "<strong>7,250 of 5,000 calls</strong> — 145%" in html
    assert "<dt>Remaining</dt><dd>0 calls</dd>" in html
    assert '<span class="pill danger">Limit reached</span>' in html
    assert "Use the plan's limit (10,000 calls)" in html
    # The check answers with the new limit at once, and the audit log has the change.
    assert await limit_of(client, ingest_key) == ("5000", False)
    assert await own_rules(pg) == [("api_calls", "5000", "customer")]
    audit = await pg.fetchval("SELECT count(*) FROM audit_log WHERE action = 'customer.entitlement.own'")
    assert audit == 1

    back = await lower(client, csrf, "", action="plan")
    assert back.headers["location"] == f"{PAGE}?done=plan"
    html = (await client.get(back.headers["location"])).text
    assert "<strong>7,250 of 10,000 calls</strong> — 72%" in html
    assert await limit_of(client, ingest_key) == ("10000", True)
    assert await own_rules(pg) == []


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("20000", "Your plan&#39;s limit is 10,000 calls: you can set a lower limit, not a higher one."),
        ("lots", "Enter a number, such as 5,000 calls (digits, and a point for decimals)."),
        ("", "Enter a number, such as 5,000 calls."),
        ("-5", "A limit cannot be below 0."),
    ],
    ids=["above-plan", "not-a-number", "blank", "negative"],
)
async def test_a_limit_the_customer_may_not_set_is_refused_in_words(
    client: Client, admin_key: str, ingest_key: str, pg: asyncpg.Connection, typed: str, message: str
) -> None:
    await acme_on_plan(client, admin_key, ingest_key, used=0)
    await make_user(pg, ALICE, customer_id="acme")
    csrf = await sign_in(client, ALICE)
    response = await lower(client, csrf, typed)
    assert response.status_code == 422
    assert f'<p class="field-error" id="limit-1-error">{message}</p>' in response.text
    assert f'value="{typed}"' in response.text and 'aria-invalid="true"' in response.text
    assert await own_rules(pg) == []
    assert await limit_of(client, ingest_key) == ("10000", True)


async def test_a_plan_that_does_not_let_customers_lower_shows_no_form(
    client: Client, admin_key: str, ingest_key: str, pg: asyncpg.Connection
) -> None:
    await acme_on_plan(client, admin_key, ingest_key, used=0, may_lower=False)
    await make_user(pg, ALICE, customer_id="acme")
    csrf = await sign_in(client, ALICE)
    html = (await client.get(PAGE)).text
    assert "Your plan sets this limit; it cannot be changed here." in html
    assert "/limits/own" not in html
    # A hand-made request is refused the same way, and changes nothing.
    response = await lower(client, csrf, "5000")
    assert response.status_code == 422
    assert "That limit cannot be changed here. Nothing was saved." in response.text
    assert await own_rules(pg) == []


async def test_a_customer_without_limits_reads_one_plain_sentence(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await make_customer(client, admin_key)
    await make_user(pg, ALICE, customer_id="acme")
    await sign_in(client, ALICE)
    html = (await client.get(PAGE)).text
    assert "Your plan sets no usage limits: nothing you use is refused or flagged." in html
    assert "<form" not in html.split("<main")[1].replace('<form class="logout"', "")


async def test_another_customers_limits_are_not_found_and_csrf_is_required(
    client: Client, admin_key: str, ingest_key: str, pg: asyncpg.Connection
) -> None:
    await acme_on_plan(client, admin_key, ingest_key, used=0)
    await make_customer(client, admin_key, id="globex", name="Globex")
    await make_user(pg, "gus@globex.test", customer_id="globex")
    await make_user(pg, ALICE, customer_id="acme")
    gus_csrf = await sign_in(client, "gus@globex.test")
    assert (await client.get(PAGE)).status_code == 404
    assert (await lower(client, gus_csrf, "5000")).status_code == 404
    assert (await client.post(f"{PAGE}/staff", data={"csrf_token": gus_csrf})).status_code == 404
    alice_csrf = await sign_in(client, ALICE)
    # Her own customer's staff form is not hers either.
    assert (await client.post(f"{PAGE}/staff", data={"csrf_token": alice_csrf})).status_code == 403
    # No CSRF token: refused before anything is read, nothing changed.
    response = await client.post(
        f"{PAGE}/own", data={"meter": "api_calls", "limit": "5000"}, follow_redirects=False
    )
    assert response.status_code == 403
    assert "This form has expired or was sent from another site." in response.text
    assert await own_rules(pg) == []


async def test_staff_set_the_customers_own_limits_within_the_plans(
    client: Client, admin_key: str, ingest_key: str, pg: asyncpg.Connection
) -> None:
    await acme_on_plan(client, admin_key, ingest_key)
    await make_user(pg, ADA, role="account_manager", assigned=("acme",))
    await make_user(pg, ALICE, customer_id="acme")
    csrf = await sign_in(client, ADA)
    html = (await client.get(PAGE)).text
    assert "The customer's own limits" in html and "<dt>Set by</dt>" in html
    assert "10,000 calls, hard" in html  # the plan's limit beside the field
    # Staff do not use the customer's form.
    assert (await lower(client, csrf, "5000")).status_code == 403

    base = {
        "csrf_token": csrf,
        "enforcement.api_calls": "hard",
        "limit.storage_gb": "",
        "enforcement.storage_gb": "hard",
    }
    above = await client.post(
        f"{PAGE}/staff", data={**base, "limit.api_calls": "12000"}, follow_redirects=False
    )
    assert above.status_code == 422
    assert (
        "the plan&#39;s limit is 10,000 calls: a customer&#39;s own limit can only be lower or the same"
        in above.text
    )
    soft = await client.post(
        f"{PAGE}/staff",
        data={**base, "limit.api_calls": "8000", "enforcement.api_calls": "soft"},
        follow_redirects=False,
    )
    assert soft.status_code == 422
    assert "the plan&#39;s limit is hard, so the customer&#39;s own limit is hard too" in soft.text
    assert await own_rules(pg) == []

    saved = await client.post(
        f"{PAGE}/staff",
        data={**base, "limit.api_calls": "8000", "limit.storage_gb": "50", "enforcement.storage_gb": "soft"},
        follow_redirects=False,
    )
    assert saved.status_code == 303 and saved.headers["location"] == f"{PAGE}?done=staff"
    html = (await client.get(saved.headers["location"])).text
    assert "<strong>7,250 of 8,000 calls</strong> — 90%" in html
    assert "The customer's own limit, set by staff (the plan's: 10,000 calls)" in html
    assert "Soft: the customer is told, nothing is refused" in html  # storage, no plan limit
    assert await own_rules(pg) == [("api_calls", "8000", "staff"), ("storage_gb", "50", "staff")]
    assert await limit_of(client, ingest_key) == ("8000", True)
    assert "already reached the hard limit" not in html

    # A hard limit at or below this period's use (7,250 calls) takes effect at once: the
    # notice says so beside "saved"
    below = await client.post(
        f"{PAGE}/staff",
        data={**base, "limit.api_calls": "7,000", "limit.storage_gb": "50", "enforcement.storage_gb": "soft"},
    )
    assert below.status_code == 200
    assert (
        "The customer&#39;s own limits are saved. They count from now on. The customer&#39;s use this "
        "period has already reached the hard limit on API calls: further usage there is refused "
        "until the period ends." in below.text
    )
    assert await limit_of(client, ingest_key) == ("7000", False)
    back = await client.post(
        f"{PAGE}/staff",
        data={**base, "limit.api_calls": "8000", "limit.storage_gb": "50", "enforcement.storage_gb": "soft"},
    )
    assert back.status_code == 200 and "already reached" not in back.text

    # The customer's user sees who set it, and cannot lift it.
    alice_csrf = await sign_in(client, ALICE)
    html = (await client.get(PAGE)).text
    assert "Your account manager set this limit. Ask them to change it." in html
    assert (await lower(client, alice_csrf, "", action="plan")).status_code == 422
    assert await limit_of(client, ingest_key) == ("8000", True)


async def test_an_admin_sets_a_plans_limits(
    client: Client, admin_key: str, ingest_key: str, pg: asyncpg.Connection
) -> None:
    await acme_on_plan(client, admin_key, ingest_key, used=0)
    await make_user(pg, ADA, role="admin")
    csrf = await sign_in(client, ADA)
    html = (await client.get("/portal/admin/plans/metered")).text
    assert 'name="limit.api_calls" type="text"' in html and 'value="10000"' in html

    url = "/portal/admin/plans/metered/limits"
    form = {
        "csrf_token": csrf,
        "limit.api_calls": "2,500",
        "enforcement.api_calls": "soft",
        "limit.storage_gb": "abc",
        "enforcement.storage_gb": "hard",
    }
    refused = await client.post(url, data=form, follow_redirects=False)
    assert refused.status_code == 422
    assert (
        "Storage GB: limit: Enter a number, such as 5,000 GB (digits, and a point for decimals)"
        in refused.text
    )
    assert 'value="2,500"' in refused.text

    saved = await client.post(url, data={**form, "limit.storage_gb": ""}, follow_redirects=False)
    assert saved.status_code == 303
    assert saved.headers["location"] == "/portal/admin/plans/metered?done=limits#limits"
    listing = await client.get("/v1/plans/metered/limits", headers=auth(admin_key))
    assert listing.json() == [
        {"meter": "api_calls", "limit": "2500", "enforcement": "soft", "customerMayLower": False}
    ]
    audit = await pg.fetchval("SELECT count(*) FROM audit_log WHERE action = 'plan.entitlements'")
    assert audit == 2  # the API's and the page's
    assert await limit_of(client, ingest_key) == ("2500", True)
    # Customers cannot open it.
    await make_user(pg, ALICE, customer_id="acme")
    alice_csrf = await sign_in(client, ALICE)
    assert (await client.post(url, data={**form, "csrf_token": alice_csrf})).status_code == 403
