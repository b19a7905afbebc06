"""HTTP errors shared by several routes."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import ClientException, HTTPException, InternalServerException, ValidationException
from litestar.exceptions.responses import create_exception_response

from portal.http.schemas import ID_PATTERN
from portal.infrastructure import metrics
from portal.infrastructure.domain_errors import Conflict, Invalid, NotFound, NotYet, Problem, RateLimited
from portal.infrastructure.logs import current_request_id

RETRY_AFTER_S = "2"


class ServiceUnavailable(ClientException):
    """503 with Retry-After: a dependency is down; nothing was changed, retry later.

    A ClientException subclass so that its message reaches the client."""

    status_code = 503

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": RETRY_AFTER_S})


def api_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Litestar's error answer, always as JSON: a route's own media type (text/csv, the
    Prometheus text) is the type of its success, not of its errors."""
    response = create_exception_response(request, exc)
    response.media_type = MediaType.JSON
    return response


# The schema's patterns, in words: msgspec quotes the regex itself ("Expected `str`
# matching regex '^(?!\.\.?$)[A-Za-z0-9._:@+\-]+$'"), which tells a caller little.
_PATTERN_WORDS = {
    f"`str` matching regex {ID_PATTERN!r}": (
        "an id of letters, digits and . _ : @ + - only (not “.” or “..”)"
    ),
}


def _in_words(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    for quoted, words in _PATTERN_WORDS.items():
        text = text.replace(quoted, words)
    return text


def _body_missing(item: dict[str, Any]) -> str | None:
    """Litestar's words for a JSON route sent no body at all are the KeyError of its `data`
    parameter ("'data'"): say what is missing instead."""
    if item.get("key") == "data" and item.get("source") == "body" and item.get("message") == "'data'":
        return "the request needs a JSON body (it was empty)"
    return None


def unprocessable(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Bad fields in a well-formed request are 422 (Unprocessable Content), naming each
    field in `extra`; Litestar's default would be 400."""
    extra = exc.extra
    if isinstance(extra, list):
        extra = [
            {**item, "message": _body_missing(item) or _in_words(item.get("message"))}
            if isinstance(item, dict)
            else item
            for item in extra
        ]
    return Response(
        {"status_code": 422, "detail": _in_words(exc.detail), "extra": extra},
        status_code=422,
    )


class StoreUnavailable(Exception):
    """Raised by services when Postgres or Redis cannot be reached."""


_STATUS = {NotFound: 404, Conflict: 409, Invalid: 422, RateLimited: 429}


def problem_response(request: Request[Any, Any, Any], exc: Problem) -> Response[Any]:
    """NotFound → 404, Conflict → 409, Invalid → 422, RateLimited → 429; the message
    names the problem.

    An Invalid message starts with the field it is about ("state: …"); like Litestar's own
    422s, `extra` then names that field, as the caller spelled it."""
    status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 400)
    body: dict[str, Any] = {"status_code": status, "detail": str(exc)}
    if isinstance(exc, Invalid):
        field, _, problem = str(exc).partition(": ")
        body["extra"] = [{"key": field, "message": problem}] if problem and " " not in field else []
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, RateLimited | NotYet) else None
    return Response(body, status_code=status, headers=headers)


log = logging.getLogger("portal.unhandled")
INTERNAL_ERROR = "Internal server error"


def report_unexpected(request: Request[Any, Any, Any], exc: Exception) -> str:
    """Log an exception no handler expected (once, with its traceback and the request id) and
    count it; returns the request id to quote in the answer. The query is not logged (it may
    carry what a caller did not mean to leave in our logs)."""
    request_id = current_request_id() or uuid.uuid4().hex
    log.error(
        "unhandled %s in %s %s (request %s)",
        type(exc).__name__,
        request.method,
        request.url.path,
        request_id,
        exc_info=exc,
    )
    metrics.UNHANDLED_ERRORS.labels(type(exc).__name__).inc()
    return request_id


def internal_error_response(request: Request[Any, Any, Any], request_id: str) -> Response[Any]:
    """A generic 500 that says nothing of the cause: in the route's own error shape when it
    has one (the compatible endpoints), else the API's JSON with the request id."""
    own = _own_http_exception_handler(request)
    if own is not None:
        response: Response[Any] = own(request, InternalServerException(INTERNAL_ERROR))
        return response
    return Response({"status_code": 500, "detail": INTERNAL_ERROR, "request_id": request_id}, status_code=500)


def _own_http_exception_handler(request: Request[Any, Any, Any]) -> Any:
    route_handler = request.scope.get("route_handler")
    if route_handler is None:  # failed before routing
        return None
    handlers = route_handler.resolve_exception_handlers()
    own = [handlers[kind] for kind in (InternalServerException, HTTPException) if kind in handlers]
    return next((handler for handler in own if handler is not api_error), None)
