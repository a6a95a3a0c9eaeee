"""Bus handlers: keep each student's record current from enrollment.v1, organization.v1,
attendance.v1, discipline.v1, calendar.v1 and consent.v1; and the district's roster (sessions,
courses, classes, staff, class enrollments) from roster.v1.

Enrollments, daily marks and school calendars also queue the students concerned for the
absence reviewer (`absence.py`), in the same transaction: days enrolled come from the
school's calendar, so each of these can move a student's absence rate.

The kernel runs each handler in one transaction with the event's "already applied" mark,
so a redelivered event is dropped by id; on top of that every write is an upsert keyed by
its natural key (student, school, date, period ...), so even a re-published copy under a
new id leaves the same state. Events of one student share a partition and arrive in
order. Each write runs as the RLS-confined app role with the event's district set.

Bad input is refused with `RejectEvent` (dead-lettered with the rule and reason; the
consumer keeps going): a missing student or district, an unreadable date, a withdrawal
with no enrollment to close, an element that is not in the catalogue. Enrollment travels on
another topic, so a student may simply not have arrived yet: attendance for a student the
district does not know waits in `marks_waiting` and is applied once the student is known,
or dead-lettered (`student.unknown`) after `unknown_student_wait_s`
(`application/waiting_marks.py`); a suspension for such a student is retried with backoff
and then dead-lettered (`StudentNotYetKnown`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Any

from homeroom import calendar, outbox
from homeroom.bus.consumer import BatchHandler, Handler, HandlerContext, RejectEvent
from homeroom.bus.envelope import IncomingEvent
from homeroom.bus.topics import ATTENDANCE, CALENDAR, CONSENT, DISCIPLINE, ENROLLMENT, KEYS, ORGANIZATION, ROSTER
from homeroom.catalogue import CATALOGUE
from homeroom.events.v1 import attendance_pb2, calendar_pb2, consent_pb2, discipline_pb2, enrollment_pb2, roster_pb2
from homeroom.service import ConsumerSpec, Runtime
from services.records import store
from services.records.destruction import destroy_agreement_copies

PROGRAM_FLAGS_ELEMENT = "record.program_flags"

CATEGORIES: dict[int, str] = {
    attendance_pb2.ATTENDANCE_CATEGORY_PRESENT: "present",
    attendance_pb2.ATTENDANCE_CATEGORY_ABSENT: "absent",
    attendance_pb2.ATTENDANCE_CATEGORY_TARDY: "tardy",
    attendance_pb2.ATTENDANCE_CATEGORY_EARLY_DEPARTURE: "early_departure",
    attendance_pb2.ATTENDANCE_CATEGORY_PARTIAL: "partial",
}
CALENDAR_SOURCES: dict[int, str] = {
    calendar_pb2.CALENDAR_SOURCE_SCHOOL_CALENDAR: "calendar",
    calendar_pb2.CALENDAR_SOURCE_ROSTER_TERMS: "terms",
}


class StudentNotYetKnown(Exception):
    """Attendance or discipline for a student the district has no record of. Enrollment
    events travel on another topic, so this can be a race rather than bad input: the
    kernel retries with backoff and, if the student still is unknown, dead-letters the
    event with this message (rule `handler.failed`, message starting `student.unknown`)."""


def _required(value: str, field: str) -> str:
    if not value:
        raise RejectEvent("payload.missing_field", f"the event has no {field}", field)
    return value


def _date(value: str, field: str) -> date:
    try:
        return date.fromisoformat(_required(value, field))
    except ValueError:
        raise RejectEvent("date.invalid", f"{field} is not an ISO 8601 date", field) from None


def _district(event: IncomingEvent, payload_district: str) -> str:
    district = payload_district or event.meta.district_id
    if not district:
        raise RejectEvent("payload.missing_field", "the event names no district", "district_id")
    if event.meta.district_id and payload_district and event.meta.district_id != payload_district:
        raise RejectEvent(
            "district.mismatch", "the payload's district differs from the envelope's district", "district_id"
        )
    return district


async def _scoped(ctx: HandlerContext, district: str) -> None:
    """Confine the transaction to the event's district; set once per transaction and district."""
    if ctx.state.get("district") != district:
        await store.enter_district(ctx.conn, district)
        ctx.state["district"] = district


