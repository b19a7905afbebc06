"""What the repository's modules share."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Text, cast, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

# Only columns are read and written here, never objects a session would have to keep in step.
NO_SYNC = {"synchronize_session": False}


def ids(found: Any) -> list[int]:
    """A result's single column of ids, as ints."""
    return [int(i) for i in found.all()]


def jsonb_notice(notice_json: str) -> ColumnElement[Any]:
    """A notice as `notice_json` wrote it (decimals as strings), cast to jsonb by Postgres: the
    column type's own serializer would write the text again as one JSON string."""
    return cast(literal(notice_json, Text), JSONB)


async def lock_customer_alerting(session: AsyncSession, customer_id: str) -> None:
    """Until the transaction ends, this customer's channel, rule and test-notice allowances
    are counted by one transaction at a time (a count then an insert would otherwise let
    two concurrent requests both pass the last free place). An advisory lock: it blocks
    nothing else that touches the customer."""
    key = func.hashtextextended(literal(f"alerting:{customer_id}", Text), 0)
    await session.execute(select(func.pg_advisory_xact_lock(key)))
