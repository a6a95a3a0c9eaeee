from __future__ import annotations

import io
import json
from datetime import date
from typing import Any

from services.ingest.formats.edfi_json import parse_edfi_json
from services.ingest.parsed_records import (
    AttendanceCategory,
    AttendanceRecord,
    CalendarRecord,
    Dropped,
    EnrollmentAction,
    EnrollmentRecord,
    ParseItem,
    RecordError,
    RecordWarning,
    StudentRecord,
    SuspensionRecord,
)


def parse(body: Any, resource: str) -> list[ParseItem]:
    raw = body if isinstance(body, bytes) else json.dumps(body, indent=2).encode()
    return list(parse_edfi_json(io.BytesIO(raw), resource=resource, file="edfi.json"))


def errors(items: list[ParseItem]) -> list[RecordError]:
    return [i for i in items if isinstance(i, RecordError)]


def records(items: list[ParseItem]) -> list[ParseItem]:
    return [i for i in items if not isinstance(i, RecordError | RecordWarning | Dropped)]


def dropped(items: list[ParseItem]) -> list[str]:
    return [n for i in items if isinstance(i, Dropped) for n in (i.names or (i.record,))]


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
    student, city = records(items)
    assert isinstance(student, StudentRecord)
    assert student.elements == {
        "student.first_name": "Lisa",
        "student.last_name": "Woods",
        "student.birth_date": "2010-01-13",
        "student.sex": "female",
        "student.state_id": "604822",
    }
    assert student.source.pointer == "students[0]" and student.source.line == 2
    # birthCity is not collected: dropped with a warning, the student is taken
    assert isinstance(city, StudentRecord) and "Austin" not in repr(city)
    assert dropped(items) == ["students.birthCity"]
    assert [(e.field, e.rule) for e in errors(items)] == [
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
    assert dropped(items)[:3] == [
        "studentSchoolAssociations.primarySchool",
        "studentSchoolAssociations.repeatGradeIndicator",
        "studentSchoolAssociations.primarySchool",
    ]
    assert isinstance(withdraw, EnrollmentRecord) and withdraw.action is EnrollmentAction.WITHDRAW
    assert (withdraw.school_id, withdraw.grade_level, withdraw.exit_code) == ("255901001", "09", "Transferred")
    assert withdraw.entry_type == "Next year school"
    assert isinstance(enroll, EnrollmentRecord) and enroll.action is EnrollmentAction.ENROLL
    assert withdraw.source_record_id == enroll.source_record_id == "edfi-json:ssa:604822/255901001/2021-08-23"
    assert withdraw.fingerprint() != enroll.fingerprint()
    assert [(e.field, e.rule) for e in errors(items)] == [("[2].entryDate", "date.invalid")]


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
        (AttendanceCategory.ABSENT, True),  # the reason is dropped, the absence taken
    ]
    assert [(e.field, e.rule) for e in errors(items)] == [("[5].attendanceEventCategoryDescriptor", "code.unknown")]
    assert dropped(items) == ["studentSchoolAttendanceEvents.attendanceEventReason"]
    assert "asthma" not in repr(items)
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
    student, with_medicaid = records(items)
    assert isinstance(student, StudentRecord) and isinstance(with_medicaid, StudentRecord)
    assert "M-1" not in repr(with_medicaid)
    assert dropped(items) == ["studentIdentificationCodes[0][Medicaid]"]
    assert student.elements == {
        "student.sex": "female",
        "student.race_ethnicity": "black_african_american",
        "student.local_id": "D-4411",
        "student.home_language": "spa",
        "student.email": "lisa@example.org",
    }
    assert student.programs == {"program.ell": True}
    assert [(e.field, e.rule) for e in errors(items)] == [("[1].studentIdentificationCodes[0]", "ssn.forbidden")]


def test_unknown_resource_and_unreadable_bodies() -> None:
    assert [e.rule for e in errors(parse([], "staffs"))] == ["record.type_unknown"]
    assert records(parse([], "students")) == []
    for raw in (b"", b"42", b"[{]", b"\xff\xfe"):
        assert [e.rule for e in errors(parse(raw, "students"))] == ["file.unreadable"], raw
    midway = parse(b'[{"studentUniqueId": "1", "firstName": "A", "lastSurname": "B"} {"x": 1}]', "students")
    assert len(records(midway)) == 1 and [e.rule for e in errors(midway)] == ["file.unreadable"]
    assert [e.rule for e in errors(parse([1, "x"], "students"))] == ["schema.type", "schema.type"]


# The Ed-Fi API's own example bodies (Ed-Fi documentation, "Sample Transactions" and the API
# getting-started pages), as districts post them: a student, a school association and an
# attendance event with its free-text attendanceEventReason.
DOCS_STUDENT = {
    "studentUniqueId": "6048999",
    "birthDate": "2009-07-22",
    "firstName": "Julie",
    "lastSurname": "Martinez",
    "middleName": "Macon",
}
DOCS_ASSOCIATION = {
    "schoolReference": {"schoolId": 255901001},
    "studentReference": {"studentUniqueId": "604823"},
    "entryDate": "2021-08-23",
    "entryGradeLevelDescriptor": "uri://ed-fi.org/gradeLevelDescriptor#Tenth Grade",
}
DOCS_ATTENDANCE = {
    "schoolReference": {"schoolId": 255901107},
    "sessionReference": {"schoolId": 255901107, "schoolYear": 2011, "sessionName": "2010-2011 Fall Semester"},
    "studentReference": {"studentUniqueId": "604877"},
    "attendanceEventCategoryDescriptor": "uri://ed-fi.org/AttendanceEventCategoryDescriptor#Unexcused Absence",
    "eventDate": "2010-08-25",
    "attendanceEventReason": "Absent unexcused",
    "eventDuration": 1,
}
# A DS 5.x student as the API returns it, with the elements Homeroom does not collect.
DS5_STUDENT = {
    "studentUniqueId": "604822",
    "birthDate": "2008-09-13",
    "firstName": "Lisa",
    "middleName": "Sybil",
    "lastSurname": "Woods",
    "personalTitlePrefix": "Ms",
    "preferredFirstName": "Lisarae",
    "preferredLastSurname": "Woodlock",
    "generationCodeSuffix": "Jr",
    "birthCountryDescriptor": "uri://ed-fi.org/CountryDescriptor#US",
    "citizenshipStatusDescriptor": "uri://ed-fi.org/CitizenshipStatusDescriptor#US Citizen",
    "identificationDocuments": [],
    "otherNames": [],
    "personalIdentificationDocuments": [],
    "visas": [],
}


