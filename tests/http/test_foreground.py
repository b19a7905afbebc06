"""Pages before batches (portal/http/foreground.py): a batch being ingested lets the pages
its web process is working on finish between its slices, for a bounded time in all, and is
then counted exactly as ever; a page counts only while the server works on it."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.http.foreground import Foreground, Message
from portal.infrastructure.settings import Settings
from portal.state import PortalState
from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event
from tests.infrastructure.test_metrics import delta, scrape
from tests.ingest.test_pipeline import catalog, usage
from tests.pages.helpers import make_user, sign_in

__all__ = ["catalog"]  # the fixture, shared with the pipeline's tests


async def test_waiting_with_no_page_in_flight_only_lets_the_ready_work_run() -> None:
    deferral = Foreground(batch_deferral_s=60).deferral()
    ran: list[str] = []

    async def ready() -> None:
        ran.append("ready")

    task = asyncio.ensure_future(ready())
    await deferral.wait()
    assert task.done() and ran == ["ready"]


async def test_batches_resume_when_the_last_page_ends() -> None:
    foreground = Foreground(batch_deferral_s=60)
    order: list[str] = []
    foreground.begin()
    foreground.begin()

    async def batch(name: str) -> None:
        await foreground.deferral().wait()
        order.append(name)

    waiting = [asyncio.ensure_future(batch("first batch")), asyncio.ensure_future(batch("second batch"))]
    for _ in range(20):
        await asyncio.sleep(0)
    foreground.end()
    for _ in range(20):
        await asyncio.sleep(0)
    assert order == [] and foreground.in_flight == 1  # one page is still being worked on
    foreground.end()
    order.append("last page ended")
    await asyncio.gather(*waiting)
    assert order == ["last page ended", "first batch", "second batch"]
    assert foreground.in_flight == 0


async def test_a_batch_gives_way_only_for_its_allowance_in_all() -> None:
    foreground = Foreground(batch_deferral_s=0.05)
    foreground.begin()  # pages without a break
    deferral = foreground.deferral()
    other = Foreground(batch_deferral_s=60)
    other.begin()
    patient = asyncio.ensure_future(other.deferral().wait())
    # The first wait gives up by itself, while pages are still in flight...
    await asyncio.wait_for(deferral.wait(), timeout=30)
    assert foreground.in_flight == 1
    # ...and the allowance is spent: the batch's next slices go on at once.
    for _ in range(100):
        await asyncio.wait_for(deferral.wait(), timeout=30)
    # A new batch has an allowance of its own; one waiter giving up cancels no other's wait.
    await asyncio.wait_for(foreground.deferral().wait(), timeout=30)
    assert not patient.done()
    other.end()
    await asyncio.wait_for(patient, timeout=30)


async def test_a_page_counts_from_its_whole_request_to_the_start_of_its_answer() -> None:
    foreground = Foreground()
    seen: list[tuple[str, int]] = []
    body_parts: list[Message] = [
        {"type": "http.request", "body": b"email=", "more_body": True},
        {"type": "http.request", "body": b"a@b.test", "more_body": False},
    ]

    async def receive() -> Message:
        seen.append(("client sends a part", foreground.in_flight))
        return body_parts.pop(0)

    async def send(message: Message) -> None:
        seen.append((message["type"], foreground.in_flight))

    async def page(scope: Any, read: Any, answer: Any) -> None:
        seen.append(("page starts", foreground.in_flight))
        if scope["method"] == "POST":
            while (await read())["more_body"]:
                seen.append(("part read", foreground.in_flight))
            seen.append(("body read", foreground.in_flight))
        await answer({"type": "http.response.start", "status": 200, "headers": []})
        await answer({"type": "http.response.body", "body": b"ok", "more_body": False})

    await foreground.serve(page, {"type": "http", "method": "POST"}, receive, send)
    assert seen == [
        ("page starts", 0),  # a body still to come is the client's time
        ("client sends a part", 0),
        ("part read", 0),
        ("client sends a part", 0),
        ("body read", 1),
        ("http.response.start", 0),  # streaming the answer out is the client's time too
        ("http.response.body", 0),
    ]
    seen.clear()
    await foreground.serve(page, {"type": "http", "method": "GET"}, receive, send)
    assert seen == [("page starts", 1), ("http.response.start", 0), ("http.response.body", 0)]

    async def streaming(scope: Any, read: Any, answer: Any) -> None:
        await answer({"type": "http.response.start", "status": 200, "headers": []})
        # A stream listens for the client going away while it sends: not the page's work.
        body_parts.append({"type": "http.request", "body": b"", "more_body": False})
        await read()
        seen.append(("listened for a disconnect", foreground.in_flight))
        await answer({"type": "http.response.body", "body": b"ok", "more_body": False})

    seen.clear()
    await foreground.serve(streaming, {"type": "http", "method": "GET"}, receive, send)
    assert seen == [
        ("http.response.start", 0),
        ("client sends a part", 0),
        ("listened for a disconnect", 0),
        ("http.response.body", 0),
    ]

    async def failing(scope: Any, read: Any, answer: Any) -> None:
        raise RuntimeError("the page failed")

    with pytest.raises(RuntimeError):
        await foreground.serve(failing, {"type": "http", "method": "GET"}, receive, send)
    assert foreground.in_flight == 0


async def test_the_app_counts_its_pages_in_flight_and_nothing_else(
    client: AsyncTestClient[Any], admin_key: str, catalog: None, pg: asyncpg.Connection
) -> None:
    class Recording(Foreground):
        def __init__(self) -> None:
            super().__init__()
            self.pages = 0

        def begin(self) -> None:
            self.pages += 1
            super().begin()

    portal = client.app.state.portal
    recording = Recording()
    portal.foreground = recording
    await make_user(pg, "viewer@acme.test", customer_id="acme")
    await sign_in(client, "viewer@acme.test")
    pages_after_sign_in = recording.pages
    assert pages_after_sign_in >= 2 and recording.in_flight == 0  # the form and its post

    assert (await client.get("/portal/customers/acme")).status_code == 200
    assert (await client.get("/portal/customers/acme/usage")).status_code == 200
    assert (await client.get("/portal/customers/nobody")).status_code == 404
    assert (recording.pages, recording.in_flight) == (pages_after_sign_in + 3, 0)

    assert (await client.get("/v1/customers/acme", headers=auth(admin_key))).status_code == 200
    assert (await client.get("/healthz")).status_code == 200
    assert (recording.pages, recording.in_flight) == (pages_after_sign_in + 3, 0)


async def test_a_batch_waits_for_the_page_in_flight_then_is_counted_exactly(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    settings: Settings,
) -> None:
    # A web process's state in this test's loop (the test client serves in a loop of its own).
    state = PortalState.open(settings)
    ingestor = state.ingestor
    ingestor.foreground = Foreground(batch_deferral_s=60)
    raw = [msgspec.json.encode(event(quantity=3, dimensions={"region": "eu"})) for _ in range(1000)]
    before = await scrape(client)
    try:
        ingestor.foreground.begin()  # a page is being served
        batch = asyncio.ensure_future(ingestor.ingest(raw))
        for _ in range(50):
            await asyncio.sleep(0.01)
        assert not batch.done()  # held at its first slice boundary
        ingestor.foreground.end()
        result = await asyncio.wait_for(batch, timeout=30)
    finally:
        await state.close()
    assert (result.accepted, result.duplicates, result.rejected) == (1000, 0, [])
    # Operators see the wait (this test's process serves /metrics from the same registry).
    assert delta(before, await scrape(client), "portal_ingest_page_wait_seconds_total") > 0

    await wait_until_persisted(redis)
    for source in ("live", "billed"):
        assert (await usage(client, admin_key, "api_calls", source))["total"] == "3000"
