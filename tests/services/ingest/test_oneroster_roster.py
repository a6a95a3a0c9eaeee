"""OneRoster CSV rostering in (issue 23): academic sessions, courses, classes, teachers and
their class enrollments become roster records; staff keep only the catalogue's staff elements."""

from __future__ import annotations

import io
import json
from datetime import date
from typing import Any

from homeroom.catalogue import CATALOGUE
from services.ingest.formats.batch import parse_batch
from services.ingest.formats.edfi_xml import parse_edfi_xml
from services.ingest.formats.oneroster_csv import OneRosterUpload
from services.ingest.parsed_records import (
    ClassRecord,
    CourseRecord,
    Dropped,
    EnrollmentRecord,
    ParseItem,
    RecordError,
    SessionRecord,
    StaffRecord,
    StudentRecord,
    TeachingRecord,
)
from services.ingest.validation import Validator
from tests.services.ingest.ingest_data import (
    CLASSES,
    ENROLLMENTS,
    ORGS,
    ROLES_12,
    SESSIONS,
    USERS_12,
    base_orgs,
    csv_text,
    enrollment,
    make_zip,
    manifest,
)

COURSES = ["sourcedId", "status", "dateLastModified", "schoolYearSourcedId", "title", "courseCode", "grades",
           "orgSourcedId", "subjects", "subjectCodes"]  # fmt: skip


def roster_zip(*, users: list[dict[str, str]] | None = None, extra: list[dict[str, str]] | None = None) -> bytes:
    sessions = [
        {"sourcedId": "y2025", "status": "active", "title": "2024-2025", "type": "schoolYear",
         "startDate": "2024-07-01", "endDate": "2025-06-30", "schoolYear": "2025"},
        {"sourcedId": "term-1", "status": "active", "title": "Fall", "type": "term", "startDate": "2024-09-03",
         "endDate": "2025-01-24", "parentSourcedId": "y2025", "schoolYear": "2025"},
        {"sourcedId": "gp-1", "status": "active", "title": "Q1", "type": "gradingPeriod", "startDate": "2024-09-03",
         "endDate": "2024-11-08", "parentSourcedId": "term-1", "schoolYear": "2025"},
        {"sourcedId": "bad-1", "status": "active", "title": "Broken", "type": "term", "startDate": "2025-01-01",
         "endDate": "2024-01-01"},
    ]  # fmt: skip
    courses = [
        {"sourcedId": "crs-1", "status": "active", "title": "Algebra I", "courseCode": "MA1", "grades": "09",
         "orgSourcedId": "dist-1", "subjects": "Math", "schoolYearSourcedId": "y2025"},
        {"sourcedId": "crs-2", "status": "active", "title": "Biology", "courseCode": "SC1", "orgSourcedId": "sch-1"},
    ]  # fmt: skip
    classes = [
        {"sourcedId": "cls-1", "status": "active", "title": "Algebra I - P1", "classCode": "MA1-01",
         "classType": "scheduled", "courseSourcedId": "crs-1", "schoolSourcedId": "sch-1", "termSourcedIds": "term-1",
         "periods": "1"},
        {"sourcedId": "cls-9", "status": "active", "title": "Nowhere", "schoolSourcedId": "sch-404",
         "termSourcedIds": "term-1"},
    ]  # fmt: skip
    users = users or [
        {"sourcedId": "s1", "status": "active", "givenName": "Ada", "familyName": "L", "userMasterIdentifier": "NY1"},
        {"sourcedId": "t1", "status": "active", "givenName": "Grace", "familyName": "Hopper", "identifier": "T-77",
         "email": "ghopper@example.org", "userMasterIdentifier": "CERT-1", "password": "hunter2",
         "preferredGivenName": "Amazing"},
    ]  # fmt: skip
    roles = [
        {"sourcedId": "r1", "status": "active", "userSourcedId": "s1", "roleType": "primary", "role": "student",
         "orgSourcedId": "sch-1"},
        {"sourcedId": "r2", "status": "active", "userSourcedId": "t1", "roleType": "primary", "role": "teacher",
         "orgSourcedId": "sch-1"},
    ]  # fmt: skip
    enrollments = [
        enrollment("e1", "s1", beginDate="2024-09-03"),
        enrollment("e2", "t1", role="teacher", primary="true"),
        enrollment("e3", "t1", role="teacher", cls="cls-404"),
        *(extra or []),
    ]
    files: dict[str, str | bytes] = {
        "orgs.csv": csv_text(ORGS, base_orgs()),
        "academicSessions.csv": csv_text([*SESSIONS, "parentSourcedId", "schoolYear"], sessions),
        "courses.csv": csv_text(COURSES, courses),
        "classes.csv": csv_text([*CLASSES, "classCode", "classType", "courseSourcedId", "periods"], classes),
        "users.csv": csv_text([*USERS_12, "password", "preferredGivenName"], users),
        "roles.csv": csv_text(ROLES_12, roles),
        "enrollments.csv": csv_text(ENROLLMENTS, enrollments),
        "manifest.csv": manifest(
            "1.2", orgs="bulk", academicSessions="bulk", courses="bulk", classes="bulk", users="bulk",
            roles="bulk", enrollments="bulk",
        ),
    }  # fmt: skip
    return make_zip(files)


