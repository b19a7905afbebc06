"""Every query on billing's tables, one module per group of tables; other modules call
these functions, never the tables.

- `plans`: `plans`, `subscriptions`
- `credits`: `credit_grants`, `credit_applications`
- `invoices`: `invoices`, `invoice_lines`, `document_numbers`
- `adjustments`: `adjustments`, `late_events`
- `documents`: `document_emails`, and `invoices.parties`
- `exports`: the CSV exports' reads over invoices, their lines and notes
- `locks`: the per-customer billing lock (advisory locks) and what it guards

None of them commits, or takes a lock its caller did not ask for. Reads select columns
rather than whole models, so nothing lands in the session's identity map. Money columns are
unbounded numerics, read and written as Decimal. Raw SQL is kept only where an expression
cannot say it or would cost a chunked run its single statement, each with the reason.
"""

from __future__ import annotations

# Only columns are read and written here, never objects a session would have to keep in step.
NO_SYNC = {"synchronize_session": False}