def _enrollment_of(
    event: IncomingEvent, payload: enrollment_pb2.StudentEnrolled | enrollment_pb2.StudentWithdrawn
) -> tuple[str, str, str]:
    """The district, student and school an enrollment event names (RejectEvent if one is missing)."""
    district = _district(event, payload.district_id)
    return district, _required(payload.student_key, "student_key"), _required(payload.school_id, "school_id")


def enrollment_handler(runtime: Runtime) -> BatchHandler:
    """Registrations and enrollments a run at a time (`_Run`: one statement per district for
    each); a withdrawal or school change ends the run and is applied on its own, so each
    student's events keep their order."""
    cipher = runtime.require_cipher()

    async def handle(events: Sequence[IncomingEvent], ctx: HandlerContext) -> None:
        run = _Run(ctx)
        review: dict[str, set[str]] = {}  # district → students whose days enrolled may change
        for event in events:
            payload = event.payload
            if isinstance(payload, enrollment_pb2.StudentRegistered):
                district = _district(event, payload.district_id)
                key = _required(payload.student_key, "student_key")
                for element in [*payload.sealed_elements, *payload.plain_elements]:
                    if element not in CATALOGUE:
                        raise RejectEvent("element.unknown", f"{element!r} is not a catalogue element", element)
                for element in payload.plain_elements:
                    if CATALOGUE[element].pii:
                        raise RejectEvent("element.pii_unsealed", f"{element} is PII and must arrive sealed", element)
                flags = None
                if payload.program_flags:
                    flags = await cipher.seal(
                        district, key, PROGRAM_FLAGS_ELEMENT, json.dumps(sorted(set(payload.program_flags)))
                    )
                registration = store.Registration(
                    key,
                    payload.local_student_id_hash,
                    {k: bytes(v.ciphertext) for k, v in payload.sealed_elements.items()},
                    dict(payload.plain_elements),
                    flags,
                )
                await run.add(district, registration)
            elif isinstance(payload, enrollment_pb2.StudentEnrolled):
                district, key, school = _enrollment_of(event, payload)
                entry = _date(payload.entry_date, "entry_date")
                await run.add(district, store.Enrollment(key, school, entry, payload.grade_level, payload.entry_type))
                review.setdefault(district, set()).add(key)
            elif isinstance(payload, enrollment_pb2.StudentWithdrawn):
                district, key, school = _enrollment_of(event, payload)
                exit_date = _date(payload.exit_date, "exit_date")
                await run.flush()
                await _scoped(ctx, district)
                await _close(ctx, district, key, school, exit_date, payload.exit_code)
                review.setdefault(district, set()).add(key)
            elif isinstance(payload, enrollment_pb2.SchoolChanged):
                district = _district(event, payload.district_id)
                key = _required(payload.student_key, "student_key")
                from_school = _required(payload.from_school_id, "from_school_id")
                to_school = _required(payload.to_school_id, "to_school_id")
                when = _date(payload.change_date, "change_date")
                await run.flush()
                await _scoped(ctx, district)
                await _close(ctx, district, key, from_school, when, "school_change")
                await store.enroll(ctx.conn, district, key, to_school, when, "", "school_change")
                review.setdefault(district, set()).add(key)
        await run.flush()
        for district, keys in sorted(review.items()):
            await _scoped(ctx, district)
            await store.queue_review(ctx.conn, district, keys)

    return handle


class _Run:
    """Registrations and enrollments written together: per district, every registration of
    the run (merged per student, in order) and then every enrollment. That order is the
    stream's own for each student unless a student registers again after enrolling, so
    such a registration starts a new run, as a withdrawal or school change does."""

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx
        self.registrations: dict[str, list[store.Registration]] = {}
        self.enrollments: dict[str, list[store.Enrollment]] = {}
        self.enrolled: set[tuple[str, str]] = set()

    async def add(self, district: str, item: store.Registration | store.Enrollment) -> None:
        if isinstance(item, store.Registration):
            if (district, item.student_key) in self.enrolled:
                await self.flush()
            self.registrations.setdefault(district, []).append(item)
        else:
            self.enrollments.setdefault(district, []).append(item)
            self.enrolled.add((district, item.student_key))

    async def flush(self) -> None:
        registrations, self.registrations = self.registrations, {}
        enrollments, self.enrollments = self.enrollments, {}
        self.enrolled = set()
        for district, regs in registrations.items():
            await _scoped(self.ctx, district)
            await store.register_students(self.ctx.conn, district, regs)
        for district, enrolls in enrollments.items():
            await _scoped(self.ctx, district)
            await store.enroll_many(self.ctx.conn, district, enrolls)


