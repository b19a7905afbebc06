"""The live view's own tests and the live parts of ingest, run again with REDIS_URL naming a
3-primary cluster (tests/cluster/conftest.py): the same bodies, the same exact numbers."""

from __future__ import annotations

from tests.ingest.test_late_duplicates import (
    test_a_redelivered_message_corrects_the_live_view_once,
    test_a_resend_after_the_marker_window_is_counted_live_until_persisted_then_taken_out,
    test_two_requests_racing_with_one_event_count_it_once_live_and_billed,
)
from tests.ingest.test_pipeline import catalog
from tests.ingest.test_single_events import (
    test_concurrent_single_events_are_each_answered_for_their_own_event,
)
from tests.live.test_freshness import (
    test_complete_through_waits_for_unpersisted_batches,
    test_live_keys_outlive_every_read,
)
from tests.live.test_pipelining import (
    test_an_error_reaches_only_the_submission_it_belongs_to,
    test_concurrent_submissions_share_pipelines_and_get_their_own_replies,
)

__all__ = [
    "catalog",
    "test_a_redelivered_message_corrects_the_live_view_once",
    "test_a_resend_after_the_marker_window_is_counted_live_until_persisted_then_taken_out",
    "test_an_error_reaches_only_the_submission_it_belongs_to",
    "test_complete_through_waits_for_unpersisted_batches",
    "test_concurrent_single_events_are_each_answered_for_their_own_event",
    "test_concurrent_submissions_share_pipelines_and_get_their_own_replies",
    "test_live_keys_outlive_every_read",
    "test_two_requests_racing_with_one_event_count_it_once_live_and_billed",
]
