"""Queue work for the workers by actor name, so `portal/` never imports actor code."""

from __future__ import annotations

import asyncio
from typing import Any

import dramatiq

from portal.broker import get_broker


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
