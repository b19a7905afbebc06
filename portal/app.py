"""The Litestar application: `create_app()` builds it from settings."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.config.response_cache import ResponseCacheConfig
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import Empty

from portal.alerting.routes import alert_handlers
from portal.api_docs import api_docs_config
from portal.billing.routes import billing_handlers
from portal.catalog.routes import CustomerController, MeterController
from portal.compat.routes import compat_handlers
from portal.dependencies import provide_read_session, provide_session, provide_state
from portal.entitlements import fast_check
from portal.entitlements.routes import (
    CustomerEntitlementController,
    EntitlementCheckController,
    PlanEntitlementController,
)
from portal.http import short_way
from portal.http.request_checks import PortalRequest, fitting_address
from portal.infrastructure.broker import setup_broker
from portal.infrastructure.collector import keep_startup_out_of_collections
from portal.infrastructure.domain_errors import Problem
from portal.infrastructure.http_errors import api_error, problem_response, unprocessable
from portal.infrastructure.logs import configure as configure_logs
from portal.infrastructure.logs import request_ids
from portal.infrastructure.paths import STATIC_DIR
from portal.infrastructure.settings import Settings, get_settings
from portal.ingest import fast_event
from portal.ingest.archive_routes import ArchiveController
from portal.ingest.routes import EventController, EventCorrectionController
from portal.keys.guard import api_key_guard
from portal.operations.routes import OperationsController, healthz, metrics_endpoint, readyz
from portal.pages.web import failed_anywhere, not_found_anywhere, page_headers
from portal.state import PortalState
from portal.usage.routes import AnomalyController, UsageController
from portal.webhooks.routes import webhook_handlers


async def request_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The app-wide guards as one: `fitting_address` first, so no other check or handler sees
    an unusable path or query, then `api_key_guard`. One guard, because Litestar copies the
    route handler for every guard it calls (~1% of a single-event request's CPU each)."""
    await fitting_address(connection, handler)
    await api_key_guard(connection, handler)


# The portal's pages: people waiting for them (portal/http/foreground.py).
PAGES_PREFIX = "/portal"

# The requests answered before Litestar's per-request work when they are ordinary
# (portal/http/short_way.py): by path, each a coroutine that answers or hands back `receive`.
SHORT_WAYS = {fast_check.CHECK_PATH: fast_check.answer, fast_event.EVENT_PATH: fast_event.answer}


class PortalApp(Litestar):
    """The portal's Litestar app, with a shorter way in for the two requests that come one
    per use of a customer's product: an entitlement check and a single event. Anything the
    short way does not answer goes through Litestar as any other request."""

    short_ways = True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.short_ways and short_way.wants(scope):
            answer = SHORT_WAYS.get(scope["path"])
            if answer is not None:
                rest = await answer(self.state.portal, scope, receive, send)
                if rest is None:
                    return
                receive = rest
        if scope["type"] == "http" and scope["path"].startswith(PAGES_PREFIX):
            # Someone is waiting for this page: batches in this process let it go first.
            await self.state.portal.foreground.serve(super().__call__, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> PortalApp:
    settings = settings or get_settings()
    settings.check()
    role = os.environ.get("PORTAL_LOG_ROLE")
    if role:  # set by the CLI for the processes it starts; tests keep pytest's logging
        configure_logs(role=role)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        setup_broker(settings)
        app.state.portal = PortalState.open(settings)
        if role:  # a served process (tests create many apps in one process: not there)
            keep_startup_out_of_collections()
        try:
            yield
        finally:
            await app.state.portal.close()

    from portal.pages.routes import page_handlers, template_config

    app = PortalApp(
        route_handlers=[
            healthz,
            readyz,
            metrics_endpoint,
            CustomerController,
            MeterController,
            EventController,
            EventCorrectionController,
            ArchiveController,
            UsageController,
            AnomalyController,
            EntitlementCheckController,
            CustomerEntitlementController,
            PlanEntitlementController,
            OperationsController,
            *billing_handlers,
            *alert_handlers,
            *webhook_handlers,
            *page_handlers,
            *compat_handlers,
            create_static_files_router(path="/static", directories=[STATIC_DIR], include_in_schema=False),
        ],
        dependencies={
            "db": Provide(provide_session),
            "read_db": Provide(provide_read_session),
            "portal": Provide(provide_state, sync_to_thread=False),
        },
        guards=[request_guard],
        lifespan=[lifespan],
        template_config=template_config(),
        openapi_config=api_docs_config(title="Usage portal", version="0.1.0"),
        response_cache_config=ResponseCacheConfig(),
        request_max_body_size=5 * 1024 * 1024,
        request_class=PortalRequest,
        middleware=[request_ids],
        before_send=[page_headers],
        exception_handlers={
            ValidationException: unprocessable,
            Problem: problem_response,
            NotFoundException: not_found_anywhere,
            HTTPException: api_error,
            HTTP_500_INTERNAL_SERVER_ERROR: failed_anywhere,
        },
        debug=False,
        # A served process logs through `configure_logs` (JSON lines, secrets masked, role and
        # request id); Litestar's own logging config would replace that root handler with its
        # plain-text one. Tests (no role) keep Litestar's default.
        logging_config=None if role else Empty,
    )
    return app
