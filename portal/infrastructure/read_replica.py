"""Reads that may go to a streaming replica (DATABASE_READ_URL), and how complete they are.

Pages and reports that only display data read a hot standby; anything that decides money or
writes reads the primary (docs/architecture.md, "Reads and writes"). A replica is behind the
primary by its replay lag, so what the primary's `completeThrough` promises ("every event
accepted before it is in Postgres") holds on the replica only once it has replayed the
commits that made it true. How that is tracked (docs/decisions.md, "Read replicas"):

- A *mark* is (watermark ms, the primary's `pg_current_wal_lsn()`), the watermark read
  first. Every batch accepted before the watermark had left `live:inflight`, so its commit
  was already in the primary's WAL when the LSN was read: a replica that has replayed that
  LSN holds everything the watermark promises. Each web process takes a mark at most every
  `mark_interval_s` when a replica read asks for one (one Redis pipeline and one
  `SELECT pg_current_wal_lsn()`, which reads no table), and keeps a few thousand of them
  (an idle primary's marks share one LSN and collapse into one).
- A replica read starts with `pg_last_wal_replay_lsn()` on its own connection, as the
  transaction's first statement: in READ COMMITTED every later statement sees at least
  what was replayed then. Its completeness is the newest mark at or below that LSN.
- Its lag is the age of the oldest mark the replica has not replayed (0 when it has them
  all, however idle the primary): it is at least that far behind. Beyond `max_lag_s`, or
  with no mark replayed yet, or with the replica unreachable, the request reads the
  primary instead, and `problem` says why (shown by /readyz).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

log = logging.getLogger(__name__)

# Set in a replica session's `info`: the completeness (epoch ms) of what it reads.
COMPLETE_THROUGH_MS = "replica_complete_through_ms"
# Marks kept per process: at one every 0.2 s while the primary writes, about 13 minutes.
MAX_MARKS = 4096
# After the replica failed to answer, the primary is read this long before trying again
# (so an unreachable replica costs one failed connect per interval, not one per request).
RETRY_DOWN_S = 5.0


def parse_lsn(lsn: str) -> int:
    """`16/B374D848` (a WAL position as Postgres writes it) as an integer."""
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass(slots=True)
class Mark:
    watermark_ms: int
    lsn: int
    seen_at: float  # monotonic seconds: when the primary first had this LSN, as far as we know


@dataclass(frozen=True, slots=True)
class Replay:
    """Where a replica stands against this process's marks."""

    complete_through_ms: int | None  # None: no mark replayed yet
    lag_s: float  # 0 when every mark is replayed


def replay_position(marks: deque[Mark] | list[Mark], replayed_lsn: int, now: float) -> Replay:
    """The newest mark at or below `replayed_lsn` and the age (s, against `now`) of the
    oldest one above it (pure; marks are in the order they were taken, LSNs not falling)."""
    complete: int | None = None
    lag = 0.0
    for mark in marks:
        if mark.lsn <= replayed_lsn:
            complete = mark.watermark_ms
        else:
            lag = max(now - mark.seen_at, 0.0)
            break
    return Replay(complete, lag)


class ReplicaReads:
    """Opens a request's read session on the replica when it is close enough to the
    primary, and says how complete it is; None from `open()` means: read the primary."""

    def __init__(
        self,
        *,
        primary: AsyncEngine,
        replica: AsyncEngine,
        watermark_ms: Callable[[], Awaitable[int]],
        max_lag_s: float,
        mark_interval_s: float = 0.2,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.sessions = async_sessionmaker(replica, expire_on_commit=False)
        self.watermark_ms = watermark_ms
        self.max_lag_s = max_lag_s
        self.mark_interval_s = mark_interval_s
        self.marks: deque[Mark] = deque(maxlen=MAX_MARKS)
        # Why reads go to the primary now (None: the replica is read).
        self.problem: str | None = None
        self._down_until = 0.0
        self._marked_at = float("-inf")
        self._marking = asyncio.Lock()

    async def mark(self) -> None:
        """Take a mark unless one was taken within `mark_interval_s`. A primary or Redis
        that does not answer leaves the marks as they are (the replica is judged on them)."""
        if time.monotonic() - self._marked_at < self.mark_interval_s:
            return
        async with self._marking:
            if time.monotonic() - self._marked_at < self.mark_interval_s:
                return
            try:
                # The order matters: the watermark first, then the LSN (see the module doc).
                watermark = await self.watermark_ms()
                async with self.primary.connect() as conn:
                    raw = (await conn.execute(text("SELECT pg_current_wal_lsn()::text"))).scalar()
            except Exception as exc:  # whatever failed: no new mark, judged on the old ones
                log.debug("no replica mark: %s", exc)
                return
            self._marked_at = time.monotonic()
            lsn = parse_lsn(str(raw))
            last = self.marks[-1] if self.marks else None
            if last is not None and last.lsn == lsn:
                # Nothing written since: the same LSN now promises the newer watermark. Its
                # first sighting stays, so the lag of a replica missing it is not understated.
                last.watermark_ms = max(last.watermark_ms, watermark)
            else:
                self.marks.append(Mark(watermark, lsn, self._marked_at))

    async def open(self) -> AsyncSession | None:
        """A session on the replica, its completeness in `info[COMPLETE_THROUGH_MS]`; None
        when the primary must be read (`problem` says why)."""
        if time.monotonic() < self._down_until:
            return None
        await self.mark()
        session = self.sessions()
        try:
            raw = (await session.execute(text("SELECT pg_last_wal_replay_lsn()::text"))).scalar()
        except Exception as exc:  # whatever the replica did: read the primary
            await _close_quietly(session)
            self._down_until = time.monotonic() + RETRY_DOWN_S
            self.problem = f"reading the primary: the replica did not answer ({type(exc).__name__})"
            log.warning("read replica unavailable, reading the primary: %s", exc)
            return None
        if raw is None:
            await _close_quietly(session)
            self.problem = "reading the primary: DATABASE_READ_URL is not a streaming standby"
            return None
        replay = replay_position(self.marks, parse_lsn(str(raw)), time.monotonic())
        if replay.complete_through_ms is None or replay.lag_s > self.max_lag_s:
            await _close_quietly(session)
            self.problem = (
                f"reading the primary: the replica is {replay.lag_s:.1f} s behind "
                f"(limit {self.max_lag_s:g} s)"
                if replay.complete_through_ms is not None
                else "reading the primary: the replica has not replayed a known position yet"
            )
            return None
        self.problem = None
        session.info[COMPLETE_THROUGH_MS] = replay.complete_through_ms
        return session

    async def close(self) -> None:
        await self.replica.dispose()


async def _close_quietly(session: AsyncSession) -> None:
    try:
        await session.close()
    except Exception as exc:  # a dead connection cannot close cleanly
        log.debug("closing a replica session: %s", exc)
