"""HTTP errors shared by several routes."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import ClientException, ValidationException

from portal.problems import Conflict, Invalid, NotFound, Problem

RETRY_AFTER_S = "2"


class ServiceUnavailable(ClientException):
    """503 with Retry-After: a dependency is down; nothing was changed, retry later.

    A ClientException subclass so that its message reaches the client."""

    status_code = 503

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": RETRY_AFTER_S})


def unprocessable(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    """Bad fields in a well-formed request are 422 (Unprocessable Content), naming each
    field in `extra`; Litestar's default would be 400."""
    return Response(
        {"status_code": 422, "detail": exc.detail, "extra": exc.extra},
        status_code=422,
    )


class StoreUnavailable(Exception):
    """Raised by services when Postgres or Redis cannot be reached."""


_STATUS = {NotFound: 404, Conflict: 409, Invalid: 422}


def problem_response(request: Request[Any, Any, Any], exc: Problem) -> Response[Any]:
    """NotFound → 404, Conflict → 409, Invalid → 422; the message names the problem.

    An Invalid message starts with the field it is about ("state: …"); like Litestar's own
    422s, `extra` then names that field, as the caller spelled it."""
    status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 400)
    body: dict[str, Any] = {"status_code": status, "detail": str(exc)}
    if isinstance(exc, Invalid):
        field, _, problem = str(exc).partition(": ")
        body["extra"] = [{"key": field, "message": problem}] if problem and " " not in field else []
    return Response(body, status_code=status)