def of(items: list[ParseItem], cls: type) -> list:  # type: ignore[type-arg]
    return [i for i in items if isinstance(i, cls)]


def test_sessions_courses_classes_teachers_and_class_enrollments_are_read() -> None:
    items = list(OneRosterUpload(io.BytesIO(roster_zip())))
    sessions = {s.session_id: s for s in of(items, SessionRecord)}
    assert sorted(sessions) == ["gp-1", "term-1", "y2025"]
    assert sessions["gp-1"].session_type == "gradingPeriod" and sessions["gp-1"].parent_id == "term-1"
    assert sessions["term-1"].start_date == date(2024, 9, 3) and sessions["term-1"].school_year == 2025
    courses = {c.course_id: c for c in of(items, CourseRecord)}
    assert courses["crs-1"].school_id is None and courses["crs-1"].grades == ("09",)  # district-wide
    assert courses["crs-2"].school_id == "sch-1" and courses["crs-2"].course_code == "SC1"
    cls, elsewhere = of(items, ClassRecord)
    assert elsewhere.school_id == "sch-404"  # refused by the Validator (not one of the district's schools)
    assert (cls.class_id, cls.school_id, cls.course_id, cls.term_ids, cls.periods) == (
        "cls-1",
        "sch-1",
        "crs-1",
        ("term-1",),
        ("1",),
    )
    (teacher,) = of(items, StaffRecord)
    assert teacher.role == "teacher" and teacher.schools == ("sch-1",)
    # only the catalogue's staff elements: userMasterIdentifier, preferred names and passwords never kept
    assert dict(teacher.elements) == {
        "staff.first_name": "Grace",
        "staff.last_name": "Hopper",
        "staff.email": "ghopper@example.org",
        "staff.identifier": "T-77",
    }
    assert all(CATALOGUE[e].subject == "staff" and CATALOGUE[e].legal_basis for e in teacher.elements)
    assert "hunter2" not in repr(items) and "Amazing" not in repr(items) and "CERT-1" not in repr(items)
    dropped = {n for d in of(items, Dropped) for n in d.names}
    assert {"password", "preferredGivenName", "userMasterIdentifier"} <= dropped
    (teaching,) = of(items, TeachingRecord)
    assert (teaching.staff_ref, teaching.class_id, teaching.school_id, teaching.primary) == (
        "t1",
        "cls-1",
        "sch-1",
        True,
    )
    (student_class,) = of(items, EnrollmentRecord)
    assert student_class.class_ref == "cls-1" and student_class.student_ref == "s1"
    assert [s.student_ref for s in of(items, StudentRecord)] == ["s1"]  # the teacher is not a student
    problems = sorted((e.file, e.line, e.field, e.rule) for e in of(items, RecordError))
    assert problems == [
        ("academicSessions.csv", 5, "endDate", "date.end_before_start"),
        ("enrollments.csv", 4, "classSourcedId", "reference.unknown_class"),
    ]


def test_staff_ssn_refuses_the_row_and_validator_keeps_rosters_to_the_district() -> None:
    users = [
        {"sourcedId": "t1", "status": "active", "givenName": "Grace", "familyName": "Hopper",
         "userIds": "{SSN:123-45-6789}"},
        {"sourcedId": "s1", "status": "active", "givenName": "Ada", "familyName": "L", "userMasterIdentifier": "NY1"},
    ]  # fmt: skip
    items = list(OneRosterUpload(io.BytesIO(roster_zip(users=users))))
    assert of(items, StaffRecord) == []
    assert ("users.csv", "userIds", "ssn.forbidden") in {(e.file, e.field, e.rule) for e in of(items, RecordError)}
    assert "123-45-6789" not in repr(items)
    # a district that owns only sch-2: sch-1's class, course and teacher enrollment are refused
    v = Validator("d-100", {"sch-2"}, date(2024, 10, 15), district_org_ids=["dist-1"])
    # (sch-404's class is refused the same way)
    result = v.validate(OneRosterUpload(io.BytesIO(roster_zip())))
    refused = {(e.file, e.rule) for e in result.errors}
    assert {("classes.csv", "school.not_in_district"), ("courses.csv", "school.not_in_district")} <= refused
    assert ("enrollments.csv", "school.not_in_district") in refused
    kept = {type(r).__name__ for r in result.accepted}
    assert {"SessionRecord", "CourseRecord"} <= kept  # the district-wide course and the sessions stay
    assert not any(isinstance(r, ClassRecord | TeachingRecord) for r in result.accepted)


