"""The worker entry point: `dramatiq workers.main` (what `usage-portal worker` runs).

The broker is configured before any actor module is imported, as Dramatiq requires.
Nothing here connects to a store: a worker starts while Postgres is down or Redis is
loading its data, and waits for them (Dramatiq's consumers reconnect; enqueues from the
worker, retries included, wait up to `ENQUEUE_PATIENCE_S` for the broker).
"""

from portal.infrastructure.broker import setup_broker
from portal.infrastructure.logs import configure
from portal.infrastructure.settings import get_settings
from workers.middleware import JobOutcomes, RoleHeartbeat, SettledCollector

# Longer than any restart of the broker's Redis we have seen (an 8.7 s AOF load at 3.5M
# keys): a retry that cannot be queued is lost once its message is acknowledged.
ENQUEUE_PATIENCE_S = 600.0

configure(role="worker")
_settings = get_settings()
_broker = setup_broker(_settings, enqueue_patience_s=ENQUEUE_PATIENCE_S)
_broker.add_middleware(JobOutcomes(_settings.redis_url))
_broker.add_middleware(SettledCollector())
if _settings.redis_url:
    _broker.add_middleware(RoleHeartbeat(_settings.redis_url, _settings.heartbeat_seconds))

from workers import alerting, billing, ingest, maintenance, webhooks  # noqa: E402,F401  (declares the actors)
