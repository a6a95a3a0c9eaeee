"""What the Ed-Fi JSON and XML parsers share: identification systems, program names,
suspension kinds and the student-record assembly."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from services.ingest import codes
from services.ingest.formats import Check, issues_then
from services.ingest.records import AttendanceRecord, ParseItem, Source, record_id
from services.ingest.screening import SSN_MESSAGE, is_ssn_system

FORMAT_JSON = "edfi-json"
FORMAT_XML = "edfi-xml"

# Ed-Fi program / characteristic names that map onto catalogue program flags.
_PROGRAMS = {
    "specialeducation": "program.iep",
    "iep": "program.iep",
    "individualizededucationprogram": "program.iep",
    "section504placement": "program.section_504",
    "section504plan": "program.section_504",
    "section504": "program.section_504",
    "bilingual": "program.ell",
    "englishasasecondlanguageesl": "program.ell",
    "englishasasecondlanguage": "program.ell",
    "englishlearner": "program.ell",
    "limitedenglishproficiency": "program.ell",
    "freeandreducedpricelunch": "program.free_reduced_lunch",
    "freeandreducedlunch": "program.free_reduced_lunch",
    "schoollunch": "program.free_reduced_lunch",
}


def program_element(name: str) -> str | None:
    key = "".join(ch for ch in codes.descriptor_code(name).lower() if ch.isalnum())
    return _PROGRAMS.get(key)


def identification_code(
    check: Check, field: str, system: str | None, code: str | None, elements: dict[str, str]
) -> None:
    """One StudentIdentificationCode: SSN systems refused, state / district ids kept, others refused."""
    if system and is_ssn_system(system):
        check.fail(field, "ssn.forbidden", SSN_MESSAGE, vclass="identification code")
        return
    value = check.text(field, code)
    if value is None:
        return
    element = codes.id_system_element(system or "")
    if element is None:
        check.fail(
            field,
            "element.unknown",
            "Only state and district student identification codes are accepted; this identification system "
            "is not a data element Homeroom takes (remove it from the export).",
            vclass="identification code",
        )
        return
    elements.setdefault(element, value)


def lep_is_ell(text: str) -> bool | None:
    """Ed-Fi LimitedEnglishProficiency: "Limited" -> True, "NotLimited" -> False, monitored -> False."""
    k = "".join(ch for ch in codes.descriptor_code(text).lower() if ch.isalnum())
    if k == "limited":
        return True
    if k.startswith("notlimited") or k.startswith("limitedmonitored") or k == "formerlylimited":
        return False
    return None


def frl_eligible(text: str) -> bool | None:
    """Ed-Fi SchoolFoodServicesEligibility: Free / Reduced price -> True, Full price -> False."""
    k = "".join(ch for ch in codes.descriptor_code(text).lower() if ch.isalnum())
    if k in ("free", "reducedprice", "reduced"):
        return True
    if k in ("fullprice", "full", "notapplicable", "noteligible"):
        return False
    return None


INCIDENT_RECORDS = frozenset(
    [
        "DisciplineIncident",
        "StudentDisciplineIncidentAssociation",
        "StudentDisciplineIncidentBehaviorAssociation",
        "StudentDisciplineIncidentNonOffenderAssociation",
        "StaffDisciplineIncidentAssociation",
        "disciplineIncidents",
        "studentDisciplineIncidentAssociations",
        "studentDisciplineIncidentBehaviorAssociations",
    ]
)
INCIDENT_REASON = "Only suspension dates are accepted, never discipline incident details"


def attendance_event(
    check: Check,
    src: Source,
    fmt: str,
    *,
    category_field: str,
    raw_category: str | None,
    student: str | None,
    school: str | None,
    day: date | None,
    period: str | None,
) -> Iterator[ParseItem]:
    """One school or section attendance event, once each parser has read its fields: the
    category mapped (an unknown one refused under `category_field`), then the record."""
    mapped = codes.edfi_attendance(raw_category) if raw_category else None
    if raw_category and mapped is None:
        check.fail(
            category_field,
            "code.unknown",
            f"{category_field} must be In Attendance, Excused Absence, Unexcused Absence, Tardy or Early departure.",
            raw_category,
        )
    if student is None or school is None or day is None or mapped is None or not check.ok:
        yield from check.errors
        return
    category, excused = mapped
    yield from issues_then(
        check,
        AttendanceRecord(
            source=src,
            source_record_id=record_id(
                fmt, "attendance", student, school, day.isoformat(), period or "", category.value
            ),
            student_ref=student,
            school_id=school,
            date=day,
            category=category,
            excused=excused,
            period=period,
        ),
    )
