"""Portal pages: sign-in, the customer list and a customer's live usage.

Pages authenticate with a server-side session (see `portal.pages.sessions`), never with
`opt={"scope": ...}`: the API key guard is for API clients sending a bearer key. A visitor
without a session is sent to the login page (303); an htmx partial answers 401 with
`HX-Redirect`, which htmx follows even on an error status.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import msgspec
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Controller, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import CacheControlHeader, ResponseHeader
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.status_codes import (
    HTTP_204_NO_CONTENT,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
)
from litestar.template.config import TemplateConfig

from portal.catalog import service as catalog
from portal.dependencies import Db, Portal
from portal.health import billing_health
from portal.keys.service import key_is_active
from portal.pages import sessions
from portal.pages.service import usage_panel
from portal.pages.sessions import CSRF_COOKIE, SESSION_COOKIE, PageSession
from portal.paths import STATIC_DIR, TEMPLATES_DIR
from portal.settings import Settings
from portal.state import PortalState

LOGIN_PATH = "/portal/login"
HOME_PATH = "/portal/customers"
CUSTOMERS_PER_PAGE = 100
_SESSION_STATE = "page_session"

# Pages show customers' data: never cache them, never frame them, and run only our own
# scripts (htmx runs with allowEval off, so no 'unsafe-eval' either).
NO_STORE = CacheControlHeader(no_store=True)
SECURITY_HEADERS = [
    ResponseHeader(name="Content-Security-Policy", value=(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Referrer-Policy", value="same-origin"),
]


class LoginRequired(NotAuthorizedException):
    """No live session: full pages redirect to the login page, partials answer 401."""

    def __init__(self, *, stale_cookie: bool) -> None:
        super().__init__("sign in to the portal")
        self.stale_cookie = stale_cookie


class LoginForm(msgspec.Struct):
    # Defaults, so that a missing field is answered by the checks below (403/401), not 400.
    api_key: str = ""
    csrf_token: str = ""


class LogoutForm(msgspec.Struct):
    csrf_token: str = ""


def _is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


async def require_page_session(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: a live session opened with a still-active admin key."""
    portal: PortalState = connection.app.state.portal
    cookie = connection.cookies.get(SESSION_COOKIE)
    session = await sessions.load_session(portal.redis, cookie)
    if session is None or session.scope != "admin" or not await key_is_active(
            portal.sessions, session.key_id, "admin"):
        if session is not None:
            await sessions.close_session(portal.redis, session.id)
        raise LoginRequired(stale_cookie=cookie is not None)
    connection.scope["state"][_SESSION_STATE] = session


def current_session(request: Request[Any, Any, Any]) -> PageSession:
    session: PageSession = request.scope["state"][_SESSION_STATE]
    return session


def login_required_response(request: Request[Any, Any, Any], exc: LoginRequired) -> Response[Any]:
    response: Response[Any]
    if _is_htmx(request):
        response = Response(content="", status_code=HTTP_401_UNAUTHORIZED, media_type="text/plain",
                            headers={"HX-Redirect": LOGIN_PATH})
    else:
        response = Redirect(LOGIN_PATH, status_code=303)
    if exc.stale_cookie:
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def not_found_page(request: Request[Any, Any, Any], exc: NotFoundException) -> Template:
    return Template(template_name="error.html", status_code=HTTP_404_NOT_FOUND, context={
        "title": "Not found", "message": exc.detail,
        "session": request.scope["state"].get(_SESSION_STATE)})


def _login_page(request: Request[Any, Any, Any], settings: Settings, *, status_code: int = 200,
                error: str | None = None) -> Template:
    """The login form, reusing the visitor's CSRF token while it is valid (several tabs)."""
    cookie = request.cookies.get(CSRF_COOKIE)
    reuse = cookie is not None and sessions.csrf_token_valid(cookie, settings.secret_key)
    token = cookie if cookie and reuse else sessions.new_csrf_token(settings.secret_key)
    template = Template(template_name="login.html", status_code=status_code, context={
        "error": error, "csrf_token": token, "session": None})
    if not reuse:
        template.set_cookie(sessions.csrf_cookie(token, settings))
    return template


