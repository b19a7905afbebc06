"""The audit log: who did what to which object, when, and why (append-only)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from portal.db import values


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    customer_id: str | None
    reason: str | None
    detail: dict[str, Any]


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
    await db.execute(
        text(
            "INSERT INTO audit_log (user_id, actor, action, object_type, object_id, customer_id, reason, "
            "detail) "
            "VALUES (:u, :actor, :action, :ot, :oid, :cid, :reason, CAST(:detail AS jsonb))"
        ),
        {
            "u": user_id,
            "actor": actor,
            "action": action,
            "ot": object_type,
            "oid": object_id,
            "cid": customer_id,
            "reason": reason,
            "detail": json.dumps(detail or {}),
        },
    )


async def entries(
    db: AsyncSession,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    customer_id: str | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    rows = await db.execute(
        text(
            "SELECT id, at, actor, action, object_type, object_id, customer_id, reason, detail FROM "
            "audit_log "
            "WHERE (CAST(:ot AS text) IS NULL OR object_type = :ot) "
            "AND (CAST(:oid AS text) IS NULL OR object_id = :oid) "
            "AND (CAST(:cid AS text) IS NULL OR customer_id = :cid) ORDER BY at DESC, id DESC LIMIT :limit"
        ),
        {"ot": object_type, "oid": object_id, "cid": customer_id, "limit": limit},
    )
    return [AuditEntry(*values(r)) for r in rows]
