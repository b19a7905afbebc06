"""Table model of the API keys; only a hash of each key is stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    LargeBinary,
    Text,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel


class ApiKey(SQLModel, table=True):
    """An API key that may ingest events or administer the catalog and billing, until revoked."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("scope IN ('ingest', 'admin')", name="api_keys_scope_check"),
        UniqueConstraint("key_hash", name="api_keys_key_hash_key"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    name: str = Field(sa_type=Text)
    scope: str = Field(sa_type=Text)
    prefix: str = Field(sa_type=Text)
    key_hash: bytes = Field(sa_type=LargeBinary)
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
