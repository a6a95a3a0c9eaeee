"""The cyclic garbage collector's young generation, raised while a service works in batches.

A chunk of a thousand records, a poll of a thousand events or a batch of a thousand decisions
keeps tens of thousands of container objects alive until its database write returns. At
CPython's default threshold (a young collection every 700 allocations) they are walked again
and again and promoted into the old generations, whose whole-heap collections then cost a
large share of the process's CPU: a fifth in records under load, 8 % of ingest's attendance
upload, a fifth of the reports tally (docs/services/*.md). A higher threshold collects the
same cycles, less often. It costs latency: a young collection at 10,000-50,000 pauses for
several milliseconds, which is why consent leaves it off by default (docs/services/consent.md).

The thresholds are process-wide, and several holders run side by side (a service's consumers,
several services in one test process) and stop in any order: while any holder is in its
block the threshold is the highest any of them asked for (never lower than what was there
before the first came), and when the last leaves, what was there before comes back, unless
something else changed the thresholds meanwhile.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

# What a batch-working holder asks for unless told otherwise: every kernel consumer while it runs,
# reports' tally, ingest (measured in records: GC fell from 0.77 to 0.04 s of a 3.9 s window).
YOUNG_GC_THRESHOLD = 50_000

_held: dict[object, int] = {}  # holder -> the young threshold it asked for
_found: tuple[int, int, int] | None = None  # the thresholds before the first holder came
_set: tuple[int, int, int] | None = None  # what the holders last set


def _apply() -> None:
    global _found, _set
    current = gc.get_threshold()
    if _set is not None and current != _set:  # changed by someone else: theirs is the base now
        _found = current
    if not _held:
        if _found is not None and current == _set:
            gc.set_threshold(*_found)
        _found = _set = None
        return
    if _found is None:
        _found = current
    _set = (max(_found[0], *_held.values()), _found[1], _found[2])
    gc.set_threshold(*_set)


@contextlib.contextmanager
def young_threshold(at_least: int) -> Iterator[None]:
    """Generation 0's threshold at least `at_least` inside the block (never lowered; 0 leaves
    it), for as long as this or another holder is inside its block."""
    if at_least <= 0:
        yield
        return
    holder = object()
    _held[holder] = at_least
    _apply()
    try:
        yield
    finally:
        del _held[holder]
        _apply()
