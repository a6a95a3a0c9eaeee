"""What the Ed-Fi JSON and XML parsers share: identification systems, program names,
suspension kinds and the student-record assembly."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from homeroom.calendar import Term
from services.ingest import codes
from services.ingest import parsed_records as pr
from services.ingest.formats import Check
from services.ingest.parsed_records import Source, record_id
from services.ingest.screening import SSN_MESSAGE, is_ssn_system

FORMAT_JSON = "edfi-json"
FORMAT_XML = "edfi-xml"


@dataclass(frozen=True, slots=True)
class EdfiNames:
    """What one Ed-Fi syntax calls the members the shared builders below refuse by name (JSON's
    camelCase descriptors, XML's element names), and the format its records' ids start with."""

    format: str
    attendance_category: str
    discipline: str
    calendar_events: str
    unknown_calendar_event: str  # the message refusing a calendar event Ed-Fi does not define


JSON_NAMES = EdfiNames(
    format=FORMAT_JSON,
    attendance_category="attendanceEventCategoryDescriptor",
    discipline="disciplines",
    calendar_events="calendarEvents",
    unknown_calendar_event="calendarEventDescriptor must be one of Ed-Fi's calendar events "
    "(Instructional day, Holiday, ...).",
)
XML_NAMES = EdfiNames(
    format=FORMAT_XML,
    attendance_category="AttendanceEventCategory",
    discipline="Discipline",
    calendar_events="CalendarEvent",
    unknown_calendar_event="CalendarEvent must be one of Ed-Fi's calendar events (Instructional day, Make-up day, "
    "Holiday, Teacher only day, Weather day, ...).",
)

# Every standard Ed-Fi ProgramTypeDescriptor (DS 2.0 ProgramType through 5.x): the catalogue
# program flag it sets, or None when Homeroom does not collect that program (the association
# is skipped and counted). tests/services/ingest/test_edfi_descriptors.py walks the lists.
PROGRAM_TYPES: dict[str, str | None] = {
    "Adult/Continuing Education": None,
    "Alternative Education": None,
    "Athletics": None,
    "Bilingual": "program.ell",
    "Bilingual Summer": "program.ell",
    "Career and Technical Education": None,
    "Cocurricular Programs": None,
    "College Preparatory": None,
    "Community Service Program": None,
    "Community/Junior College Education Program": None,
    "Compensatory Services for Disadvantaged Students": None,
    "Counseling Services": None,
    "District-Funded GED": None,
    "Early Head Start": None,
    "Early Intervention Services Part C": None,
    "English as a Second Language (ESL)": "program.ell",
    "Even Start": None,
    "Expelled Education": None,
    "Extended Day/Child Care Services": None,
    "Fee For Service": None,
    "Foreign Exchange": None,
    "Gifted and Talented": None,
    "Head Start": None,
    "Health Services Program": None,
    "High School Equivalency Program (HSEP)": None,
    "Home Visiting": None,
    "Homeless": None,
    "IDEA": "program.iep",
    "Immigrant Education": None,
    "Independent Study": None,
    "Indian Education": None,
    "International Baccalaureate": None,
    "Kindergarten - Extended Day": None,
    "Kindergarten - Full Day": None,
    "Kindergarten - Half Day": None,
    "Library/Media Services Program": None,
    "Magnet/Special Program Emphasis": None,
    "Migrant Education": None,
    "Neglected and Delinquent Program": None,
    "Optional Flexible School Day Program (OFSDP)": None,
    "Other": None,
    "Prekindergarten - Extended Day": None,
    "Prekindergarten - Full Day": None,
    "Prekindergarten - Half Day": None,
    "Preschool Special Education": "program.iep",
    "Public Preschool": None,
    "Regular Education": None,
    "Remedial Education": None,
    "Section 504 Placement": "program.section_504",
    "Service Learning": None,
    "Special Education": "program.iep",
    "Student Retention/Dropout Prevention": None,
    "Student School Food Service": "program.free_reduced_lunch",
    "Substance Abuse Education/Prevention": None,
    "Teacher Professional Development/Mentoring": None,
    "Technical Preparatory": None,
    "Title I Part A": None,
    "Title I Part D Subpart 1": None,
    "Title I Part D Subpart 2": None,
    "Vocational Education": None,
}
_PROGRAM_KEYS: dict[str, str | None] = {codes.match_key(k): v for k, v in PROGRAM_TYPES.items()}
_PROGRAM_KEYS.update(
    {
        "iep": "program.iep",
        "individualizededucationprogram": "program.iep",
        "section504plan": "program.section_504",
        "section504": "program.section_504",
        "englishasasecondlanguage": "program.ell",
        "englishlearner": "program.ell",
        "limitedenglishproficiency": "program.ell",
        "freeandreducedpricelunch": "program.free_reduced_lunch",
        "freeandreducedlunch": "program.free_reduced_lunch",
        "schoollunch": "program.free_reduced_lunch",
        "schoolfoodservice": "program.free_reduced_lunch",
    }
)

# Association records of the StudentProgram interchange that set a flag by their type alone.
PROGRAM_ASSOCIATIONS: dict[str, str] = {
    "StudentSpecialEducationProgramAssociation": "program.iep",
    "StudentSection504ProgramAssociation": "program.section_504",
    "StudentLanguageInstructionProgramAssociation": "program.ell",
    "StudentSchoolFoodServiceProgramAssociation": "program.free_reduced_lunch",
}


def program_known(name: str) -> bool:
    return codes.match_key(codes.descriptor_code(name)) in _PROGRAM_KEYS


def program_element(name: str) -> str | None:
    """The catalogue flag an Ed-Fi program type (or a program's name) stands for; None when
    Homeroom does not collect that program."""
    return _PROGRAM_KEYS.get(codes.match_key(codes.descriptor_code(name)))


# Ed-Fi SchoolFoodServiceProgramServiceDescriptor (3+) and SchoolFoodServicesEligibility (2.0):
# True free or reduced price, False full price, None when the code says nothing about it.
FOOD_SERVICES: dict[str, bool | None] = {
    "Free Breakfast": True,
    "Free Lunch": True,
    "Free Milk": True,
    "Free Snack": True,
    "Free Supper": True,
    "Reduced Price Breakfast": True,
    "Reduced Price Lunch": True,
    "Reduced Price Snack": True,
    "Reduced Price Supper": True,
    "Full Price Breakfast": False,
    "Full Price Lunch": False,
    "Full Price Milk": False,
    "Full Price Snack": False,
    "Full Price Supper": False,
    "Free": True,
    "Reduced price": True,
    "Full price": False,
    "Unknown": None,
    "Other": None,
}
_FOOD_KEYS = {codes.match_key(k): v for k, v in FOOD_SERVICES.items()}
_FOOD_KEYS.update({"reduced": True, "full": False, "notapplicable": False, "noteligible": False})

# Ed-Fi LimitedEnglishProficiencyDescriptor: Limited is an English learner; monitored (former)
# learners and NotLimited are not.
LEP_CODES: dict[str, bool] = {
    "Limited": True,
    "Limited Monitored 1": False,
    "Limited Monitored 2": False,
    "NotLimited": False,
}
_LEP_KEYS = {codes.match_key(k): v for k, v in LEP_CODES.items()}
_LEP_KEYS.update({"formerlylimited": False, "notlimited": False, "englishlearner": True})


def identification_code(
    check: Check, field: str, system: str | None, code: str | None, elements: dict[str, str]
) -> None:
    """One StudentIdentificationCode: SSN systems refused, state / district ids kept, other
    systems dropped (only their system's name is reported)."""
    if system and is_ssn_system(system):
        check.fail(field, "ssn.forbidden", SSN_MESSAGE, vclass="identification code")
        return
    value = check.text(field, code)
    if value is None:
        return
    element = codes.id_system_element(system or "")
    if element is None:
        check.drop(f"{field}[{codes.descriptor_code(system or 'unnamed system')}]", value)
        return
    elements.setdefault(element, value)


def lep_is_ell(text: str) -> bool | None:
    """Ed-Fi LimitedEnglishProficiency: "Limited" -> True, "NotLimited" and monitored -> False."""
    return _LEP_KEYS.get(codes.match_key(codes.descriptor_code(text)))


def frl_known(text: str) -> bool:
    """The code is one of the standard food-service codes (whatever it says about eligibility)."""
    return codes.match_key(codes.descriptor_code(text)) in _FOOD_KEYS


def lep_known(text: str) -> bool:
    return codes.match_key(codes.descriptor_code(text)) in _LEP_KEYS


def frl_eligible(text: str) -> bool | None:
    """Free or reduced price -> True, full price -> False, anything else -> None."""
    return _FOOD_KEYS.get(codes.match_key(codes.descriptor_code(text)))


# Discipline incidents and a student's part in them: incident details, refused (dates only).
INCIDENT_RECORDS = frozenset(
    [
        "DisciplineIncident",
        "StudentDisciplineIncidentAssociation",
        "StudentDisciplineIncidentBehaviorAssociation",
        "StudentDisciplineIncidentNonOffenderAssociation",
        "disciplineIncidents",
        "studentDisciplineIncidentAssociations",
        "studentDisciplineIncidentBehaviorAssociations",
        "studentDisciplineIncidentNonOffenderAssociations",
    ]
)
INCIDENT_REASON = "Only suspension dates are accepted, never discipline incident details"


def student_part(
    check: Check,
    src: Source,
    fmt: str,
    kind: str,
    key: str | None,
    elements: dict[str, str],
    programs: dict[str, bool] | None = None,
    *,
    org: str | None = None,
) -> pr.StudentRecord | None:
    """A Student (kind ``student``: its unique id is also its state id unless one was given) or a
    StudentEducationOrganizationAssociation (kind ``seoa``: what one organisation records of the
    student, under ``org``) once each parser has read its elements."""
    if key is None or not check.ok:
        return None
    if kind == "student":
        elements.setdefault("student.state_id", key)
    rid = record_id(fmt, kind, *((key,) if org is None else (key, org)))
    programs = programs or {}
    return pr.StudentRecord(source=src, source_record_id=rid, student_ref=key, elements=elements, programs=programs)


def school_association(
    check: Check,
    src: Source,
    fmt: str,
    student: str | None,
    school: str | None,
    entry: date | None,
    exit_date: date | None,
    exit_code: str | None,
    grade: str | None,
    entry_type: str | None,
) -> pr.EnrollmentRecord | None:
    """A StudentSchoolAssociation once each parser has read its fields: an enrollment, or a
    withdrawal when it carries an exit date."""
    if student is None or school is None or entry is None or not check.ok:
        return None
    return pr.EnrollmentRecord(
        source=src,
        source_record_id=record_id(fmt, "ssa", student, school, entry.isoformat()),
        action=pr.EnrollmentAction.WITHDRAW if exit_date else pr.EnrollmentAction.ENROLL,
        student_ref=student,
        school_id=school,
        entry_date=entry,
        exit_date=exit_date,
        exit_code=exit_code,
        grade_level=grade,
        entry_type=entry_type,
    )


def session_calendar(
    check: Check,
    src: Source,
    fmt: str,
    school: str | None,
    year: int | None,
    name: str | None,
    begin: date | None,
    end: date | None,
    declared: int | None,
) -> pr.CalendarRecord | None:
    """A Session once each parser has read its fields: the term it adds to the school's calendar
    (its dates and, when declared, its count of instructional days)."""
    if school is None or name is None or begin is None or end is None or year is None or not check.ok:
        return None
    sessions = (Term(name, begin, end, declared),)
    rid = record_id(fmt, "session", school, str(year), name)
    return pr.CalendarRecord(source=src, source_record_id=rid, school_id=school, school_year=year, sessions=sessions)


def calendar_part(
    check: Check,
    src: Source,
    fmt: str,
    kind: str,
    *,
    school: str | None,
    year: int | None,
    key: tuple[str | None, ...],
    days: tuple[tuple[date, bool], ...] = (),
) -> pr.CalendarRecord | None:
    """A Calendar (kind ``calendar``: the school year it covers) or a CalendarDate (kind
    ``calendar-date``: one day, instructional or not) once each parser has read its fields;
    ``key`` identifies it within the school year (None where a required field is missing)."""
    if school is None or year is None or None in key or not check.ok:
        return None
    return pr.CalendarRecord(
        source=src,
        source_record_id=record_id(fmt, kind, school, str(year), *(k or "" for k in key)),
        school_id=school,
        school_year=year,
        days=days,
    )


def calendar_date(
    check: Check,
    src: Source,
    names: EdfiNames,
    *,
    school: str | None,
    year: int | None,
    code: str,
    day: date | None,
    events: Iterable[tuple[str, object]],
) -> pr.CalendarRecord | None:
    """A CalendarDate once each parser has read its fields: one day of the school's calendar,
    a school day when any of its ``events`` (field, code) is instructional; an unknown event is
    refused under its field (``names.unknown_calendar_event`` says which are known), and none at
    all under ``names.calendar_events``."""
    instructional: list[bool] = []
    for field, raw in events:
        kind = codes.calendar_event_instructional(raw) if isinstance(raw, str) else None
        if kind is None:
            check.fail(field, "code.unknown", names.unknown_calendar_event, raw)
        else:
            instructional.append(kind)
    if not instructional and check.ok:
        events_field = names.calendar_events
        check.fail(events_field, "schema.required", f"{events_field} is required but is missing or empty.")
    key = (code, day.isoformat() if day else None)
    days = ((day, any(instructional)),) if day else ()
    return calendar_part(check, src, names.format, "calendar-date", school=school, year=year, key=key, days=days)


def attendance_event(
    check: Check,
    src: Source,
    names: EdfiNames,
    *,
    raw_category: str | None,
    student: str | None,
    school: str | None,
    day: date | None,
    period: str | None,
) -> pr.AttendanceRecord | None:
    """One school or section attendance event, once each parser has read its fields: the
    category mapped (an unknown one refused under `names.attendance_category`), then the record."""
    mapped = codes.edfi_attendance(raw_category) if raw_category else None
    if raw_category and mapped is None:
        category_field = names.attendance_category
        check.fail(
            category_field,
            "code.unknown",
            f"{category_field} must be In Attendance, Excused Absence, Unexcused Absence, Tardy or Early departure.",
            raw_category,
        )
    if student is None or school is None or day is None or mapped is None or not check.ok:
        return None
    category, excused = mapped
    return pr.AttendanceRecord(
        source=src,
        source_record_id=record_id(
            names.format, "attendance", student, school, day.isoformat(), period or "", category.value
        ),
        student_ref=student,
        school_id=school,
        date=day,
        category=category,
        excused=excused,
        period=period,
    )


def suspension_event(
    check: Check,
    src: Source,
    names: EdfiNames,
    kinds: list[bool | str | None],
    student: str | None,
    school: str | None,
    start: date | None,
    days: float | None,
    action_id: str,
) -> pr.SuspensionRecord | None:
    """One discipline action that is a suspension, once each parser has read its fields
    (`kinds`: `codes.edfi_suspension` of each discipline given, none of them "other")."""
    if not kinds:
        field = names.discipline
        check.fail(field, "schema.required", f"{field} is required but is missing or empty.")
    if student is None or school is None or start is None or not check.ok:
        return None
    in_school = kinds[0] if isinstance(kinds[0], bool) else None
    return pr.SuspensionRecord(
        source=src,
        source_record_id=record_id(names.format, "suspension", student, school, start.isoformat(), action_id),
        student_ref=student,
        school_id=school,
        start_date=start,
        in_school=in_school,
        school_days=days,
        end_date=start if days is not None and days <= 1 else None,
    )
