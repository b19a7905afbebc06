"""Dead letters: messages Dramatiq gave up on, kept in the broker.

Dramatiq's Redis broker keeps a queue's dead letters in `dramatiq:<queue>.XQ` (a sorted set
of message ids scored by when they died, ms by the worker's clock) and `.XQ.msgs` (id ->
the message). The RabbitMQ broker keeps them in the queue `<queue>.XQ`, each with the time
it died in its `x-death` header (portal/infrastructure/rabbitmq_admin.py reads and moves
them). Each function below takes either broker's client (`broker_client`) and does the same
with both. What happens to them here:

- **Periodic jobs** are idempotent and run again at the next tick. A dead letter of one
  (an outage, a bug that was fixed) is moot once a later run of the job that covers its
  work succeeded: `clear_superseded` drops it then (called by the worker after each
  successful run, workers/middleware.py). `SUPERSEDED_BY` says which run covers what: the
  sweeps also cover the one-off jobs whose lost work they redo (settling late events,
  evaluating and delivering alerts).
- **Any other dead letter** of the maintenance and alerts queues ages out after
  `DEAD_LETTER_DAYS` (`age_out`, called at the same moment).
- **Ingest dead letters** hold accepted events: they are never cleared nor aged out, and
  stay in `status` until replayed (`requeue`). The persist actor retries every failure, so
  one only appears if a message cannot be run at all (an unknown actor, say).

Dramatiq's own expiry of dead letters is turned off (portal/infrastructure/broker.py,
portal/infrastructure/rabbitmq_broker.py) so that it cannot drop ingest dead letters. With
RabbitMQ, the last success of each periodic job (`record_success`) is kept in the live
view's Redis instead of the broker's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from portal.infrastructure.broker import (
    ALERTS_QUEUE,
    INGEST_QUEUE,
    MAINTENANCE_QUEUE,
    QUEUES,
    redis_queue_keys,
)
from portal.infrastructure.rabbitmq_admin import DeadMessage, RabbitmqAdmin
from portal.infrastructure.rabbitmq_broker import is_amqp_url
from portal.infrastructure.settings import Settings
from portal.live import redis_keys as keys

# A client of either broker (see `broker_client`).
BrokerClient = redis.Redis | RabbitmqAdmin
DEAD_LETTER_DAYS = 7
DEAD_LETTER_KEPT_MS = DEAD_LETTER_DAYS * 86_400_000
# Queues whose dead letters are cleared and aged out; never ingest.
AGING_QUEUES = (MAINTENANCE_QUEUE, ALERTS_QUEUE)

# actor -> the periodic actor whose successful run (started after the dead letter) makes it moot
SUPERSEDED_BY = {
    "reconcile_live": "reconcile_live",  # the incremental one only: see `covered`
    "maintain_storage": "maintain_storage",
    "sweep_late_events": "sweep_late_events",
    "settle_late_events": "sweep_late_events",  # the sweep settles every unsettled late event
    "draft_current_periods": "draft_current_periods",
    "sweep_document_emails": "sweep_document_emails",
    "email_document": "sweep_document_emails",  # the sweep sends every email still owed
    "draft_ended_periods": "draft_ended_periods",
    "refresh_ended_draft": "draft_ended_periods",  # the hourly run re-rates every ended draft
    "sweep_alerts": "sweep_alerts",
    "evaluate_alerts": "sweep_alerts",  # the sweep evaluates every customer with rules or pending
    "deliver_alert": "sweep_alerts",  # ...and sends every due delivery (state in Postgres)
    "sweep_webhooks": "sweep_webhooks",
    "deliver_webhook": "sweep_webhooks",  # the sweep queues every due webhook delivery
}
SUPERSEDING = frozenset(SUPERSEDED_BY.values())


def dead_key(queue: str) -> str:
    return redis_queue_keys(queue).dead_ids


def dead_messages_key(queue: str) -> str:
    return redis_queue_keys(queue).dead


def covered(message: dict[str, Any], succeeded: str) -> bool:
    """Whether a successful run of `succeeded` makes this dead message moot.

    A full rebuild of the live view (`reconcile_live(True)`, asked by an operator) is not
    covered by the periodic incremental reconcile: it stays until it ages out."""
    actor = message.get("actor_name")
    if not isinstance(actor, str) or SUPERSEDED_BY.get(actor) != succeeded:
        return False
    if actor == "reconcile_live":
        args = message.get("args") or []
        kwargs = message.get("kwargs") or {}
        return not any(args) and not kwargs.get("full")
    return True


def _decode(raw: Any) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except (ValueError, TypeError):
        return {}
    return message if isinstance(message, dict) else {}


def _drop(client: redis.Redis, queue: str, ids: list[Any]) -> int:
    if not ids:
        return 0
    with client.pipeline(transaction=True) as pipe:
        pipe.zrem(dead_key(queue), *ids)
        pipe.hdel(dead_messages_key(queue), *ids)
        removed, _ = pipe.execute()
    return int(removed)


def clear_superseded(client: BrokerClient, succeeded: str, started_ms: int) -> int:
    """Drop the dead letters that a run of `succeeded` started at `started_ms` (epoch ms)
    covers and that died before it started. Returns how many were dropped."""
    if isinstance(client, RabbitmqAdmin):

        def made_moot(letter: DeadMessage) -> bool:
            return letter.died_ms <= started_ms and (not letter.message or covered(letter.message, succeeded))

        return sum(client.drop_dead(queue, made_moot) for queue in AGING_QUEUES)
    dropped = 0
    for queue in AGING_QUEUES:
        ids: list[Any] = list(client.zrangebyscore(dead_key(queue), "-inf", started_ms))
        if not ids:
            continue
        messages = client.hmget(dead_messages_key(queue), ids)
        moot = [
            i for i, raw in zip(ids, messages, strict=True) if raw is None or covered(_decode(raw), succeeded)
        ]
        dropped += _drop(client, queue, moot)
    return dropped


def age_out(client: BrokerClient, now_ms: int, kept_ms: int = DEAD_LETTER_KEPT_MS) -> int:
    """Drop the maintenance and alerts dead letters older than `kept_ms`; never ingest's."""
    if isinstance(client, RabbitmqAdmin):
        return sum(
            client.drop_dead(queue, lambda letter: letter.died_ms <= now_ms - kept_ms)
            for queue in AGING_QUEUES
        )
    dropped = 0
    for queue in AGING_QUEUES:
        dropped += _drop(client, queue, list(client.zrangebyscore(dead_key(queue), "-inf", now_ms - kept_ms)))
    return dropped


