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


async def wait_for_wake(wake: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``wake`` is set or ``timeout_s`` passes (True: woken). A background loop's
    idle wait: a cancellation is always passed on, even one that arrives in the same turn as
    the wake. ``asyncio.wait_for`` on Python 3.11 swallows that one (CPython gh-86296), and the
    loop it was meant to stop runs on for ever: a service's stop hung on it."""
    try:
        async with asyncio.timeout(timeout_s):
            await wake.wait()
    except TimeoutError:
        return False
    return True
