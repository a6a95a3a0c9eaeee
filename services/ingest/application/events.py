"""Event building: a parsed record becomes the events ingest publishes.

Use cases held here:

- **student and staff registrations**: the keys pseudonymised, PII sealed under the
  student's (or staff member's) key, reporting-group codes as their own event;
- **record events**: enrollments (a class enrollment collapsed to one school enrollment
  per student, school and day), attendance, suspensions, schools, and the roster's
  sessions, courses, classes and teachers;
- **calendar events**: one per school year the upload touched, with its day-count notes;
- **dead letters**: one `record_rejected` per refused record.

Raw student ids never leave this module: events carry the student key, PII is sealed, and
the upload's own ids appear only as keyed hashes (`StudentRefs`)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from google.protobuf.message import Message

from homeroom import calendar as school_calendar
from homeroom.bus.envelope import OutgoingEvent, build_event, derived_id
from homeroom.bus.topics import (
    ATTENDANCE,
    CALENDAR,
    DISCIPLINE,
    ENROLLMENT,
    GROUPS,
    ORGANIZATION,
    REJECTED,
    ROSTER,
    Topic,
)
from homeroom.catalogue import CATALOGUE, reporting_codes
from homeroom.crypto import EnvelopeCipher
from homeroom.events.v1 import (
    attendance_pb2,
    calendar_pb2,
    discipline_pb2,
    enrollment_pb2,
    groups_pb2,
    rejected_pb2,
    roster_pb2,
)
from homeroom.events.v1.envelope_pb2 import SealedValue
from homeroom.pseudonym import Pseudonymizer
from services.ingest import parsed_records as pr
from services.ingest.parsed_records import RecordWarning, Source

if TYPE_CHECKING:  # jobs.py runs the pipeline, which builds events; events only read a job
    from services.ingest.application.jobs import Job

EVENT_NS = uuid.UUID("0b5a7c52-6f0e-4c1e-9a55-3d1f1c1f0a11")

_CATEGORIES = {
    pr.AttendanceCategory.PRESENT: attendance_pb2.ATTENDANCE_CATEGORY_PRESENT,
    pr.AttendanceCategory.ABSENT: attendance_pb2.ATTENDANCE_CATEGORY_ABSENT,
    pr.AttendanceCategory.TARDY: attendance_pb2.ATTENDANCE_CATEGORY_TARDY,
    pr.AttendanceCategory.EARLY_DEPARTURE: attendance_pb2.ATTENDANCE_CATEGORY_EARLY_DEPARTURE,
    pr.AttendanceCategory.PARTIAL: attendance_pb2.ATTENDANCE_CATEGORY_PARTIAL,
}
_CALENDAR_SOURCES = {
    pr.CalendarSource.CALENDAR: calendar_pb2.CALENDAR_SOURCE_SCHOOL_CALENDAR,
    pr.CalendarSource.TERMS: calendar_pb2.CALENDAR_SOURCE_ROSTER_TERMS,
}


def iso(d: date | None) -> str:
    return d.isoformat() if d is not None else ""


def public_record_id(rec_hash: str) -> str:
    """The record's id as events carry it: the keyed hash of its source id, never the id."""
    return "rec_" + rec_hash.removeprefix("lid_")


_M = TypeVar("_M", bound=Message)


_PLANS: dict[tuple[type[Message], type], tuple[str, ...]] = {}


def _plan(message: type[Message], record_type: type) -> tuple[str, ...]:
    """The fields of `message` a record of `record_type` can carry by the same name, worked out
    once per pair: the per-record loop then touches only those (ingest builds one payload per
    record, and walking every field of the message each time cost about 5 µs an event)."""
    names = _PLANS.get((message, record_type))
    if names is None:
        own = {f.name for f in dataclasses.fields(record_type)} if dataclasses.is_dataclass(record_type) else set()
        names = tuple(f.name for f in message.DESCRIPTOR.fields if f.name in own or hasattr(record_type, f.name))
        _PLANS[(message, record_type)] = names
    return names


