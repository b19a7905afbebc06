"""Who may open a page: the signed-in viewer, their role, the customers they may see, and
the CSRF check on everything that changes state.

Every page controller declares `guards = [signed_in, csrf_checked, ...]` and, when it serves
one role only, `staff_only` or `admin_only`. Handlers that take a customer or an object id
resolve it through `visible_customer`, which answers 404 alike for a customer that does not
exist and one the viewer may not see (an id is not confirmed to someone who cannot see it).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, NotFoundException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import repository as accounts
from portal.catalog import service as catalog
from portal.catalog.schemas import Customer
from portal.catalog.service import CustomerCache
from portal.http.request_checks import PortalRequest
from portal.pages import sessions
from portal.pages.sessions import SESSION_COOKIE, PageSession
from portal.state import PortalState

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
_SESSION_STATE = "page_session"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginRequired(NotAuthorizedException):
    """No live session: full pages redirect to the login page, partials answer 401."""

    def __init__(self, *, stale_cookie: bool) -> None:
        super().__init__("sign in to the portal")
        self.stale_cookie = stale_cookie


class CsrfRefused(PermissionDeniedException):
    """A state change without the session's CSRF token: refused before the handler runs."""

    def __init__(self) -> None:
        super().__init__(
            "This form has expired or was sent from another site. Reload the page and try again."
        )


async def signed_in(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: a live session. Sessions of disabled users are ended when they are disabled."""
    portal: PortalState = connection.app.state.portal
    cookie = connection.cookies.get(SESSION_COOKIE)
    session = await sessions.load_session(portal.redis, cookie)
    if session is None:
        raise LoginRequired(stale_cookie=cookie is not None)
    connection.scope["state"][_SESSION_STATE] = session


async def csrf_checked(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: a request that may change state carries the session's CSRF token, in the
    `X-CSRF-Token` header (htmx: set once on <body>) or the `csrf_token` form field."""
    if connection.scope.get("method") in _SAFE_METHODS:
        return
    session: PageSession = connection.scope["state"][_SESSION_STATE]
    given = connection.headers.get(CSRF_HEADER)
    if given is None:
        content_type = connection.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            # Request caches the parsed form in the scope: the handler reads it again for free.
            form = await PortalRequest(connection.scope, connection.receive).form()
            value = form.get(CSRF_FIELD)
            given = value if isinstance(value, str) else None
    if not sessions.same_token(session.csrf, given):
        raise CsrfRefused()


async def customer_in_path(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: a `{customer_id}` in the path is one the viewer may see (404 otherwise).

    It runs before the body is parsed, so a malformed form sent to another customer's page
    is refused the same way as a well-formed one. Handlers still load the customer with
    `visible_customer` (and check object ids against it)."""
    customer_id = connection.path_params.get("customer_id")
    if customer_id is None:
        return
    session: PageSession = connection.scope["state"][_SESSION_STATE]
    portal: PortalState = connection.app.state.portal
    if session.role == "customer":
        visible = session.customer_id == customer_id
    else:
        async with portal.sessions() as db:
            visible = await may_see(db, session, str(customer_id))
    if not visible:
        raise NotFoundException(f"There is no customer “{customer_id}” you can see.")


async def staff_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    session: PageSession = connection.scope["state"][_SESSION_STATE]
    if not session.is_staff:
        raise PermissionDeniedException("This page is for account managers.")


async def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    session: PageSession = connection.scope["state"][_SESSION_STATE]
    if not session.is_admin:
        raise PermissionDeniedException("This page is for admins.")


PAGE_GUARDS = [signed_in, customer_in_path, csrf_checked]
STAFF_GUARDS = [signed_in, staff_only, customer_in_path, csrf_checked]
ADMIN_GUARDS = [signed_in, admin_only, csrf_checked]


def viewer(request: Request[Any, Any, Any]) -> PageSession:
    """The signed-in person (set by the `signed_in` guard)."""
    session: PageSession = request.scope["state"][_SESSION_STATE]
    return session


def viewer_or_none(request: Request[Any, Any, Any]) -> PageSession | None:
    session: PageSession | None = request.scope["state"].get(_SESSION_STATE)
    return session


async def may_see(db: AsyncSession, session: PageSession, customer_id: str) -> bool:
    if session.role == "admin" or (session.role == "account_manager" and session.all_customers):
        return True
    if session.role == "customer":
        return session.customer_id == customer_id
    return await accounts.is_assigned(db, session.user_id, customer_id)


async def visible_customer(
    request: Request[Any, Any, Any], db: AsyncSession, customer_id: str, cache: CustomerCache | None = None
) -> Customer:
    """The customer, if the viewer may see it; 404 otherwise (whether or not it exists).
    Read through `cache` when given, as this viewer read it (who may see it is always
    judged afresh)."""
    session = viewer(request)
    visible = await may_see(db, session, customer_id)
    if not visible:
        customer = None
    elif cache is not None:
        customer = await cache.get(db, customer_id, seen_by=session.id)
    else:
        customer = await catalog.get_customer(db, customer_id)
    if customer is None:
        raise NotFoundException(f"There is no customer “{customer_id}” you can see.")
    return customer


async def check_owner(
    request: Request[Any, Any, Any], db: AsyncSession, customer_id: str | None, what: str
) -> None:
    """404 unless the viewer may see the customer an object (invoice, rule, event) belongs to."""
    if customer_id is None or not await may_see(db, viewer(request), customer_id):
        raise NotFoundException(f"There is no {what} you can see.")


def customer_scope(session: PageSession) -> tuple[str, Any]:
    """A SQL condition on a `customer_id` column limiting rows to what the viewer may see,
    with its parameters: `f"... WHERE {cond}"`, params."""
    if session.role == "admin" or (session.role == "account_manager" and session.all_customers):
        return "TRUE", {}
    if session.role == "customer":
        return "customer_id = :scope_customer", {"scope_customer": session.customer_id}
    assigned = accounts.assigned_customer_ids_sql("scope_user")
    return f"customer_id IN {assigned}", {"scope_user": session.user_id}
