"""The worker entry point: `dramatiq workers.main` (what `usage-portal worker` runs).

The broker is configured before any actor module is imported, as Dramatiq requires.
"""

from portal.broker import setup_broker
from portal.logs import configure
from portal.settings import get_settings

configure(role="worker")
setup_broker(get_settings())

from workers import alerting, billing, ingest, maintenance  # noqa: E402,F401  (declares the actors)
