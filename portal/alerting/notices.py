"""Test notices: what a person sends to a channel to see that it works (API and portal). Written
as a delivery without a firing, queued for the alert worker after commit."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from alerts.messages import Notice
from portal.alerting import repository
from portal.alerting.deliveries import create_test_delivery
from portal.catalog.schemas import Customer
from portal.infrastructure.broker import ALERTS_QUEUE
from portal.infrastructure.domain_errors import RateLimited
from portal.infrastructure.jobs import after_commit

# A test notice is for seeing that a channel works: a few an hour are plenty, and more would
# let a signed-in user send mail or requests to any address as fast as they click.
TEST_NOTICE_WINDOW = timedelta(hours=1)
TEST_NOTICES_PER_ADDRESS = 5  # per destination: a channel deleted and added again counts on
TEST_NOTICES_PER_CUSTOMER = 20


async def send_test_notice(
    db: AsyncSession, customer: Customer, channel_id: int, *, public_url: str, now: datetime
) -> int:
    """A pending test delivery to the channel, sent at `now` (UTC), queued for the alert
    worker; its id. Raises RateLimited past the hour's allowance (nothing is written)."""
    await repository.lock_customer_alerting(db, customer.id)
    recent = await repository.recent_test_deliveries(db, customer.id, channel_id, within=TEST_NOTICE_WINDOW)
    if recent.to_destination >= TEST_NOTICES_PER_ADDRESS:
        scope, wait_s = f"{TEST_NOTICES_PER_ADDRESS} to one address", recent.destination_frees_in_s
    elif recent.to_customer >= TEST_NOTICES_PER_CUSTOMER:
        scope, wait_s = f"{TEST_NOTICES_PER_CUSTOMER} for one customer", recent.customer_frees_in_s
    else:
        scope = ""
    if scope:
        minutes = max(1, math.ceil(wait_s / 60))
        raise RateLimited(
            f"test notices: at most {scope} an hour; the next can be sent in {minutes} "
            f"minute{'s' * (minutes != 1)}",
            retry_after_s=math.ceil(wait_s),
        )
    notice = Notice(
        kind="test",
        firing_id=None,
        customer_id=customer.id,
        customer_name=customer.name,
        rule_id=None,
        rule_name="Test notice",
        metric_name=None,
        unit=customer.currency,
        level_label="test",
        threshold=Decimal(0),
        value=Decimal(0),
        currency=customer.currency,
        cost_so_far=None,
        period_start=now,
        period_end=now,
        forecast_at=None,
        dashboard_url=f"{public_url}/portal/customers/{customer.id}",
        occurred_at=now,
        time_zone=customer.timezone,
    )
    delivery_id = await create_test_delivery(db, customer.id, channel_id, notice)
    # Sent once the delivery is committed; if the broker refuses, sweep_alerts sends every
    # due delivery within a minute.
    after_commit(db, "deliver_alert", ALERTS_QUEUE, delivery_id)
    return delivery_id
