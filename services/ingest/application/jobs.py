"""Submission jobs: running and tracking the submissions a district sent.

Use cases held here:

- **schedule a submission** (`Ingestor.submit`): each runs in a background task, so the upload
  request returns at once and the report shows progress while it runs; at most
  ``max_concurrent_submissions`` at once, fairly shared between districts (`FairSlots`), with
  small uploads (real-time changes) in slots of their own;
- **run one now** (`Ingestor.run_now`, the CLI and benchmarks) and **a dry run**
  (`Ingestor.dry_run`: the pipeline with nothing stored or published);
- **retry** while the database is away, and **fail** a submission a bug stopped (it says so;
  the service stays up);
- **resume** after a restart: submissions received or processing when the service stopped
  run again (records already taken come out "unchanged");
- **stop**: cancel what runs when the service stops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from homeroom.storage import INFRASTRUCTURE_ERRORS
from homeroom.telemetry import start_at_zero
from services.ingest import metrics, store
from services.ingest.application.pipeline import DryRunResult, Outcome, RunParts, SubmissionRun

log = logging.getLogger(__name__)

FORMATS = ("batch", "edfi-json", "edfi-xml", "oneroster")
# At 0 from the start, so a panel's first submission of each format shows (homeroom.telemetry.start_at_zero).
start_at_zero(
    metrics.SUBMISSIONS, *((f, status) for f in FORMATS for status in ("received", "held", "completed", "failed"))
)
start_at_zero(metrics.UPLOAD_BYTES, *FORMATS)
start_at_zero(metrics.SUBMISSION_SECONDS, *FORMATS)


@dataclass(frozen=True, slots=True)
class Job:
    """A stored upload to process."""

    submission_id: uuid.UUID
    district_id: str
    format: str
    file_name: str
    path: Path
    resource: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Job:
        options = row["options"]
        return cls(
            submission_id=row["id"],
            district_id=row["district_id"],
            format=row["format"],
            file_name=row["file_name"],
            path=Path(row["upload_path"]),
            resource=row["resource"],
            options=json.loads(options) if isinstance(options, str) else dict(options or {}),
        )


class FairSlots:
    """At most ``total`` submissions run at once, at most ``per_district`` of one district, and
    a freed slot goes to the district that has waited longest (round robin by district), so one
    district's uploads never hold back another's (issue 17, item 6)."""

    def __init__(self, total: int, per_district: int) -> None:
        self.total = total
        self.per_district = per_district
        self.running: dict[str, int] = {}
        self._waiting: dict[str, collections.deque[asyncio.Future[None]]] = {}
        self._turns: collections.deque[str] = collections.deque()  # districts in the order they wait

    def _may_start(self, district: str) -> bool:
        return sum(self.running.values()) < self.total and self.running.get(district, 0) < self.per_district

    def _wake(self) -> None:
        for _ in range(len(self._turns)):
            district = self._turns[0]
            queue = self._waiting.get(district)
            if not queue:
                self._turns.popleft()
                self._waiting.pop(district, None)
                continue
            if self._may_start(district):
                self._turns.rotate(-1)  # its next upload waits behind the other districts
                future = queue.popleft()
                self.running[district] = self.running.get(district, 0) + 1
                if not future.done():
                    future.set_result(None)
                if not queue:
                    self._turns.remove(district)
                    del self._waiting[district]
                continue
            self._turns.rotate(-1)

    @contextlib.asynccontextmanager
    async def slot(self, district: str) -> AsyncIterator[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if district not in self._waiting:
            self._waiting[district] = collections.deque()
            self._turns.append(district)
        self._waiting[district].append(future)
        self._wake()  # behind every district already waiting, ahead of none
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # woken, then cancelled: give the slot back
                self._release(district)
            elif future in self._waiting.get(district, ()):
                self._waiting[district].remove(future)
            raise
        try:
            yield
        finally:
            self._release(district)

    def _release(self, district: str) -> None:
        self.running[district] -= 1
        if not self.running[district]:
            del self.running[district]
        self._wake()


class Ingestor:
    """Runs submissions in background tasks (at most ``max_concurrent_submissions`` at once) so
    the upload request returns at once and the report shows progress while it runs."""

    def __init__(self, parts: RunParts) -> None:
        self.parts = parts
        self.pool, self.settings = parts.pool, parts.settings
        settings = parts.settings
        self._tasks: dict[uuid.UUID, asyncio.Task[Outcome | None]] = {}
        self._slots = FairSlots(settings.max_concurrent_submissions, settings.max_concurrent_per_district)
        self._small_slots = FairSlots(settings.max_concurrent_small_submissions, settings.max_concurrent_per_district)

    def slot(self, job: Job) -> contextlib.AbstractAsyncContextManager[None]:
        """A place to run `job`: small uploads (real-time changes) have their own slots, so an
        enrollment never waits behind its district's bulk attendance file. Each district's
        uploads start in arrival order within their own kind (small or bulk)."""
        small = self.settings.small_upload_bytes
        with contextlib.suppress(OSError):
            if small and job.path.stat().st_size <= small:
                return self._small_slots.slot(job.district_id)
        return self._slots.slot(job.district_id)

    def submit(self, job: Job, *, confirmed: bool = False) -> None:
        if job.submission_id in self._tasks:
            return
        task = asyncio.create_task(self._run(job, confirmed), name=f"ingest-{job.submission_id}")
        self._tasks[job.submission_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job.submission_id, None))

    async def dry_run(self, job: Job) -> DryRunResult:
        """Parse and validate an upload with nothing stored or published (one of the slots)."""
        async with self.slot(job):
            run = self._run_of(job, dry_run=True)
            await run.run()
            return run.result

    def _run_of(self, job: Job, *, dry_run: bool = False) -> SubmissionRun:
        return SubmissionRun(job, self.parts, dry_run=dry_run)

    async def run_now(self, job: Job, *, confirmed: bool = False) -> Outcome | None:
        """Process in the caller's task (the CLI and benchmarks)."""
        return await self._run(job, confirmed)

    async def wait(self, submission_id: uuid.UUID, timeout_s: float = 60.0) -> None:
        task = self._tasks.get(submission_id)
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)

    async def _run(self, job: Job, confirmed: bool) -> Outcome | None:
        async with self.slot(job):
            delay = 0.5
            while True:
                run = self._run_of(job)
                try:
                    outcome = await run.run(confirmed=confirmed)
                    break
                except asyncio.CancelledError:
                    raise
                except INFRASTRUCTURE_ERRORS as exc:
                    # The database is away: keep the upload and run it again when it is back.
                    # Records already taken come out "unchanged", so nothing is applied twice.
                    log.warning(
                        "database unavailable; submission will run again",
                        extra={"submission_id": str(job.submission_id), "error": repr(exc), "retry_s": delay},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 15.0)
                    continue
                except Exception as exc:  # a bug: the submission says so, the service stays up
                    await self._failed(job, exc)
                    return None
            if outcome.status != "held":
                _remove(job.path)
            return outcome

    async def _failed(self, job: Job, exc: Exception) -> None:
        log.exception("submission failed", extra={"submission_id": str(job.submission_id)})
        with contextlib.suppress(Exception):
            await store.set_status(
                self.pool,
                job.submission_id,
                "failed",
                error=f"processing stopped: {type(exc).__name__}. Records before the failure were taken; "
                "send the file again to finish (records already taken are not repeated).",
                clear_upload=True,
            )
        metrics.SUBMISSIONS.labels(job.format, "failed").inc()
        _remove(job.path)

    async def resume(self) -> int:
        """After a restart: re-run submissions that were received or processing when it stopped."""
        n = 0
        for row in await store.unfinished_submissions(self.pool):
            path = row["upload_path"]
            if path and Path(path).exists():
                self.submit(Job.from_row(row), confirmed=row["confirmed_at"] is not None)
                n += 1
            else:
                await store.set_status(
                    self.pool, row["id"], "failed", error="the upload was lost before it was processed; send it again"
                )
        return n

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # how each ended is its own to report


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
