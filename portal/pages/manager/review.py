"""Bill review: drafts awaiting approval with what to check first, recently finalized
invoices (manual credit or debit note here; approve and void, each behind a confirmation,
in `invoice_actions.py`), and who did what to each of them.

Every change runs in a savepoint of the request's transaction with its audit entry, so a
refused change leaves nothing behind and the page can answer with the reason in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import audit
from portal.accounts.schemas import AuditEntry
from portal.billing.invoices import load_invoice
from portal.billing.manual_adjustments import PlannedNote, add_manual_adjustment, plan_manual_adjustment
from portal.billing.repository import invoices as invoice_store
from portal.billing.review import review_queue
from portal.billing.schemas import InvoiceRow
from portal.billing.views import ReviewItem, money_text
from portal.dependencies import Db, Portal
from portal.infrastructure.domain_errors import Conflict, Invalid, NotFound
from portal.infrastructure.periods import to_datetime
from portal.pages.access import STAFF_GUARDS, check_owner, viewer
from portal.pages.formatting import invoice_label, period_text
from portal.pages.manager.common import audit_trail, customer_zones, visible_ids
from portal.pages.web import PageController, page
from portal.state import PortalState

QUEUE_SHOWN = 100
FINALIZED_SHOWN = 20


async def complete_through_now(portal: PortalState) -> datetime | None:
    """How far the stored usage is complete (as the billing API records it on invoices)."""
    try:
        return to_datetime(await portal.live.watermark_ms() / 1000)
    except Exception:  # Redis down: the invoice is still right, its watermark unknown
        return None


# Each flag of portal/billing/review.py as a badge and the sentence that explains it.
FLAGS = {
    "large_change": (
        "Large change",
        "The total moved a lot against the previous period: check the usage behind it.",
    ),
    "first_invoice": ("First invoice", "This customer has no earlier finalized invoice to compare with."),
    "failed_events": ("Failed events", "Some events of this period could not be stored: replay them first."),
    "drift": (
        "Live drift",
        "The last reconcile found the live view and the stored usage apart for this customer.",
    ),
    "conflicts": ("Conflicting events", "Event ids were re-sent with different content and refused."),
}

DONE = {
    "approved": "Invoice {} was approved and numbered.",
    "voided": "Invoice {} was voided; its period is reissued as a new draft.",
    "adjusted": "A note was added to invoice {}.",
}


@dataclass(frozen=True, slots=True)
class FinalizedRow:
    invoice: InvoiceRow
    total: str  # as money text: the row's numeric column carries six decimal places
    adjusted_total: str


@dataclass(frozen=True, slots=True)
class FormState:
    """A refused form, shown again in place with its message and what was typed."""

    invoice_id: int
    action: str
    message: str
    values: dict[str, str]


async def _finalized(db: AsyncSession, request: Request[Any, Any, Any]) -> list[FinalizedRow]:
    visible, params = visible_ids(request)
    rows = await invoice_store.finalized_invoices(db, visible=visible, params=params, limit=FINALIZED_SHOWN)
    out = []
    for invoice, adjusted in rows:
        out.append(
            FinalizedRow(
                invoice, money_text(invoice.total, invoice.currency), money_text(adjusted, invoice.currency)
            )
        )
    return out


async def _queue(
    db: AsyncSession, portal: PortalState, request: Request[Any, Any, Any], now: datetime
) -> list[ReviewItem]:
    visible, params = visible_ids(request)
    # The oldest QUEUE_SHOWN drafts the viewer may see; each costs a few queries for its flags.
    return await review_queue(
        db,
        now=now,
        grace=portal.settings.invoice_grace,
        change_factor=portal.settings.review_change_factor,
        limit=QUEUE_SHOWN,
        customers_sql=visible,
        customers_params=params,
    )


async def review_page(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    portal: PortalState,
    *,
    status_code: int = 200,
    notice: str | None = None,
    form: FormState | None = None,
) -> Template:
    now = portal.now()
    queue = await _queue(db, portal, request, now)
    finalized = await _finalized(db, request)
    ids = [str(i.invoice.id) for i in queue] + [str(f.invoice.id) for f in finalized]
    trails: dict[str, list[AuditEntry]] = await audit_trail(db, "invoice", ids)
    customers = await customer_zones(
        db, {i.invoice.customer_id for i in queue} | {f.invoice.customer_id for f in finalized}
    )
    return page(
        "manager/review.html",
        request,
        status_code=status_code,
        queue=queue,
        finalized=finalized,
        trails=trails,
        customers=customers,
        flags=FLAGS,
        notice=notice,
        form=form,
    )


async def invoice_of(request: Request[Any, Any, Any], db: AsyncSession, invoice_id: int) -> InvoiceRow:
    """The invoice, if the viewer may see its customer (404 alike otherwise)."""
    try:
        invoice: InvoiceRow | None = await load_invoice(db, invoice_id)
    except NotFound:
        invoice = None
    await check_owner(request, db, None if invoice is None else invoice.customer_id, "invoice")
    assert invoice is not None
    return invoice


async def form_fields(request: Request[Any, Any, Any]) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}


def _status(exc: Conflict | Invalid) -> int:
    return 409 if isinstance(exc, Conflict) else 422


def sentence(exc: Exception) -> str:
    """A service's message ("reason: say why…") as a sentence on the page."""
    message = str(exc)
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