class LoginController(Controller):
    """Signing in to the portal with an admin API key (signing out needs a session)."""

    path = "/portal"
    include_in_schema = False
    cache_control = NO_STORE
    response_headers = SECURITY_HEADERS

    @get("/login")
    async def login_form(self, request: Request[Any, Any, Any], portal: Portal) -> Template:
        return _login_page(request, portal.settings)

    @post("/login", status_code=303)
    async def login(self, request: Request[Any, Any, Any], portal: Portal,
                    data: URLEncodedBody[LoginForm]) -> Response[Any]:
        """Open a session for a valid admin key; the form again with the reason otherwise."""
        settings = portal.settings
        if not sessions.csrf_matches(request.cookies.get(CSRF_COOKIE), data.csrf_token,
                                     settings.secret_key):
            return _login_page(request, settings, status_code=HTTP_403_FORBIDDEN,
                               error="This form has expired or was sent from another site. "
                                     "Please sign in again.")
        token = data.api_key.strip()
        key = await portal.keys.resolve(token) if token else None
        if key is None:
            return _login_page(request, settings, status_code=HTTP_401_UNAUTHORIZED,
                               error="That is not a valid API key.")
        if key.scope != "admin":
            return _login_page(request, settings, status_code=HTTP_403_FORBIDDEN,
                               error=f"That key has scope “{key.scope}”; "
                                     "the portal needs an admin key.")
        # A fresh id on every sign-in: an id known before signing in is never promoted.
        previous = request.cookies.get(SESSION_COOKIE)
        if previous:
            await sessions.close_session(portal.redis, previous)
        session = await sessions.open_session(portal.redis, key)
        return Redirect(HOME_PATH, status_code=303,
                        cookies=[sessions.session_cookie(session.id, portal.settings)])


@get("/portal", include_in_schema=False, cache_control=NO_STORE)
async def portal_home() -> Redirect:
    return Redirect(HOME_PATH, status_code=303)


class CustomerPagesController(Controller):
    """Pages that need a session: customers and their live usage."""

    path = "/portal"
    include_in_schema = False
    cache_control = NO_STORE
    response_headers = SECURITY_HEADERS
    guards = [require_page_session]
    exception_handlers = {LoginRequired: login_required_response,
                          NotFoundException: not_found_page}

    @post("/logout", status_code=303)
    async def logout(self, request: Request[Any, Any, Any], portal: Portal,
                     data: URLEncodedBody[LogoutForm]) -> Response[Any]:
        session = current_session(request)
        if not sessions.same_token(session.csrf, data.csrf_token):
            return Template(template_name="error.html", status_code=HTTP_403_FORBIDDEN, context={
                "title": "Not signed out", "session": session,
                "message": "Sign out with the portal's own button."})
        await sessions.close_session(portal.redis, session.id)
        response = Redirect(LOGIN_PATH, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @get("/health")
    async def health(self, request: Request[Any, Any, Any], db: Db, portal: Portal) -> Template:
        """The four billing-health measures over the last day and the last 30 days."""
        now = datetime.now(UTC)
        windows = [(label, await billing_health(db, portal.redis, now=now, window=timedelta(days=days)))
                   for label, days in (("Last 24 hours", 1), ("Last 30 days", 30))]
        return Template(template_name="health.html", context={
            "windows": windows, "session": current_session(request)})

    @get("/customers")
    async def customers(self, request: Request[Any, Any, Any], db: Db,
                        after: FromQuery[str | None] = None) -> Template:
        """Customers by id, a page at a time."""
        rows = await catalog.list_customers(db, limit=CUSTOMERS_PER_PAGE + 1, after=after)
        more = len(rows) > CUSTOMERS_PER_PAGE
        rows = rows[:CUSTOMERS_PER_PAGE]
        return Template(template_name="customers.html", context={
            "customers": rows, "next_after": rows[-1].id if more else None, "after": after,
            "session": current_session(request)})

    @get("/customers/{customer_id:str}")
    async def customer(self, request: Request[Any, Any, Any], customer_id: FromPath[str], db: Db,
                       portal: Portal) -> Template:
        """A customer's current period, live; the usage panel refreshes itself."""
        customer = await catalog.get_customer(db, customer_id)
        if customer is None:
            raise NotFoundException(f"There is no customer “{customer_id}”.")
        panel = await usage_panel(portal, db, customer, now=datetime.now(UTC))
        return Template(template_name="customer.html", context={
            "customer": customer, "panel": panel, "session": current_session(request)})

    @get("/customers/{customer_id:str}/usage")
    async def usage(self, customer_id: FromPath[str], db: Db, portal: Portal,
                    seen: FromQuery[str | None] = None) -> Response[Any]:
        """The usage panel alone; 204 when it would equal the version the page shows."""
        customer = await catalog.get_customer(db, customer_id)
        if customer is None:
            raise NotFoundException(f"There is no customer “{customer_id}”.")
        panel = await usage_panel(portal, db, customer, now=datetime.now(UTC))
        if seen is not None and seen == panel.version:
            return Response(content=None, status_code=HTTP_204_NO_CONTENT)
        return Template(template_name="partials/usage_panel.html", context={"panel": panel})


page_handlers: list[Any] = [LoginController, CustomerPagesController, portal_home]


@lru_cache(maxsize=64)
def _asset_version(name: str) -> str:
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """`/static/<name>?v=<content hash>`: a changed file is never served from a stale cache."""
    return f"/static/{name}?v={_asset_version(name)}"


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    environment = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                              undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.globals["static_url"] = static_url
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))
