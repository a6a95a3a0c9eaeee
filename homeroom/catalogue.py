"""The data-element catalogue: the one vocabulary for what a student's data is made of.

Ingest keeps only elements listed here: an element a standard (Ed-Fi, OneRoster) allows but
the catalogue does not use is dropped before anything is stored or published, and reported
to the district by name and count; forbidden content refuses the record (`treatment`).
Consent agreements permit elements by these ids and consent's decision point decides on
them (services/consent/decisions.py: `transferable` is its input for transfers); records
filters reads by them; a transfer package's sections travel by them (`TRANSFER_SECTIONS`);
audit logs their names (never their values).
Sensitivity classes follow the categories that FERPA, IDEA and New York Ed Law 2-d treat differently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Sensitivity(StrEnum):
    DIRECTORY = "directory"  # FERPA directory information: releasable unless the parent opted out
    IDENTIFIER = "identifier"  # ids that point at one child
    DEMOGRAPHIC = "demographic"
    EDUCATIONAL = "educational"  # enrollment and grade records
    ATTENDANCE = "attendance"
    DISCIPLINE = "discipline"  # dates only travel (EngageNY FAQ)
    DISABILITY = "disability"  # IEP / 504: IDEA confidentiality on top of FERPA
    HEALTH = "health"
    ECONOMIC = "economic"  # free or reduced-price lunch eligibility
    STAFF = "staff"  # a teacher's or other staff member's personal data (not an education record)


@dataclass(frozen=True, slots=True)
class DataElement:
    id: str
    name: str
    sensitivity: Sensitivity
    pii: bool  # sealed (encrypted) before it leaves ingest
    transferable: bool = True  # may travel to a receiving school under FERPA 99.31(a)(2)
    description: str = ""
    subject: str = "student"  # whose data it is: "student" or "staff"
    purposes: tuple[str, ...] = ()  # staff elements: the only purposes they are released for
    legal_basis: str = ""  # staff elements: why releasing them is lawful


def _e(
    id: str, name: str, sensitivity: Sensitivity, pii: bool, transferable: bool = True, description: str = ""
) -> DataElement:
    return DataElement(id, name, sensitivity, pii, transferable, description)


S = Sensitivity
ELEMENTS: tuple[DataElement, ...] = (
    _e("student.state_id", "State student identifier", S.IDENTIFIER, True),
    _e("student.local_id", "District student identifier", S.IDENTIFIER, True),
    _e("student.first_name", "First name", S.DIRECTORY, True),
    _e("student.middle_name", "Middle name", S.DIRECTORY, True),
    _e("student.last_name", "Last name", S.DIRECTORY, True),
    _e("student.birth_date", "Date of birth", S.DIRECTORY, True),
    _e("student.email", "Student email address", S.DIRECTORY, True),
    _e("student.address", "Home address", S.DIRECTORY, True),
    _e("student.phone", "Telephone number", S.DIRECTORY, True),
    _e("student.sex", "Sex", S.DEMOGRAPHIC, True),
    _e("student.race_ethnicity", "Race and ethnicity", S.DEMOGRAPHIC, True),
    _e("student.home_language", "Home language", S.DEMOGRAPHIC, True),
    _e("enrollment.grade_level", "Grade level", S.DIRECTORY, False),
    _e("enrollment.school_id", "School of enrollment", S.EDUCATIONAL, False),
    _e("enrollment.entry_date", "Entry date", S.EDUCATIONAL, False),
    _e("enrollment.exit_date", "Exit date", S.EDUCATIONAL, False),
    _e("enrollment.exit_code", "Exit (withdrawal) code", S.EDUCATIONAL, False),
    _e("enrollment.class", "Class and section enrollment", S.EDUCATIONAL, False),
    _e("attendance.daily", "Daily attendance", S.ATTENDANCE, False),
    _e("attendance.period", "Class-period attendance", S.ATTENDANCE, False),
    _e("attendance.summary", "Attendance summary and absence rate", S.ATTENDANCE, False),
    _e("discipline.suspension_dates", "Suspension dates", S.DISCIPLINE, False),
    _e(
        "discipline.incident_details",
        "Discipline incident details",
        S.DISCIPLINE,
        True,
        transferable=False,
        description="Never accepted by ingest and never transferred: dates only (EngageNY FAQ).",
    ),
    _e("program.iep", "Individualized Education Program indicator", S.DISABILITY, True),
    _e("program.section_504", "Section 504 plan indicator", S.DISABILITY, True),
    _e("program.ell", "English language learner indicator", S.EDUCATIONAL, True),
    _e("program.free_reduced_lunch", "Free or reduced-price lunch eligibility", S.ECONOMIC, True),
    _e("health.immunizations", "Immunization record", S.HEALTH, True),
    _e("record.parent_statement", "Parent statement on a contested record (FERPA 99.21)", S.EDUCATIONAL, True),
)

# Staff data is personal data too, though not an education record (FERPA does not cover it):
# only the minimum a vendor needs to put a teacher in front of their class, only for rostering
# or instruction, released under the district's contract with the vendor. A vendor receives
# them only where its agreement lists them; each release is a disclosure like a student's.
STAFF_LEGAL_BASIS = "Contract with the educational agency (NY Ed Law 2-d, 8 NYCRR 121.3): rostering staff"
STAFF_PURPOSES = ("rostering", "instruction")


def _staff(id: str, name: str, description: str) -> DataElement:
    return DataElement(
        id,
        name,
        Sensitivity.STAFF,
        True,
        transferable=False,
        description=description,
        subject="staff",
        purposes=STAFF_PURPOSES,
        legal_basis=STAFF_LEGAL_BASIS,
    )


STAFF_ELEMENTS: tuple[DataElement, ...] = (
    _staff("staff.first_name", "Staff first name", "OneRoster givenName of a teacher; Ed-Fi Staff FirstName."),
    _staff("staff.last_name", "Staff last name", "OneRoster familyName; Ed-Fi Staff LastSurname."),
    _staff("staff.email", "Staff work email address", "For single sign-on; only where the agreement lists it."),
    _staff("staff.identifier", "District staff identifier", "OneRoster identifier; Ed-Fi StaffUniqueId."),
    _staff(
        "staff.class_assignment",
        "Classes a staff member teaches",
        "The staff member's pseudonymous key and class enrollments: a vendor sees teachers at all only with it.",
    ),
)

CATALOGUE: dict[str, DataElement] = {e.id: e for e in (*ELEMENTS, *STAFF_ELEMENTS)}
STUDENT_ELEMENT_IDS: tuple[str, ...] = tuple(e.id for e in ELEMENTS)

# The sections of a records-transfer package (records' `POST /v1/internal/transfer-packages`
# answer) and the elements that let each travel: a section goes with the record only when
# the transfer's decision released one of its elements; otherwise it is sent empty. Program
# flags travel one by one as `program.<flag>`.
TRANSFER_SECTIONS: dict[str, tuple[str, ...]] = {
    "enrollments": (
        "enrollment.school_id",
        "enrollment.entry_date",
        "enrollment.exit_date",
        "enrollment.exit_code",
        "enrollment.grade_level",
    ),
    "attendance.days": ("attendance.daily",),
    "attendance.summary": ("attendance.summary",),
    "suspension_dates": ("discipline.suspension_dates",),
    "parent_statements": ("record.parent_statement",),
}


def section_released(section: str, released: Iterable[str]) -> bool:
    """Whether a decision that released `released` lets `section` of a transfer package travel."""
    return not set(TRANSFER_SECTIONS[section]).isdisjoint(released)


def program_flag_released(flag: str, released: Iterable[str]) -> bool:
    """Whether a program flag (`iep`, or its element id `program.iep`) may travel."""
    released = set(released)
    return flag in released or f"program.{flag}" in released


# Elements that must never enter Homeroom at all (seed 000: Social Security numbers).
FORBIDDEN: dict[str, str] = {
    "student.ssn": "Social Security numbers are never accepted (NY Ed Law 2-d; seed 000).",
    "discipline.incident_details": "Only suspension dates are accepted, never incident details.",
}


class Treatment(StrEnum):
    """What ingest does with one element of an incoming record."""

    KEPT = "kept"  # a catalogue element: validated, pseudonymised or sealed, published
    DROPPED = "dropped"  # allowed by the standard, not collected: never stored, published or logged
    REFUSED = "refused"  # forbidden content: the whole record is refused


def treatment(element_id: str | None) -> Treatment:
    """The rule for an element a parser has mapped (None: it maps to no catalogue element)."""
    if element_id is not None and element_id in FORBIDDEN:
        return Treatment.REFUSED
    if element_id is not None and element_id in CATALOGUE:
        return Treatment.KEPT
    return Treatment.DROPPED


# Purposes an agreement may name. An agreement's purpose outside this list is refused.
PURPOSES: dict[str, str] = {
    "instruction": "Delivering instruction or a curriculum product to enrolled students",
    "rostering": "Creating accounts and class rosters in an application",
    "assessment": "Administering or scoring assessments",
    "transportation": "Planning and operating student transportation",
    "food_services": "Operating school meal programs",
    "health_services": "Delivering school health or public-health services",
    "research": "A study for or on behalf of the district (FERPA 99.31(a)(6))",
    "audit_evaluation": "Audit or evaluation of education programs (FERPA 99.31(a)(3))",
    "records_transfer": "Sending records to a school where the student seeks to enroll (FERPA 99.31(a)(2))",
    "attendance_support": "Early support for chronically absent students",
}


class LegalBasis(StrEnum):
    """Why a disclosure is lawful; recorded with every disclosure (FERPA 99.32(a)(3))."""

    SCHOOL_OFFICIAL = "FERPA 99.31(a)(1) school official"
    TRANSFER = "FERPA 99.31(a)(2) transfer to enrolling school"
    AUDIT_EVALUATION = "FERPA 99.31(a)(3) audit or evaluation"
    STUDY = "FERPA 99.31(a)(6) study"
    DIRECTORY = "FERPA 99.31(a)(11) directory information"
    PARENT = "FERPA 99.10 parent inspection"
    WRITTEN_CONSENT = "FERPA 99.30 written consent"
    DEIDENTIFIED = "FERPA 99.31(b)(1) de-identified data"


@dataclass(frozen=True, slots=True)
class ReportingGroup:
    """A student group statewide statistics count by (FERPA 99.31(b)(1) releases).

    The element stays sealed wherever it is kept; ingest publishes only this coarse code,
    unsealed, on groups.v1 for the reports service, which holds no key. A group is listed
    here only where its code names no one: a handful of categories, every student in one."""

    dimension: str
    element: str
    label: str
    categories: tuple[tuple[str, str], ...]  # (code, label)
    default: str  # the code of a student whose record does not say
    codes: tuple[tuple[str, str], ...]  # element value -> code

    def code(self, value: str) -> str:
        return dict(self.codes).get(value.strip().lower(), self.default)


_YES_NO = (("yes", "Yes"), ("no", "No"))
_FLAG = (("true", "yes"), ("false", "no"), ("yes", "yes"), ("no", "no"), ("1", "yes"), ("0", "no"))
REPORTING_GROUPS: tuple[ReportingGroup, ...] = (
    ReportingGroup(
        "sex",
        "student.sex",
        "Sex",
        (("female", "Female"), ("male", "Male"), ("other", "Another sex or not reported")),
        "other",
        (("female", "female"), ("male", "male"), ("other", "other"), ("unspecified", "other")),
    ),
    ReportingGroup("iep", "program.iep", "Students with an IEP", _YES_NO, "no", _FLAG),
    ReportingGroup("section_504", "program.section_504", "Students with a Section 504 plan", _YES_NO, "no", _FLAG),
    ReportingGroup("ell", "program.ell", "English language learners", _YES_NO, "no", _FLAG),
    ReportingGroup(
        "free_reduced_lunch",
        "program.free_reduced_lunch",
        "Eligible for free or reduced-price lunch",
        _YES_NO,
        "no",
        _FLAG,
    ),
)
REPORTING_BY_ELEMENT: dict[str, ReportingGroup] = {g.element: g for g in REPORTING_GROUPS}


def reporting_codes(values: dict[str, str]) -> dict[str, str]:
    """The group codes (dimension -> code) of the reportable elements among ``values``
    (element id -> plain value); elements the catalogue does not list give nothing."""
    return {g.dimension: g.code(values[g.element]) for g in REPORTING_GROUPS if g.element in values}


def element(element_id: str) -> DataElement:
    """The catalogue entry for an element id; KeyError names the unknown id."""
    try:
        return CATALOGUE[element_id]
    except KeyError:
        raise KeyError(f"unknown data element {element_id!r}") from None


def is_known(element_id: str) -> bool:
    return element_id in CATALOGUE


def by_sensitivity(*classes: Sensitivity) -> list[str]:
    return [e.id for e in ELEMENTS if e.sensitivity in classes]
