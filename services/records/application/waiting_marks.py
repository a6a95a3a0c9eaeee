"""Marks waiting for their student.

Enrollment travels on another topic than attendance, so a district's marks can arrive before
the student's registration. Retrying such a batch held up the whole poll (every partition
waited for the backoff), so the attendance consumer keeps those marks in `marks_waiting`
instead, in the batch's own transaction, and moves on. This task, in every records process
that runs consumers, then (every `poll_s`, per district that has marks waiting):

1. writes the waiting marks of students the district now knows into `attendance` and queues
   those students for the absence reviewer, in one transaction;
2. dead-letters the marks that have waited longer than `wait_s` (rule `student.unknown`, to
   ingest.rejected.v1, the event's idempotency mark set to `dead_lettered`), in the same one;
3. takes the district off its list once no mark waits there, in the same one (migration 011:
   a mark kept meanwhile moves the listing's version on, so the district stays listed). A
   round with no district listed is one query, however many districts ever had marks waiting.

Order is kept: a student with marks waiting gets every later mark kept waiting too (the
consumer checks in the statement that writes marks), and one student's marks are all on one
partition, applied one batch after another, so the waiting marks always go in before any
newer mark of that student. A mark replaced while waiting (same day and period) is replaced,
as it would have been in `attendance`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from homeroom import outbox
from homeroom.bus.consumer import mark_dead_lettered, rejection
from homeroom.service import Runtime
from homeroom.telemetry import EVENTS_DEAD_LETTERED
from services.records import store
from services.records.polling import PollingLoop

log = logging.getLogger(__name__)

RULE = "student.unknown"


class WaitingMarks(PollingLoop):
    name = "records-waiting-marks"
    what = "waiting marks"

    def __init__(
        self,
        runtime: Runtime,
        wait_s: float,
        *,
        poll_s: float = 0.25,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.runtime = runtime
        self.wait = timedelta(seconds=wait_s)
        self.poll_s = poll_s
        self.clock = clock or (lambda: runtime.clock())  # read at each round: tests move it

    async def round(self) -> bool:
        await self.run_once()
        return False

    async def run_once(self) -> tuple[int, int]:
        """Apply what can be applied, dead-letter what waited too long: (students applied, marks dead-lettered)."""
        applied = dead = 0
        for district, version in sorted((await store.districts_with_waiting_marks(self.runtime.pool)).items()):
            a, d = await self.settle(district, version)
            applied += a
            dead += d
        return applied, dead

    async def settle(self, district: str, version: int) -> tuple[int, int]:
        async with store.district_tx(self.runtime.pool, district) as conn:
            known = await store.apply_waiting_marks(conn, district)
            await store.queue_review(conn, district, known)
            expired = await store.expire_waiting_marks(conn, district, self.clock() - self.wait)
            message = (
                f"{RULE}: district {district} has no record of this student"
                f" after waiting {self.wait.total_seconds():g} s for its registration"
            )
            await outbox.add(
                conn,
                [
                    rejection(
                        self.runtime.name,
                        r["consumer"],
                        event_id=r["event_id"],
                        topic=r["topic"],
                        partition=r["partition"],
                        offset=r["offset"],
                        rule=RULE,
                        message=message,
                        field="student_key",
                        district_id=district,
                        dead_letter_topic=r["dead_letter_topic"],
                    )
                    for r in expired
                ],
            )
            by_consumer: dict[str, list[str]] = {}
            for r in expired:
                by_consumer.setdefault(r["consumer"], []).append(r["event_id"])
            for consumer, ids in by_consumer.items():
                await mark_dead_lettered(conn, consumer, ids)
            await store.unlist_if_none_waiting(conn, district, version)
        for consumer, ids in by_consumer.items():
            EVENTS_DEAD_LETTERED.labels(self.runtime.name, consumer, RULE).inc(len(ids))
        if expired:
            log.warning("attendance dead-lettered: student never registered", extra={"marks": len(expired)})
        return len(known), len(expired)
