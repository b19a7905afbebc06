"""Billing API (admin key): plans, subscriptions, credits, invoices, adjustments, review."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing import (
    credits,
    documents,
    export,
    invoices,
    lifecycle,
    plans,
    preview,
    review,
    simulation,
    subscriptions,
)
from portal.billing.repository import adjustments as adjustment_store
from portal.billing.schemas import (
    ApproveRequest,
    CreditGrantCreate,
    DraftRequest,
    Plan,
    PlanCreate,
    Subscription,
    SubscriptionCreate,
    SubscriptionEnd,
    VoidRequest,
)
from portal.billing.simulation_schemas import SimulationRequest, SimulationView
from portal.billing.views import (
    AdjustmentView,
    InvoiceState,
    InvoiceSummary,
    InvoiceView,
    PreviewView,
    ReviewItem,
)
from portal.catalog.schemas import Customer
from portal.catalog.service import get_customer
from portal.dependencies import Db, Portal, ReadDb
from portal.http.created import created
from portal.http.openapi_answers import error_answers
from portal.http.query_params import choice, instant
from portal.http.request_checks import ID_MAX
from portal.infrastructure.domain_errors import NotFound
from portal.infrastructure.periods import period_for, to_datetime
from portal.keys.guard import key_actor
from portal.state import PortalState

ADMIN = {"scope": "admin"}


STATES = ("draft", "awaiting_review", "finalized", "void")
STATUSES = ("draft", "finalized", "void")
STATE_HELP = ", ".join(STATES)
ISO_INSTANT = "an ISO 8601 instant with its offset, e.g. 2026-11-01T00:00:00Z"


def export_filter(
    customer_id: Annotated[str | None, QueryParameter(name="customerId")] = None,
    status: Annotated[str | None, QueryParameter(name="status", description=", ".join(STATUSES))] = None,
    period_from: Annotated[str | None, QueryParameter(name="from", description=ISO_INSTANT)] = None,
    period_to: Annotated[str | None, QueryParameter(name="to", description=ISO_INSTANT)] = None,
) -> export.ExportFilter:
    """The export's query parameters (shared by both CSV routes); errors name them as sent."""
    return export.ExportFilter(
        customer_id,
        choice("status", status, STATUSES),
        instant("from", period_from),
        instant("to", period_to),
    )


Selection = NamedDependency[export.ExportFilter]
EXPORT_FILTER = {"selection": Provide(export_filter, sync_to_thread=False)}


async def _customer(db: AsyncSession, customer_id: str) -> Customer:
    customer = await get_customer(db, customer_id)
    if customer is None:
        raise NotFoundException(f"no customer {customer_id!r}")
    return customer


async def _complete_through(portal: PortalState) -> datetime | None:
    try:
        return to_datetime(await portal.live.watermark_ms() / 1000)
    except Exception:  # Redis down: the invoice is still right, its watermark unknown
        return None


class PlanController(Controller):
    """Plans: currency and charges, as data. Immutable; a price change is a new plan."""

    path = "/v1/plans"
    tags = ["billing"]
    opt = ADMIN

    @post(
        "/",
        status_code=201,
        responses={
            200: ResponseSpec(
                data_container=Plan, description="The same plan exists already: nothing changed."
            ),
            **error_answers(409),
        },
    )
    async def create(self, data: JSONBody[PlanCreate], db: Db) -> Response[Plan]:
        """201 with the plan; 200 if the same plan exists already; 409 if the id is taken
        by another definition; 422 naming the field for a bad charge."""
        plan, is_new = await plans.create_plan(db, data)
        return created(plan, "plans", plan.id) if is_new else Response(plan, status_code=200)

    @get("/")
    async def list_(self, db: Db) -> list[Plan]:
        return await plans.list_plans(db)

    @get("/{plan_id:str}")
    async def get_(self, plan_id: FromPath[str], db: Db) -> Plan:
        return await plans.get_plan(db, plan_id)


