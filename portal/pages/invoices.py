"""A customer's invoices: the list, one invoice, its printable view and a CSV.

Who sees what: customer users see the invoices that were issued to them (finalized, and
voided ones marked void) plus the live "upcoming invoice" of the current period; drafts,
including those awaiting review, are staff-only: their numbers still move until an
account manager approves them, and approval is what makes them a bill. A customer user
asking for a draft's id gets the same 404 as for an invoice of another customer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing import documents, export, invoices
from portal.billing.preview import preview
from portal.billing.views import InvoiceSummary, InvoiceView, PreviewView
from portal.catalog.schemas import Customer
from portal.catalog.service import get_customer
from portal.dependencies import Db, Portal, ReadDb
from portal.http.request_checks import ID_MAX
from portal.infrastructure.domain_errors import NotFound
from portal.infrastructure.periods import to_datetime
from portal.pages.access import check_owner, viewer, visible_customer
from portal.pages.web import PageController, page
from portal.state import PortalState
from portal.usage.completeness import complete_through

PAGE_SIZE = 50
# States a customer user may see; staff see every state.
ISSUED = frozenset({"finalized", "void"})
STATE_LABELS = {
    "draft": "Draft — period still open",
    "awaiting_review": "Draft — awaiting review",
    "finalized": "Issued",
    "void": "Void",
}


def sees_drafts(request: Request[Any, Any, Any]) -> bool:
    return viewer(request).is_staff


async def _complete_through(portal: PortalState) -> datetime:
    return to_datetime(await portal.live.watermark_ms() / 1000)


async def _upcoming(portal: PortalState, db: AsyncSession, customer: Customer) -> PreviewView | None:
    """The current period rated so far, from what `db` reads (the replica, if any: its
    completeness then is what the replica has replayed)."""
    try:
        return await preview(
            db, customer.id, now=portal.now(), complete_through=await complete_through(portal.live, db)
        )
    except NotFound:  # no plan: nothing is coming
        return None


async def visible_invoice(
    request: Request[Any, Any, Any], db: AsyncSession, portal: PortalState, invoice_id: int
) -> tuple[InvoiceView, Customer]:
    """The invoice (a draft re-rated first), if the viewer may see it; 404 otherwise."""
    try:
        row = await invoices.load_invoice(db, invoice_id)
    except NotFound:
        raise NotFoundException("There is no invoice you can see.") from None
    await check_owner(request, db, row.customer_id, "invoice")
    if row.status == "draft" and not sees_drafts(request):
        raise NotFoundException("There is no invoice you can see.")
    complete = await _complete_through(portal)
    view = await invoices.get_invoice(
        db, invoice_id, now=portal.now(), grace=portal.settings.invoice_grace, complete_through=complete
    )
    customer = await get_customer(db, row.customer_id)
    assert customer is not None  # invoices reference their customer
    return view, customer


async def _issued_invoice(request: Request[Any, Any, Any], db: AsyncSession, invoice_id: int) -> None:
    """404 unless the invoice exists, the viewer may see it, and it is issued (a draft is
    not a document: it has no PDF, for staff either)."""
    try:
        row = await invoices.load_invoice(db, invoice_id)
    except NotFound:
        raise NotFoundException("There is no invoice you can see.") from None
    await check_owner(request, db, row.customer_id, "invoice")
    if row.status == "draft":
        raise NotFoundException("A draft has no PDF: it becomes a document once it is approved.")


class InvoicePagesController(PageController):
    """Invoices for every role that may see the customer (drafts: staff only)."""

    @get("/customers/{customer_id:str}/invoices")
    async def list_(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        db: Db,
        read_db: ReadDb,
        portal: Portal,
        before: Annotated[int | None, QueryParameter(name="before", ge=1, le=ID_MAX)] = None,
    ) -> Template:
        """Newest first, PAGE_SIZE a page; `before=<id>` for older ones. Read on the
        replica when there is one (nothing here is re-rated or written)."""
        customer = await visible_customer(request, db, customer_id)
        rows = await invoices.list_invoices(
            read_db,
            now=portal.now(),
            grace=portal.settings.invoice_grace,
            customer_id=customer.id,
            limit=PAGE_SIZE + 1,
            before_id=before,
        )
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        older = rows[-1].id if more else None
        shown: list[InvoiceSummary] = [r for r in rows if sees_drafts(request) or r.state in ISSUED]
        # A customer does not see a draft's amounts, but does see that an ended period's
        # invoice is on its way (otherwise the list has a gap where last month should be).
        preparing = [] if sees_drafts(request) else [r for r in rows if r.state == "awaiting_review"]
        return page(
            "customer/invoices.html",
            request,
            customer=customer,
            invoices=shown,
            preparing=preparing,
            older=older,
            upcoming=await _upcoming(portal, read_db, customer),
            states=STATE_LABELS,
            staff=sees_drafts(request),
        )

    @get("/customers/{customer_id:str}/invoices.csv", media_type="text/csv")
    async def export_(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        db: Db,
        read_db: ReadDb,
        portal: Portal,
    ) -> Response[str]:
        """The finance export's invoices.csv for this customer (drafts: staff only), read
        on the replica when there is one."""
        customer = await visible_customer(request, db, customer_id)
        selection = export.ExportFilter(customer_id=customer.id, issued_only=not sees_drafts(request))
        body = await export.invoices_csv(
            read_db, selection, now=portal.now(), grace=portal.settings.invoice_grace
        )
        return Response(
            body,
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{customer.id}-invoices.csv"'},
        )

    @get("/invoices/{invoice_id:int}")
    async def detail(
        self, request: Request[Any, Any, Any], invoice_id: FromPath[int], db: Db, portal: Portal
    ) -> Template:
        invoice, customer = await visible_invoice(request, db, portal, invoice_id)
        return page(
            "customer/invoice.html",
            request,
            invoice=invoice,
            customer=customer,
            facts=await documents.invoice_facts(db, invoice, customer, portal.settings.issuer),
            states=STATE_LABELS,
            staff=sees_drafts(request),
        )

    @get("/invoices/{invoice_id:int}/pdf", media_type=documents.PDF)
    async def pdf(
        self, request: Request[Any, Any, Any], invoice_id: FromPath[int], db: Db, portal: Portal
    ) -> Response[bytes]:
        """The invoice's PDF, for whoever may see the invoice; a draft has none (404)."""
        await _issued_invoice(request, db, invoice_id)
        return documents.download(
            await documents.invoice_document(db, invoice_id, issuer=portal.settings.issuer)
        )

    @get("/invoices/{invoice_id:int}/notes/{note_id:int}/pdf", media_type=documents.PDF)
    async def note_pdf(
        self,
        request: Request[Any, Any, Any],
        invoice_id: FromPath[int],
        note_id: FromPath[int],
        db: Db,
        portal: Portal,
    ) -> Response[bytes]:
        """A credit or debit note's PDF, for whoever may see its invoice."""
        await _issued_invoice(request, db, invoice_id)
        try:
            document = await documents.note_document(db, invoice_id, note_id, issuer=portal.settings.issuer)
        except NotFound:
            raise NotFoundException("There is no note you can see.") from None
        return documents.download(document)

    @get("/invoices/{invoice_id:int}/print")
    async def print_(
        self, request: Request[Any, Any, Any], invoice_id: FromPath[int], db: Db, portal: Portal
    ) -> Template:
        """A standalone page without navigation, laid out for paper."""
        invoice, customer = await visible_invoice(request, db, portal, invoice_id)
        return page(
            "customer/invoice_print.html",
            request,
            invoice=invoice,
            customer=customer,
            facts=await documents.invoice_facts(db, invoice, customer, portal.settings.issuer),
            states=STATE_LABELS,
            staff=sees_drafts(request),
        )


invoice_handlers = [InvoicePagesController]