def payload_of(message: type[_M], record: object, **given: Any) -> _M:
    """An event payload from a parsed record: each field of `message` the record has by the
    same name (dates as ISO 8601 text, lists of codes as lists, an absent value left at the
    message's default), then the fields `given` (keys, ids, the district)."""
    values = given
    for name in _plan(message, type(record)):
        if name in given:
            continue
        value = getattr(record, name, None)
        if value is None:
            continue
        if isinstance(value, date):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        values[name] = value
    return message(**values)


def group_values(r: pr.StudentRecord) -> dict[str, str]:
    """The reporting-group codes a student record carries (homeroom.catalogue.REPORTING_GROUPS)."""
    values = dict(r.elements)
    values.update({element_id: "true" if flag else "false" for element_id, flag in r.programs.items()})
    return reporting_codes(values)


@dataclass(slots=True)
class StudentRefs:
    """The upload's student ids as one submission knows them: the keyed hash of each (how the
    store keeps it) and the student key events carry. Bounded by the students in the upload."""

    district: str
    pseudonymizer: Pseudonymizer
    hashes: dict[str, str] = field(default_factory=dict)  # upload student id -> keyed hash
    keys: dict[str, str] = field(default_factory=dict)  # upload student id -> student key

    def hash(self, ref: str) -> str:
        h = self.hashes.get(ref)
        if h is None:
            h = self.pseudonymizer.local_id_hash(self.district, ref)
            self.hashes[ref] = h
        return h

    def key_of(self, ref: str) -> str:
        key = self.keys.get(ref)
        if key is None:  # the Validator only accepts records of known students
            raise RuntimeError("accepted record without a student key")
        return key

    def student_key(self, r: pr.StudentRecord) -> tuple[str, RecordWarning | None]:
        """The student's key: from the state id, else the one on record, else one known only in
        this district (with a warning: the record cannot follow the student elsewhere)."""
        state_id = r.elements.get("student.state_id")
        if state_id:
            return self.pseudonymizer.student_key(state_id), None
        known = self.keys.get(r.student_ref)
        if known is not None:
            return known, None
        key = self.pseudonymizer.student_key(f"district-local/{self.district}/{r.student_ref}")
        return key, pr.warning_at(
            r.source,
            "student.state_id",
            "student.state_id_missing",
            "The student has no state student id, so Homeroom gave the student a key known only in this district: "
            "the record cannot follow the student to another district until the state id is sent.",
            "empty",
        )


class _Made(NamedTuple):
    """What one record's event is before its envelope: topic, change, payload and subject (a
    tuple: one is made per record, and a frozen dataclass costs about 1 µs more to build)."""

    topic: Topic
    change: str
    payload: Message
    subject: str
    by_district: bool = True  # partitioned by district (roster, organisations); else by subject