async def _close(ctx: HandlerContext, district: str, key: str, school: str, when: date, code: str) -> None:
    outcome = await store.withdraw(ctx.conn, district, key, school, when, code)
    if outcome == "no_enrollment":
        raise RejectEvent(
            "enrollment.exit_without_entry", f"no enrollment of the student at school {school} to close", "school_id"
        )
    if outcome == "before_entry":
        raise RejectEvent(
            "enrollment.exit_before_entry",
            f"the exit date precedes the student's entry at school {school} (out of order?)",
            "exit_date",
        )


def organization_handler(runtime: Runtime) -> Handler:
    async def handle(event: IncomingEvent, ctx: HandlerContext) -> None:
        payload = event.payload
        if isinstance(payload, enrollment_pb2.SchoolRegistered):
            district = _district(event, payload.district_id)
            school = _required(payload.school_id, "school_id")
            await store.upsert_school(
                ctx.conn, district, school, payload.name, payload.nces_id, list(payload.grades), payload.deleted
            )

    return handle


def attendance_handler(runtime: Runtime) -> BatchHandler:
    """Attendance marks into the record, a batch at a time: per district one statement upserts
    the marks and one queues the students with a daily mark for the absence reviewer, which
    counts days enrolled from the calendar and raises the chronic flag (absence.py). Marks of a
    student the district does not know yet (or whose earlier marks still wait) are kept waiting
    (`application/waiting_marks.py`) instead of holding up the partition."""

    async def handle(events: Sequence[IncomingEvent], ctx: HandlerContext) -> None:
        by_district: dict[str, list[store.WaitingMark]] = {}
        for event in events:
            payload = event.payload
            if not isinstance(payload, attendance_pb2.AttendanceRecorded):
                continue  # ChronicAbsenceDetected and later additions: not records' input
            district = _district(event, payload.district_id)
            key = _required(payload.student_key, "student_key")
            day = _date(payload.date, "date")
            category = CATEGORIES.get(payload.category)
            if category is None:
                raise RejectEvent("attendance.category_unknown", "the attendance category is unspecified", "category")
            mark = store.Mark(key, day, payload.period, payload.school_id, category, payload.excused)
            by_district.setdefault(district, []).append(
                store.WaitingMark(
                    mark,
                    event.event_id,
                    event.topic,
                    event.partition,
                    event.offset,
                    ctx.consumer,
                    ctx.dead_letter_topic,
                )
            )
        for district, marks in sorted(by_district.items()):
            await _scoped(ctx, district)
            written = await store.put_marks(ctx.conn, district, [w.mark for w in marks])
            await store.keep_waiting(ctx.conn, district, [w for w in marks if w.mark.student_key not in written])
            daily = {w.mark.student_key for w in marks if not w.mark.period}
            await store.queue_review(ctx.conn, district, daily & written)

    return handle


def calendar_handler(runtime: Runtime) -> Handler:
    """calendar.v1: a school year's instructional days; everyone enrolled at the school that
    year is counted again."""

    async def handle(event: IncomingEvent, ctx: HandlerContext) -> None:
        payload = event.payload
        if not isinstance(payload, calendar_pb2.CalendarPublished):
            return
        district = _district(event, payload.district_id)
        school = _required(payload.school_id, "school_id")
        source = CALENDAR_SOURCES.get(payload.source)
        if source is None:
            raise RejectEvent("calendar.source_unknown", "the calendar names no source", "source")
        first, last = calendar.year_bounds(payload.school_year)
        days = sorted({_date(d, "instructional_dates") for d in payload.instructional_dates})
        if any(not first <= d <= last for d in days):
            raise RejectEvent("calendar.date_outside_year", "an instructional date is outside the school year", "date")
        terms = [
            {"name": t.name, "begin_date": t.begin_date, "end_date": t.end_date, "declared_days": t.declared_days}
            for t in payload.terms
        ]
        days_off = sorted({_date(d, "non_instructional_dates") for d in payload.non_instructional_dates})
        await store.upsert_calendar(
            ctx.conn,
            district,
            school,
            payload.school_year,
            source,
            days,
            terms,
            days_off,
            payload.source_format,
            event.event_id,
        )
        await _scoped(ctx, district)
        await store.queue_school_review(ctx.conn, district, school, first, last)

    return handle


