"""What the account managers' pages share: the customers a viewer may see as a SQL subquery,
query-string parsing that names the bad parameter, paging, and the audit trail of objects."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import repository as accounts
from portal.accounts.schemas import AuditEntry
from portal.catalog import repository as catalog
from portal.infrastructure.domain_errors import Invalid
from portal.infrastructure.periods import zone
from portal.pages.access import customer_scope, viewer

PAGE_SIZE = 50


def visible_ids(request: Request[Any, Any, Any]) -> tuple[str, dict[str, Any]]:
    """`(SELECT customer_id …)`: the ids of the customers the viewer may see, for
    `x.customer_id IN {sql}` in queries that join (the scope's condition names a bare
    `customer_id`, so it is applied inside its own subquery)."""
    condition, params = customer_scope(viewer(request))
    return catalog.customer_ids_sql(condition), params


def choice(name: str, value: str | None, allowed: tuple[str, ...], default: str) -> str:
    if value is None or value == "":
        return default
    if value not in allowed:
        raise Invalid(f"{name}: “{value}” is not one of {', '.join(allowed)}")
    return value


def flag(name: str, value: str | None) -> bool:
    """A checkbox in a query string: absent or "" is off, "1"/"on"/"true" is on."""
    if value in (None, "", "0", "off", "false"):
        return False
    if value in ("1", "on", "true"):
        return True
    raise Invalid(f"{name}: “{value}” is not on or off (use 1 or leave it out)")


def page_number(value: str | None) -> int:
    if value is None or value == "":
        return 1
    if not value.isdigit() or not 1 <= int(value) <= 100_000:
        raise Invalid(f"page: “{value}” is not a page number (1, 2, 3…)")
    return int(value)


def text_param(name: str, value: str | None, *, max_length: int = 200) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > max_length:
        raise Invalid(f"{name}: at most {max_length} characters")
    return value.strip()


def local_instant(name: str, value: str | None, tz_name: str) -> datetime | None:
    """A `<input type="datetime-local">` value ("2026-11-24T14:00") read in `tz_name`."""
    if value is None or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise Invalid(f"{name}: “{value}” is not a date and time such as 2026-11-24T14:00") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone(tz_name))
    return parsed


@dataclass(frozen=True, slots=True)
class Pager:
    """Offset paging with a total count: links keep every other parameter."""

    page: int
    total: int
    base: str
    params: tuple[tuple[str, str], ...]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))

    @property
    def offset(self) -> int:
        return (self.page - 1) * PAGE_SIZE

    def url(self, page: int) -> str:
        query = [(k, v) for k, v in self.params if k != "page" and v != ""]
        if page > 1:
            query.append(("page", str(page)))
        return f"{self.base}?{urlencode(query)}" if query else self.base

    @property
    def previous_url(self) -> str | None:
        return self.url(self.page - 1) if self.page > 1 else None

    @property
    def next_url(self) -> str | None:
        return self.url(self.page + 1) if self.page < self.pages else None


def query_items(request: Request[Any, Any, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in request.query_params.items() if isinstance(v, str))


async def audit_trail(
    db: AsyncSession, object_type: str, object_ids: list[str]
) -> dict[str, list[AuditEntry]]:
    """Every audit entry of these objects, oldest first, in one query."""
    if not object_ids:
        return {}
    out: dict[str, list[AuditEntry]] = defaultdict(list)
    for entry in await accounts.audit_trails(db, object_type, object_ids):
        out[entry.object_id].append(entry)
    return dict(out)


async def customer_zones(db: AsyncSession, customer_ids: set[str]) -> dict[str, tuple[str, str]]:
    """Customer id → (name, time zone), for lists that show many customers' rows."""
    if not customer_ids:
        return {}
    return await catalog.names_and_zones(db, customer_ids)