class EventBuilder:
    """Builds one submission's events; every event is stamped with the chunk's time and
    correlated with the submission."""

    def __init__(self, job: Job, cipher: EnvelopeCipher, refs: StudentRefs, stamp: datetime) -> None:
        self.district = job.district_id
        self.correlation = str(job.submission_id)
        self.source_format, self.file_name = job.format, job.file_name
        self.cipher, self.refs, self.pz = cipher, refs, refs.pseudonymizer
        self.source = f"/homeroom/ingest/{self.district}"
        self.stamp = stamp  # the time events are stamped with: one per chunk
        self._emitted: set[str] = set()  # collapsed events (class enrollments -> one school enrollment)
        self._makers: dict[type[Any], Callable[[Any, str], _Made | None]] = {
            pr.SessionRecord: self._roster(
                "academic_session_registered", roster_pb2.AcademicSessionRegistered, "session_id"
            ),
            pr.CourseRecord: self._roster("course_registered", roster_pb2.CourseRegistered, "course_id"),
            pr.ClassRecord: self._roster("class_registered", roster_pb2.ClassRegistered, "class_id"),
            pr.TeachingRecord: self._teaching,
            pr.SchoolRecord: self._school,
            pr.AttendanceRecord: self._attendance,
            pr.SuspensionRecord: self._suspension,
        }

    def event_id(self, rec_hash: str, content: str) -> str:
        return derived_id(EVENT_NS, f"{self.district}|{rec_hash}|{content}")

    def build(
        self, topic: Topic, change: str, payload: Message, *, subject: str, event_id: str, key: str | None = None
    ) -> OutgoingEvent:
        return build_event(
            topic,
            change,
            payload,
            source=self.source,
            subject=subject,
            district_id=self.district,
            key=key,
            correlation_id=self.correlation,
            causation_id=self.correlation,
            event_id=event_id,
            time=self.stamp,
        )

    # --- one record, one event ---------------------------------------------------------------

    def record_event(self, r: pr.ParsedRecord, rec_hash: str, event_id: str) -> OutgoingEvent | None:
        """The event of an accepted record other than a student, a staff member or a calendar
        part (sections make none; district records make none)."""
        if isinstance(r, pr.EnrollmentRecord):
            return self._enrollment_event(r, rec_hash, event_id)
        maker = self._makers.get(type(r))
        made = maker(r, public_record_id(rec_hash)) if maker is not None else None
        if made is None:
            return None
        key = self.district if made.by_district else None
        return self.build(made.topic, made.change, made.payload, subject=made.subject, key=key, event_id=event_id)

    def _school(self, r: pr.SchoolRecord, _rid: str) -> _Made | None:
        if r.org_type is pr.OrgType.DISTRICT:
            return None
        payload = payload_of(enrollment_pb2.SchoolRegistered, r, district_id=self.district)
        return _Made(ORGANIZATION, "school_registered", payload, r.school_id)

    def _attendance(self, r: pr.AttendanceRecord, rid: str) -> _Made:
        key = self.refs.key_of(r.student_ref)
        payload = payload_of(
            attendance_pb2.AttendanceRecorded,
            r,
            student_key=key,
            district_id=self.district,
            category=_CATEGORIES[r.category],
            source_record_id=rid,
        )
        return _Made(ATTENDANCE, "attendance_recorded", payload, key, by_district=False)

    def _suspension(self, r: pr.SuspensionRecord, rid: str) -> _Made:
        key = self.refs.key_of(r.student_ref)
        payload = payload_of(
            discipline_pb2.SuspensionRecorded, r, student_key=key, district_id=self.district, source_record_id=rid
        )
        return _Made(DISCIPLINE, "suspension_recorded", payload, key, by_district=False)

    def _roster(self, change: str, message: type[Message], subject: str) -> Callable[[Any, str], _Made]:
        """Sessions, courses and classes (roster.v1): the payload is the record's own fields."""

        def made(r: Any, rid: str) -> _Made:
            payload = payload_of(message, r, district_id=self.district, source_record_id=rid)
            return _Made(ROSTER, change, payload, getattr(r, subject))

        return made

    def _teaching(self, r: pr.TeachingRecord, rid: str) -> _Made:
        user_key = self.pz.staff_key(self.district, r.staff_ref)
        payload = payload_of(
            roster_pb2.ClassEnrollmentRecorded,
            r,
            district_id=self.district,
            role="teacher",
            user_key=user_key,
            source_record_id=rid,
        )
        return _Made(ROSTER, "class_enrollment_recorded", payload, r.class_id)

    def _enrollment_event(self, r: pr.EnrollmentRecord, rec_hash: str, event_id: str) -> OutgoingEvent | None:
        key = self.refs.key_of(r.student_ref)
        rid = public_record_id(rec_hash)
        if r.class_ref is not None:
            # class (section) enrollments: one school-level event per student, school and date
            day = r.entry_date if r.action is pr.EnrollmentAction.ENROLL else r.exit_date
            event_id = derived_id(EVENT_NS, f"{self.district}|{key}|{r.action}|{r.school_id}|{iso(day)}")
            if event_id in self._emitted:
                return None
            self._emitted.add(event_id)
        given: dict[str, Any] = {"student_key": key, "district_id": self.district, "source_record_id": rid}
        payload: Message
        if r.action is pr.EnrollmentAction.ENROLL:
            change, payload = "student_enrolled", payload_of(enrollment_pb2.StudentEnrolled, r, **given)
        elif r.action is pr.EnrollmentAction.WITHDRAW:
            change, payload = "student_withdrawn", payload_of(enrollment_pb2.StudentWithdrawn, r, **given)
        else:
            change = "school_changed"
            payload = payload_of(
                enrollment_pb2.SchoolChanged, r, to_school_id=r.school_id, change_date=iso(r.entry_date), **given
            )
        return self.build(ENROLLMENT, change, payload, subject=key, event_id=event_id)

    def class_enrollment_event(self, r: pr.EnrollmentRecord, rec_hash: str, content: str) -> OutgoingEvent:
        """A student's class enrollment, for rosters (the school enrollment is its own event)."""
        payload = roster_pb2.ClassEnrollmentRecorded(
            district_id=self.district,
            class_id=r.class_ref or "",
            school_id=r.school_id,
            role="student",
            user_key=self.refs.key_of(r.student_ref),
            begin_date=iso(r.entry_date),
            end_date=iso(r.exit_date),
            deleted=r.action is pr.EnrollmentAction.WITHDRAW,
            source_record_id=public_record_id(rec_hash),
        )
        event_id = str(uuid.uuid5(EVENT_NS, f"{self.district}|{rec_hash}|{content}|class"))
        return self.build(
            ROSTER,
            "class_enrollment_recorded",
            payload,
            subject=r.class_ref or "",
            key=self.district,
            event_id=event_id,
        )

    # --- sealed registrations ------------------------------------------------------------------

    async def _sealed(self, key: str, elements: dict[str, str], payload: Any) -> None:
        """Seal `elements` under `key` into the payload's `sealed_elements`."""
        sealed = await self.cipher.seal_many(self.district, key, elements) if elements else {}
        for element_id, ciphertext in sealed.items():
            payload.sealed_elements[element_id].CopyFrom(SealedValue(ciphertext=ciphertext))

    async def student_events(self, sealing: list[tuple[pr.StudentRecord, str, str, str]]) -> list[OutgoingEvent]:
        """Student registrations (PII sealed under the student key), and the student's reporting
        groups as their own event: (record, student key, record hash, event id) each."""

        async def one(r: pr.StudentRecord, key: str, rec_hash: str, event_id: str) -> list[OutgoingEvent]:
            secret: dict[str, str] = {}
            plain: dict[str, str] = {}
            for element_id, value in r.elements.items():
                element = CATALOGUE.get(element_id)
                if element is None or element.pii:
                    secret[element_id] = value
                else:
                    plain[element_id] = value
            for element_id, flag in r.programs.items():
                secret[element_id] = "true" if flag else "false"
            rid = public_record_id(rec_hash)
            payload = enrollment_pb2.StudentRegistered(
                student_key=key,
                district_id=self.district,
                local_student_id_hash=self.refs.hash(r.student_ref),
                plain_elements=plain,
                source_record_id=rid,
            )
            await self._sealed(key, secret, payload)
            out = [self.build(ENROLLMENT, "student_registered", payload, subject=key, event_id=event_id)]
            codes = group_values(r)
            if codes:
                # The catalogue's coarse codes only, for statewide statistics (docs/contracts.md).
                groups = groups_pb2.StudentGroupsRecorded(
                    student_key=key, district_id=self.district, source_record_id=rid
                )
                groups.groups.update(codes)
                groups_id = derived_id(EVENT_NS, f"{event_id}|groups")
                out.append(self.build(GROUPS, "student_groups_recorded", groups, subject=key, event_id=groups_id))
            return out

        built = await asyncio.gather(*(one(*s) for s in sealing))
        return [event for events in built for event in events]

    async def staff_events(self, staff: list[tuple[pr.StaffRecord, str, str]]) -> list[OutgoingEvent]:
        """Staff registrations: the staff id pseudonymised, the staff elements sealed under the
        staff key (shredding that key destroys them, as for a student)."""

        async def one(r: pr.StaffRecord, rec_hash: str, event_id: str) -> OutgoingEvent:
            key = self.pz.staff_key(self.district, r.staff_ref)
            elements = {k: v for k, v in r.elements.items() if k in CATALOGUE and CATALOGUE[k].subject == "staff"}
            payload = roster_pb2.StaffRegistered(
                district_id=self.district,
                staff_key=key,
                role=r.role,
                school_ids=list(r.schools),
                deleted=r.deleted,
                source_record_id=public_record_id(rec_hash),
            )
            await self._sealed(key, elements, payload)
            return self.build(ROSTER, "staff_registered", payload, subject=key, key=self.district, event_id=event_id)

        return list(await asyncio.gather(*(one(*s) for s in staff)))

    # --- per upload: calendars and dead letters -----------------------------------------------------

    def calendar_event(
        self,
        school: str,
        year: int,
        source: pr.CalendarSource,
        rows: list[tuple[school_calendar.Term | None, date | None, bool | None]],
    ) -> tuple[OutgoingEvent, list[pr.Issue]]:
        """One school year's calendar as the upload leaves it, and a note per term whose declared
        instructional days disagree with its weekdays less the days off."""
        terms = [t for t, _, _ in rows if t is not None]
        entries = {d: bool(i) for _, d, i in rows if d is not None}
        days = school_calendar.instructional_days(terms, entries)
        notes: list[pr.Issue] = []
        for term, counted in school_calendar.term_mismatches(terms, days):
            notes.append(
                pr.warning_at(
                    Source(self.source_format, self.file_name, 0, "calendar"),
                    f"{school}/{term.name}",
                    "calendar.days_mismatch",
                    f"School {school}, {term.name}: the session declares {term.declared_days} instructional days, "
                    f"its weekdays less the listed days off give {counted}. Days enrolled count {counted}; send the "
                    "calendar's days off (holidays, teacher-only days) to make them agree.",
                    "number",
                )
            )
        payload = calendar_pb2.CalendarPublished(
            district_id=self.district,
            school_id=school,
            school_year=year,
            source=_CALENDAR_SOURCES[source],
            instructional_dates=[d.isoformat() for d in days],
            terms=[
                calendar_pb2.InstructionalTerm(
                    name=t.name,
                    begin_date=t.begin.isoformat(),
                    end_date=t.end.isoformat(),
                    declared_days=t.declared_days or 0,
                )
                for t in terms
            ],
            non_instructional_dates=sorted(d.isoformat() for d, i in entries.items() if not i),
            source_format=self.source_format,
        )
        digest = hashlib.sha256(payload.SerializeToString(deterministic=True)).hexdigest()
        event_id = str(uuid.uuid5(EVENT_NS, f"{self.district}|calendar|{school}|{year}|{source.value}|{digest}"))
        event = self.build(
            CALENDAR, "calendar_published", payload, subject=school, key=self.district, event_id=event_id
        )
        return event, notes

    def rejected_event(self, p: pr.Issue, seq: int) -> OutgoingEvent:
        """The dead letter of a refused record (rejected.v1), numbered as its problem row."""
        sid = self.correlation
        # the problem's fields (file, line, field, rule, message, value_class) are the event's
        payload = rejected_pb2.RecordRejected(stage="ingest", submission_id=sid, **dataclasses.asdict(p))
        event_id = str(uuid.uuid5(EVENT_NS, f"rejected|{sid}|{seq}"))
        return self.build(REJECTED, "record_rejected", payload, subject=sid, key=sid, event_id=event_id)