def discipline_handler(runtime: Runtime) -> Handler:
    async def handle(event: IncomingEvent, ctx: HandlerContext) -> None:
        payload = event.payload
        if not isinstance(payload, discipline_pb2.SuspensionRecorded):
            return
        district = _district(event, payload.district_id)
        key = _required(payload.student_key, "student_key")
        start = _date(payload.start_date, "start_date")
        end = _date(payload.end_date, "end_date") if payload.end_date else start
        if end < start:
            raise RejectEvent("date.end_before_start", "the suspension ends before it starts", "end_date")
        await _scoped(ctx, district)
        if not await store.student_exists(ctx.conn, district, key):
            raise StudentNotYetKnown(f"student.unknown: district {district} has no record of this student")
        await store.record_suspension(ctx.conn, district, key, start, end, payload.in_school, payload.school_id)

    return handle


def consent_handler(runtime: Runtime) -> Handler:
    async def handle(event: IncomingEvent, ctx: HandlerContext) -> None:
        payload = event.payload
        if isinstance(payload, consent_pb2.DirectoryOptOutRecorded | consent_pb2.DirectoryOptOutRescinded):
            district = _district(event, payload.district_id)
            key = _required(payload.student_key, "student_key")
            await _scoped(ctx, district)
            await store.set_directory_opt_out(
                ctx.conn, district, key, isinstance(payload, consent_pb2.DirectoryOptOutRecorded)
            )
        elif isinstance(payload, consent_pb2.AgreementEnded):
            agreement = _required(payload.agreement_id, "agreement_id")
            await store.end_agreement(ctx.conn, agreement, payload.version, payload.ended_on, payload.reason)

    return handle


def keys_handler(runtime: Runtime) -> Handler:
    """keys.v1: once a student's (or a whole district's) keys are destroyed, the sealed
    values are noise; drop the student's rows too and keep a tombstone, so reads answer
    "destroyed" (410) and never partial data. Agreement-scope keys are consent's concern."""

    async def handle(event: IncomingEvent, ctx: HandlerContext) -> None:
        payload = event.payload
        if not isinstance(payload, consent_pb2.DataKeysDestroyed):
            return
        district = _district(event, payload.district_id)
        reason = payload.reason or "keys destroyed"
        if payload.scope == "student":
            await _scoped(ctx, district)
            await store.destroy_student(ctx.conn, district, _required(payload.subject, "subject"), reason)
        elif payload.scope == "district":
            await _scoped(ctx, district)
            await store.destroy_district_students(ctx.conn, district, reason)
        elif payload.scope == "agreement":
            # What records kept for the recipient (release copies) is sealed under this key: prove
            # it unreadable now, remove it, and report it (consent keeps it with the end record).
            subject = _required(payload.subject, "subject")
            await outbox.add(ctx.conn, await destroy_agreement_copies(runtime, ctx.conn, district, subject))

    return handle


def _optional_date(value: str, field: str) -> date | None:
    return _date(value, field) if value else None


async def _session(event: IncomingEvent, p: roster_pb2.AcademicSessionRegistered, ctx: HandlerContext) -> None:
    district = _district(event, p.district_id)
    start, end = _date(p.start_date, "start_date"), _date(p.end_date, "end_date")
    if end < start:
        raise RejectEvent("date.end_before_start", "the session ends before it starts", "end_date")
    await store.upsert_session(
        ctx.conn,
        district,
        _required(p.session_id, "session_id"),
        title=_required(p.title, "title"),
        session_type=_required(p.session_type, "session_type"),
        start=start,
        end=end,
        parent_id=p.parent_id,
        school_year=p.school_year,
        deleted=p.deleted,
    )


def _values(p: Any, plain: Sequence[str], lists: Sequence[str], **given: object) -> dict[str, object]:
    """A roster object's columns: fields copied as sent, repeated fields as lists, and `given`."""
    return {**{f: getattr(p, f) for f in plain}, **{f: list(getattr(p, f)) for f in lists}, **given}


async def _course(event: IncomingEvent, p: roster_pb2.CourseRegistered, ctx: HandlerContext) -> None:
    district = _district(event, p.district_id)
    plain, lists = ("course_code", "school_id", "school_year_id", "deleted"), ("grades", "subjects")
    values = _values(p, plain, lists, title=_required(p.title, "title"))
    await store.upsert_course(ctx.conn, district, _required(p.course_id, "course_id"), values)