def test_the_apis_own_example_bodies_go_in_whole() -> None:
    (student,) = records(parse(DOCS_STUDENT, "students"))
    assert isinstance(student, StudentRecord) and student.elements["student.middle_name"] == "Macon"
    (enroll,) = records(parse(DOCS_ASSOCIATION, "studentSchoolAssociations"))
    assert isinstance(enroll, EnrollmentRecord) and enroll.grade_level == "10"
    items = parse(DOCS_ATTENDANCE, "studentSchoolAttendanceEvents")
    (absence,) = records(items)
    assert isinstance(absence, AttendanceRecord) and (absence.category, absence.excused) == (
        AttendanceCategory.ABSENT,
        False,
    )
    assert errors(items) == []
    assert dropped(items) == [
        "studentSchoolAttendanceEvents.attendanceEventReason",
        "studentSchoolAttendanceEvents.eventDuration",
    ]
    items = parse(DS5_STUDENT, "students")
    (ds5,) = records(items)
    assert isinstance(ds5, StudentRecord)
    assert set(dropped(items)) == {
        "students.personalTitlePrefix",
        "students.preferredFirstName",
        "students.preferredLastSurname",
        "students.generationCodeSuffix",
        "students.birthCountryDescriptor",
        "students.citizenshipStatusDescriptor",
    }
    assert "Lisarae" not in repr(ds5) and "Woodlock" not in repr(ds5)


def test_calendars_sessions_and_discipline_actions() -> None:
    session = {
        "schoolReference": {"schoolId": 255901001},
        "schoolYearTypeReference": {"schoolYear": 2022},
        "sessionName": "2021-2022 Fall Semester",
        "beginDate": "2021-08-23",
        "endDate": "2021-12-17",
        "termDescriptor": "uri://ed-fi.org/TermDescriptor#Fall Semester",
        "totalInstructionalDays": 81,
    }
    (term,) = records(parse(session, "sessions"))
    assert isinstance(term, CalendarRecord) and term.school_year == 2021
    assert term.sessions[0].declared_days == 81
    calendar = {
        "calendarCode": "2010605675",
        "schoolReference": {"schoolId": 255901107},
        "schoolYearTypeReference": {"schoolYear": 2022},
        "calendarTypeDescriptor": "uri://ed-fi.org/CalendarTypeDescriptor#Student Specific",
        "gradeLevels": [],
    }
    (cal,) = records(parse(calendar, "calendars"))
    assert isinstance(cal, CalendarRecord) and (cal.school_id, cal.school_year) == ("255901107", 2021)
    dates = [
        {
            "calendarReference": {"calendarCode": "2010605675", "schoolId": 255901107, "schoolYear": 2022},
            "date": day,
            "calendarEvents": [{"calendarEventDescriptor": f"uri://ed-fi.org/CalendarEventDescriptor#{event}"}],
        }
        for day, event in (("2021-08-23", "Instructional day"), ("2021-11-25", "Holiday"), ("2021-11-26", "Picnic"))
    ]
    items = parse(dates, "calendarDates")
    school_day, holiday = records(items)
    assert isinstance(school_day, CalendarRecord) and school_day.days == ((date(2021, 8, 23), True),)
    assert isinstance(holiday, CalendarRecord) and holiday.days == ((date(2021, 11, 25), False),)
    assert [(e.field, e.rule) for e in errors(items)] == [
        ("[2].calendarEvents[0].calendarEventDescriptor", "code.unknown")
    ]
    action = {
        "disciplineActionIdentifier": "18",
        "disciplineDate": "2022-01-18",
        "studentReference": {"studentUniqueId": "604848"},
        "responsibilitySchoolReference": {"schoolId": 255901001},
        "disciplines": [{"disciplineDescriptor": "uri://ed-fi.org/DisciplineDescriptor#In School Suspension"}],
        "disciplineActionLength": 3,
        "disciplineActionLengthDifferenceReasonDescriptor": "uri://ed-fi.org/DisciplineActionLengthDifferenceReasonDescriptor#No Difference",  # noqa: E501
        "iepPlacementMeetingIndicator": False,
    }
    expulsion = dict(action, disciplines=[{"disciplineDescriptor": "uri://ed-fi.org/DisciplineDescriptor#Expulsion"}])
    items = parse([action, expulsion], "disciplineActions")
    (suspension,) = records(items)
    assert isinstance(suspension, SuspensionRecord) and suspension.in_school is True
    assert dropped(items) == [
        "disciplineActions.disciplineActionLengthDifferenceReasonDescriptor",
        "disciplineActions.iepPlacementMeetingIndicator",
        "disciplineActions (not a suspension)",
    ]
