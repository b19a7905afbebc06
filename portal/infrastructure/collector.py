"""The cyclic garbage collector in a served process (a web or worker process).

What a process loads before it serves (modules, the app, pools, caches) lives as long as
the process, but the collector's full passes walked all of it again and again: in the web,
those passes paused every request sharing the loop (dashboard polls under ingest: p99
90-105 ms before, 36-46 ms after, bench/dashboard.py); in a worker they took 105-190 ms
every ~5 s under ingest, freeing nothing, with every thread of the process stopped
(measured with a `gc.callbacks` probe during `python -m bench.dashboard`).
"""

from __future__ import annotations

import gc

# A young-generation pass every 20,000 allocations (a 1000-event batch allocates a lot):
# fewer passes, each still short.
YOUNG_THRESHOLD = 20_000


def keep_startup_out_of_collections() -> None:
    """Move everything allocated so far out of the collector's reach (it is never freed
    anyway) and collect the young generation less often. Call once, when the process is
    ready to serve; not in tests, which create many apps in one process."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 20)
