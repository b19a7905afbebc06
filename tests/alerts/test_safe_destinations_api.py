"""Destinations into the portal's own network through the product: the admin API and the
customer's portal form refuse them with a 422 naming the reason and store nothing; a
channel saved while its network was allowed is refused by the worker once it is not."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from alerts.destinations import NO_NETWORKS
from portal.app import create_app
from portal.infrastructure.settings import Settings
from tests.alerts.conftest import HttpReceiver
from tests.conftest import ALERT_HTTP_PORT, RUNNING_WORKERS, TEST_ENV, WorkerProcess, wait_for
from tests.factories import auth, make_customer
from tests.pages.helpers import make_user, sign_in

CHANNELS = "/v1/customers/acme/alert-channels"
FORM = "/portal/customers/acme/alerts/channels/new"
ALICE = "alice@acme.test"
PUBLIC_HOSTS = "; notices go only to public hosts"


@pytest.fixture
async def strict_client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app as an operator runs it: no network allowed besides the public ones (the
    suite's own settings allow the loopback, where its sinks listen)."""
    strict = dataclasses.replace(settings, destination_allow_networks=NO_NETWORKS)
    async with AsyncTestClient(app=create_app(strict)) as client:
        yield client


async def channel_count(pg: asyncpg.Connection) -> int:
    value: int = await pg.fetchval("SELECT count(*) FROM alert_channels")
    return value


# --- the admin API -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "detail"),
    [
        (
            "json://169.254.169.254/latest/meta-data/",
            "host 169.254.169.254 is a cloud metadata service address",
        ),
        ("xml://169.254.169.254/", "host 169.254.169.254 is a cloud metadata service address"),
        (
            "json://metadata.google.internal/computeMetadata/v1/",
            "host metadata.google.internal is the name of a cloud metadata service",
        ),
        ("jsons://0xA9FEA9FE/", "host 0xA9FEA9FE (169.254.169.254) is a cloud metadata service address"),
        ("json://10.0.0.1/", "host 10.0.0.1 is a private address (RFC 1918, 10.0.0.0/8)"),
        (
            "json://evil.example@192.168.1.1/",
            "host 192.168.1.1 is a private address (RFC 1918, 192.168.0.0/16)",
        ),
        ("json://[fd00::1]:22/", "host [fd00::1] is a unique local address (RFC 4193, fc00::/7)"),
        ("mailtos://user:pw@10.0.0.25:587/alice@example.com", "host 10.0.0.25 is a private address"),
        ("json://hooks.example.com:99999/", "port 99999 is not a valid port (1 to 65535)"),
    ],
)
async def test_the_admin_api_refuses_a_destination_in_the_portals_network(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: asyncpg.Connection,
    destination: str,
    detail: str,
) -> None:
    await make_customer(client, admin_key, id="acme", currency="USD")
    body = {"name": "x", "destination": destination}
    response = await client.post(CHANNELS, headers=auth(admin_key), json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"destination: {detail}")
    assert await channel_count(pg) == 0


