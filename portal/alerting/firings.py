"""What every kind of firing shares: the stored form of its notice, and a pending delivery
per channel written in the same transaction as the firing (sent after commit). The SQL is in
`portal.alerting.repository`."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.messages import Notice, webhook_payload
from portal.alerting import repository
from portal.webhooks.service import announce

_encode = msgspec.json.Encoder(decimal_format="string").encode


def notice_json(notice: Notice) -> str:
    return _encode(notice).decode()


def notice_from_json(data: Any) -> Notice:
    return msgspec.convert(data, Notice, strict=False)


async def fan_out(
    session: AsyncSession, customer_id: str, channel_ids: list[int], firing_id: int, notice: Notice
) -> list[int]:
    """A pending delivery of the firing's notice to each of `channel_ids` (empty: every
    channel of the customer) that is still enabled; their ids. Announces `alert.fired`."""
    await announce_firing(session, notice)
    channels = channel_ids or await repository.active_channel_ids(session, customer_id)
    return await repository.insert_firing_deliveries(
        session,
        firing_id=firing_id,
        customer_id=customer_id,
        channel_ids=channels,
        notice_json=notice_json(notice),
    )


async def announce_firing(session: AsyncSession, notice: Notice) -> None:
    """`alert.fired` to the operator's webhook endpoints, in the firing's transaction: the
    alert webhook's payload (docs/webhooks.md) without its own type and version, its `id`
    as `alertId`."""
    payload = webhook_payload(notice)
    data = {"alertId": payload.pop("id"), "firingId": notice.firing_id}
    payload.pop("type")
    payload.pop("version")
    await announce(
        session, "alert.fired", data | payload, customer_id=notice.customer_id, now=notice.occurred_at
    )
