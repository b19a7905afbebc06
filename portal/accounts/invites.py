"""Inviting a person: create the user, mint a one-time link, email it.

Used by the admin page and by `usage-portal users create`; the caller owns the transaction
(the link is only emailed after the user is committed, so a link never names a user that
a rolled-back transaction took away)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.accounts import service
from portal.accounts.mail import password_link_url, send_password_link
from portal.accounts.schemas import User
from portal.infrastructure.db import transaction
from portal.infrastructure.settings import Settings


@dataclass(frozen=True, slots=True)
class Invitation:
    user: User
    link: str
    email_error: str | None  # None: the SMTP server accepted the email


async def invite(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    email: str,
    name: str,
    role: str,
    customer_id: str | None = None,
    all_customers: bool = False,
    assigned: Sequence[str] = (),
    now: datetime,
) -> Invitation:
    """Create the user and email them a one-time link issued at `now` (UTC)."""
    async with transaction(sessions) as db:
        user = await service.create_user(
            db,
            email=email,
            name=name,
            role=role,
            customer_id=customer_id,
            all_customers=all_customers,
            assigned=assigned,
        )
        token = await service.issue_password_link(db, user.id, now=now)
    error = await send_password_link(settings, user, token)
    return Invitation(user=user, link=password_link_url(settings, token), email_error=error)


async def resend(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, user_id: int, *, now: datetime
) -> Invitation:
    """A new link issued at `now` (UTC; the earlier ones stop working), emailed again."""
    async with transaction(sessions) as db:
        user = await service.require_user(db, user_id)
        token = await service.issue_password_link(db, user.id, now=now)
    error = await send_password_link(settings, user, token)
    return Invitation(user=user, link=password_link_url(settings, token), email_error=error)
