"""Portal pages: the customer overview (live usage and cost), the customer list, billing
health, and the assembly of every page controller and the template engine."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from functools import lru_cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Request, Response, get
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath, FromQuery
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.status_codes import HTTP_204_NO_CONTENT
from litestar.template.config import TemplateConfig

from portal.dependencies import Db, Portal, ReadDb
from portal.infrastructure import bidi
from portal.infrastructure.paths import STATIC_DIR, TEMPLATES_DIR
from portal.operations.billing_health import billing_health
from portal.pages.access import STAFF_GUARDS, viewer, visible_customer
from portal.pages.formatting import register_filters
from portal.pages.service import usage_panel
from portal.pages.signin import signin_handlers
from portal.pages.web import PageController, page


class CustomerOverviewController(PageController):
    """A customer's current period, live: what every role that may see the customer sees."""

    @get("/customers/{customer_id:str}")
    async def customer(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        db: Db,
        read_db: ReadDb,
        portal: Portal,
    ) -> Template:
        """The usage panel is rendered once here, then refreshes itself. Who may see the
        customer is read on the primary, the panel on the read replica when there is one."""
        customer = await visible_customer(request, db, customer_id)
        panel = await usage_panel(portal, read_db, customer, now=portal.now(), staff=viewer(request).is_staff)
        return page("customer.html", request, customer=customer, panel=panel)

    @get("/customers/{customer_id:str}/usage")
    async def usage(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        db: Db,
        read_db: ReadDb,
        portal: Portal,
        seen: FromQuery[str | None] = None,
    ) -> Response[Any]:
        """The usage panel alone; 204 when it would equal the version the page shows.
        The customer is read through the process's cache: this is polled every 2 s."""
        customer = await visible_customer(request, db, customer_id, portal.customers)
        panel = await usage_panel(portal, read_db, customer, now=portal.now(), staff=viewer(request).is_staff)
        if seen is not None and seen == panel.version:
            return Response(content=None, status_code=HTTP_204_NO_CONTENT)
        return Template(template_name="partials/usage_panel.html", context={"panel": panel})


class StaffPagesController(PageController):
    """Pages for account managers and admins."""

    guards = STAFF_GUARDS

    @get("/health")
    async def health(self, request: Request[Any, Any, Any], db: Db, portal: Portal) -> Template:
        """The four billing-health measures over the last day and the last 30 days. They sum
        every customer's traffic, so only people who see every customer see them."""
        if not viewer(request).sees_all_customers:
            raise PermissionDeniedException(
                "Billing health sums every customer's traffic; it is shown to admins and to "
                "account managers of all customers."
            )
        now = portal.now()
        windows = [
            (label, await billing_health(db, portal.redis, now=now, window=timedelta(days=days)))
            for label, days in (("Last 24 hours", 1), ("Last 30 days", 30))
        ]
        return page("health.html", request, windows=windows)


def _area_handlers() -> list[Any]:
    """The page areas, each in its own module (see portal/pages/README.md)."""
    from portal.pages.admin import admin_handlers
    from portal.pages.alerts import alert_page_handlers
    from portal.pages.invoices import invoice_handlers
    from portal.pages.limits import limit_page_handlers
    from portal.pages.manager import manager_handlers
    from portal.pages.meters import meter_handlers

    return [
        *manager_handlers,
        *meter_handlers,
        *invoice_handlers,
        *admin_handlers,
        *alert_page_handlers,
        *limit_page_handlers,
    ]


page_handlers: list[Any] = [
    *signin_handlers,
    CustomerOverviewController,
    StaffPagesController,
    *_area_handlers(),
]


@lru_cache(maxsize=64)
def _asset_version(name: str) -> str:
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """`/static/<name>?v=<content hash>`: a changed file is never served from a stale cache."""
    return f"/static/{name}?v={_asset_version(name)}"


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        finalize=bidi.finalize,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals["static_url"] = static_url
    register_filters(environment)
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))
