"""A background loop's idle wait passes on a cancellation that arrives with its wake."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable

import pytest

from homeroom.tasks import cancel, wait_for_wake


async def _idle_loop(wait: Callable[[asyncio.Event], Awaitable[object]], wake: asyncio.Event) -> None:
    while True:  # what the outbox relay, the notice relay and the case worker do between passes
        wake.clear()
        await wait(wake)


async def _wake_and_cancel_in_one_turn(wait: Callable[[asyncio.Event], Awaitable[object]]) -> bool:
    """Whether the loop stopped when woken and cancelled in the same turn of the event loop."""
    wake = asyncio.Event()
    task = asyncio.create_task(_idle_loop(wait, wake))
    await asyncio.sleep(0.01)  # the loop is waiting
    wake.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    if not done:
        task.cancel()  # the swallowed cancellation: stop it for good before the test ends
        await asyncio.wait({task}, timeout=1.0)
    return bool(done)


async def test_a_cancellation_that_arrives_with_the_wake_stops_the_loop() -> None:
    assert await _wake_and_cancel_in_one_turn(lambda wake: wait_for_wake(wake, 30.0))


async def test_the_wait_reports_whether_it_was_woken() -> None:
    wake = asyncio.Event()
    assert await wait_for_wake(wake, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, wake.set)
    assert await wait_for_wake(wake, 5.0) is True


async def test_cancel_waits_for_each_task_and_skips_one_never_started() -> None:
    finished: list[str] = []

    async def holds_a_lock() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            finished.append("released")

    task = asyncio.create_task(holds_a_lock())
    await asyncio.sleep(0)
    await cancel(task, None)
    assert task.done() and finished == ["released"]


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="gh-86296 is fixed in Python 3.12's wait_for")
async def test_the_library_wait_this_replaces_loses_that_cancellation() -> None:
    # Why wait_for_wake exists: the same loop over asyncio.wait_for never stops on Python 3.11.
    async def library_wait(wake: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=30.0)

    assert not await _wake_and_cancel_in_one_turn(library_wait)
