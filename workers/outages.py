"""Store outages as the periodic actors see them.

A periodic job (reconcile, sweeps, drafts, storage upkeep) that meets Postgres or Redis
down, restarting or loading its data has nothing to retry: the scheduler queues it again at
its next tick. `@periodic` makes such a run end as skipped, not failed: no dead letter, no
traceback per tick, one log line when the outage starts for the job and one when it runs
again. Any other error still fails the run (and dead-letters it, until a later run of the
job succeeds: portal/operations/dead_letters.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec

import asyncpg
import dramatiq
import redis.exceptions
import sqlalchemy.exc
from dramatiq.middleware import CurrentMessage

log = logging.getLogger(__name__)

P = ParamSpec("P")

# A store unreachable, not a bad job (workers/ingest.py waits these out too).
# redis.exceptions.BusyLoadingError (Valkey loading its data) is a ConnectionError.
STORE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)
# The message option a skipped run sets, so the job-outcome middleware does not count it
# as a success (workers/middleware.py).
SKIPPED_OPTION = "skipped"


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps: SQLAlchemy's DBAPIError, a raise ... from) means a
    store is unavailable."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, STORE_UNAVAILABLE):
            return True
        if isinstance(current, sqlalchemy.exc.DBAPIError):
            if current.connection_invalidated:
                return True
            orig = current.orig
            current = orig if isinstance(orig, BaseException) else current.__cause__
            continue
        current = current.__cause__ or current.__context__
    return False


_outages: dict[str, float] = {}  # job -> monotonic time its current outage began
_lock = threading.Lock()


def _skipped(job: str, exc: BaseException) -> None:
    message = CurrentMessage.get_current_message()
    if message is not None:
        message.options[SKIPPED_OPTION] = "outage"
    with _lock:
        first = job not in _outages
        if first:
            _outages[job] = time.monotonic()
    if first:
        log.warning(
            "%s skipped: a store is unavailable (%s); it runs again at its next tick", job, type(exc).__name__
        )


def _ran(job: str) -> None:
    with _lock:
        since = _outages.pop(job, None)
    if since is not None:
        log.warning("%s ran again after %.0f s of store outage", job, time.monotonic() - since)


def periodic(fn: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
    """Wrap a periodic async actor body: an outage skips the run (see the module)."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            await fn(*args, **kwargs)
        except Exception as exc:
            if not is_outage(exc):
                raise
            _skipped(fn.__name__, exc)
            return
        _ran(fn.__name__)

    return run


def retried_quietly(fn: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
    """Wrap an event-driven async actor body (not periodic: its message is the only
    request for the work): an outage retries the message after its backoff with one
    warning line, not Dramatiq's traceback per attempt. Other errors fail as before."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            await fn(*args, **kwargs)
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("%s retrying: a store is unavailable (%s)", fn.__name__, type(exc).__name__)
            raise dramatiq.Retry(f"outage: {type(exc).__name__}") from None

    return run
