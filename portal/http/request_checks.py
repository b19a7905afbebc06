"""Checks every request passes before any guard or handler sees it: addresses whose values
no route can use are refused here, once, rather than by a store deep inside a route.

- A control character (U+0000 to U+001F, U+007F) in the path or the query is a 400: Postgres
  refuses NUL in text, and no id, name or filter of ours holds one.
- An integer path parameter (`{invoice_id:int}`, …) outside Postgres' bigint is a 404: such
  a row cannot exist, and asyncpg cannot even bind the value.
- A JSON body Litestar decodes that nests deeper than MAX_JSON_DEPTH is a 400, measured on
  its bytes before the (recursive) decoder runs (`PortalRequest`).
- A form field that is not text in its charset is a 400 (`PortalRequest.form`).
- A body with a Content-Encoding (gzip, br…) is a 415: no route decompresses one.

Integer *query* values are bounded where they are declared (`le=ID_MAX`), so that the
schema shows the bound and the 422 names the parameter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import FormMultiDict
from litestar.exceptions import ClientException, NotFoundException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Empty

from portal.http.json_nesting import MAX_JSON_DEPTH, json_nesting_exceeds

# Postgres bigint: every id column of ours.
ID_MIN = -(2**63)
ID_MAX = 2**63 - 1

_CONTROL_TEXT = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]")


class UnfitAddress(ClientException):
    """400: the path or query holds something no route accepts (the message says what)."""

    status_code = 400


class UnsupportedEncoding(ClientException):
    """415: a compressed body (Content-Encoding), which no route decompresses."""

    status_code = 415


def body_encoding(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The request's Content-Encoding when it is one (gzip, br…), None for none or identity."""
    for name, value in headers:
        if name.lower() == b"content-encoding":
            encoding = value.decode("latin-1").strip().lower()
            if encoding not in ("", "identity"):
                return encoding
    return None


def has_control_character(query_string: bytes) -> bool:
    """Whether a raw query string holds a control character, percent-encoded or not."""
    decoded = unquote_to_bytes(query_string) if b"%" in query_string else query_string
    return _CONTROL_BYTES.search(decoded) is not None


async def fitting_address(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """App-wide guard, the first to run: 400 for control characters in the path or query,
    404 for an integer path parameter beyond bigint."""
    path: str = connection.scope["path"]
    if _CONTROL_TEXT.search(path):
        raise UnfitAddress("path: control characters (such as NUL) are not allowed in an address")
    query: bytes = connection.scope.get("query_string", b"")
    if query and has_control_character(query):
        raise UnfitAddress("query: control characters (such as NUL) are not allowed in an address")
    # Read as it is, a gzip body was "not valid UTF-8 (byte 1)": say what is wrong instead.
    encoding = body_encoding(connection.scope["headers"])
    if encoding is not None:
        raise UnsupportedEncoding(
            f"Content-Encoding {encoding[:40]!r} is not supported: send the body uncompressed"
        )
    for value in connection.path_params.values():
        if type(value) is int and not ID_MIN <= value <= ID_MAX:
            raise NotFoundException("Nothing has this id: ids are 64-bit integers.")


class PortalRequest(Request[Any, Any, Any]):
    """The app's request: a JSON body Litestar decodes (a route's `data`) is measured
    first, and one nested deeper than MAX_JSON_DEPTH is a 400; a form whose fields cannot
    be read as text is a 400."""

    async def json(self) -> Any:
        undecoded = self._json is Empty and self._connection_state.json is Empty
        if undecoded and json_nesting_exceeds(await self.body()):
            raise ClientException(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        return await super().json()

    async def form(self) -> FormMultiDict:
        # Litestar 2.25 decodes a multipart part without a filename in the charset the part
        # names (UTF-8 by default) and lets the error out: bytes that are not text there, or
        # a charset no codec has, were a 500 (found by tests/pages/test_page_fuzz.py).
        try:
            return await super().form()
        except (UnicodeDecodeError, LookupError) as exc:
            raise ClientException(
                "a form field is not text in its charset (UTF-8 unless the part names another)"
            ) from exc
