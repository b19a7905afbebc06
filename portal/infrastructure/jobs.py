"""Queue work for the workers by actor name, so `portal/` never imports actor code.

A job that follows a database change is owed by the transaction (`after_commit`): kept in
the session until the transaction commits, sent then, and dropped if it rolls back, so
a worker never runs on a change that does not exist (or not yet). `portal.infrastructure.db.transaction`
and the request's session (`portal.dependencies.provide_session`) send what is owed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import dramatiq
from sqlalchemy.ext.asyncio import AsyncSession

from portal.infrastructure.broker import get_broker

log = logging.getLogger(__name__)

_OWED = "portal.infrastructure.jobs.owed"


@dataclass(frozen=True, slots=True)
class Job:
    actor_name: str
    queue_name: str
    args: tuple[Any, ...]


def after_commit(session: AsyncSession, actor_name: str, queue_name: str, *args: Any) -> None:
    """Owe a job once `session`'s transaction commits (nothing is sent if it rolls back)."""
    session.info.setdefault(_OWED, []).append(Job(actor_name, queue_name, args))


async def send_owed(session: AsyncSession) -> None:
    """Send the jobs `session` owes; call after its commit. A job the broker refuses is
    logged, not raised: the change is committed, and each job sent this way has a sweep
    that redoes its work (see the callers of `after_commit`)."""
    owed: list[Job] = session.info.pop(_OWED, [])
    for job in owed:
        try:
            await enqueue(job.actor_name, job.queue_name, *job.args)
        except QueueUnavailable as exc:
            log.warning("%s not queued after commit (%s); its sweep will do it", job.actor_name, exc)


class QueueUnavailable(Exception):
    """The broker did not take the message; nothing was queued."""


def build_message(actor_name: str, queue_name: str, *args: Any, **options: Any) -> dramatiq.Message[Any]:
    return dramatiq.Message(
        queue_name=queue_name, actor_name=actor_name, args=args, kwargs={}, options=options
    )


async def enqueue(actor_name: str, queue_name: str, *args: Any, **options: Any) -> str:
    """Put one message on the broker and return its id once the broker has it.

    The broker client is synchronous; it runs in a worker thread so the event loop keeps
    serving other requests. Raises QueueUnavailable when the broker refuses or is down.
    """
    message = build_message(actor_name, queue_name, *args, **options)
    try:
        await asyncio.to_thread(get_broker().enqueue, message)
    except Exception as exc:  # redis errors, timeouts: all mean "not durable"
        raise QueueUnavailable(str(exc)) from exc
    return str(message.message_id)


def enqueue_sync(actor_name: str, queue_name: str, *args: Any, **options: Any) -> str:
    """`enqueue` for synchronous callers (CLI, scheduler, workers)."""
    message = build_message(actor_name, queue_name, *args, **options)
    get_broker().enqueue(message)
    return str(message.message_id)
