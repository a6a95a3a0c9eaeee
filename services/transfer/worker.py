"""The case worker: the loop that leases due cases and works each with the use case
`application.working.work` (decide → fetch → deliver, retries, re-sends, escalation).

Crash safety: the worker leases a case (a lease a dead worker held runs out), calls the
peer, then in ONE transaction moves the case by compare-and-set on its state, records the
step in its history and writes the step's events to the outbox (`application.common.commit`).
A crash before that commit repeats the call (the peers are idempotent on the case id); a
crash after it finds the case already moved. Step event ids are deterministic in (case,
step), so nothing is emitted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from homeroom.tasks import cancel, wait_for_wake
from services.transfer import store
from services.transfer.application.requesting import NOTIFY_CHANNEL
from services.transfer.application.working import work
from services.transfer.metrics import CASES_BY_STATE
from services.transfer.state import TransferRuntime
from services.transfer.store import Case
from services.transfer.transfers import State

log = logging.getLogger(__name__)


class CaseWorker:
    def __init__(self, runtime: TransferRuntime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._semaphore = asyncio.Semaphore(max(1, self.settings.worker_concurrency))
        self._gauge_at = 0.0
        self._inflight: dict[str, asyncio.Task[None]] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="transfer-case-worker")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        await cancel(self._task)
        inflight = list(self._inflight.values())
        for task in inflight:
            task.cancel()
        for task in inflight:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        pool = self.runtime.pool
        listener = await pool.acquire()
        wake = lambda *_: self._wake.set()  # noqa: E731
        try:
            await listener.add_listener(NOTIFY_CHANNEL, wake)
            while not self._stopping:
                worked = 0
                try:
                    worked = await self._claim_and_spawn()
                    await self._refresh_gauge()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # database trouble: keep going, cases are leased
                    log.warning("case worker pass failed", extra={"error": repr(exc)})
                if worked == 0:
                    self._wake.clear()
                    await wait_for_wake(self._wake, self.settings.worker_poll_interval_s)
        finally:
            with contextlib.suppress(Exception):
                await listener.remove_listener(NOTIFY_CHANNEL, wake)
            await pool.release(listener)

    async def _refresh_gauge(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._gauge_at < 5.0:
            return
        self._gauge_at = loop.time()
        counts = await store.count_by_state(self.runtime.pool)
        for state in State:
            CASES_BY_STATE.labels(state.value).set(counts.get(state.value, 0))

    async def _claim_and_spawn(self) -> int:
        """Lease as many due cases as there are free slots and work each in its own task, so
        one slow peer call never holds up the other cases."""
        free = self.settings.worker_concurrency - len(self._inflight)
        if free <= 0:
            return 0
        cases = await self._claim(min(free, self.settings.worker_batch))
        for case in cases:
            if case.case_id in self._inflight:
                continue
            task = asyncio.create_task(self._guarded(case), name=f"transfer-case-{case.case_id}")
            self._inflight[case.case_id] = task
            task.add_done_callback(functools.partial(self._done, case.case_id))
        return len(cases)

    async def _claim(self, limit: int) -> list[Case]:
        """Lease up to `limit` cases due by the service's clock."""
        return await store.claim_due(self.runtime.pool, limit, self.settings.worker_lease_s, self.runtime.clock())

    def _done(self, case_id: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(case_id, None)
        self._wake.set()  # a slot is free

    async def work_once(self) -> int:
        """Lease the cases that are due and work each as far as it goes now; returns how
        many (tests and tools; the running worker spawns instead of waiting)."""
        cases = await self._claim(self.settings.worker_batch)
        if cases:
            await asyncio.gather(*(self._guarded(c) for c in cases))
        return len(cases)

    async def _guarded(self, case: Case) -> None:
        async with self._semaphore:
            try:
                if await work(self.runtime, case):
                    self.wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or the database: leave the lease to run out, retry then
                log.exception("case step crashed", extra={"case_id": case.case_id, "error": repr(exc)})
