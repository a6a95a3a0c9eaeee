"""Bus handlers: an enrollment in district B of a student last enrolled in district A opens
a transfer case A → B.

The kernel runs each handler in one transaction with the event's idempotency mark, so a
redelivered event is dropped by id. Beyond that, the case id is derived from the student
and the receiving enrollment (never from the event id), and an open case per student and
pair of districts is unique in the database: a re-published enrollment, or an older
enrollment in A arriving after B's, finds the same case instead of opening another.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

from homeroom.bus.consumer import Handler, HandlerContext, RejectEvent
from homeroom.bus.envelope import IncomingEvent
from homeroom.bus.topics import ENROLLMENT, with_suffix
from homeroom.events.v1.enrollment_pb2 import SchoolChanged, StudentEnrolled
from homeroom.service import ConsumerSpec, Runtime
from services.transfer import store
from services.transfer.events import step
from services.transfer.metrics import CASES_OPENED, TRANSITIONS
from services.transfer.settings import TransferSettings
from services.transfer.transfers import Enrollment, State, case_id, enrollment_ref, openings, step_event_id

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "homeroom_transfer_cases"


def _entry_date(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise RejectEvent("date.invalid", f"{field} {value!r} is not an ISO 8601 date", field) from None


def _required(value: str, field: str) -> str:
    if not value:
        raise RejectEvent("field.required", f"{field} is required to match a transfer", field)
    return value


def _event_time(event: IncomingEvent) -> datetime:
    if event.meta.HasField("time") and (event.meta.time.seconds or event.meta.time.nanos):
        return event.meta.time.ToDatetime(tzinfo=UTC)
    return datetime.now(UTC)


async def on_student_enrolled(
    event: IncomingEvent, payload: StudentEnrolled, ctx: HandlerContext, settings: TransferSettings
) -> list[str]:
    """Record the enrollment; open the cases it reveals. Returns the ids of cases opened."""
    student_key = _required(payload.student_key, "student_key")
    new = Enrollment(
        _required(payload.district_id, "district_id"),
        _required(payload.school_id, "school_id"),
        _entry_date(_required(payload.entry_date, "entry_date"), "entry_date"),
    )
    known = await store.known_enrollments(ctx.conn, student_key)
    found = openings(known, new)
    await store.record_enrollment(ctx.conn, student_key, new, event.event_id)
    enrolled_at = _event_time(event)
    oldest = (enrolled_at - timedelta(days=settings.max_entry_age_days)).date()
    opened: list[str] = []
    for opening in found:
        if opening.to.entry_date < oldest:
            log.info("enrollment too old to open a transfer", extra={"student_key": student_key})
            continue
        ref = enrollment_ref(opening.to.school_id, opening.to.entry_date)
        cid = case_id(student_key, opening.from_district, opening.to.district_id, ref)
        if not await store.open_case(
            ctx.conn,
            case_id=cid,
            student_key=student_key,
            from_district_id=opening.from_district,
            to=opening.to,
            enrollment_ref=ref,
            enrolled_at=enrolled_at,
            cause_event_id=event.event_id,
        ):
            continue
        case = await store.get_case(ctx.conn, cid)
        assert case is not None
        await store.add_history(
            ctx.conn,
            cid,
            "requested",
            State.REQUESTED,
            reason="enrolled_in_receiving_district",
            detail={"enrollment": ref, "cause_event_id": event.event_id},
            event_id=step_event_id(cid, "requested"),
        )
        outgoing = step(case, "transfer_requested", "requested", causation_id=event.event_id)
        ctx.emitted.append(outgoing)
        opened.append(cid)
    if opened:
        await ctx.conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    return opened


async def on_school_changed(payload: SchoolChanged, ctx: HandlerContext) -> None:
    """A move inside one district: keep the school current, never a transfer."""
    if not payload.student_key or not payload.district_id or not payload.to_school_id:
        return
    await ctx.conn.execute(
        "UPDATE student_enrollments SET school_id = $3, updated_at = now() WHERE student_key = $1 AND district_id = $2",
        payload.student_key,
        payload.district_id,
        payload.to_school_id,
    )


def enrollment_handler(runtime: Runtime) -> Handler:
    settings = runtime.settings
    assert isinstance(settings, TransferSettings)

    async def handle(event: IncomingEvent, ctx: HandlerContext) -> None:
        if event.change == "student_enrolled":
            assert isinstance(event.payload, StudentEnrolled)
            opened = await on_student_enrolled(event, event.payload, ctx, settings)
            for _ in opened:
                CASES_OPENED.inc()
                TRANSITIONS.labels(State.REQUESTED.value).inc()
        elif event.change == "school_changed":
            assert isinstance(event.payload, SchoolChanged)
            await on_school_changed(event.payload, ctx)

    return handle


def consumer_spec(topic_suffix: str = "") -> ConsumerSpec:
    """The enrollment consumer; tests give it their own copy of the topic (`with_suffix`), and
    so their own consumer group."""
    if not topic_suffix:
        return ConsumerSpec("enrollment", (ENROLLMENT,), enrollment_handler)
    return ConsumerSpec(f"enrollment-{topic_suffix}", (with_suffix(ENROLLMENT, topic_suffix),), enrollment_handler)
