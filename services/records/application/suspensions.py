"""Use case: what discipline.v1's `suspension_recorded` does to the record.

The suspension is kept (start, end, in school or out, school) for a student the district knows;
an end before the start is refused. Enrollment travels on another topic, so an unknown student
may not have arrived yet: `StudentNotYetKnown` has the kernel retry with backoff and then
dead-letter the event.
"""

from __future__ import annotations

from homeroom.bus.consumer import HandlerContext, RejectEvent
from homeroom.bus.envelope import IncomingEvent
from homeroom.events.v1 import discipline_pb2
from homeroom.service import Runtime
from services.records import store
from services.records.application.incoming import district_of, iso_date, required, scoped


class StudentNotYetKnown(Exception):
    """Attendance or discipline for a student the district has no record of. Enrollment
    events travel on another topic, so this can be a race rather than bad input: the
    kernel retries with backoff and, if the student still is unknown, dead-letters the
    event with this message (rule `handler.failed`, message starting `student.unknown`)."""


async def suspension_recorded(
    runtime: Runtime, event: IncomingEvent, payload: discipline_pb2.SuspensionRecorded, ctx: HandlerContext
) -> None:
    district = district_of(event, payload.district_id)
    key = required(payload.student_key, "student_key")
    start = iso_date(payload.start_date, "start_date")
    end = iso_date(payload.end_date, "end_date") if payload.end_date else start
    if end < start:
        raise RejectEvent("date.end_before_start", "the suspension ends before it starts", "end_date")
    await scoped(ctx, district)
    if not await store.student_exists(ctx.conn, district, key):
        raise StudentNotYetKnown(f"student.unknown: district {district} has no record of this student")
    await store.record_suspension(ctx.conn, district, key, start, end, payload.in_school, payload.school_id)
