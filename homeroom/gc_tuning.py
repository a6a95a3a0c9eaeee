"""The cyclic garbage collector's young generation, raised while a service works in batches.

A chunk of a thousand records or events keeps tens of thousands of container objects alive.
At CPython's default threshold (a young collection every 700 allocations) they are walked
again and again and promoted into the old generations, whose whole-heap collections then
cost a large share of the process's CPU: a fifth in records under load, 8 % of ingest's
attendance upload (docs/services/ingest.md, "Where ingest's CPU goes"). A higher threshold
collects the same cycles, less often.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def young_threshold(at_least: int) -> Iterator[None]:
    """Generation 0's threshold raised to `at_least` inside the block (never lowered; 0 leaves
    it). On the way out the previous thresholds come back, unless something else changed them
    meanwhile: they are process-wide, and services run side by side in one test process and
    stop in any order."""
    before = gc.get_threshold()
    raised = (max(before[0], at_least), *before[1:])
    gc.set_threshold(*raised)
    try:
        yield
    finally:
        if gc.get_threshold() == raised:
            gc.set_threshold(*before)