class CustomerBillingController(Controller):
    """A customer's subscriptions, prepaid credit, live cost and drafts."""

    path = "/v1/customers/{customer_id:str}"
    tags = ["billing"]
    opt = ADMIN

    @get("/subscriptions")
    async def subscriptions_(self, customer_id: FromPath[str], db: Db) -> list[Subscription]:
        await _customer(db, customer_id)
        return await subscriptions.list_subscriptions(db, customer_id)

    @post("/subscriptions", status_code=201, responses=error_answers(409))
    async def subscribe(
        self, customer_id: FromPath[str], data: JSONBody[SubscriptionCreate], db: Db, portal: Portal
    ) -> Subscription:
        """First subscription, or a plan change (next period by default)."""
        subscription = await subscriptions.subscribe(db, customer_id, data, now=portal.now())
        await portal.entitlements.changed(customer_id)  # its plan's limits, its period
        return subscription

    @post("/subscriptions/end", status_code=200, responses=error_answers(409))
    async def end_subscription(
        self, customer_id: FromPath[str], data: JSONBody[SubscriptionEnd], db: Db, portal: Portal
    ) -> Subscription:
        """End the subscription (when the current period ends by default); answers with it
        as it now ends. Its last period is billed for the part it covered."""
        subscription = await subscriptions.end_subscription(db, customer_id, data, now=portal.now())
        await portal.entitlements.changed(customer_id)  # no plan, so no plan limits, from then
        return subscription

    @get("/credits")
    async def credits_(self, customer_id: FromPath[str], db: Db, portal: Portal) -> credits.CreditBalance:
        customer = await _customer(db, customer_id)
        return await credits.credit_balance(
            db, customer_id, currency=customer.currency, usable_at=portal.now()
        )

    @post("/credits", status_code=201)
    async def grant(
        self, customer_id: FromPath[str], data: JSONBody[CreditGrantCreate], db: Db
    ) -> credits.CreditGrant:
        """Grant prepaid credit in the customer's currency."""
        return await credits.grant_credit(db, customer_id, data)

    @get("/invoices/preview")
    async def preview_(self, customer_id: FromPath[str], db: Db, portal: Portal) -> PreviewView:
        """The current period's cost so far and projected to its end (not stored)."""
        return await preview.preview(
            db, customer_id, now=portal.now(), complete_through=await _complete_through(portal)
        )

    @post("/invoices", status_code=200)
    async def draft(
        self, customer_id: FromPath[str], data: JSONBody[DraftRequest], db: Db, portal: Portal
    ) -> InvoiceView:
        """Create or refresh the draft of a period (default: the current one)."""
        customer = await _customer(db, customer_id)
        subs = await subscriptions.list_subscriptions(db, customer_id)
        if not subs:
            raise NotFound(f"customer {customer_id} has no subscription")
        anchor = subs[-1].anchor_day
        now = portal.now()
        period = (
            subscriptions.month_period(customer.timezone, anchor, data.period)
            if data.period
            else period_for(now, customer.timezone, anchor)
        )
        complete = await _complete_through(portal)
        invoice_id = await invoices.refresh_draft(db, customer, period, complete_through=complete)
        if invoice_id is None:
            raise NotFound(
                f"customer {customer_id} has no subscription in the period starting "
                f"{period.start.isoformat()}"
            )
        return await invoices.get_invoice(
            db, invoice_id, now=now, grace=portal.settings.invoice_grace, complete_through=complete
        )


