"""Directional formatting characters in typed text stay inside it (portal/infrastructure/bidi.py):
on pages, in alert emails and Slack text, an override in a name does not reverse the words
after it."""

from __future__ import annotations

import asyncpg
from hypothesis import given
from hypothesis import strategies as st

from alerts.messages import render_email, render_slack
from portal.infrastructure.bidi import isolate
from tests.alerts.test_messages import notice
from tests.factories import make_customer
from tests.pages.helpers import Client, make_user, sign_in

FSI, PDI, RLO, PDF = "\u2068", "\u2069", "\u202e", "\u202c"
DIRECTIONAL = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def leaves_open(text: str) -> bool:
    """Whether an embedding, override or isolate opened in `text` is still open at its end
    (the bidi algorithm's stack, as in UAX #9 rules X1-X8, without the depth limit)."""
    opened: list[bool] = []
    for char in text:
        if char in "\u202a\u202b\u202d\u202e":
            opened.append(False)
        elif char == PDF and opened and not opened[-1]:
            opened.pop()
        elif char in "\u2066\u2067\u2068":
            opened.append(True)
        elif char == PDI and True in opened:
            while not opened.pop():
                pass
    return bool(opened)


def test_plain_text_is_unchanged_and_an_override_is_isolated() -> None:
    assert isolate("Acme Inc") == "Acme Inc"
    assert isolate("شركة أكمي") == "شركة أكمي"  # right-to-left letters need no isolate
    assert isolate(f"Evil{RLO}cni") == f"{FSI}Evil{RLO}cni{PDI}"
    # A stray isolate end would close our isolate early and let the override after it leak.
    assert isolate(f"{PDI}{RLO}x") == f"{FSI}{RLO}x{PDI}"


@given(st.text(alphabet=st.sampled_from([*DIRECTIONAL, "a", "b", " "]), max_size=30))
def test_whatever_is_typed_shows_closed_and_showing_it_again_changes_nothing(text: str) -> None:
    shown = isolate(text)
    assert not leaves_open(shown + "after")
    assert isolate(shown) == shown  # a form field's value saved again is not wrapped again
    if not any(c in DIRECTIONAL for c in text):
        assert shown == text


def test_an_override_in_a_customer_name_stays_inside_it_in_alert_emails_and_slack() -> None:
    name = f"Evil{RLO}cni"
    subject, text, html = render_email(notice(customer_name=name, rule_name=f"rule{RLO}x"))
    assert subject == f"{FSI}{name}{PDI} reached 80% of its API calls budget"
    assert text.splitlines()[0].startswith(f"{FSI}{name}{PDI} reached 80% of its API calls budget: ")
    assert f"Rule: {FSI}rule{RLO}x{PDI}" in text
    assert f"{FSI}{name}{PDI}" in html and not leaves_open(html)
    assert not leaves_open(render_slack(notice(customer_name=name)))


async def test_an_override_in_a_customer_name_stays_inside_it_on_pages(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await make_customer(client, admin_key, id="bidi-co", name=f"Evil{RLO}cni")
    await make_user(pg, "ada-bidi@vendor.test", role="admin")
    await sign_in(client, "ada-bidi@vendor.test")
    page = await client.get("/portal/customers?q=bidi")
    assert page.status_code == 200
    assert f"{FSI}Evil{RLO}cni{PDI}" in page.text
    assert not leaves_open(page.text)
