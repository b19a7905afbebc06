"""HTTP errors shared by several routes."""

from __future__ import annotations

from litestar.exceptions import ClientException

RETRY_AFTER_S = "2"


class ServiceUnavailable(ClientException):
    """503 with Retry-After: a dependency is down; nothing was changed, retry later.

    A ClientException subclass so that its message reaches the client."""

    status_code = 503

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": RETRY_AFTER_S})


class StoreUnavailable(Exception):
    """Raised by services when Postgres or Redis cannot be reached."""
