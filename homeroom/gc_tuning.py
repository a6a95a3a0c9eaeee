"""Python's garbage collector, tuned for a service that keeps large batches alive for a moment.

A request or poll that holds tens of thousands of objects until its database write returns
(a batch of 1,000 decisions, a poll of 1,000 events) outlives several young-generation
collections at Python's default threshold (700 allocations): its objects are promoted, the
old generations fill, and full passes over the whole heap (the service's facts in memory
included) follow every few batches. With a higher threshold such a batch is mostly freed by
reference counting before any collection looks at it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def young_generation_threshold(threshold: int) -> Iterator[None]:
    """Raise the young generation's threshold to `threshold` (never lower it; 0 leaves it) for
    the duration, process-wide; restore the thresholds found on the way out."""
    found = gc.get_threshold()
    if threshold:
        gc.set_threshold(max(found[0], threshold), *found[1:])
    try:
        yield
    finally:
        gc.set_threshold(*found)
