"""The API key guard reads the Authorization header straight from the ASGI scope."""

from __future__ import annotations

import pytest

from portal.keys.guard import _authorization

HEADERS: list[tuple[str, list[tuple[bytes, bytes]], str]] = [
    ("no headers", [], ""),
    ("another header only", [(b"content-type", b"application/json")], ""),
    ("lower-case name", [(b"authorization", b"Bearer up_ingest_x")], "Bearer up_ingest_x"),
    ("mixed-case name", [(b"Authorization", b"Bearer up_ingest_x")], "Bearer up_ingest_x"),
    (
        "the first of two",
        [(b"authorization", b"Bearer first"), (b"authorization", b"Bearer second")],
        "Bearer first",
    ),
    ("a longer name that starts alike", [(b"authorization-x", b"Bearer no")], ""),
    ("latin-1 bytes", [(b"authorization", b"Bearer \xe9")], "Bearer \u00e9"),
]


@pytest.mark.parametrize(
    ("headers", "expected"), [(h, e) for _, h, e in HEADERS], ids=[n for n, _, _ in HEADERS]
)
def test_authorization_header_as_litestar_headers_read_it(
    headers: list[tuple[bytes, bytes]], expected: str
) -> None:
    assert _authorization(headers) == expected
