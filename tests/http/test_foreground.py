"""Pages before batches (portal/http/foreground.py): a batch being ingested lets the pages
its web process is serving finish between its slices, for a bounded time, and is then
counted exactly as ever."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import msgspec
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.http.foreground import Foreground
from portal.infrastructure.settings import Settings
from portal.state import PortalState
from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event
from tests.ingest.test_pipeline import catalog, usage
from tests.pages.helpers import make_user, sign_in

__all__ = ["catalog"]  # the fixture, shared with the pipeline's tests


async def test_waiting_with_no_page_in_flight_only_lets_the_ready_work_run() -> None:
    foreground = Foreground(max_defer_s=60)
    ran: list[str] = []

    async def ready() -> None:
        ran.append("ready")

    task = asyncio.ensure_future(ready())
    await foreground.wait()
    assert task.done() and ran == ["ready"]


async def test_background_work_resumes_when_the_last_page_ends() -> None:
    foreground = Foreground(max_defer_s=60)
    order: list[str] = []
    foreground.begin()
    foreground.begin()

    async def batch(name: str) -> None:
        await foreground.wait()
        order.append(name)

    waiting = [asyncio.ensure_future(batch("first batch")), asyncio.ensure_future(batch("second batch"))]
    for _ in range(20):
        await asyncio.sleep(0)
    foreground.end()
    for _ in range(20):
        await asyncio.sleep(0)
    assert order == [] and foreground.in_flight == 1  # one page is still being served
    foreground.end()
    order.append("last page ended")
    await asyncio.gather(*waiting)
    assert order == ["last page ended", "first batch", "second batch"]
    assert foreground.in_flight == 0


async def test_pages_without_a_break_hold_a_batch_back_only_for_the_bound() -> None:
    foreground = Foreground(max_defer_s=0.05)
    foreground.begin()  # a page that never ends
    short = asyncio.ensure_future(foreground.wait())
    patient = Foreground(max_defer_s=60)
    patient.begin()
    waiting = asyncio.ensure_future(patient.wait())
    # The bounded wait gives up by itself, while the page is still in flight...
    await asyncio.wait_for(short, timeout=30)
    assert foreground.in_flight == 1
    # ...and one waiter giving up does not cancel what another waits on.
    second = asyncio.ensure_future(foreground.wait())
    await asyncio.wait_for(second, timeout=30)
    assert not waiting.done()
    patient.end()
    await asyncio.wait_for(waiting, timeout=30)


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
    ingestor.foreground = Foreground(max_defer_s=60)
    raw = [msgspec.json.encode(event(quantity=3, dimensions={"region": "eu"})) for _ in range(1000)]
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

    await wait_until_persisted(redis)
    for source in ("live", "billed"):
        assert (await usage(client, admin_key, "api_calls", source))["total"] == "3000"
