"""What every portal page shares: headers, error pages, the base controller and `page()`.

Pages authenticate with a server-side session (`portal.pages.sessions`), never with an API
key. A visitor without a session is sent to the login page (303); an htmx partial answers
401 with `HX-Redirect`, which htmx follows even on an error status.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from litestar import Controller, Request, Response
from litestar.datastructures import CacheControlHeader, ResponseHeader
from litestar.exceptions import NotFoundException, PermissionDeniedException, ValidationException
from litestar.plugins.htmx import HTMXDetails
from litestar.response import Redirect, Template
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_500_INTERNAL_SERVER_ERROR,
)
from litestar.types import Message, Scope

from portal.http.request_checks import UnfitAddress
from portal.infrastructure.domain_errors import Conflict, Invalid, NotFound, RateLimited
from portal.infrastructure.http_errors import api_error, internal_error_response, report_unexpected
from portal.pages.access import PAGE_GUARDS, LoginRequired, viewer, viewer_or_none
from portal.pages.sessions import SESSION_COOKIE

LOGIN_PATH = "/portal/login"

# Pages show customers' data: never cache them, never frame them, and run only our own
# scripts (htmx runs with allowEval off, so no 'unsafe-eval' either).
NO_STORE = CacheControlHeader(no_store=True)
SECURITY_HEADERS = [
    ResponseHeader(
        name="Content-Security-Policy",
        value=(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        ),
    ),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
    ResponseHeader(name="Referrer-Policy", value="same-origin"),
]


_PAGE_HEADERS = [
    (h.name.lower().encode("latin-1"), (h.value or "").encode("latin-1")) for h in SECURITY_HEADERS
] + [(b"cache-control", NO_STORE.to_header().encode("latin-1"))]


async def page_headers(message: Message, scope: Scope) -> None:
    """Before-send hook, the one place /portal answers get the pages' headers (no caching,
    CSP, nosniff, referrer policy): pages, partials, downloads, and what no controller
    shapes (exception handlers' error pages, unrouted addresses: a 404 or 500 page shows
    the signed-in person's name in its header too). Headers an answer sets itself are kept."""
    if message["type"] != "http.response.start" or not scope.get("path", "").startswith("/portal"):
        return
    start: Any = message
    headers = list(start.get("headers", []))
    present = {bytes(name).lower() for name, _ in headers}
    start["headers"] = headers + [(n, v) for n, v in _PAGE_HEADERS if n not in present]


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    """Whether htmx sent the request (a partial is answered, not a page)."""
    return bool(HTMXDetails(request))


def page(
    template_name: str, request: Request[Any, Any, Any], *, status_code: int = 200, **context: Any
) -> Template:
    """A template with the viewer in its context (the layout needs them for the menu and the
    CSRF token htmx sends)."""
    return Template(
        template_name=template_name,
        status_code=status_code,
        context={"session": viewer_or_none(request), **context},
    )


def error_page(request: Request[Any, Any, Any], status_code: int, title: str, message: str) -> Response[Any]:
    if is_htmx(request):
        # A partial: a short message in place, not a whole page inside the panel.
        return Template(
            template_name="partials/error.html",
            status_code=status_code,
            context={"title": title, "message": message},
        )
    return page("error.html", request, status_code=status_code, title=title, message=message)


def return_path(target: str) -> str | None:
    """`target` when it is a page of this portal to come back to after signing in (a path
    under /portal/, no scheme, host or control character: never another site); else None."""
    if len(target) > 2000 or not target.startswith("/portal/") or "\\" in target:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path.startswith(("/portal/login", "/portal/logout")):
        return None
    return target


def login_url(*, back_to: str | None, expired: bool) -> str:
    """The sign-in page, told where to come back to and whether a session just ended."""
    query = {k: v for k, v in (("next", back_to), ("expired", "1" if expired else None)) if v}
    return f"{LOGIN_PATH}?{urlencode(query)}" if query else LOGIN_PATH


def login_required_response(request: Request[Any, Any, Any], exc: LoginRequired) -> Response[Any]:
    """To the sign-in page, which brings a page opened without a session back to it once
    signed in (a form sent after the session ended cannot be: its page is asked again)."""
    response: Response[Any]
    if is_htmx(request):
        response = Response(
            content="",
            status_code=HTTP_401_UNAUTHORIZED,
            media_type="text/plain",
            headers={"HX-Redirect": login_url(back_to=None, expired=exc.stale_cookie)},
        )
    else:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        back_to = return_path(here) if request.method == "GET" else None
        response = Redirect(login_url(back_to=back_to, expired=exc.stale_cookie), status_code=303)
    if exc.stale_cookie:
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def not_found_page(request: Request[Any, Any, Any], exc: NotFoundException | NotFound) -> Response[Any]:
    message = exc.detail if isinstance(exc, NotFoundException) else str(exc)
    return error_page(request, HTTP_404_NOT_FOUND, "Not found", message)


def not_found_anywhere(request: Request[Any, Any, Any], exc: NotFoundException) -> Response[Any]:
    """App-wide 404: an unknown /portal address gets the portal's error page (a person typed
    or followed it); everything else keeps the API's JSON answer."""
    if request.url.path.startswith("/portal"):
        return error_page(
            request,
            HTTP_404_NOT_FOUND,
            "Not found",
            "There is no such page. Check the address, or start again from your start page.",
        )
    return api_error(request, exc)


def bad_address_page(
    request: Request[Any, Any, Any], exc: UnfitAddress | ValidationException
) -> Response[Any]:
    """A path or query value no page can use (a control character, a number out of range):
    a person typed or edited the address."""
    names = (
        sorted({str(e.get("key")) for e in exc.extra if isinstance(e, dict) and e.get("key")})
        if isinstance(exc, ValidationException) and isinstance(exc.extra, list)
        else []
    )
    where = f" ({', '.join(names)})" if names else ""
    return error_page(
        request,
        HTTP_400_BAD_REQUEST,
        "Bad address",
        f"This address holds a value no page can use{where}. Check the address, or start "
        "again from your start page.",
    )


def failed_anywhere(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """App-wide 500: an exception no handler expected is logged and counted, and answered
    without its cause: the portal's error page under /portal, the route's JSON elsewhere."""
    request_id = report_unexpected(request, exc)
    if request.url.path.startswith("/portal"):
        return error_page(
            request,
            HTTP_500_INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "The portal could not answer this request. Try again in a moment; if it "
            f"keeps happening, quote the reference {request_id} to your contact.",
        )
    return internal_error_response(request, request_id)


def forbidden_page(request: Request[Any, Any, Any], exc: PermissionDeniedException) -> Response[Any]:
    return error_page(request, HTTP_403_FORBIDDEN, "Not allowed", str(exc.detail))


def problem_page(request: Request[Any, Any, Any], exc: Invalid | Conflict | RateLimited) -> Response[Any]:
    """A service refused a change: say why, on the page (forms normally catch these first)."""
    if isinstance(exc, RateLimited):
        page = error_page(request, 429, "Not just now", str(exc))
        page.headers["Retry-After"] = str(exc.retry_after_s)
        return page
    return error_page(request, 409 if isinstance(exc, Conflict) else 422, "That did not work", str(exc))


PAGE_EXCEPTION_HANDLERS: dict[Any, Any] = {
    LoginRequired: login_required_response,
    NotFoundException: not_found_page,
    NotFound: not_found_page,
    PermissionDeniedException: forbidden_page,
    UnfitAddress: bad_address_page,
    ValidationException: bad_address_page,
    Invalid: problem_page,
    Conflict: problem_page,
    RateLimited: problem_page,
}


class PageController(Controller):
    """Base of every signed-in page controller: error pages and the session + CSRF guards
    (no caching and the security headers come from `page_headers`, for every /portal
    answer). Subclasses add `staff_only`/`admin_only` as needed."""

    path = "/portal"
    include_in_schema = False
    guards = PAGE_GUARDS
    exception_handlers = PAGE_EXCEPTION_HANDLERS


__all__ = ["PageController", "error_page", "is_htmx", "page", "viewer"]
