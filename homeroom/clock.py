"""The one clock every service reads: `Runtime.clock`.

Deadlines, agreement terms, retention and linking-code expiry are rules about time; a rule
that calls `datetime.now()` itself can only be tested by waiting. Services read
`runtime.clock()` instead, and tests move it (`runtime.clock = fixed(...)`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """Now, as an aware UTC datetime."""
    return datetime.now(UTC)


def fixed(at: datetime) -> Clock:
    """A clock stopped at `at` (tests)."""
    if at.tzinfo is None:
        raise ValueError("a clock tells aware (UTC) time")
    return lambda: at
