"""Pages for account managers and admins: customers table, bill review, events, failed
events, drift, webhooks and the audit log (one controller per module)."""

from __future__ import annotations

from typing import Any

from portal.pages.manager.audit import AuditController
from portal.pages.manager.customers import ManagerCustomersController
from portal.pages.manager.drift import DriftController
from portal.pages.manager.event_corrections import EventCorrectionsController
from portal.pages.manager.events import EventsController
from portal.pages.manager.failed import FailedEventsController
from portal.pages.manager.invoice_actions import InvoiceActionsController
from portal.pages.manager.review import ReviewController
from portal.pages.manager.simulation import SimulationController
from portal.pages.manager.webhooks import WebhooksController

manager_handlers: list[Any] = [
    ManagerCustomersController,
    ReviewController,
    InvoiceActionsController,
    EventsController,
    EventCorrectionsController,
    FailedEventsController,
    DriftController,
    AuditController,
    WebhooksController,
    SimulationController,
]
