"""Single events sent at the same time are ingested together (one marker check, hand-off
and apply for the group), and each request is still answered for its own event exactly as
if it had come alone, in some order."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.infrastructure.settings import Settings
from portal.ingest.service import Ingestor
from portal.state import PortalState
from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event
from tests.ingest.test_pipeline import catalog, usage

__all__ = ["catalog"]  # the fixture, shared with the pipeline's tests

CONFLICT = "eventId: already used by a different event (conflict); not counted"


async def test_concurrent_single_events_are_each_answered_for_their_own_event(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    groups: list[int] = []
    real_ingest = Ingestor._ingest

    async def counted(self: Ingestor, raw_events: Any) -> Any:
        groups.append(len(raw_events))
        return await real_ingest(self, raw_events)

    monkeypatch.setattr(Ingestor, "_ingest", counted)
    known = event(quantity=7, dimensions={"region": "eu"})
    answer = await client.post("/v1/events", headers=auth(ingest_key), json=known)
    assert (answer.status_code, answer.json()) == (202, {"accepted": 1, "duplicates": 0, "rejected": []})
    fresh = [event(quantity=q, dimensions={"region": "us"}) for q in range(1, 31)]  # 465
    twin = event(quantity=100, dimensions={"region": "eu"})
    bodies = [
        *fresh,
        known,  # a retry of an earlier request
        {**known, "quantity": 8},  # its id with other content
        twin,
        twin,  # the same new event twice at once: one is accepted, the other a duplicate
        {**event(), "quantity": -1},  # invalid
    ]
    # The web process's ingestor, called as its requests call it (the test client runs
    # requests one after another, so they would never arrive together).
    state = PortalState.open(settings)
    try:
        results = await asyncio.gather(
            *(state.ingestor.ingest_one(json.dumps(body).encode()) for body in bodies)
        )
    finally:
        await state.close()
    answers = [msgspec.to_builtins(result) for result in results]
    assert answers[:30] == [{"accepted": 1, "duplicates": 0, "rejected": []}] * 30
    assert answers[30] == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert answers[31] == {
        "accepted": 0,
        "duplicates": 0,
        "rejected": [{"index": 0, "eventId": known["eventId"], "error": CONFLICT}],
    }
    assert sorted(a["accepted"] for a in answers[32:34]) == [0, 1]
    assert sorted(a["duplicates"] for a in answers[32:34]) == [0, 1]
    assert answers[34]["accepted"] == 0 and answers[34]["rejected"][0]["index"] == 0
    assert len(groups) < 1 + len(bodies)  # events that arrived together went together
    await wait_until_persisted(redis)
    for source in ("live", "billed"):
        assert (await usage(client, admin_key, "api_calls", source))["total"] == "572"  # 7 + 465 + 100
