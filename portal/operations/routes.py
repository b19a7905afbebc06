"""Operational routes: health, failed events, drift between live and billed usage."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, TypeVar

from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter
from sqlalchemy.ext.asyncio import AsyncConnection

from portal.dependencies import Db, Portal
from portal.http.query_params import choice
from portal.http.request_checks import ID_MAX
from portal.http.schemas import CamelStruct
from portal.infrastructure import metrics
from portal.infrastructure.domain_errors import Invalid
from portal.infrastructure.paths import MIGRATIONS_DIR
from portal.ingest import repository as ingest_repository
from portal.ingest.repository import FAILED_EVENT_STATUSES
from portal.live import repository as live_repository
from portal.operations import billing_health, data_gauges
from portal.operations import repository as ops_repository
from portal.operations.billing_health import BillingHealth
from portal.operations.heartbeats import BACKGROUND_ROLES, RolesSeen, read_roles
from portal.operations.status import (
    PERSIST_FAILURE_WINDOW_S,
    InFlight,
    in_flight,
    persist_stall,
    recent_persist_failures,
    store_problem,
    within,
)
from portal.operations.supervisor import RUN_HEADER, UP_MARKER, up_run_token
from portal.state import PortalState
from portal.usage.combine import exact

T = TypeVar("T")


class FailedEventOut(CamelStruct):
    id: int
    message_id: str
    customer_id: str
    event_id: str
    event: dict[str, Any]
    received_at: datetime
    reason: str
    failed_at: datetime
    status: str


class DriftRow(CamelStruct):
    customer_id: str
    metric_name: str
    live: str
    billed: str
    drift: str


class DriftOut(CamelStruct):
    checked_at: datetime | None
    window_start: datetime | None
    window_end: datetime | None
    full_rebuild: bool
    rows: list[DriftRow]


@get("/healthz", tags=["operations"], sync_to_thread=False)
def healthz() -> dict[str, str]:
    """200 while this process is up and serving (liveness). Whether it can do its job
    is /readyz."""
    return {"status": "ok"}


@get("/metrics", tags=["operations"], media_type=metrics.CONTENT_TYPE)
async def metrics_endpoint(portal: Portal) -> Response[bytes]:
    """Prometheus exposition of this machine's processes (see portal/infrastructure/metrics.py), and the
    gauges of the stores (portal/operations/data_gauges.py; left out, not failed, if a store is down).
    Like /healthz it needs no key: serve it on the internal network only."""
    body = metrics.scrape()
    try:
        body += await data_gauges.data_exposition(portal)
    except Exception as exc:  # the process metrics still matter most when a store is down
        body += f"# data gauges unavailable: {type(exc).__name__}\n".encode()
    return Response(body, media_type=metrics.CONTENT_TYPE)


# Under `up`, which `up` this web belongs to (a digest of its data dir): `up` waits for its
# own web, not for another `up`'s that took the port first.
_RUN_HEADERS = {RUN_HEADER: up_run_token(os.environ[UP_MARKER])} if os.environ.get(UP_MARKER) else {}


@get(
    "/readyz",
    tags=["operations"],
    responses={
        503: ResponseSpec(
            dict[str, str],
            description="Not ready: each problem named (a store down, restarting or loading "
            "its data, or the database not migrated to this code's head).",
            generate_examples=False,
        )
    },
)
async def readyz(portal: Portal) -> Response[dict[str, str]]:
    """200 when this process can serve traffic: Postgres, Redis and the broker reachable
    and the database migrated to this code's head; 503 naming each problem otherwise (a
    store down, restarting or loading its data).

    Still 200 but "degraded", naming each, when the pipeline behind ingest is not healthy:
    persist failures in the last PERSIST_FAILURE_WINDOW_S seconds (a message retried,
    events set aside in failed_events) or persisting stalled, under "persist"; a worker or
    scheduler role seen before and alive no more (heartbeats, portal/operations/heartbeats.py), under its
    role's name; the read replica (DATABASE_READ_URL) down or too far behind, under
    "replica" (its reads go to the primary meanwhile). Ingest goes on meanwhile (the broker
    holds what the workers cannot write yet), and taking every web process out of service
    would turn one bad batch or one dead worker into an outage. While Postgres is down
    "persist" also says persisting is stalled."""
    problems = await _store_problems(portal)
    try:
        await within(portal.ping_broker())
    except Exception as exc:
        problems["broker"] = store_problem(exc)
    if "postgres" not in problems:
        try:
            current = await within(_on_engine(portal, ops_repository.migration_version))
        except Exception as exc:
            problems["migrations"] = store_problem(exc)
        else:
            if current != migration_head():
                problems["migrations"] = f"database at {current}, code expects {migration_head()}"
    notes = {} if "redis" in problems else await _pipeline_notes(portal, postgres_down="postgres" in problems)
    if portal.replica is not None and portal.replica.problem is not None:
        # Reads meant for DATABASE_READ_URL's replica go to the primary (as of the last read).
        notes["replica"] = portal.replica.problem
    named = {**problems, **notes}
    if problems:
        return Response({"status": "unavailable", **named}, status_code=503, headers=_RUN_HEADERS)
    if notes:
        return Response({"status": "degraded", **named}, headers=_RUN_HEADERS)
    return Response({"status": "ready"}, headers=_RUN_HEADERS)


async def _pipeline_notes(portal: PortalState, *, postgres_down: bool) -> dict[str, str]:
    """What is wrong behind ingest, by what Redis knows: "persist" (recent failures, a
    stall) and each background role with no process alive."""
    notes: dict[str, str] = {}
    persist = await _persist_problem(portal)
    try:
        roles: RolesSeen | None = await within(read_roles(portal.probe_redis))
        waiting: InFlight | None = await within(in_flight(portal.probe_redis))
    except Exception as exc:
        roles = waiting = None
        notes["roles"] = f"unknown ({store_problem(exc)})"
    stall = persist_stall(postgres_down=postgres_down, waiting=waiting, roles=roles)
    persist = "; ".join(part for part in (persist, stall) if part) or None
    if persist:
        notes["persist"] = persist
    for role in BACKGROUND_ROLES:
        problem = roles.problem(role) if roles is not None else None
        if problem:
            notes[role] = problem
    if roles is not None and (unread := roles.queue_problem()) is not None:
        notes["queues"] = unread
    return notes


async def _persist_problem(portal: PortalState) -> str | None:
    try:
        count, last = await within(recent_persist_failures(portal.probe_redis))
    except Exception as exc:
        return f"persist failures unknown ({type(exc).__name__})"
    if not count or last is None:
        return None
    return f"{count} persist failure(s) in the last {PERSIST_FAILURE_WINDOW_S} s; last: {last.describe()}"


async def _on_engine(portal: PortalState, read: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """`read` on a connection of its own (not a request's session: readiness needs none)."""
    async with portal.engine.connect() as conn:
        return await read(conn)


async def _store_problems(portal: PortalState) -> dict[str, str]:
    problems: dict[str, str] = {}
    try:
        await within(_on_engine(portal, ops_repository.ping))
    except Exception as exc:
        problems["postgres"] = store_problem(exc)
    try:
        await within(portal.probe_redis.ping())
    except Exception as exc:
        problems["redis"] = store_problem(exc)
    return problems


@lru_cache(maxsize=1)
def migration_head() -> str:
    """The newest migration this code ships (read from migrations/, once)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    return str(head)


class OperationsController(Controller):
    path = "/v1"
    tags = ["operations"]
    opt = {"scope": "admin"}

    @get("/failed-events")
    async def failed_events(
        self,
        db: Db,
        status: Annotated[
            str,
            QueryParameter(
                description=", ".join(FAILED_EVENT_STATUSES),
                schema_extra={"enum": list(FAILED_EVENT_STATUSES)},
            ),
        ] = "failed",
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        before: Annotated[
            int | None,
            QueryParameter(
                ge=1, le=ID_MAX, description="A failed event id: only the events listed after it (older)."
            ),
        ] = None,
    ) -> list[FailedEventOut]:
        """Events a worker could not persist, newest first (by `failedAt`, then `id`), with
        the reason; page with `before=<id of the last event>`. An unknown status, or an id
        no failed event has, is a 422."""
        choice("status", status, FAILED_EVENT_STATUSES)
        older_than = None
        if before is not None:
            older_than = await ingest_repository.failed_event_position(db, before)
            if older_than is None:
                raise Invalid(f"before: no failed event {before}")
        rows = await ingest_repository.failed_events_listing(
            db, status=status, limit=limit, older_than=older_than
        )
        return [FailedEventOut(*row) for row in rows]

    @get("/billing-health")
    async def billing_health(
        self,
        db: Db,
        portal: Portal,
        hours: Annotated[int, QueryParameter(ge=1, le=24 * 366)] = 24,
    ) -> BillingHealth:
        """The four billing-health measures over the last `hours`: processing latency,
        billing discrepancy rate, alert accuracy, data quality (see portal/operations/billing_health.py)."""
        return await billing_health.billing_health(
            db, portal.redis, now=portal.now(), window=timedelta(hours=hours)
        )

    @get("/drift")
    async def drift(self, db: Db) -> DriftOut:
        """The last reconcile's drift: live (Redis) minus billed (Postgres), per customer
        and metric, over the settled hours it checked. Only non-zero rows are listed."""
        run = await live_repository.latest_run(db)
        if run is None:
            return DriftOut(None, None, None, False, [])
        run_id, _, finished_at, window_start, window_end, full_rebuild, _ = run
        rows = await live_repository.drift_of_run(db, run_id)
        return DriftOut(
            finished_at,
            window_start,
            window_end,
            full_rebuild,
            [DriftRow(c, m, exact(lv), exact(bv), exact(d)) for c, m, lv, bv, d in rows],
        )
