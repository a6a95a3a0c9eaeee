"""A task that works in rounds until stopped: the absence reviewer and the waiting marks.

A round that fails on the database waits and tries again; a bug is logged and retried, so
neither ever stops for good while the service runs."""

from __future__ import annotations

import asyncio
import logging

from homeroom.storage import INFRASTRUCTURE_ERRORS
from homeroom.tasks import cancel, wait_for_wake

log = logging.getLogger(__name__)


class PollingLoop:
    """Subclasses give `name` (the task's), `what` (for the log) and `round()`: True when more
    work is waiting at once (the next round starts without a pause). `wake()` ends a pause early
    (a consumer that has just committed work for the task), so the work is not left waiting for
    the rest of `poll_s`."""

    name = "records-loop"
    what = "background work"
    poll_s: float = 0.25
    error_pause_s: float | None = None  # None: poll_s
    _task: asyncio.Task[None] | None = None
    _woken: asyncio.Event | None = None

    async def round(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        self._woken = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        """Start the next round now (or, during a round, right after it) instead of after the pause."""
        if self._woken is not None:
            self._woken.set()

    async def stop(self) -> None:
        await cancel(self._task)

    async def _run(self) -> None:
        pause_after_error = self.poll_s if self.error_pause_s is None else self.error_pause_s
        woken = self._woken or asyncio.Event()
        while True:
            woken.clear()  # a wake from here on (during the round) means another round
            try:
                pause = 0.0 if await self.round() else self.poll_s
            except asyncio.CancelledError:
                raise
            except INFRASTRUCTURE_ERRORS as exc:
                log.warning(f"{self.what} waits for the database", extra={"error": repr(exc)})
                pause = pause_after_error
            except Exception:  # a bug must not stop the work for good
                log.exception(f"{self.what} failed; retrying")
                pause = pause_after_error
            if pause:
                await wait_for_wake(woken, pause)
