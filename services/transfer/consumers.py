"""Bus handlers: thin adapters from the enrollment topic to the use cases of
`application.requesting` (an enrollment in district B of a student last enrolled in
district A opens a transfer case A → B; a school change inside a district only updates it).

The kernel runs each handler in one transaction with the event's idempotency mark, so a
redelivered event is dropped by id; the use case finds the same case for a re-published
enrollment.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from homeroom.bus.consumer import Handler, HandlerContext, RejectEvent
from homeroom.bus.envelope import IncomingEvent
from homeroom.bus.topics import ENROLLMENT, with_suffix
from homeroom.events.v1.enrollment_pb2 import SchoolChanged, StudentEnrolled
from homeroom.service import ConsumerSpec
from services.transfer.application.requesting import request_transfers, school_changed
from services.transfer.state import TransferRuntime
from services.transfer.transfers import Enrollment


def _entry_date(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise RejectEvent("date.invalid", f"{field} {value!r} is not an ISO 8601 date", field) from None


def _required(value: str, field: str) -> str:
    if not value:
        raise RejectEvent("field.required", f"{field} is required to match a transfer", field)
    return value


def _event_time(event: IncomingEvent, runtime: TransferRuntime) -> datetime:
    if event.meta.HasField("time") and (event.meta.time.seconds or event.meta.time.nanos):
        return event.meta.time.ToDatetime(tzinfo=UTC)
    return runtime.clock()


def enrollment_handler(runtime: TransferRuntime) -> Handler:
    async def handle(event: IncomingEvent, ctx: HandlerContext) -> None:
        if event.change == "student_enrolled":
            assert isinstance(event.payload, StudentEnrolled)
            payload = event.payload
            student_key = _required(payload.student_key, "student_key")
            new = Enrollment(
                _required(payload.district_id, "district_id"),
                _required(payload.school_id, "school_id"),
                _entry_date(_required(payload.entry_date, "entry_date"), "entry_date"),
            )
            opened = await request_transfers(
                ctx.conn,
                runtime.settings,
                student_key,
                new,
                enrolled_at=_event_time(event, runtime),
                cause_event_id=event.event_id,
            )
            ctx.emitted.extend(opened)
        elif event.change == "school_changed":
            assert isinstance(event.payload, SchoolChanged)
            changed = event.payload
            await school_changed(ctx.conn, changed.student_key, changed.district_id, changed.to_school_id)

    return handle


def consumer_spec(topic_suffix: str = "") -> ConsumerSpec:
    """The enrollment consumer; tests give it their own copy of the topic (`with_suffix`), and
    so their own consumer group."""
    if not topic_suffix:
        return ConsumerSpec("enrollment", (ENROLLMENT,), enrollment_handler)
    return ConsumerSpec(f"enrollment-{topic_suffix}", (with_suffix(ENROLLMENT, topic_suffix),), enrollment_handler)