def record_success(client: redis.Redis, actor: str, started_ms: int) -> None:
    """Remember when the last successful run of `actor` started (status shows it)."""
    client.hset(keys.JOB_SUCCESS_KEY, actor, started_ms)


# Move one dead letter back onto its queue, once even if two operators replay at once.
_REQUEUE_SCRIPT = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[4], ARGV[1])
return 1
"""


def requeue(client: BrokerClient, queue: str = INGEST_QUEUE, ids: list[str] | None = None) -> int:
    """Put dead letters of `queue` (all, or those `ids`) back on it, with their retry count
    reset, for the workers to run again. Returns how many were put back."""
    if isinstance(client, RabbitmqAdmin):
        wanted = None if ids is None else set(ids)
        return client.requeue_dead(queue, lambda letter: wanted is None or letter.message_id in wanted)
    chosen = (
        ids
        if ids is not None
        else [i.decode() if isinstance(i, bytes) else str(i) for i in client.zrange(dead_key(queue), 0, -1)]
    )
    moved = 0
    for message_id in chosen:
        raw = client.hget(dead_messages_key(queue), message_id)
        if raw is None:
            continue
        message = _decode(raw)
        if not message:
            continue
        options = message.setdefault("options", {})
        if isinstance(options, dict):
            for option in ("retries", "traceback", "requeue_timestamp"):
                options.pop(option, None)
        moved += int(
            client.eval(
                _REQUEUE_SCRIPT,
                4,
                dead_key(queue),
                dead_messages_key(queue),
                redis_queue_keys(queue).messages,
                redis_queue_keys(queue).waiting,
                message_id,
                json.dumps(message),
            )
        )
    return moved


@contextlib.contextmanager
def broker_client(settings: Settings) -> Iterator[BrokerClient]:
    """A client of the broker (the operator's commands): of its Redis, or a RabbitMQ
    connection when BROKER_URL is amqp(s)://."""
    url = settings.effective_broker_url or settings.redis_url or ""
    client: BrokerClient = RabbitmqAdmin(url) if is_amqp_url(url) else redis.Redis.from_url(url)
    try:
        yield client
    finally:
        client.close()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    queue: str
    message_id: str
    actor: str
    died_at: datetime


def _actor(message: dict[str, Any]) -> str:
    actor = message.get("actor_name")
    return actor if isinstance(actor, str) else "?"


def listing(client: BrokerClient) -> list[DeadLetter]:
    """Every dead letter of every queue, oldest first within a queue."""
    if isinstance(client, RabbitmqAdmin):
        return [
            DeadLetter(
                queue=queue,
                message_id=letter.message_id,
                actor=_actor(letter.message),
                died_at=datetime.fromtimestamp(letter.died_ms / 1000, UTC),
            )
            for queue in QUEUES
            for letter in client.dead_letters(queue)
        ]
    letters = []
    for queue in QUEUES:
        dead: list[tuple[bytes, float]] = client.zrange(dead_key(queue), 0, -1, withscores=True)  # type: ignore[assignment]
        if not dead:
            continue
        messages = client.hmget(dead_messages_key(queue), [message_id for message_id, _ in dead])
        for (message_id, died_ms), raw in zip(dead, messages, strict=True):
            actor = _decode(raw).get("actor_name") if raw is not None else None
            text_id = message_id.decode() if isinstance(message_id, bytes) else str(message_id)
            letters.append(
                DeadLetter(
                    queue=queue,
                    message_id=text_id,
                    actor=actor if isinstance(actor, str) else "?",
                    died_at=datetime.fromtimestamp(died_ms / 1000, UTC),
                )
            )
    return letters
