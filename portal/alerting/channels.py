"""Alert channels: destinations stored encrypted, shown masked, checked when saved."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.channels import ChannelError, mask, validate_destination
from alerts.destinations import Network
from alerts.secrets import decrypt, encrypt, webhook_secret
from portal.alerting.schemas import Channel, ChannelCreate
from portal.catalog.service import get_customer
from portal.db import values
from portal.problems import Conflict, Invalid, NotFound

_COLUMNS = "id, customer_id, name, kind, destination_masked, created_at"


@dataclass(frozen=True, slots=True)
class Destination:
    """A channel as a sender needs it: the clear URL, only in memory, only to send."""

    channel_id: int
    name: str
    kind: str
    url: str
    masked: str
    signing_secret: str | None


def _channel(row: Any) -> Channel:
    cid, customer_id, name, kind, masked, created_at = values(row)
    return Channel(cid, customer_id, name, kind, masked, created_at)


async def create_channel(
    session: AsyncSession,
    customer_id: str,
    data: ChannelCreate,
    *,
    secret_key: str,
    allow_networks: tuple[Network, ...],
) -> Channel:
    """Validate and store a destination. Webhook channels get a signing secret, returned
    in this answer only. Raises NotFound, Invalid (a URL Apprise cannot use, or one that
    is or resolves to an address the portal must not reach, outside `allow_networks`: the
    reason is named), Conflict."""
    if await get_customer(session, customer_id) is None:
        raise NotFound(f"no customer {customer_id!r}")
    try:
        # In a thread: the destination's host names are resolved (DNS) to be judged.
        kind = await asyncio.to_thread(validate_destination, data.destination, allow_networks=allow_networks)
    except ChannelError as exc:
        raise Invalid(str(exc)) from exc
    signing = webhook_secret() if kind == "webhook" else None
    row = (
        await session.execute(
            text(
                "INSERT INTO alert_channels (customer_id, name, kind, destination_encrypted, "
                "destination_masked, "
                "signing_secret_encrypted) VALUES (:c, :n, :k, :d, :m, :s) "
                f"ON CONFLICT (customer_id, name) DO NOTHING RETURNING {_COLUMNS}"
            ),
            {
                "c": customer_id,
                "n": data.name,
                "k": kind,
                "d": encrypt(secret_key, data.destination),
                "m": mask(data.destination),
                "s": None if signing is None else encrypt(secret_key, signing),
            },
        )
    ).first()
    if row is None:
        raise Conflict(f"name: customer {customer_id} already has a channel named {data.name!r}")
    channel = _channel(row)
    channel.signing_secret = signing
    return channel


async def list_channels(session: AsyncSession, customer_id: str) -> list[Channel]:
    rows = await session.execute(
        text(
            f"SELECT {_COLUMNS} FROM alert_channels WHERE customer_id = :c AND disabled_at IS NULL ORDER BY "
            "id"
        ),
        {"c": customer_id},
    )
    return [_channel(r) for r in rows]


async def disable_channel(session: AsyncSession, customer_id: str, channel_id: int) -> None:
    done = (
        await session.execute(
            text(
                "UPDATE alert_channels SET disabled_at = now() WHERE id = :id AND customer_id = :c "
                "AND disabled_at IS NULL RETURNING id"
            ),
            {"id": channel_id, "c": customer_id},
        )
    ).first()
    if done is None:
        raise NotFound(f"no channel {channel_id} for customer {customer_id}")


async def active_channel_ids(session: AsyncSession, customer_id: str) -> list[int]:
    rows = await session.execute(
        text("SELECT id FROM alert_channels WHERE customer_id = :c AND disabled_at IS NULL ORDER BY id"),
        {"c": customer_id},
    )
    return [int(values(r)[0]) for r in rows]


async def destination(session: AsyncSession, channel_id: int, *, secret_key: str) -> Destination:
    row = (
        await session.execute(
            text(
                "SELECT id, name, kind, destination_encrypted, destination_masked, signing_secret_encrypted "
                "FROM alert_channels WHERE id = :id"
            ),
            {"id": channel_id},
        )
    ).first()
    if row is None:
        raise NotFound(f"no channel {channel_id}")
    cid, name, kind, encrypted, masked, signing = values(row)
    return Destination(
        int(cid),
        name,
        kind,
        decrypt(secret_key, bytes(encrypted)),
        masked,
        None if signing is None else decrypt(secret_key, bytes(signing)),
    )
