"""Use case: what attendance.v1 does to the record, a poll's batch at a time.

Per district one statement upserts the marks (on district, student, date, period) and queues
the students with a daily mark for the absence reviewer (`absence.py`), which counts days
enrolled from the calendar and raises the chronic flag. Marks of a student the district does not
know yet (or whose earlier marks still wait) are kept waiting (`waiting_marks.py`) instead of
holding up the partition. An unspecified category is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from homeroom.bus.consumer import HandlerContext, RejectEvent
from homeroom.bus.envelope import IncomingEvent
from homeroom.events.v1 import attendance_pb2
from homeroom.service import Runtime
from services.records import store
from services.records.application.incoming import district_of, iso_date, required, scoped

CATEGORIES: dict[int, str] = {
    attendance_pb2.ATTENDANCE_CATEGORY_PRESENT: "present",
    attendance_pb2.ATTENDANCE_CATEGORY_ABSENT: "absent",
    attendance_pb2.ATTENDANCE_CATEGORY_TARDY: "tardy",
    attendance_pb2.ATTENDANCE_CATEGORY_EARLY_DEPARTURE: "early_departure",
    attendance_pb2.ATTENDANCE_CATEGORY_PARTIAL: "partial",
}


async def apply(runtime: Runtime, events: Sequence[IncomingEvent], ctx: HandlerContext) -> None:
    """Apply a batch of attendance.v1 events (RejectEvent names the first bad one)."""
    by_district: dict[str, list[tuple[store.Mark, IncomingEvent]]] = {}
    for event in events:
        payload = event.payload
        if not isinstance(payload, attendance_pb2.AttendanceRecorded):
            continue  # ChronicAbsenceDetected and later additions: not records' input
        district = district_of(event, payload.district_id)
        key = required(payload.student_key, "student_key")
        day = iso_date(payload.date, "date")
        category = CATEGORIES.get(payload.category)
        if category is None:
            raise RejectEvent("attendance.category_unknown", "the attendance category is unspecified", "category")
        mark = store.Mark(key, day, payload.period, payload.school_id, category, payload.excused)
        by_district.setdefault(district, []).append((mark, event))
    for district, marked in sorted(by_district.items()):
        await scoped(ctx, district)
        written = await store.put_marks(ctx.conn, district, [mark for mark, _ in marked])  # and queues reviews
        # Only the marks kept waiting carry where they came from (for their dead letter).
        waiting = [
            store.WaitingMark(mark, e.event_id, e.topic, e.partition, e.offset, ctx.consumer, ctx.dead_letter_topic)
            for mark, e in marked
            if mark.student_key not in written
        ]
        await store.keep_waiting(ctx.conn, district, waiting)
