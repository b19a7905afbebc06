"""Domain errors of the services (billing, alerting): each says what is wrong in words an
account manager can act on. `problem_response` answers NotFound with 404, Conflict with
409 (NotYet with Retry-After too), Invalid with 422 and RateLimited with 429, for every route.
"""

from __future__ import annotations


class Problem(Exception):
    """Base class; the message is shown to the caller as is."""


class NotFound(Problem):
    """The plan, customer, invoice or subscription does not exist."""


class Conflict(Problem):
    """The request is well-formed but contradicts the current state (e.g. approving a
    finalized invoice, or a plan id reused with another definition)."""


class NotYet(Conflict):
    """Well-formed, and possible in a moment but not now (an event accepted a moment ago
    that is not recorded yet): 409 with Retry-After, so a client may wait and send it
    again; nothing changed."""

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)


class RateLimited(Problem):
    """Well-formed, but more of it than allowed in a while (test notices to an address):
    429 with Retry-After, and nothing changed; the message says when it may be tried again."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)


class Invalid(Problem):
    """The request names things that do not fit together (e.g. a plan in EUR for a
    customer billed in USD, a charge on an unknown meter)."""
