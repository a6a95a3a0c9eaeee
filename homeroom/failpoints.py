"""Failpoints: named places where a fault test can make a process die, as a crash would.

`HOMEROOM_FAILPOINTS="consumer.after_state_commit:attendance,..."` (comma-separated
`name[:qualifier]`) makes the process kill itself with SIGKILL the first time it reaches that
point, so a test can crash a process at an exact moment (for example between a consumer's
database commit and its Kafka offset commit) instead of hoping a timed kill lands there.
Ignored in production.
"""

from __future__ import annotations

import os
import signal

_ACTIVE: frozenset[str] = frozenset(
    point.strip()
    for point in os.environ.get("HOMEROOM_FAILPOINTS", "").split(",")
    if point.strip() and os.environ.get("HOMEROOM_ENVIRONMENT", "development") != "production"
)


def reached(name: str, qualifier: str = "") -> None:
    """Die here (SIGKILL: no cleanup, nothing flushed) if this failpoint is armed."""
    if _ACTIVE and (name in _ACTIVE or f"{name}:{qualifier}" in _ACTIVE):
        os.kill(os.getpid(), signal.SIGKILL)
