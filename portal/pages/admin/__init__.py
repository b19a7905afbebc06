"""Admin pages (/portal/admin): customers, meters, plans and catalog upload, users, API keys,
webhook endpoints. Admins only (access.ADMIN_GUARDS); see portal/pages/README.md for the conventions."""

from __future__ import annotations

from typing import Any

from portal.pages.admin.billing_details import BillingDetailsPagesController
from portal.pages.admin.catalog import CatalogPagesController
from portal.pages.admin.home import AdminHomeController
from portal.pages.admin.keys import KeyPagesController
from portal.pages.admin.people import UserPagesController
from portal.pages.admin.plan_limits import PlanLimitPagesController
from portal.pages.admin.plans import PlanPagesController
from portal.pages.admin.webhooks import WebhookPagesController

admin_handlers: list[Any] = [
    AdminHomeController,
    CatalogPagesController,
    BillingDetailsPagesController,
    PlanPagesController,
    PlanLimitPagesController,
    UserPagesController,
    KeyPagesController,
    WebhookPagesController,
]

__all__ = ["admin_handlers"]
