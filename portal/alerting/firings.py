"""What every kind of firing shares: the stored form of its notice, and a pending delivery
per channel written in the same transaction as the firing (sent after commit)."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.messages import Notice
from portal.alerting.channels import active_channel_ids
from portal.db import values

_encode = msgspec.json.Encoder(decimal_format="string").encode


def notice_json(notice: Notice) -> str:
    return _encode(notice).decode()


def notice_from_json(data: Any) -> Notice:
    return msgspec.convert(data, Notice, strict=False)


async def fan_out(
    session: AsyncSession, customer_id: str, channel_ids: list[int], firing_id: int, notice: Notice
) -> list[int]:
    """A pending delivery of the firing's notice to each of `channel_ids` (empty: every
    channel of the customer) that is still enabled; their ids."""
    channels = channel_ids or await active_channel_ids(session, customer_id)
    rows = await session.execute(
        text(
            "INSERT INTO alert_deliveries (firing_id, channel_id, customer_id, notice, masked_destination) "
            "SELECT :f, ch.id, :c, CAST(:n AS jsonb), ch.destination_masked FROM alert_channels ch "
            "WHERE ch.id = ANY(:ids) AND ch.disabled_at IS NULL ORDER BY ch.id RETURNING id"
        ),
        {"f": firing_id, "c": customer_id, "n": notice_json(notice), "ids": channels},
    )
    return [int(values(r)[0]) for r in rows]
