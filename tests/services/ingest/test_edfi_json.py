from __future__ import annotations

import io
import json
from datetime import date
from typing import Any

from services.ingest.formats.edfi_json import parse_edfi_json
from services.ingest.records import (
    AttendanceCategory,
    AttendanceRecord,
    EnrollmentAction,
    EnrollmentRecord,
    ParseItem,
    RecordError,
    RecordWarning,
    StudentRecord,
)


def parse(body: Any, resource: str) -> list[ParseItem]:
    raw = body if isinstance(body, bytes) else json.dumps(body, indent=2).encode()
    return list(parse_edfi_json(io.BytesIO(raw), resource=resource, file="edfi.json"))


def errors(items: list[ParseItem]) -> list[RecordError]:
    return [i for i in items if isinstance(i, RecordError)]


def records(items: list[ParseItem]) -> list[ParseItem]:
    return [i for i in items if not isinstance(i, RecordError | RecordWarning)]


STUDENT = {
    "id": "2f1b5e0c0b6c4b0e8c4d1f0a9a1b2c3d",
    "studentUniqueId": "604822",
    "birthDate": "2010-01-13",
    "firstName": "Lisa",
    "lastSurname": "Woods",
    "birthSexDescriptor": "uri://ed-fi.org/SexDescriptor#Female",
    "personalIdentificationDocuments": [],
    "_etag": "5250168731208835353",
}


def test_students() -> None:
    bad = dict(STUDENT, studentUniqueId="604823", birthCity="Austin")
    ssn_field = dict(STUDENT, studentUniqueId="604824", socialSecurityNumber="219-09-9999")
    items = parse([STUDENT, bad, ssn_field, dict(STUDENT, studentUniqueId="604825", lastSurname="")], "/ed-fi/students")
    (student,) = records(items)
    assert isinstance(student, StudentRecord)
    assert student.elements == {
        "student.first_name": "Lisa",
        "student.last_name": "Woods",
        "student.birth_date": "2010-01-13",
        "student.sex": "female",
        "student.state_id": "604822",
    }
    assert student.source.pointer == "students[0]" and student.source.line == 2
    assert [(e.field, e.rule) for e in errors(items)] == [
        ("[1].birthCity", "element.unknown"),
        ("[2].socialSecurityNumber", "ssn.forbidden"),
        ("[3].lastSurname", "schema.required"),
    ]
    assert all("Austin" not in e.message and "9999" not in e.message for e in errors(items))


def test_a_single_resource_object_is_accepted() -> None:
    assert len(records(parse(STUDENT, "students"))) == 1


def test_student_school_associations() -> None:
    ssa = {
        "studentReference": {"studentUniqueId": "604822", "link": {"rel": "Student", "href": "/ed-fi/students/x"}},
        "schoolReference": {"schoolId": 255901001},
        "entryDate": "2021-08-23",
        "entryGradeLevelDescriptor": "uri://ed-fi.org/GradeLevelDescriptor#Ninth grade",
        "entryTypeDescriptor": "uri://ed-fi.org/EntryTypeDescriptor#Next year school",
        "exitWithdrawDate": "2022-06-01",
        "exitWithdrawTypeDescriptor": "uri://ed-fi.org/ExitWithdrawTypeDescriptor#Transferred",
        "primarySchool": True,
        "repeatGradeIndicator": False,
        "schoolYearTypeReference": {"schoolYear": 2022},
        "educationPlans": [],
    }
    open_ = {k: v for k, v in ssa.items() if not k.startswith("exit")}
    broken = dict(ssa, entryDate="2021-08-32", residencyStatusDescriptor="uri://x#Resident")
    items = parse([ssa, open_, broken], "studentSchoolAssociations")
    withdraw, enroll = records(items)
    assert isinstance(withdraw, EnrollmentRecord) and withdraw.action is EnrollmentAction.WITHDRAW
    assert (withdraw.school_id, withdraw.grade_level, withdraw.exit_code) == ("255901001", "09", "Transferred")
    assert withdraw.entry_type == "Next year school"
    assert isinstance(enroll, EnrollmentRecord) and enroll.action is EnrollmentAction.ENROLL
    assert withdraw.source_record_id == enroll.source_record_id == "edfi-json:ssa:604822/255901001/2021-08-23"
    assert withdraw.fingerprint() != enroll.fingerprint()
    assert [(e.field, e.rule) for e in errors(items)] == [("[2].residencyStatusDescriptor", "element.unknown")]


