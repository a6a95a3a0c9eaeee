"""Background asyncio tasks of a service: stopped the one way (cancelled, then awaited)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel these tasks and wait until each has finished (None: a task never started), so
    that nothing they hold (a connection, a lock) outlives the stop."""
    for task in tasks:
        if task is not None:
            task.cancel()
    for task in tasks:
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
