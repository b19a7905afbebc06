"""Alert channels: destinations stored encrypted, shown masked, checked when saved. The SQL is
in `portal.alerting.repository`; nothing here commits."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from alerts.channels import ChannelError, mask, validate_destination
from alerts.destinations import Network
from alerts.secrets import decrypt, encrypt, webhook_secret
from portal.alerting import repository
from portal.alerting.schemas import Channel, ChannelCreate
from portal.catalog.service import get_customer
from portal.infrastructure.domain_errors import Conflict, Invalid, NotFound

# Enabled channels one customer may have: every one is a place notices go, and a customer
# user may add them (a cap, so a signed-in user cannot make the product mail a list).
MAX_ACTIVE_CHANNELS = 20


@dataclass(frozen=True, slots=True)
class Destination:
    """A channel as a sender needs it: the clear URL, only in memory, only to send."""

    channel_id: int
    name: str
    kind: str
    url: str
    masked: str
    signing_secret: str | None


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
    await repository.lock_customer_alerting(session, customer_id)
    if await repository.active_channel_count(session, customer_id) >= MAX_ACTIVE_CHANNELS:
        raise Conflict(
            f"channels: customer {customer_id} has {MAX_ACTIVE_CHANNELS} alert channels, the most one "
            "customer may have; delete one before adding another"
        )
    try:
        # In a thread: the destination's host names are resolved (DNS) to be judged.
        kind = await asyncio.to_thread(validate_destination, data.destination, allow_networks=allow_networks)
    except ChannelError as exc:
        raise Invalid(str(exc)) from exc
    signing = webhook_secret() if kind == "webhook" else None
    channel = await repository.insert_channel(
        session,
        customer_id=customer_id,
        name=data.name,
        kind=kind,
        destination_encrypted=encrypt(secret_key, data.destination),
        destination_masked=mask(data.destination),
        signing_secret_encrypted=None if signing is None else encrypt(secret_key, signing),
    )
    if channel is None:
        raise Conflict(f"name: customer {customer_id} already has a channel named {data.name!r}")
    channel.signing_secret = signing
    return channel


async def list_channels(session: AsyncSession, customer_id: str) -> list[Channel]:
    return await repository.active_channels(session, customer_id)


async def disable_channel(session: AsyncSession, customer_id: str, channel_id: int) -> None:
    if not await repository.disable_channel(session, customer_id, channel_id):
        raise NotFound(f"no channel {channel_id} for customer {customer_id}")


async def active_channel_ids(session: AsyncSession, customer_id: str) -> list[int]:
    return await repository.active_channel_ids(session, customer_id)


async def destination(session: AsyncSession, channel_id: int, *, secret_key: str) -> Destination:
    stored = await repository.stored_channel(session, channel_id)
    if stored is None:
        raise NotFound(f"no channel {channel_id}")
    return Destination(
        stored.channel_id,
        stored.name,
        stored.kind,
        decrypt(secret_key, stored.destination_encrypted),
        stored.masked,
        None
        if stored.signing_secret_encrypted is None
        else decrypt(secret_key, stored.signing_secret_encrypted),
    )
