"""Accounts as the rest of the portal sees them: people, their role, and audit entries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Role = Literal["customer", "account_manager", "admin"]
ROLES: tuple[Role, ...] = ("customer", "account_manager", "admin")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str
    name: str
    role: Role
    customer_id: str | None
    all_customers: bool
    password_hash: str | None
    created_at: datetime
    disabled_at: datetime | None

    @property
    def is_staff(self) -> bool:
        """Account managers and admins: the people who work on many customers."""
        return self.role != "customer"


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