async def _confirm_note(
    request: Request[Any, Any, Any], db: AsyncSession, note: PlannedNote, data: dict[str, str]
) -> Template:
    invoice = note.invoice
    zones = await customer_zones(db, {invoice.customer_id})
    name, tz = zones.get(invoice.customer_id, (invoice.customer_id, "UTC"))
    return page(
        "manager/adjust.html",
        request,
        note=note,
        customer_name=name,
        label=invoice_label(invoice.number, invoice.period_start, tz),
        period=period_text(invoice.period_start, invoice.period_end, tz),
        values={k: data.get(k, "") for k in ("kind", "amount", "reason")},
    )


def _done(what: str, invoice_id: int) -> Redirect:
    return Redirect(f"/portal/review?done={what}&invoice={invoice_id}", status_code=303)


class ReviewController(PageController):
    guards = STAFF_GUARDS

    @get("/review")
    async def review(self, request: Request[Any, Any, Any], db: Db, portal: Portal) -> Template:
        """The queue; `done`/`invoice` (set by the redirect after a change) say what was done."""
        notice = None
        done = request.query_params.get("done")
        raw_id = request.query_params.get("invoice", "")
        if done in DONE and raw_id.isascii() and raw_id.isdigit() and len(raw_id) < 19:
            invoice = await invoice_of(request, db, int(raw_id))
            zones = await customer_zones(db, {invoice.customer_id})
            tz = zones.get(invoice.customer_id, (invoice.customer_id, "UTC"))[1]
            notice = DONE[done].format(invoice_label(invoice.number, invoice.period_start, tz))
        return await review_page(request, db, portal, notice=notice)

    @post("/invoices/{invoice_id:int}/adjustments")
    async def adjust(
        self, request: Request[Any, Any, Any], invoice_id: FromPath[int], db: Db, portal: Portal
    ) -> Response[Any]:
        """A manual credit or debit note: kind, amount and a required reason. Issued only
        with `confirm=yes`: otherwise it is checked and a confirmation names the customer,
        the invoice, the signed amount and what is due after it (a note cannot be undone;
        a wrong one takes another note)."""
        invoice = await invoice_of(request, db, invoice_id)
        session = viewer(request)
        data = await form_fields(request)
        try:
            if data.get("confirm") != "yes":
                note = await plan_manual_adjustment(
                    db,
                    invoice_id,
                    kind=data.get("kind", ""),
                    amount=data.get("amount", ""),
                    reason=data.get("reason", ""),
                )
                return await _confirm_note(request, db, note, data)
            async with db.begin_nested():
                adjustment_id, number, customer_id = await add_manual_adjustment(
                    db,
                    invoice_id,
                    kind=data.get("kind", ""),
                    amount=data.get("amount", ""),
                    reason=data.get("reason", ""),
                )
                await audit.record(
                    db,
                    user_id=session.user_id,
                    actor=session.email,
                    action="invoice.adjust",
                    object_type="invoice",
                    object_id=str(invoice_id),
                    customer_id=customer_id,
                    reason=data.get("reason", "").strip(),
                    detail={
                        "adjustment_id": adjustment_id,
                        "number": number,
                        "kind": data.get("kind"),
                        "amount": data.get("amount", "").strip(),
                        "currency": invoice.currency,
                    },
                )
        except (Conflict, Invalid) as exc:
            return await review_page(
                request,
                db,
                portal,
                status_code=_status(exc),
                form=FormState(invoice_id, "adjust", sentence(exc), data),
            )
        return _done("adjusted", invoice_id)
