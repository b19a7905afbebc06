"""The account managers' webhooks page: endpoints, deliveries with their attempts, and
"Send again" (a replay, with CSRF), only for the customers the viewer may see."""

from __future__ import annotations

import re
import time
from typing import Any

import asyncpg

from alerts.signing import verify
from tests.conftest import WorkerProcess
from tests.factories import auth, make_customer
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


async def test_an_admin_adds_pauses_and_deletes_an_endpoint_from_the_portal(
    client: Client, admin_key: str, worker: WorkerProcess, http_receiver: HttpReceiver, pg: asyncpg.Connection
) -> None:
    # Given an admin on the admin webhooks page, with no endpoint yet
    closed = await closed_customer(client, admin_key)
    await make_user(pg, ADMIN, role="admin")
    csrf = await sign_in(client, ADMIN)
    empty = await client.get("/portal/admin/webhooks")
    assert empty.status_code == 200 and "No endpoints yet." in empty.text
    # When the form names no event, or a URL the portal may not call, it comes back (422) with
    # the reason beside the field, and nothing is stored
    url = f"{http_receiver.url}/erp?token=secret"
    none_ticked = await client.post(
        "/portal/admin/webhooks", data={"csrf_token": csrf, "url": url, "description": "ERP"}
    )
    assert none_ticked.status_code == 422 and "Events to send: tick at least one" in none_ticked.text
    ftp = await client.post(
        "/portal/admin/webhooks",
        data={"csrf_token": csrf, "url": "ftp://erp.example.com/x", "event_types": "invoice.drafted"},
    )
    assert ftp.status_code == 422 and "Address (URL): must start with https://" in ftp.text
    assert await pg.fetchval("SELECT count(*) FROM webhook_endpoints") == 0
    # When it names the receiver and one event type
    added = await client.post(
        "/portal/admin/webhooks",
        data={"csrf_token": csrf, "url": url, "description": "ERP", "event_types": "invoice.drafted"},
    )
    # Then the signing secret is shown this once, and the endpoint is listed without its token
    assert added.status_code == 200, added.text
    [secret] = re.findall(r"whsec_[A-Za-z0-9_-]+", added.text)
    listing = await client.get("/portal/admin/webhooks")
    address = f"127.0.0.1:{http_receiver.port}/erp"
    assert address in listing.text and "token=secret" not in listing.text
    assert secret not in listing.text and ">Sending</span>" in listing.text
    [stored] = await endpoints_of(client, admin_key)
    assert stored["eventTypes"] == ["invoice.drafted"]
    assert (stored["description"], stored["enabled"]) == ("ERP", True)
    # And a drafted invoice reaches it, signed with that secret
    await draft_of(client, admin_key, closed)
    [request] = http_receiver.wait_for_requests(1)
    timestamp = request.header("X-Usage-Portal-Timestamp")
    signature = request.header("X-Usage-Portal-Signature")
    assert timestamp is not None and signature is not None
    assert verify(secret, timestamp, request.body, signature, now=time.time())
    assert request.json()["type"] == "invoice.drafted"
    # When the admin pauses it, then resumes it
    paused = await client.post(
        f"/portal/admin/webhooks/{stored['id']}/pause", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert paused.status_code == 303
    assert [e["enabled"] for e in await endpoints_of(client, admin_key)] == [False]
    notice = await client.get(paused.headers["location"])
    assert f"The endpoint {address} is paused" in notice.text and ">Paused</span>" in notice.text
    resumed = await client.post(f"/portal/admin/webhooks/{stored['id']}/resume", data={"csrf_token": csrf})
    assert resumed.status_code == 200 and "is sending again." in resumed.text
    assert [e["enabled"] for e in await endpoints_of(client, admin_key)] == [True]
    # Then deletes it after the confirmation page
    confirm = await client.get(f"/portal/admin/webhooks/{stored['id']}/delete")
    assert confirm.status_code == 200 and "receives invoice drafted" in confirm.text
    deleted = await client.post(f"/portal/admin/webhooks/{stored['id']}/delete", data={"csrf_token": csrf})
    assert deleted.status_code == 200 and "is deleted" in deleted.text and "No endpoints yet." in deleted.text
    assert await endpoints_of(client, admin_key) == []
    assert (await client.get(f"/portal/admin/webhooks/{stored['id']}/delete")).status_code == 404
    # And every action is in the audit log, in order
    actions = [r["action"] for r in await pg.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions == [
        "webhook_endpoint.created",
        "webhook_endpoint.paused",
        "webhook_endpoint.resumed",
        "webhook_endpoint.deleted",
    ]


async def test_only_admins_manage_endpoints(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    # Given an account manager who sees every customer
    await make_user(pg, MANAGER, role="account_manager", all_customers=True)
    csrf = await sign_in(client, MANAGER)
    # Then the admin webhooks page and its actions are refused, and nothing is stored
    assert (await client.get("/portal/admin/webhooks")).status_code == 403
    refused = await client.post(
        "/portal/admin/webhooks",
        data={"csrf_token": csrf, "url": "https://erp.example.com/x", "event_types": "invoice.drafted"},
    )
    assert refused.status_code == 403
    assert await pg.fetchval("SELECT count(*) FROM webhook_endpoints") == 0
    # And their webhooks page does not offer to add endpoints
    page = await client.get("/portal/webhooks")
    assert page.status_code == 200 and "/portal/admin/webhooks" not in page.text


async def endpoints_of(client: Client, key: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/webhook-endpoints", headers=auth(key))
    assert response.status_code == 200, response.text
    return list(response.json())
