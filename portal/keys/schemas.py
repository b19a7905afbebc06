"""API keys as the rest of the portal sees them: never their token, which is shown once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Scope = Literal["ingest", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "admin")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An active key, as a request authenticated by it carries it."""

    id: int
    name: str
    scope: Scope


@dataclass(frozen=True, slots=True)
class KeyListing:
    """A key as the admin pages show it: never its token (only the hash is stored)."""

    id: int
    name: str
    scope: Scope
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
