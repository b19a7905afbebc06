"""The account managers' webhooks page: endpoints, deliveries with their attempts, and
"Send again" (a replay, with CSRF), only for the customers the viewer may see."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.conftest import WorkerProcess
from tests.factories import make_customer
from tests.pages.helpers import Client, make_user, sign_in
from tests.sinks import HttpReceiver
from tests.webhooks.conftest import closed_customer, deliveries, draft_of, endpoint
from tests.webhooks.test_webhooks_e2e import settled

ADMIN = "ada@vendor.test"
MANAGER = "max@vendor.test"


async def test_deliveries_are_listed_with_their_attempts_and_sent_again_from_the_page(
    client: Client,
    admin_key: str,
    worker: WorkerProcess,
    http_receiver: HttpReceiver,
    pg: asyncpg.Connection,
) -> None:
    # Given a drafted invoice whose delivery was refused once (HTTP 500), then accepted
    closed = await closed_customer(client, admin_key)
    await endpoint(client, admin_key, f"{http_receiver.url}/erp?token=secret", ["invoice.drafted"])
    http_receiver.fail_first["/erp"] = 1
    await draft_of(client, admin_key, closed)
    [delivery] = await settled(client, admin_key, 1)
    await make_user(pg, ADMIN, role="admin")
    # When an admin opens the webhooks page
    csrf = await sign_in(client, ADMIN)
    listing = await client.get("/portal/webhooks")
    # Then the endpoint and the delivery are shown in plain words, the token never
    assert listing.status_code == 200, listing.text
    text = listing.text
    address = f"127.0.0.1:{http_receiver.port}/erp"
    assert text.count(address) == 2 and "secret" not in text and "evt_" not in text
    assert "Invoice drafted" in text and "Acme Inc" in text and ">Delivered</span>" in text
    assert "answered HTTP 500" in text and "accepted (HTTP 200)" in text
    assert '<td data-label="Attempts" class="num">2</td>' in text
    # When "Send again" is pressed without the session's CSRF token, nothing is sent
    refused = await client.post(f"/portal/webhooks/deliveries/{delivery['id']}/replay", data={})
    assert refused.status_code == 403
    # And with it, the same event is delivered again, and the replay is in the audit log
    done = await client.post(
        f"/portal/webhooks/deliveries/{delivery['id']}/replay",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    assert (done.status_code, done.headers["location"]) == (303, "/portal/webhooks?done=replayed")
    both = await settled(client, admin_key, 2)
    assert [d["status"] for d in both] == ["delivered", "delivered"]
    first, _, third = http_receiver.wait_for_requests(3)
    assert first.body == third.body
    action: Any = await pg.fetchval("SELECT action FROM audit_log")
    assert action == "webhook_delivery.replay"
    page = await client.get("/portal/webhooks?done=replayed")
    assert "Sent again." in page.text and "sent again on request" in page.text


async def test_a_manager_sees_only_the_deliveries_of_their_customers(
    client: Client, admin_key: str, worker: WorkerProcess, http_receiver: HttpReceiver, pg: asyncpg.Connection
) -> None:
    # Given acme's delivered draft, and a manager of globex only
    closed = await closed_customer(client, admin_key)
    await endpoint(client, admin_key, f"{http_receiver.url}/erp", ["invoice.drafted"])
    await draft_of(client, admin_key, closed)
    [delivery] = await settled(client, admin_key, 1)
    await make_customer(client, admin_key, id="globex", name="Globex")
    await make_user(pg, MANAGER, role="account_manager", assigned=("globex",))
    csrf = await sign_in(client, MANAGER)
    # Then the page lists no delivery for them, and they cannot replay acme's
    listing = await client.get("/portal/webhooks")
    assert listing.status_code == 200 and "Acme Inc" not in listing.text
    assert "No deliveries yet." in listing.text
    replay = await client.post(
        f"/portal/webhooks/deliveries/{delivery['id']}/replay", data={"csrf_token": csrf}
    )
    assert replay.status_code == 404
    assert len(await deliveries(client, admin_key)) == 1
    bad = await client.get("/portal/webhooks?status=lost")
    assert bad.status_code in (400, 422)