def test_edfi_master_schedule_becomes_courses_and_classes_linked_to_sessions() -> None:
    """The DS 5.2 sample's MasterSchedule (the excerpt in the corpus; the whole sample when
    ../shared/interop is there): course offerings -> courses, sections -> classes whose term is
    an academic session read from EducationOrgCalendar, and whose id is the one
    StudentSectionAssociation's class enrollments name."""
    from tests.services.ingest.test_edfi_conformance import CORPUS, SAMPLES

    folder = SAMPLES if (SAMPLES / "MasterSchedule.xml").exists() else CORPUS / "ds5.2"
    items: list[ParseItem] = []
    for name in ("EducationOrgCalendar.xml", "MasterSchedule.xml"):
        with (folder / name).open("rb") as f:
            items.extend(parse_edfi_xml(f, file=name))
    assert of(items, RecordError) == []
    sessions = {s.session_id: s for s in of(items, SessionRecord)}
    courses = {c.course_id for c in of(items, CourseRecord)}
    classes = of(items, ClassRecord)
    assert sessions and courses and classes
    assert all(s.session_type == "semester" and s.school_year == 2022 for s in sessions.values())
    for c in classes:
        assert c.course_id in courses, c
        assert c.term_ids and all(t in sessions for t in c.term_ids), c
        assert c.title and c.periods
    first = classes[0]
    assert first.class_id == "25590100102Trad220ALG112011" and first.course_id == "255901001-ALG-1"
    assert first.title == "Algebra 1" and first.location == "220"


def test_json_batch_takes_rosters_with_the_same_rules() -> None:
    records: list[dict[str, Any]] = [
        {"type": "academic_session", "session_id": "t1", "title": "Fall", "session_type": "term",
         "start_date": "2024-09-03", "end_date": "2025-01-24", "school_year": "2024-2025"},
        {"type": "course", "course_id": "c1", "title": "Algebra I", "grades": ["09"]},
        {"type": "class", "class_id": "k1", "school_id": "sch-1", "title": "Algebra I - P1", "course_id": "c1",
         "term_ids": ["t1"], "periods": ["1"]},
        {"type": "staff", "staff_id": "T-9", "school_ids": ["sch-1"],
         "staff": {"staff.first_name": "Grace", "staff.last_name": "Hopper", "staff.email": "g@example.org"}},
        {"type": "class_enrollment", "class_id": "k1", "school_id": "sch-1", "role": "teacher", "staff_id": "T-9",
         "primary": True},
        {"type": "class_enrollment", "class_id": "k1", "school_id": "sch-1", "role": "student", "student_id": "S-1",
         "begin_date": "2024-09-03"},
        # refused, each with its field and rule
        {"type": "academic_session", "session_id": "t2", "title": "?", "session_type": "quarter",
         "start_date": "2024-09-03", "end_date": "2025-01-24", "school_year": "2024-2025"},
        {"type": "staff", "staff_id": "T-8", "staff": {"staff.first_name": "A", "staff.last_name": "B",
                                                       "ssn": "123-45-6789"}},
        {"type": "staff", "staff_id": "T-7", "staff": {"staff.first_name": "A", "staff.last_name": "B",
                                                       "student.first_name": "C"}},
        {"type": "class_enrollment", "class_id": "k1", "school_id": "sch-1", "role": "teacher", "staff_id": "T-9",
         "student_id": "S-1"},
        {"type": "class", "class_id": "k2", "title": "No school"},
    ]  # fmt: skip
    body = json.dumps({"format": "homeroom.batch", "version": 1, "records": records}, indent=1).encode()
    items = list(parse_batch(io.BytesIO(body)))
    assert [s.session_id for s in of(items, SessionRecord)] == ["t1"]
    assert of(items, SessionRecord)[0].school_year == 2025
    assert [c.course_id for c in of(items, CourseRecord)] == ["c1"]
    (cls,) = of(items, ClassRecord)
    assert (cls.class_id, cls.course_id, cls.term_ids) == ("k1", "c1", ("t1",))
    (staff,) = of(items, StaffRecord)
    assert staff.staff_ref == "T-9" and dict(staff.elements)["staff.email"] == "g@example.org"
    (teaching,) = of(items, TeachingRecord)
    assert teaching.primary and teaching.staff_ref == "T-9"
    (student,) = of(items, EnrollmentRecord)
    assert (student.class_ref, student.student_ref, student.entry_date) == ("k1", "S-1", date(2024, 9, 3))
    problems = sorted((e.field, e.rule) for e in of(items, RecordError))
    assert problems == [
        ("records[10].school_id", "schema.required"),
        ("records[6].session_type", "code.unknown"),
        ("records[7].ssn", "ssn.forbidden"),
        ("records[8].staff.student.first_name", "element.unknown"),
        ("records[9].student_id", "element.not_allowed_here"),
    ]
    assert "123-45-6789" not in repr(items)
