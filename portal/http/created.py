"""A 201 with a `Location`: where the created resource is read from (RFC 9110, 15.3.2)."""

from __future__ import annotations

from typing import TypeVar
from urllib.parse import quote

from litestar import Response

T = TypeVar("T")


def created(content: T, *path: str | int) -> Response[T]:
    """`content` with status 201 and `Location: /v1/<path…>`, each part percent-encoded
    (a customer id may hold characters a path cannot)."""
    location = "/v1/" + "/".join(quote(str(part), safe="") for part in path)
    return Response(content, status_code=201, headers={"Location": location})
