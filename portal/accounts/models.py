"""Table models of portal accounts: people who sign in, the customers they may see, their
one-time password links, and the audit log of what they did."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    LargeBinary,
    Text,
    desc,
    func,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class User(SQLModel, table=True):
    """A person who signs in to the portal: a customer's user, an account manager or an admin."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('customer', 'account_manager', 'admin')", name="users_role_check"),
        CheckConstraint("(role = 'customer') = (customer_id IS NOT NULL)", name="users_check"),
        CheckConstraint("NOT all_customers OR role = 'account_manager'", name="users_check1"),
        # One account per address, whatever its case.
        Index("users_email", func.lower(literal_column("email")), unique=True),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    email: str = Field(sa_type=Text)
    name: str = Field(sa_type=Text)
    role: str = Field(sa_type=Text)
    # A customer user's one customer.
    customer_id: str | None = Field(default=None, foreign_key="customers.id", sa_type=Text)
    # An account manager who sees every customer, not only those assigned in user_customers.
    all_customers: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    # argon2id (PHC string); NULL until the person sets a password through their link.
    password_hash: str | None = Field(default=None, sa_type=Text)
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    disabled_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class UserCustomer(SQLModel, table=True):
    """A customer assigned to an account manager."""

    __tablename__ = "user_customers"

    user_id: int = Field(primary_key=True, foreign_key="users.id", ondelete="CASCADE", sa_type=BigInteger)
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", sa_type=Text)


class PasswordToken(SQLModel, table=True):
    """A one-time link to set a password, stored as the SHA-256 of its token."""

    __tablename__ = "password_tokens"

    token_hash: bytes = Field(primary_key=True, sa_type=LargeBinary)
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE", sa_type=BigInteger)
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class AuditEntry(SQLModel, table=True):
    """Who did what to which object, when and why: approvals, voids, replays, users, keys."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("audit_log_object", "object_type", "object_id", desc("at")),
        Index("audit_log_customer", "customer_id", desc("at")),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    # NULL when the actor is not a portal user (the CLI, an API key).
    user_id: int | None = Field(default=None, foreign_key="users.id", sa_type=BigInteger)
    actor: str = Field(sa_type=Text)
    action: str = Field(sa_type=Text)
    object_type: str = Field(sa_type=Text)
    object_id: str = Field(sa_type=Text)
    customer_id: str | None = Field(default=None, sa_type=Text)
    reason: str | None = Field(default=None, sa_type=Text)
    detail: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default=text("'{}'"))
    )
