"""The per-customer billing lock: a Postgres advisory lock, held to the end of the caller's
transaction.

Every change to a customer's billing state (finalize, void, adjust, subscription change)
takes it exclusively; the ingest worker takes it shared, per customer in its batch,
before it looks for finalized invoices the batch reaches into. So an event is either
visible to the transaction that finalizes its period, or it sees that invoice finalized
and is recorded as late: never neither (the race that would drop it from a bill).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# The advisory-lock namespace of billing (first key of the two-int form).
BILLING_LOCK_SPACE = 7301


async def lock_customer(session: AsyncSession, customer_id: str) -> None:
    """Exclusive billing lock on one customer, until the transaction ends."""
    # Raw SQL: advisory locks are functions, with no table to express them on.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:space, hashtext(:c))"),
        {"space": BILLING_LOCK_SPACE, "c": customer_id},
    )


async def share_customers(conn: Any, customer_ids: list[str]) -> None:
    """Shared billing locks on customers (asyncpg connection, inside its transaction).

    Shared locks never wait for each other, only for a billing change in progress."""
    # Raw SQL: advisory locks, on a bare asyncpg connection (the ingest worker's).
    await conn.execute(
        "SELECT pg_advisory_xact_lock_shared($1, h) FROM "
        "(SELECT DISTINCT hashtext(c) AS h FROM unnest($2::text[]) AS c ORDER BY 1) AS keys",
        BILLING_LOCK_SPACE,
        customer_ids,
    )
