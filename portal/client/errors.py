"""The client's exceptions."""

from __future__ import annotations


class UsageClientError(Exception):
    """Base class of everything the usage client raises."""


class BufferFull(UsageClientError):
    """`record` could not buffer the event: `max_buffered` events are waiting to be sent
    and none was acknowledged within `block_timeout`. The event was not kept (counted in
    `stats.dropped`); the caller decides whether to retry, fail the request or log it."""


class AuthenticationError(UsageClientError):
    """The server refused the key (401/403). Nothing is retried; buffered events are kept
    (and stay in the spool, if any) until a client with a valid key sends them."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"the server refused the ingest key ({status}): {detail}")
        self.status = status
        self.detail = detail


class DeliveryError(UsageClientError):
    """A batch could not be delivered within the retry budget (network errors, 429 or
    5xx throughout). Its events stay buffered and are tried again at the next flush."""

    def __init__(self, message: str, unsent: int) -> None:
        super().__init__(message)
        self.unsent = unsent


class EventRejected(UsageClientError):
    """The server rejected one event as invalid (or as a conflicting reuse of its id).
    Passed to `on_error`; such an event is never retried."""

    def __init__(self, event_id: str, error: str, status: int | None = None) -> None:
        super().__init__(f"event {event_id} rejected: {error}")
        self.event_id = event_id
        self.error = error
        self.status = status