class InvoiceController(Controller):
    """Invoices: drafts (re-rated whenever read), review, approval, voiding, export."""

    path = "/v1/invoices"
    tags = ["billing"]
    opt = ADMIN

    @get("/")
    async def list_(
        self,
        db: Db,
        portal: Portal,
        customer_id: Annotated[str | None, QueryParameter(name="customerId")] = None,
        invoice_state: Annotated[
            str | None,
            QueryParameter(name="state", description=STATE_HELP, schema_extra={"enum": list(STATES)}),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        before: Annotated[int | None, QueryParameter(ge=1, le=ID_MAX)] = None,
    ) -> list[InvoiceSummary]:
        """Newest first; page with `before=<last id>`."""
        state = cast(InvoiceState | None, choice("state", invoice_state, STATES))
        return await invoices.list_invoices(
            db,
            now=portal.now(),
            grace=portal.settings.invoice_grace,
            customer_id=customer_id,
            state=state,
            limit=limit,
            before_id=before,
        )

    @get("/{invoice_id:int}")
    async def get_(self, invoice_id: FromPath[int], db: Db, portal: Portal) -> InvoiceView:
        return await invoices.get_invoice(
            db,
            invoice_id,
            now=portal.now(),
            grace=portal.settings.invoice_grace,
            complete_through=await _complete_through(portal),
        )

    @post("/{invoice_id:int}/approve", status_code=200, responses=error_answers(409))
    async def approve(
        self,
        invoice_id: FromPath[int],
        data: JSONBody[ApproveRequest],
        db: Db,
        portal: Portal,
        request: Request[Any, Any, Any],
    ) -> InvoiceView:
        """Finalize a draft awaiting review: numbered, immutable, prepaid credit drawn."""
        approved_by = data.approved_by or key_actor(request)
        grace, now = portal.settings.invoice_grace, portal.now()
        invoice = await lifecycle.approve(
            db,
            invoice_id,
            approved_by=approved_by,
            now=now,
            grace=grace,
            complete_through=await _complete_through(portal),
            issuer=portal.settings.issuer,
        )
        return await invoices.invoice_view(db, invoice, now=now, grace=grace)

    @post("/{invoice_id:int}/void", status_code=200, responses=error_answers(409))
    async def void(
        self, invoice_id: FromPath[int], data: JSONBody[VoidRequest], db: Db, portal: Portal
    ) -> InvoiceView:
        """Void a finalized invoice; answers with the reissued draft of its period."""
        grace, now = portal.settings.invoice_grace, portal.now()
        voided, reissued = await lifecycle.void(
            db, invoice_id, reason=data.reason, now=now, complete_through=await _complete_through(portal)
        )
        return await invoices.invoice_view(db, reissued or voided, now=now, grace=grace)

    @get(
        "/{invoice_id:int}/pdf",
        media_type=documents.PDF,
        responses={
            200: ResponseSpec(data_container=bytes, media_type=documents.PDF, description="The PDF."),
            **error_answers(409),
        },
    )
    async def pdf(self, invoice_id: FromPath[int], db: Db, portal: Portal) -> Response[bytes]:
        """The invoice as a PDF document (finalized, or void and stamped VOID); 409 for a
        draft, which is not a document until it is approved."""
        return documents.download(
            await documents.invoice_document(db, invoice_id, issuer=portal.settings.issuer)
        )

    @get(
        "/{invoice_id:int}/adjustments/{note_id:int}/pdf",
        media_type=documents.PDF,
        responses={
            200: ResponseSpec(data_container=bytes, media_type=documents.PDF, description="The PDF."),
            **error_answers(409),
        },
    )
    async def note_pdf(
        self, invoice_id: FromPath[int], note_id: FromPath[int], db: Db, portal: Portal
    ) -> Response[bytes]:
        """A credit or debit note of the invoice as a PDF document."""
        return documents.download(
            await documents.note_document(db, invoice_id, note_id, issuer=portal.settings.issuer)
        )

    @get("/{invoice_id:int}/adjustments")
    async def adjustments(self, invoice_id: FromPath[int], db: Db) -> list[AdjustmentView]:
        invoice = await invoices.load_invoice(db, invoice_id)
        return await invoices.adjustments_of(db, invoice)

    @get("/export.csv", media_type="text/csv", dependencies=EXPORT_FILTER)
    async def export_invoices(self, read_db: ReadDb, selection: Selection, portal: Portal) -> Response[str]:
        """One row per invoice and per adjustment note; `from`/`to` bound the period start
        (`status` filters by the stored status: draft, finalized, void; the column says
        awaiting_review for a draft past its grace, as the API does). Read on the replica
        when there is one (DATABASE_READ_URL)."""
        body = await export.invoices_csv(
            read_db, selection, now=portal.now(), grace=portal.settings.invoice_grace
        )
        return _csv(body, "invoices.csv")

    @get("/lines.csv", media_type="text/csv", dependencies=EXPORT_FILTER)
    async def export_lines(self, read_db: ReadDb, selection: Selection) -> Response[str]:
        """One row per invoice line and per adjustment line (on the replica when there is one)."""
        return _csv(await export.lines_csv(read_db, selection), "invoice-lines.csv")


def _csv(body: str, filename: str) -> Response[str]:
    return Response(
        body, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


class ReviewController(Controller):
    path = "/v1/review-queue"
    tags = ["billing"]
    opt = ADMIN

    @get("/")
    async def queue(self, db: Db, portal: Portal) -> list[ReviewItem]:
        """Drafts awaiting approval, with what to check first."""
        return await review.review_queue(
            db,
            now=portal.now(),
            grace=portal.settings.invoice_grace,
            change_factor=portal.settings.review_change_factor,
        )


class AdjustmentController(Controller):
    path = "/v1/adjustments"
    tags = ["billing"]
    opt = ADMIN

    @get("/")
    async def list_(
        self,
        db: Db,
        customer_id: Annotated[str | None, QueryParameter(name="customerId")] = None,
    ) -> list[AdjustmentView]:
        """Debit and credit notes, newest first."""
        out: list[AdjustmentView] = []
        for invoice_id in await adjustment_store.adjusted_invoice_ids(db, customer_id):
            out += await invoices.adjustments_of(db, await invoices.load_invoice(db, invoice_id))
        return sorted(out, key=lambda a: a.id, reverse=True)


class SimulationController(Controller):
    """Pricing simulations: recorded usage rated on another plan. Nothing is written."""

    path = "/v1/simulations"
    tags = ["billing"]
    opt = ADMIN

    @post("/", status_code=200)
    async def simulate(self, data: JSONBody[SimulationRequest], db: Db, portal: Portal) -> SimulationView:
        """Rate chosen customers' ended periods on an existing plan (`planId`) or an edited
        copy of one (`plan`, never stored), beside the real invoice of each period; with
        totals per currency and who would pay more or less. Runs in a read-only
        transaction. 422 for an unknown customer, plan or meter, a month not started yet,
        or more than 500 customers or 5,000 customer periods."""
        return await simulation.simulate(db, data, now=portal.now())


billing_handlers = [
    PlanController,
    CustomerBillingController,
    InvoiceController,
    ReviewController,
    AdjustmentController,
    SimulationController,
]
