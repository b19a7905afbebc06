"""Account email (the one-time link to set a password), sent through the same SMTP path
as email alerts: the portal's `smtp_url` server, via alerts.smtp."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

from alerts.smtp import SmtpSettingsError, portal_smtp, submit
from portal.accounts.schemas import User
from portal.accounts.service import PASSWORD_LINK_TTL, RESET_LINK_TTL
from portal.infrastructure.settings import Settings


def password_link_url(settings: Settings, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}/portal/set-password/{token}"


def password_link_message(
    user: User, url: str, sender: tuple[str, str], *, reset: bool = False
) -> EmailMessage:
    hours = int((RESET_LINK_TTL if reset else PASSWORD_LINK_TTL).total_seconds() // 3600)
    message = EmailMessage()
    message["Subject"] = (
        "Choose a new password for the usage portal" if reset else "Set your password for the usage portal"
    )
    message["From"] = formataddr(sender)
    # One line: a person named before names were checked for line breaks still gets the link.
    message["To"] = formataddr((" ".join(user.name.split()), user.email))
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender[1].rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"
    if reset:
        message.set_content(
            f"Hello {user.name},\n\n"
            "Someone (we hope you) asked for a new password on the usage portal's sign-in page. "
            f"Choose it here:\n\n{url}\n\n"
            f"The link works once and for {hours} hour{'s' * (hours != 1)}. If you did not ask, ignore "
            "this email: your password stays as it is.\n"
        )
        return message
    message.set_content(
        f"Hello {user.name},\n\n"
        f"An account was made for you on the usage portal. Choose your password here:\n\n{url}\n\n"
        f"The link works once and for {hours} hours. If you did not expect this email, ignore it.\n"
    )
    return message


def _send(settings: Settings, user: User, url: str, reset: bool) -> str | None:
    if settings.smtp_url is None:
        return "the portal has no SMTP server configured (PORTAL_SMTP_URL)"
    try:
        server = portal_smtp(settings.smtp_url)
    except SmtpSettingsError as exc:
        return f"the portal's mail server settings (PORTAL_SMTP_URL): {exc}"
    message = password_link_message(user, url, server.sender, reset=reset)
    ok, error = submit(server, message, [user.email], timeout_s=10.0)
    return None if ok else error


async def send_password_link(
    settings: Settings, user: User, token: str, *, reset: bool = False
) -> str | None:
    """Email the link (an invitation's, or with `reset` a new password's); None when the
    server accepted it, else why it was not sent."""
    return await asyncio.to_thread(_send, settings, user, password_link_url(settings, token), reset)
