"""The audit log: who did what to which object, when, and why (append-only). The SQL is in
`portal.accounts.repository`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import repository
from portal.accounts.schemas import AuditEntry


async def record(
    db: AsyncSession,
    *,
    user_id: int | None,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    customer_id: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Write one entry in the caller's transaction: it commits with the change it describes."""
    await repository.add_audit_entry(
        db,
        user_id=user_id,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        customer_id=customer_id,
        reason=reason,
        detail=detail or {},
    )


async def entries(
    db: AsyncSession,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    customer_id: str | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Newest first, at most `limit`; each filter that is given must match."""
    return await repository.audit_entries(
        db, object_type=object_type, object_id=object_id, customer_id=customer_id, limit=limit
    )