@pytest.mark.parametrize(
    ("destination", "detail"),
    [
        ("json://127.0.0.1:5432/", "host 127.0.0.1 is a loopback address (127.0.0.0/8)"),
        ("json://localhost:6379/", "host localhost resolves to a loopback address (127.0.0.0/8)"),
        ("json://[::1]:22/", "host [::1] is a loopback address (::1)"),
        ("json://0x7f000001/", "host 0x7f000001 (127.0.0.1) is a loopback address (127.0.0.0/8)"),
        ("json://2130706433/", "host 2130706433 (127.0.0.1) is a loopback address (127.0.0.0/8)"),
    ],
)
async def test_with_nothing_allowed_the_loopback_is_refused_in_every_notation(
    strict_client: AsyncTestClient[Any],
    admin_key: str,
    pg: asyncpg.Connection,
    destination: str,
    detail: str,
) -> None:
    await make_customer(strict_client, admin_key, id="acme", currency="USD")
    response = await strict_client.post(
        CHANNELS, headers=auth(admin_key), json={"name": "x", "destination": destination}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == f"destination: {detail}{PUBLIC_HOSTS}"
    assert await channel_count(pg) == 0


# --- the customer's portal form ---------------------------------------------------------------------


async def add_webhook(
    client: AsyncTestClient[Any], admin_key: str, pg: asyncpg.Connection, destination: str
) -> Any:
    await make_customer(client, admin_key, id="acme", currency="USD")
    await make_user(pg, ALICE, customer_id="acme")
    csrf = await sign_in(client, ALICE)
    return await client.post(
        FORM,
        data={"csrf_token": csrf, "name": "Hook", "kind": "webhook", "destination": destination},
        follow_redirects=False,
    )


@pytest.mark.parametrize(
    ("destination", "detail"),
    [
        (
            "http://169.254.169.254/latest/meta-data/",
            "host 169.254.169.254 is a cloud metadata service address (169.254.169.254)",
        ),
        ("https://10.0.0.1/hook", "host 10.0.0.1 is a private address (RFC 1918, 10.0.0.0/8)"),
        (
            "http://metadata.google.internal/",
            "host metadata.google.internal is the name of a cloud metadata service",
        ),
        ("https://hooks.example.com:99999/x", "port 99999 is not a valid port (1 to 65535)"),
    ],
)
async def test_the_portal_form_shows_the_refusal(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: asyncpg.Connection,
    destination: str,
    detail: str,
) -> None:
    answer = await add_webhook(client, admin_key, pg, destination)
    assert answer.status_code == 422, answer.text
    message = f"Webhook URL: it cannot be used ({detail}"
    assert re.search(rf'<li><a href="#channel-destination">{re.escape(message)}', answer.text), answer.text
    assert f'value="{destination}"' in answer.text
    assert await channel_count(pg) == 0


@pytest.mark.parametrize(
    ("destination", "detail"),
    [
        ("http://127.0.0.1:5432/", "host 127.0.0.1 is a loopback address (127.0.0.0/8)"),
        ("http://localhost:6379/", "host localhost resolves to a loopback address (127.0.0.0/8)"),
        ("http://0x7f000001/", "host 0x7f000001 (127.0.0.1) is a loopback address (127.0.0.0/8)"),
        ("http://[::1]:22/", "host [::1] is a loopback address (::1)"),
    ],
)
async def test_with_nothing_allowed_the_portal_form_refuses_the_loopback(
    strict_client: AsyncTestClient[Any],
    admin_key: str,
    pg: asyncpg.Connection,
    destination: str,
    detail: str,
) -> None:
    answer = await add_webhook(strict_client, admin_key, pg, destination)
    assert answer.status_code == 422, answer.text
    assert f"Webhook URL: it cannot be used ({detail}{PUBLIC_HOSTS})." in answer.text
    assert await channel_count(pg) == 0


@pytest.mark.parametrize(
    "destination", ["gopher://127.0.0.1:6379/_INFO", "file:///etc/passwd", "ftp://hooks.example.com/x"]
)
async def test_the_portal_form_takes_only_http_and_https_webhooks(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: asyncpg.Connection,
    destination: str,
) -> None:
    answer = await add_webhook(client, admin_key, pg, destination)
    assert answer.status_code == 422
    assert "Webhook URL: give an address starting with https:// (or http://)." in answer.text
    assert await channel_count(pg) == 0


# --- at send time, in the worker ----------------------------------------------------------------


@pytest.fixture
def strict_worker(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerProcess]:
    """The only worker running, started with nothing allowed (as if the operator emptied
    PORTAL_DESTINATION_ALLOW_NETWORKS after the channel was saved)."""
    monkeypatch.setitem(TEST_ENV, "PORTAL_DESTINATION_ALLOW_NETWORKS", "")
    for other in RUNNING_WORKERS:
        other.stop()
    process = WorkerProcess(settings)
    process.start()
    yield process
    process.stop()


async def test_a_channel_saved_while_allowed_is_refused_by_the_worker_once_it_is_not(
    client: AsyncTestClient[Any],
    admin_key: str,
    strict_worker: WorkerProcess,
    hook_sink: HttpReceiver,
) -> None:
    await make_customer(client, admin_key, id="acme", currency="USD")
    created = await client.post(
        CHANNELS,
        headers=auth(admin_key),
        json={
            "name": "hook",
            "destination": f"json://hooker:s3cret@127.0.0.1:{ALERT_HTTP_PORT}/hooks/refused",
        },
    )
    assert created.status_code == 201, created.text
    test = await client.post(f"{CHANNELS}/{created.json()['id']}/test", headers=auth(admin_key))
    assert test.status_code == 202, test.text

    async def settled() -> dict[str, Any] | None:
        path = f"/v1/alert-deliveries/{test.json()['id']}"
        found = (await client.get(path, headers=auth(admin_key))).json()
        return found if found["status"] != "pending" else None

    delivery = await wait_for(settled, what="the refused delivery to settle")
    reason = (
        "refused by the portal's destination rules: host 127.0.0.1 is a loopback address (127.0.0.0/8)"
        f"{PUBLIC_HOSTS}"
    )
    assert delivery["status"] == "failed"
    assert [(a["attempt"], a["ok"], a["error"]) for a in delivery["attemptLog"]] == [
        (1, False, reason),
        (2, False, reason),
        (3, False, reason),
    ]
    assert "s3cret" not in str(delivery)
    assert [r for r in hook_sink.requests if r.path.startswith("/hooks/refused")] == []
    assert "s3cret" not in strict_worker.output()
