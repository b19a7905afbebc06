"""The price simulation page: the comparison an account manager reads, the edited prices,
the CSV, mistakes answered with the form, and only the manager's own customers."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import asyncpg

from portal.pages.manager.simulation import month_text
from tests.billing.test_simulation import _next_month, world
from tests.pages.helpers import HTMX, Client, make_user, sign_in
from tests.pages.test_manager_review import words

MANAGER = "max@vendor.test"


async def signed_in_world(client: Client, admin_key: str, pg: asyncpg.Connection, **user: Any) -> str:
    _, month = await world(client, admin_key, pg)
    await make_user(pg, MANAGER, role="account_manager", **({"all_customers": True} | user))
    await sign_in(client, MANAGER)
    return month


def url(month: str, *pairs: tuple[str, str], plan: str = "growth", to: str | None = None) -> str:
    return "/portal/simulation?" + urlencode(
        [("run", "1"), ("plan", plan), ("from", month), ("to", to or month), *pairs]
    )


async def test_the_comparison_says_who_would_pay_more_with_exact_amounts(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    month = await signed_in_world(client, admin_key, pg)
    running = _next_month(month)
    page = await client.get(url(month, ("who", "some"), ("customer", "a"), to=running))
    assert page.status_code == 200, page.text
    text = words(page.text)
    assert f"Left out The period has not ended yet: Customer A ({month_text(running)})." in text
    assert (
        "Customer A" in text
        and "USD 25.00 Not invoiced yet; rated now USD 44.10 USD 19.10 76.40 % Would pay more" in text
    )
    totals = (
        "Totals Currency Periods Billed Simulated Difference Would pay more Would pay less No change "
        "USD 1 (1 customer) USD 25.00 USD 44.10 USD 19.10 (76.40 %) 1 0 0"
    )
    assert totals in text
    assert '<table class="data stack comparison">' in page.text and 'data-label="Difference"' in page.text
    assert "Customer B" not in text.split("Each customer period")[1]


async def test_edited_prices_are_simulated_unsaved_and_every_customer_compared(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    month = await signed_in_world(client, admin_key, pg)
    page = await client.get(
        url(month, ("prices-for", "starter"), ("price.calls", "0.02"), ("who", "all"), plan="starter")
    )
    assert page.status_code == 200, page.text
    text = words(page.text)
    assert "Starter (edited) not saved compared with what was billed" in text
    assert "USD 25.00 Not invoiced yet; rated now USD 40.00 USD 15.00 60.00 % Would pay more" in text
    assert "USD 44.10 Not invoiced yet; rated now USD 40.00 USD -4.10 -9.30 % Would pay less" in text
    assert "Customer EUR" not in text.split("compared with what was billed")[1]
    # The edited figure stays in its field; the plan itself is unchanged
    assert (
        'name="price.calls" inputmode="decimal" maxlength="40" autocomplete="off"\n         value="0.02"'
        in page.text
    )
    assert await pg.fetchval("SELECT count(*) FROM plans") == 3


async def test_the_csv_has_one_row_per_period_as_numbers_and_names_cannot_run(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    month = await signed_in_world(client, admin_key, pg)
    await pg.execute("UPDATE customers SET name = '=HYPERLINK(\"x\")' WHERE id = 'a'")
    page = await client.get(url(month, ("who", "some"), ("customer", "a"), ("customer", "b")))
    csv_url = re.search(r'href="(/portal/simulation\?[^"]+format=csv)"', page.text)
    assert csv_url, page.text
    download = await client.get(csv_url.group(1).replace("&amp;", "&"))
    assert download.status_code == 200
    assert download.headers["content-disposition"] == 'attachment; filename="pricing-simulation.csv"'
    lines = download.text.split("\r\n")
    first, last = re.findall(r"\d{4}-\d{2}-\d{2}", lines[1])
    assert lines == [
        "customer_id,customer_name,period_first_day,period_last_day,currency,invoice_number,"
        "invoice_status,actual,simulated,difference,difference_percent,outcome",
        f'a,"\'=HYPERLINK(""x"")",{first},{last},USD,,not_invoiced,25.00,44.10,19.10,76.40,more',
        f"b,Customer B,{first},{last},USD,,not_invoiced,44.10,44.10,0.00,0.00,same",
        "",
    ]


async def test_mistakes_are_answered_with_the_form_and_the_values_kept(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    month = await signed_in_world(client, admin_key, pg)
    bad_price = await client.get(url(month, ("prices-for", "growth"), ("tier.calls.0", "abc")))
    assert bad_price.status_code == 422
    assert "API calls, price per unit from 0 to 1000: “abc” is not a number such as 0.25." in words(
        bad_price.text
    )
    assert 'value="abc"' in bad_price.text
    bad_month = await client.get(url("2026-13"))
    assert bad_month.status_code == 422
    assert "From: “2026-13” is not a month such as 2026-10." in words(bad_month.text)
    no_plan = await client.get(url(month, plan="<nope>"))
    assert no_plan.status_code == 422
    assert "Plan: choose one of the plans in the list." in words(no_plan.text)
    nobody = await client.get(url(month, ("who", "some")))
    assert nobody.status_code == 422
    assert "Customers: choose at least one customer, or all of them." in words(nobody.text)


async def test_a_manager_simulates_only_the_customers_assigned_to_them(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    month = await signed_in_world(client, admin_key, pg, all_customers=False, assigned=("a",))
    form = await client.get("/portal/simulation")
    assert 'value="a"' in form.text and 'value="b"' not in form.text
    everyone = await client.get(url(month, ("who", "all")))
    assert "Customer B" not in words(everyone.text) and "Customer A" in words(everyone.text)
    other = await client.get(url(month, ("who", "some"), ("customer", "b")))
    assert other.status_code == 422
    assert "Customers: choose customers from the list." in words(other.text)


async def test_choosing_another_plan_shows_its_prices(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await signed_in_world(client, admin_key, pg)
    fragment = await client.get("/portal/simulation/prices?plan=growth", headers=HTMX)
    assert fragment.status_code == 200
    text = words(fragment.text)
    assert "Price per unit from 0 to 1000" in text and "Price per unit above 1000" in text
    assert "Included units" in text and "Amount per period" in text
    assert '<input type="hidden" name="prices-for" value="growth">' in fragment.text
