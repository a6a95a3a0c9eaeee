"""Bus handlers: keep each student's record current from enrollment.v1, organization.v1,
attendance.v1, discipline.v1 and consent.v1.

The kernel runs each handler in one transaction with the event's "already applied" mark,
so a redelivered event is dropped by id; on top of that every write is an upsert keyed by
its natural key (student, school, date, period ...), so even a re-published copy under a
new id leaves the same state. Events of one student share a partition and arrive in
order. Each write runs as the RLS-confined app role with the event's district set.

Bad input is refused with `RejectEvent` (dead-lettered with the rule and reason; the
consumer keeps going): a missing student or district, an unreadable date, a withdrawal
with no enrollment to close, an element that is not in the catalogue. Attendance or a
suspension for a student the district never enrolled or registered is retried first
(enrollment travels on another topic, so it may simply not have arrived) and then
dead-lettered (`StudentNotYetKnown`).
"""

from __future__ import annotations

import json
from datetime import date

from homeroom import outbox
from homeroom.bus.consumer import Handler, HandlerContext, RejectEvent
from homeroom.bus.envelope import IncomingEvent
from homeroom.bus.topics import ATTENDANCE, CONSENT, DISCIPLINE, ENROLLMENT, KEYS, ORGANIZATION
from homeroom.catalogue import CATALOGUE
from homeroom.events.v1 import attendance_pb2, consent_pb2, discipline_pb2, enrollment_pb2
from homeroom.service import ConsumerSpec, Runtime
from services.records import store
from services.records.destruction import destroy_agreement_copies

PROGRAM_FLAGS_ELEMENT = "record.program_flags"

CATEGORIES: dict[int, str] = {
    attendance_pb2.ATTENDANCE_CATEGORY_PRESENT: "present",
    attendance_pb2.ATTENDANCE_CATEGORY_ABSENT: "absent",
    attendance_pb2.ATTENDANCE_CATEGORY_TARDY: "tardy",
    attendance_pb2.ATTENDANCE_CATEGORY_EARLY_DEPARTURE: "early_departure",
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
    await store.enter_district(ctx.conn, district)


def enrollment_handler(runtime: Runtime) -> Handler:
    cipher = runtime.require_cipher()

    async def handle(event: IncomingEvent, ctx: HandlerContext) -> None:
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
            await _scoped(ctx, district)
            await store.register_student(
                ctx.conn,
                district,
                key,
                payload.local_student_id_hash,
                {k: bytes(v.ciphertext) for k, v in payload.sealed_elements.items()},
                dict(payload.plain_elements),
                flags,
            )
        elif isinstance(payload, enrollment_pb2.StudentEnrolled):
            district = _district(event, payload.district_id)
            key = _required(payload.student_key, "student_key")
            school = _required(payload.school_id, "school_id")
            entry = _date(payload.entry_date, "entry_date")
            await _scoped(ctx, district)
            await store.enroll(ctx.conn, district, key, school, entry, payload.grade_level, payload.entry_type)
        elif isinstance(payload, enrollment_pb2.StudentWithdrawn):
            district = _district(event, payload.district_id)
            key = _required(payload.student_key, "student_key")
            school = _required(payload.school_id, "school_id")
            exit_date = _date(payload.exit_date, "exit_date")
            await _scoped(ctx, district)
            await _close(ctx, district, key, school, exit_date, payload.exit_code)
        elif isinstance(payload, enrollment_pb2.SchoolChanged):
            district = _district(event, payload.district_id)
            key = _required(payload.student_key, "student_key")
            from_school = _required(payload.from_school_id, "from_school_id")
            to_school = _required(payload.to_school_id, "to_school_id")
            when = _date(payload.change_date, "change_date")
            await _scoped(ctx, district)
            await _close(ctx, district, key, from_school, when, "school_change")
            await store.enroll(ctx.conn, district, key, to_school, when, "", "school_change")

    return handle


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


def attendance_handler(runtime: Runtime) -> Handler:
    """Attendance marks into the record. The summary and the chronic-absence flag are the
    attendance summary table's (summary.py), which reads the same topic."""

    async def handle(event: IncomingEvent, ctx: HandlerContext) -> None:
        payload = event.payload
        if not isinstance(payload, attendance_pb2.AttendanceRecorded):
            return  # ChronicAbsenceDetected and later additions: not records' input
        district = _district(event, payload.district_id)
        key = _required(payload.student_key, "student_key")
        day = _date(payload.date, "date")
        category = CATEGORIES.get(payload.category)
        if category is None:
            raise RejectEvent("attendance.category_unknown", "the attendance category is unspecified", "category")
        await _scoped(ctx, district)
        if not await store.record_attendance(
            ctx.conn, district, key, day, payload.period, payload.school_id, category, payload.excused
        ):
            raise StudentNotYetKnown(f"student.unknown: district {district} has no record of this student")

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


CONSUMERS: tuple[ConsumerSpec, ...] = (
    ConsumerSpec("enrollment", [ENROLLMENT], enrollment_handler),
    ConsumerSpec("organization", [ORGANIZATION], organization_handler),
    ConsumerSpec("attendance", [ATTENDANCE], attendance_handler, max_batch=1000),
    ConsumerSpec("discipline", [DISCIPLINE], discipline_handler),
    ConsumerSpec("consent", [CONSENT], consent_handler),
    ConsumerSpec("keys", [KEYS], keys_handler),
)
