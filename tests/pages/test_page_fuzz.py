"""Every portal route, as the people allowed to use it, with hostile query strings and form
bodies: no answer is a 5xx. A customer user probing the pages, or an account manager pasting
nonsense into a form, gets the page or a clear 4xx, never an error page.

The routes are walked from the application's route table (tests/pages/test_authorization.py
builds it and the world of customer "acme"), so a new page is fuzzed the day it exists. The
requests are drawn by Hypothesis from the field names the templates' forms and the pages'
query strings use, plus names no page uses, with values picked to break parsers: numbers
past any column, NaN, NUL bytes, impossible dates, very long text, markup, path tricks.
The suite's draw is derandomized: every run sends the same requests, and a failure names
the one that failed. `make fuzz` draws more, fresh each time.
"""

from __future__ import annotations

import os
import re
from typing import Any

import asyncpg
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from portal.infrastructure.paths import TEMPLATES_DIR
from tests.conftest import ROOT, WorkerProcess
from tests.pages.helpers import HTMX, Client, make_user, sign_in
from tests.pages.test_authorization import ROUTES, UNSAFE, Route, _acme_world

# The suite's draw is the same every run; `make fuzz` draws more, and fresh ones each time.
LONG_RUN = os.environ.get("PORTAL_FUZZ_EXAMPLES")
CASES_PER_ROUTE = max(1, int(LONG_RUN) // 10) if LONG_RUN else 6
# Sends that would end the session the fuzzing runs in.
SKIPPED = {("POST", "/portal/logout")}


def _field_names() -> list[str]:
    """Every literal `name="…"` of the templates' forms, the names the limit forms build
    from a meter, and the query parameters the page handlers read."""
    names: set[str] = set()
    for template in TEMPLATES_DIR.rglob("*.html"):
        names.update(re.findall(r'name="([A-Za-z_][\w.\-]*)"', template.read_text()))
    for source in (ROOT / "portal" / "pages").rglob("*.py"):
        text = source.read_text()
        names.update(re.findall(r"(\w+): FromQuery", text))
        names.update(re.findall(r'QueryParameter\(name="([\w.\-]+)"', text))
        names.update(re.findall(r'query_params\.get\("([\w.\-]+)"', text))
    names.update(f"{kind}.api_calls" for kind in ("limit", "enforcement", "lower"))
    names.discard("csrf_token")  # sent right on every form; a wrong one is a plain 403
    return sorted(names)


HOSTILE = [
    "",
    " ",
    "0",
    "-1",
    "-0",
    "1.5",
    "1e309",
    "-1e-400",
    "NaN",
    "Infinity",
    "-Infinity",
    "9" * 40,
    "9" * 400,
    "0." + "0" * 60 + "1",
    "2026-02-30",
    "2026-13-01",
    "0000-00-00",
    "9999-12-31T23:59:59Z",
    "1969-12-31",
    "2026-03-08T02:30",
    "a\x00b",
    "\x00",
    "../../../etc/passwd",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "{{ 7*7 }}",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ✓",
    "x" * 20_000,
    "true",
    "null",
    "[]",
    "acme",
    "globex",
    "api_calls",
    "metered",
    "hard",
    "soft",
    "day",
    "hour",
    "month",
    "csv",
    "json",
    "Europe/Paris",
    "Not/AZone",
    "http://169.254.169.254/latest/meta-data/",
    "mailto://a@b",
]
VALUES = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(st.characters(codec="utf-8"), max_size=30),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
)
NAMES = st.one_of(
    st.sampled_from(_field_names()), st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
)
FIELDS = st.dictionaries(
    NAMES,
    st.one_of(VALUES, st.lists(VALUES, min_size=2, max_size=3)),
    max_size=6,
)
# A file a form may post as multipart (the catalog upload reads one): None sends the form
# urlencoded.
FILES = st.one_of(
    st.none(),
    st.tuples(
        st.sampled_from(["catalog.yaml", "catalog.json", "", "../../x.yaml", "a\x00.json"]),
        st.one_of(
            st.binary(max_size=200), st.sampled_from([b"{", b"meters: [", b"- - - -", b"\xff\xfe", b"null"])
        ),
    ),
)
Case = tuple[dict[str, Any], bool, tuple[str, bytes] | None]
CASE = st.tuples(FIELDS, st.booleans(), FILES)  # (query or form fields, sent by htmx, a file)


