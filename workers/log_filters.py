"""Keeping customer data and whole batches out of the worker's log lines.

Dramatiq names a message it logs by its arguments ("Failed to process message
persist_events({...})"): for a persist message that is a whole batch, lines of 40 KB during
an outage, with every event in them. `install()` makes its worker threads name a message
by actor and id instead. workers/ingest.py installs it when the actors are declared.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.broker import MessageProxy

# The loggers of Dramatiq's worker and consumer threads, which log messages with "%s".
DRAMATIQ_LOGGERS = ("dramatiq.worker.WorkerThread", "dramatiq.worker._ConsumerThread")


class MessageIdsOnly(logging.Filter):
    """Replace every Dramatiq message among a record's arguments by `actor(message id)`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(a, (dramatiq.Message, MessageProxy)) for a in record.args
        ):
            record.args = tuple(
                f"{a.actor_name}(message {a.message_id})"
                if isinstance(a, (dramatiq.Message, MessageProxy))
                else a
                for a in record.args
            )
        return True


def install() -> None:
    """Idempotent: at most one filter per logger."""
    for name in DRAMATIQ_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MessageIdsOnly) for f in logger.filters):
            logger.addFilter(MessageIdsOnly())