def test_attendance_events() -> None:
    base = {
        "studentReference": {"studentUniqueId": "604822"},
        "schoolReference": {"schoolId": 255901001},
        "sessionReference": {"schoolId": 255901001, "schoolYear": 2022, "sessionName": "Fall"},
        "eventDate": "2021-09-08",
    }
    cats = [
        "uri://ed-fi.org/AttendanceEventCategoryDescriptor#Excused Absence",
        "uri://ed-fi.org/AttendanceEventCategoryDescriptor#Unexcused Absence",
        "uri://ed-fi.org/AttendanceEventCategoryDescriptor#Tardy",
        "uri://ed-fi.org/AttendanceEventCategoryDescriptor#Early departure",
        "uri://ed-fi.org/AttendanceEventCategoryDescriptor#In Attendance",
        "uri://ed-fi.org/AttendanceEventCategoryDescriptor#Napping",
    ]
    body = [dict(base, attendanceEventCategoryDescriptor=c) for c in cats]
    body.append(dict(body[0], attendanceEventReason="Doctor: asthma"))
    items = parse(body, "studentSchoolAttendanceEvents")
    got = [(r.category, r.excused) for r in records(items) if isinstance(r, AttendanceRecord)]
    assert got == [
        (AttendanceCategory.ABSENT, True),
        (AttendanceCategory.ABSENT, False),
        (AttendanceCategory.TARDY, None),
        (AttendanceCategory.EARLY_DEPARTURE, None),
        (AttendanceCategory.PRESENT, None),
    ]
    assert [(e.field, e.rule) for e in errors(items)] == [
        ("[5].attendanceEventCategoryDescriptor", "code.unknown"),
        ("[6].attendanceEventReason", "element.unknown"),
    ]
    section = {
        "studentReference": {"studentUniqueId": "604822"},
        "sectionReference": {"schoolId": 255901001, "sectionIdentifier": "ALG-1-P3", "localCourseCode": "ALG-1"},
        "eventDate": "2021-09-08",
        "attendanceEventCategoryDescriptor": "uri://ed-fi.org/AttendanceEventCategoryDescriptor#Tardy",
    }
    (period,) = records(parse([section], "studentSectionAttendanceEvents"))
    assert isinstance(period, AttendanceRecord) and period.period == "ALG-1-P3" and period.date == date(2021, 9, 8)


def test_education_organization_association_demographics_and_ids() -> None:
    seoa = {
        "studentReference": {"studentUniqueId": "604822"},
        "educationOrganizationReference": {"educationOrganizationId": 255901},
        "sexDescriptor": "uri://ed-fi.org/SexDescriptor#Female",
        "hispanicLatinoEthnicity": False,
        "races": [{"raceDescriptor": "uri://ed-fi.org/RaceDescriptor#Black - African American"}],
        "limitedEnglishProficiencyDescriptor": "uri://ed-fi.org/LimitedEnglishProficiencyDescriptor#Limited",
        "studentIdentificationCodes": [
            {
                "studentIdentificationSystemDescriptor": "uri://ed-fi.org/StudentIdentificationSystemDescriptor#District",
                "assigningOrganizationIdentificationCode": "255901",
                "identificationCode": "D-4411",
            }
        ],
        "languages": [
            {
                "languageDescriptor": "uri://ed-fi.org/LanguageDescriptor#spa",
                "uses": [{"languageUseDescriptor": "uri://ed-fi.org/LanguageUseDescriptor#Home language"}],
            }
        ],
        "electronicMails": [{"electronicMailAddress": "lisa@example.org", "electronicMailTypeDescriptor": "x#Home"}],
    }

    def with_code(system: str, code: str) -> dict[str, Any]:
        return dict(
            seoa,
            studentIdentificationCodes=[
                {"studentIdentificationSystemDescriptor": system, "assigningOrganizationIdentificationCode": "x",
                 "identificationCode": code}
            ],
        )  # fmt: skip

    ssn = with_code("uri://ed-fi.org/StudentIdentificationSystemDescriptor#SSN", "A-1")
    medicaid = with_code("uri://ed-fi.org/StudentIdentificationSystemDescriptor#Medicaid", "M-1")
    items = parse([seoa, ssn, medicaid], "studentEducationOrganizationAssociations")
    (student,) = records(items)
    assert isinstance(student, StudentRecord)
    assert student.elements == {
        "student.sex": "female",
        "student.race_ethnicity": "black_african_american",
        "student.local_id": "D-4411",
        "student.home_language": "spa",
        "student.email": "lisa@example.org",
    }
    assert student.programs == {"program.ell": True}
    assert [(e.field, e.rule) for e in errors(items)] == [
        ("[1].studentIdentificationCodes[0]", "ssn.forbidden"),
        ("[2].studentIdentificationCodes[0]", "element.unknown"),
    ]


def test_unknown_resource_and_unreadable_bodies() -> None:
    assert [e.rule for e in errors(parse([], "staffs"))] == ["record.type_unknown"]
    assert records(parse([], "students")) == []
    for raw in (b"", b"42", b"[{]", b"\xff\xfe"):
        assert [e.rule for e in errors(parse(raw, "students"))] == ["file.unreadable"], raw
    midway = parse(b'[{"studentUniqueId": "1", "firstName": "A", "lastSurname": "B"} {"x": 1}]', "students")
    assert len(records(midway)) == 1 and [e.rule for e in errors(midway)] == ["file.unreadable"]
    assert [e.rule for e in errors(parse([1, "x"], "students"))] == ["schema.type", "schema.type"]
