"""Account email (the one-time link to set a password), sent through the same SMTP path
as email alerts: the portal's `smtp_url` server, via alerts.smtp."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

from alerts.smtp import SmtpSettingsError, portal_smtp, submit
from portal.accounts.schemas import User
from portal.accounts.service import PASSWORD_LINK_TTL
from portal.infrastructure.settings import Settings


def password_link_url(settings: Settings, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}/portal/set-password/{token}"


def password_link_message(user: User, url: str, sender: tuple[str, str]) -> EmailMessage:
    hours = int(PASSWORD_LINK_TTL.total_seconds() // 3600)
    message = EmailMessage()
    message["Subject"] = "Set your password for the usage portal"
    message["From"] = formataddr(sender)
    message["To"] = formataddr((user.name, user.email))
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender[1].rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        f"Hello {user.name},\n\n"
        f"An account was made for you on the usage portal. Choose your password here:\n\n{url}\n\n"
        f"The link works once and for {hours} hours. If you did not expect this email, ignore it.\n"
    )
    return message


def _send(settings: Settings, user: User, url: str) -> str | None:
    if settings.smtp_url is None:
        return "the portal has no SMTP server configured (PORTAL_SMTP_URL)"
    try:
        server = portal_smtp(settings.smtp_url)
    except SmtpSettingsError as exc:
        return f"the portal's SMTP settings (smtp_url): {exc}"
    ok, error = submit(server, password_link_message(user, url, server.sender), [user.email], timeout_s=10.0)
    return None if ok else error


async def send_password_link(settings: Settings, user: User, token: str) -> str | None:
    """Email the link; None when the server accepted it, else why it was not sent."""
    return await asyncio.to_thread(_send, settings, user, password_link_url(settings, token))
