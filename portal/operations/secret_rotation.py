"""Re-encrypting every stored secret under the current key (`usage-portal secrets rotate`,
portal/cli/secrets.py).

What the secret key protects at rest is the alert channels' destinations (Apprise URLs
with their tokens and passwords) and webhook signing secrets (alerts/secrets.py). Rotating
to a new key, without a moment where a channel cannot be read:

1. every process gets `PORTAL_SECRET_KEY=<new>` and `PORTAL_SECRET_KEY_PREVIOUS=<old>`
   and restarts: each reads values under either key and encrypts new ones under the new;
2. `usage-portal secrets rotate` (same environment) re-encrypts every stored value under
   the new key, in one transaction, and says how many still needed an old key;
3. `PORTAL_SECRET_KEY_PREVIOUS` is removed and the processes restarted.

Running it again is harmless (it reports 0 under a previous key). A value no key reads
(an old key missing from PORTAL_SECRET_KEY_PREVIOUS, or a corrupt row) on an active
channel stops the command before anything changes; on a disabled channel it is reported
and left as it is.

The SQL (every channel read under lock, then rewritten in one batch) is in
`portal.alerting.repository`, the table's owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from alerts.secrets import Keys, readable_with_newest, reencrypt
from portal.alerting import repository
from portal.infrastructure.db import create_engine, session_factory, transaction
from portal.infrastructure.settings import Settings


class RotationRefused(Exception):
    """Some active channel cannot be read with any configured key; nothing was changed."""


@dataclass(slots=True)
class RotationReport:
    rotated: int = 0
    # Of `rotated`, how many were readable only with a previous key before.
    were_under_previous: int = 0
    # Disabled channels no key reads: left as they are (they are never sent to).
    unreadable_disabled: list[int] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"re-encrypted {self.rotated} stored alert channel secrets under the current key "
            f"({self.were_under_previous} were under a previous key)"
        ]
        if self.unreadable_disabled:
            ids = ", ".join(str(i) for i in self.unreadable_disabled)
            out.append(f"left as they are: disabled channels no key reads: {ids}")
        out.append(
            "every stored secret now reads with PORTAL_SECRET_KEY alone: "
            "PORTAL_SECRET_KEY_PREVIOUS can be removed"
        )
        return out


def _rotate_value(keys: Keys, token: bytes | None) -> tuple[bytes | None, bool]:
    """The value under the newest key, and whether it needed a previous one."""
    if token is None:
        return None, False
    return reencrypt(keys, token), not readable_with_newest(keys, token)


async def rotate_channel_secrets(session: AsyncSession, keys: Keys) -> RotationReport:
    """Re-encrypt every channel's destination and signing secret under the newest of
    `keys`. Raises RotationRefused (naming the channels) when an active channel reads
    with none of them; the caller's transaction then changes nothing."""
    report = RotationReport()
    rewritten: list[tuple[int, bytes, bytes | None]] = []
    unreadable: list[str] = []
    for channel in await repository.lock_all_channel_secrets(session):
        try:
            new_destination, moved_destination = _rotate_value(keys, channel.destination_encrypted)
            new_signing, moved_signing = _rotate_value(keys, channel.signing_secret_encrypted)
        except ValueError:
            if channel.disabled:
                report.unreadable_disabled.append(channel.channel_id)
            else:
                unreadable.append(f"{channel.channel_id} ({channel.customer_id}: {channel.name!r})")
            continue
        assert new_destination is not None  # a destination is never NULL
        rewritten.append((channel.channel_id, new_destination, new_signing))
        report.rotated += 1
        report.were_under_previous += int(moved_destination or moved_signing)
    if unreadable:
        raise RotationRefused(
            "no configured key reads the stored secrets of active channels "
            f"{', '.join(unreadable)}: add the key they were stored under to "
            "PORTAL_SECRET_KEY_PREVIOUS (or re-enter those channels); nothing was changed"
        )
    await repository.set_channel_secrets(session, rewritten)
    return report


async def rotate(settings: Settings) -> RotationReport:
    """One transaction over the whole table under `settings.secret_keys`."""
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with transaction(session_factory(engine)) as session:
            return await rotate_channel_secrets(session, settings.secret_keys)
    finally:
        await engine.dispose()