def _drawn(count: int) -> list[Case]:
    """`count` cases, the same on every run (Hypothesis draws; nothing shrinks here)."""
    found: list[Case] = []

    @settings(
        max_examples=count,
        derandomize=LONG_RUN is None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(CASE)
    def collect(case: Case) -> None:
        found.append(case)

    collect()
    return found


async def _fuzz(client: Client, routes: list[Route], samples: dict[str, str], csrf: str, who: str) -> int:
    """Send every route its cases; returns how many requests went out."""
    cases = _drawn(CASES_PER_ROUTE * len(routes))
    sent = 0
    for number, route in enumerate(routes):
        for fields, htmx, upload in cases[number * CASES_PER_ROUTE : (number + 1) * CASES_PER_ROUTE]:
            headers = {"X-CSRF-Token": csrf, **(HTMX if htmx else {})}
            if route.method in UNSAFE:
                response = await client.request(
                    route.method,
                    route.url(samples),
                    headers=headers,
                    data={**fields, "csrf_token": csrf},
                    files=None if upload is None else {"file": upload},
                    follow_redirects=False,
                )
            else:
                response = await client.request(
                    route.method, route.url(samples), headers=headers, params=fields, follow_redirects=False
                )
            sent += 1
            assert response.status_code < 500, (who, str(route), fields, htmx, upload, response.text[:500])
    return sent


async def test_every_page_answers_hostile_fields_without_a_server_error(
    client: Client,
    pg: asyncpg.Connection,
    admin_key: str,
    ingest_key: str,
    redis: Any,
    worker: WorkerProcess,
) -> None:
    samples = await _acme_world(client, pg, admin_key, ingest_key, redis)
    await make_user(pg, "ada@vendor.test", role="admin")
    routes = [route for route in ROUTES if (route.method, route.path) not in SKIPPED]
    # The customer's own user first: the admin's fuzzing may disable her
    customer_csrf = await sign_in(client, "alice@acme.test")
    sent = await _fuzz(client, routes, samples, customer_csrf, "alice@acme.test")
    client.cookies.clear()
    admin_csrf = await sign_in(client, "ada@vendor.test")
    sent += await _fuzz(client, routes, samples, admin_csrf, "ada@vendor.test")
    assert sent == 2 * CASES_PER_ROUTE * len(routes)


def _multipart(field: str, content: bytes, *, charset: str | None = None) -> tuple[bytes, str]:
    """A multipart body of one field (no filename) and its Content-Type."""
    boundary = "fuzzboundary"
    part_type = f"Content-Type: text/plain; charset={charset}\r\n" if charset else ""
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n{part_type}\r\n'.encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


async def test_a_form_field_that_is_not_text_is_a_400_and_changes_nothing(
    client: Client, pg: asyncpg.Connection
) -> None:
    await make_user(pg, "ada@vendor.test", role="admin")
    csrf = await sign_in(client, "ada@vendor.test")
    for content, charset in ((b"\xff\xfe\x84", None), (b"meter", "no-such-codec")):
        body, content_type = _multipart("name", content, charset=charset)
        # The token in the header: the form is read by the handler
        response = await client.post(
            "/portal/admin/meters", content=body, headers={"Content-Type": content_type, "X-CSRF-Token": csrf}
        )
        assert response.status_code == 400, response.text
        assert "a form field is not text in its charset" in response.text
        # The token in the form itself: the CSRF guard reads it first
        response = await client.post(
            "/portal/admin/meters", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == 400, response.text
    assert await pg.fetchval("SELECT count(*) FROM meters") == 0
    # Anyone may post the sign-in form: refused as well (without a sign-in token: a 403)
    client.cookies.clear()
    body, content_type = _multipart("username", b"\xc3\x28")
    response = await client.post("/portal/login", content=body, headers={"Content-Type": content_type})
    assert response.status_code in (400, 403), response.text
