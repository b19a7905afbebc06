"""HTTP errors shared by several routes."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import ClientException, ValidationException

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
