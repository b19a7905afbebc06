"""Cancelling an event and changing its quantity from its page (issue 19), each behind a
confirmation page that says what will happen in words, with a required reason.

The house pattern of `invoice_actions.py`: the GET opens the form; a POST that does not carry
`confirm=yes` answers with the confirmation (for a new quantity, the form's second step: the
exact change, once the quantity is known) instead of acting. The correction itself is
`portal.ingest.corrections.correct_and_apply` (its own transaction, then the live view),
recorded with the signed-in person as actor and `source="portal"`; then Post/Redirect/Get
back to the event page. Every refusal is a 4xx with the form again, words not ids.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from portal.dependencies import Db, Portal
from portal.infrastructure.domain_errors import Conflict, Invalid, NotFound
from portal.ingest.corrections import CorrectionAsked, correct_and_apply
from portal.pages.access import STAFF_GUARDS, viewer, visible_customer
from portal.pages.manager.event_corrections_view import (
    EventFacts,
    event_facts,
    invoice_effect,
    read_quantity,
    read_reason,
    refusal,
    usage_effect,
)
from portal.pages.manager.review import form_fields, sentence
from portal.pages.web import PageController, page
from portal.state import PortalState

Kind = Literal["cancel", "amend"]


def event_url(customer_id: str, event_id: str) -> str:
    return f"/portal/events/{quote(customer_id, safe='')}/{quote(event_id, safe='')}"


async def _facts(request: Request[Any, Any, Any], db: Db, customer_id: str, event_id: str) -> EventFacts:
    customer = await visible_customer(request, db, customer_id)
    facts = await event_facts(db, customer, event_id)
    if facts is None:
        raise NotFoundException(f"There is no stored event “{event_id}” of this customer you can see.")
    return facts


def _form(
    request: Request[Any, Any, Any],
    portal: PortalState,
    facts: EventFacts,
    kind: Kind,
    *,
    status_code: int = 200,
    problems: dict[str, str] | None = None,
    problem: str | None = None,
    values: dict[str, str] | None = None,
    new_quantity: Decimal | None = None,
) -> Template:
    """The form (and, for a new quantity that is known, its confirmation)."""
    refused = refusal(facts, now=portal.now(), lateness=portal.settings.accepted_lateness)
    confirming = kind == "cancel" or new_quantity is not None
    effects = [usage_effect(facts, new_quantity)] if confirming else []
    effects.append(invoice_effect(facts, kind, new_quantity))
    kept = {k: v.replace("\x00", "") for k, v in (values or {}).items()}
    return page(
        "manager/event_correction.html",
        request,
        status_code=refused[0] if refused else status_code,
        facts=facts,
        kind=kind,
        refused=refused[1] if refused else None,
        confirming=confirming,
        effects=effects,
        new_quantity=new_quantity,
        problems=problems or {},
        problem=problem,
        values=kept,
        event_url=event_url(facts.customer.id, facts.event_id),
    )


async def _act(
    request: Request[Any, Any, Any], db: Db, portal: PortalState, customer_id: str, event_id: str, kind: Kind
) -> Response[Any]:
    facts = await _facts(request, db, customer_id, event_id)
    if refusal(facts, now=portal.now(), lateness=portal.settings.accepted_lateness):
        return _form(request, portal, facts, kind)
    data = await form_fields(request)
    values = {k: data.get(k, "") for k in ("reason", "quantity")}
    problems: dict[str, str] = {}
    reason, wrong_reason = read_reason(values["reason"])
    if wrong_reason:
        problems["reason"] = wrong_reason
    quantity: Decimal | None = None
    if kind == "amend":
        quantity, wrong_quantity = read_quantity(values["quantity"], facts)
        if wrong_quantity:
            problems["quantity"] = wrong_quantity
    if problems:
        return _form(request, portal, facts, kind, status_code=422, problems=problems, values=values)
    if data.get("confirm") != "yes":
        return _form(request, portal, facts, kind, values=values, new_quantity=quantity)
    session = viewer(request)
    asked = CorrectionAsked(
        customer_id,
        event_id,
        kind,
        reason,
        session.email,
        "portal",
        quantity=quantity,
        user_id=session.user_id,
    )
    try:
        await correct_and_apply(
            portal.sessions, portal.live, asked, now=portal.now(), settings=portal.settings
        )
    except (NotFound, Conflict, Invalid) as exc:
        # A change that raced this one: the service's words, without the raw event id.
        said = sentence(Exception(str(exc).replace(f"event {event_id!r}", "the event")))
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 422
        fresh = await _facts(request, db, customer_id, event_id)
        return _form(
            request,
            portal,
            fresh,
            kind,
            status_code=status,
            problem=said,
            values=values,
            new_quantity=quantity,
        )
    done = "cancelled" if kind == "cancel" else "amended"
    return Redirect(f"{event_url(customer_id, event_id)}?done={done}", status_code=303)


class EventCorrectionsController(PageController):
    """Cancel an event or change its quantity: account managers and admins only (a customer's
    users get 403), for events of customers they may see (404 otherwise)."""

    guards = STAFF_GUARDS

    @get("/events/{customer_id:str}/{event_id:str}/cancel")
    async def confirm_cancel(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        event_id: FromPath[str],
        db: Db,
        portal: Portal,
    ) -> Template:
        """The confirmation: the event, what its period's usage and invoice will do, a reason."""
        return _form(request, portal, await _facts(request, db, customer_id, event_id), "cancel")

    @post("/events/{customer_id:str}/{event_id:str}/cancel")
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        event_id: FromPath[str],
        db: Db,
        portal: Portal,
    ) -> Response[Any]:
        """Cancels only with `confirm=yes` and a reason (422 with the form again otherwise)."""
        return await _act(request, db, portal, customer_id, event_id, "cancel")

    @get("/events/{customer_id:str}/{event_id:str}/quantity")
    async def quantity_form(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        event_id: FromPath[str],
        db: Db,
        portal: Portal,
    ) -> Template:
        """The new quantity and the reason; the next step shows the exact change."""
        return _form(request, portal, await _facts(request, db, customer_id, event_id), "amend")

    @post("/events/{customer_id:str}/{event_id:str}/quantity")
    async def change_quantity(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        event_id: FromPath[str],
        db: Db,
        portal: Portal,
    ) -> Response[Any]:
        """Without `confirm=yes`: the confirmation of the change typed; with it, the change."""
        return await _act(request, db, portal, customer_id, event_id, "amend")
