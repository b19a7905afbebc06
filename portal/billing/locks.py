"""The per-customer billing lock (a Postgres advisory lock, held to the end of the transaction).

Every change to a customer's billing state (finalize, void, adjust, subscription change)
takes it exclusively; the ingest worker takes it shared, per customer in its batch,
before it looks for finalized invoices the batch reaches into. So an event is either
visible to the transaction that finalizes its period, or it sees that invoice finalized
and is recorded as late: never neither (the race that would drop it from a bill).
"""

from __future__ import annotations

# The SQL lives in billing's repository; callers take the lock through this module's names.
from portal.billing.repository.locks import BILLING_LOCK_SPACE, lock_customer, share_customers

__all__ = ["BILLING_LOCK_SPACE", "lock_customer", "share_customers"]