async def _class(event: IncomingEvent, p: roster_pb2.ClassRegistered, ctx: HandlerContext) -> None:
    district = _district(event, p.district_id)
    plain, lists = ("class_code", "course_id", "location", "deleted"), ("term_ids", "periods", "grades", "subjects")
    values = _values(
        p,
        plain,
        lists,
        title=_required(p.title, "title"),
        class_type=p.class_type or "scheduled",
        school_id=_required(p.school_id, "school_id"),
    )
    await store.upsert_class(ctx.conn, district, _required(p.class_id, "class_id"), values)


async def _staff(event: IncomingEvent, p: roster_pb2.StaffRegistered, ctx: HandlerContext) -> None:
    district = _district(event, p.district_id)
    key = _required(p.staff_key, "staff_key")
    for element in p.sealed_elements:
        if element not in CATALOGUE or CATALOGUE[element].subject != "staff":
            raise RejectEvent("element.unknown", f"{element!r} is not a staff element of the catalogue", element)
    await _scoped(ctx, district)
    await store.upsert_staff(
        ctx.conn,
        district,
        key,
        role=p.role or "teacher",
        school_ids=list(p.school_ids),
        sealed={k: bytes(v.ciphertext) for k, v in p.sealed_elements.items()},
        deleted=p.deleted,
    )


def _class_enrollment_row(
    event: IncomingEvent, p: roster_pb2.ClassEnrollmentRecorded
) -> tuple[str, store.ClassEnrollmentRow]:
    """The district and the row of a class enrollment; RejectEvent names what is wrong."""
    district = _district(event, p.district_id)
    if p.role not in ("student", "teacher"):
        raise RejectEvent("role.unknown", "a class enrollment's role is student or teacher", "role")
    begin, end = _optional_date(p.begin_date, "begin_date"), _optional_date(p.end_date, "end_date")
    if begin and end and end < begin:
        raise RejectEvent("date.end_before_start", "the class enrollment ends before it begins", "end_date")
    row = (
        _required(p.class_id, "class_id"),
        p.role,
        _required(p.user_key, "user_key"),
        _required(p.school_id, "school_id"),
        p.primary,
        begin,
        end,
        p.deleted,
    )
    return district, row


_ROSTER_HANDLERS: dict[type, Callable[[IncomingEvent, Any, HandlerContext], Awaitable[None]]] = {
    roster_pb2.AcademicSessionRegistered: _session,
    roster_pb2.CourseRegistered: _course,
    roster_pb2.ClassRegistered: _class,
    roster_pb2.StaffRegistered: _staff,
}


def roster_handler(runtime: Runtime) -> BatchHandler:
    """roster.v1, a poll's batch at a time (a district's roster is mostly class enrollments:
    250,000 for 50,000 students): class enrollments gathered per district and upserted in one
    pipelined statement; sessions, courses, classes and staff by the handler for their type, in
    order (pending class enrollments are written first, so the partition's order holds). Each
    write is an upsert on its natural key."""

    async def apply(events: Sequence[IncomingEvent], ctx: HandlerContext) -> None:
        pending: dict[str, list[store.ClassEnrollmentRow]] = {}

        async def flush() -> None:
            for district, rows in pending.items():
                await _scoped(ctx, district)
                await store.upsert_class_enrollments(ctx.conn, district, rows)
            pending.clear()

        for event in events:
            payload = event.payload
            if isinstance(payload, roster_pb2.ClassEnrollmentRecorded):
                district, row = _class_enrollment_row(event, payload)
                pending.setdefault(district, []).append(row)
                continue
            await flush()
            handler = _ROSTER_HANDLERS.get(type(payload))
            if handler is not None:
                await handler(event, payload, ctx)
        await flush()

    return apply


CONSUMERS: tuple[ConsumerSpec, ...] = (
    ConsumerSpec("enrollment", [ENROLLMENT], batch_handler=enrollment_handler),
    ConsumerSpec("organization", [ORGANIZATION], organization_handler),
    ConsumerSpec("attendance", [ATTENDANCE], batch_handler=attendance_handler, max_batch=1000),
    ConsumerSpec("discipline", [DISCIPLINE], discipline_handler),
    ConsumerSpec("calendar", [CALENDAR], calendar_handler),
    ConsumerSpec("consent", [CONSENT], consent_handler),
    ConsumerSpec("keys", [KEYS], keys_handler),
    ConsumerSpec("roster", [ROSTER], batch_handler=roster_handler, max_batch=1000),
)
