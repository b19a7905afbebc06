"""A file answered as a download: its bytes, its media type and the name it is saved under."""

from __future__ import annotations

from litestar import Response


def attachment(content: bytes, *, media_type: str, filename: str) -> Response[bytes]:
    """`Content-Disposition: attachment; filename="…"`. `filename` must be a plain name of
    letters, digits, `.`, `_` and `-` (a document number, an id): it is not quoted further."""
    if not filename or any(not (c.isascii() and (c.isalnum() or c in "._-")) for c in filename):
        raise ValueError(f"not a plain file name: {filename!r}")
    return Response(
        content, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
