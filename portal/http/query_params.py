"""Query parameters the routes check themselves, so that an error names the parameter
as the caller spelled it ("from", "state"), not the handler's Python argument."""

from __future__ import annotations

from datetime import datetime

from portal.http.schemas import check_time
from portal.infrastructure.domain_errors import Invalid


def choice(name: str, value: str | None, allowed: tuple[str, ...]) -> str | None:
    """A query parameter that must be one of `allowed` (None when absent)."""
    if value is not None and value not in allowed:
        raise Invalid(f"{name}: must be one of {', '.join(allowed)}; got {value!r}")
    return value


def instant(name: str, value: str | None) -> datetime | None:
    """A query parameter holding an ISO 8601 instant with its offset, from 1970 to 9998
    (None when absent)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise Invalid(
            f"{name}: expected an ISO 8601 instant with an offset, such as "
            f"2026-11-01T00:00:00Z; got {value!r}"
        )
    try:
        check_time(name, parsed)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return parsed
