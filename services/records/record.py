"""The student record as readers see it, and the element filter (pure: no I/O).

A record is assembled from opened (decrypted) values into one JSON document. Each part
of the document belongs to one catalogue element, so a reader whose decision allows some
elements gets exactly those parts and nothing else; `elements_present` names what a view
actually contains, which is what a disclosure records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from homeroom.catalogue import FORBIDDEN, STUDENT_ELEMENT_IDS

# Elements that a read may ask for: the catalogue less what never enters Homeroom.
READABLE_ELEMENTS: tuple[str, ...] = tuple(e for e in STUDENT_ELEMENT_IDS if e not in FORBIDDEN)

ENROLLMENT_FIELDS: dict[str, str] = {
    "school_id": "enrollment.school_id",
    "entry_date": "enrollment.entry_date",
    "exit_date": "enrollment.exit_date",
    "exit_code": "enrollment.exit_code",
    "grade_level": "enrollment.grade_level",
}

# Program flag names as ingest sends them, to the catalogue element that governs each.
PROGRAM_FLAG_ELEMENTS: dict[str, str] = {
    "iep": "program.iep",
    "section_504": "program.section_504",
    "ell": "program.ell",
    "free_reduced_lunch": "program.free_reduced_lunch",
}


@dataclass(slots=True)
class EnrollmentRow:
    school_id: str
    entry_date: date
    exit_date: date | None
    exit_code: str
    grade_level: str


@dataclass(slots=True)
class AttendanceRow:
    day: date
    period: str
    category: str
    excused: bool


@dataclass(slots=True)
class SuspensionRow:
    start_date: date
    end_date: date
    in_school: bool


# The sealed element a student's program flags are kept under (sealed on arrival, opened on a read).
PROGRAM_FLAGS_ELEMENT = "record.program_flags"


@dataclass(slots=True)
class OpenedRecord:
    """One student's record in one district, values opened."""

    student_key: str
    district_id: str
    updated_at: str
    elements: dict[str, str]
    enrollments: list[EnrollmentRow] = field(default_factory=list)
    attendance: list[AttendanceRow] = field(default_factory=list)
    suspensions: list[SuspensionRow] = field(default_factory=list)
    program_flags: list[str] = field(default_factory=list)
    # Each with the contested `element` and the district's decision (99.21): see statements_travelling.
    parent_statements: list[dict[str, Any]] = field(default_factory=list)
    amendments: list[dict[str, Any]] = field(default_factory=list)
    prior_records: list[dict[str, Any]] = field(default_factory=list)
    directory_opt_out: bool = False
    chronic_absence: bool = False
    absence: dict[str, Any] | None = None  # the absence reviewer's count (absence.py)


def attendance_summary(rows: Iterable[AttendanceRow], absence: dict[str, Any] | None = None) -> dict[str, Any]:
    """Marks as recorded (days with a daily mark, absences, tardies) and, from the absence
    reviewer, days enrolled by the school calendar and the absence rate over them. Without
    a calendar for a school the student attended, the rate is None and `calendar` says why."""
    daily = [r for r in rows if not r.period]
    absent = [r for r in daily if r.category == "absent"]
    out: dict[str, Any] = {
        "days_recorded": len({r.day for r in daily}),
        "days_absent": len(absent),
        "days_absent_unexcused": sum(1 for r in absent if not r.excused),
        "days_tardy": sum(1 for r in daily if r.category == "tardy"),
        "school_year": None,
        "days_enrolled": None,
        "absence_rate": None,
        "calendar": "not counted yet",
    }
    if absence is not None:
        known = bool(absence["calendar_known"])
        rate = absence["absence_rate"]
        out.update(
            school_year=absence["school_year"],
            days_enrolled=absence["days_enrolled"] if known else None,
            days_absent_enrolled=absence["days_absent"] if known else None,
            absence_rate=round(float(rate), 4) if known and rate is not None else None,
            calendar="known"
            if known
            else "no school calendar for "
            + (", ".join(absence["missing_calendars"]) or "the student's schools")
            + ": days enrolled cannot be counted and no chronic-absence flag is raised",
        )
    return out


def statements_travelling(record: OpenedRecord, released: Iterable[str]) -> list[dict[str, Any]]:
    """The parent's statements on any of the released elements (FERPA 99.21(b)(1)(ii))."""
    released = set(released)
    return [s for s in record.parent_statements if s.get("element") in released]


def _in_range(day: date, start: date | None, end: date | None) -> bool:
    return (start is None or day >= start) and (end is None or day <= end)


def build_view(
    record: OpenedRecord,
    allowed: Iterable[str] | None = None,
    *,
    start: date | None = None,
    end: date | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The record as JSON and the element names it contains.

    `allowed=None` is the full record (owning district's staff, parents): it also carries
    amendments, statements, prior records delivered by transfers and the opt-out flag.
    Otherwise only parts governed by an allowed element appear, and dated parts only for
    dates inside [start, end] (the agreement's term)."""
    full = allowed is None
    permitted = set(READABLE_ELEMENTS) if allowed is None else set(allowed)
    present: set[str] = set()
    view: dict[str, Any] = {"student_key": record.student_key, "district_id": record.district_id}

    elements = {k: v for k, v in sorted(record.elements.items()) if k in permitted}
    present.update(elements)
    view["elements"] = elements

    enrollments = []
    for row in record.enrollments:
        item = {
            name: getattr(row, name).isoformat() if isinstance(getattr(row, name), date) else getattr(row, name)
            for name, element in ENROLLMENT_FIELDS.items()
            if element in permitted
        }
        if item:
            enrollments.append(item)
            present.update(e for n, e in ENROLLMENT_FIELDS.items() if n in item and getattr(row, n) not in (None, ""))
    view["enrollments"] = enrollments

    attendance: dict[str, Any] = {}
    rows = [r for r in record.attendance if _in_range(r.day, start, end)]
    if "attendance.daily" in permitted:
        attendance["days"] = [
            {"date": r.day.isoformat(), "category": r.category, "excused": r.excused} for r in rows if not r.period
        ]
        if attendance["days"]:
            present.add("attendance.daily")
    if "attendance.period" in permitted:
        attendance["periods"] = [
            {"date": r.day.isoformat(), "period": r.period, "category": r.category, "excused": r.excused}
            for r in rows
            if r.period
        ]
        if attendance["periods"]:
            present.add("attendance.period")
    if "attendance.summary" in permitted:
        attendance["summary"] = {**attendance_summary(rows, record.absence), "chronic_absence": record.chronic_absence}
        if rows:
            present.add("attendance.summary")
    view["attendance"] = attendance

    if "discipline.suspension_dates" in permitted:
        view["suspension_dates"] = [
            {"start_date": s.start_date.isoformat(), "end_date": s.end_date.isoformat(), "in_school": s.in_school}
            for s in record.suspensions
            if _in_range(s.start_date, start, end)
        ]
        if view["suspension_dates"]:
            present.add("discipline.suspension_dates")

    flags = []
    for flag in record.program_flags:
        element = PROGRAM_FLAG_ELEMENTS.get(flag)
        if full or (element is not None and element in permitted):
            flags.append(flag)
            if element is not None:
                present.add(element)
    view["program_flags"] = flags

    # FERPA 99.21(b)(1)(ii): a parent's statement on a contested element goes with every
    # disclosure of that element, whoever receives it, with the district's decision.
    statements = (
        list(record.parent_statements)
        if "record.parent_statement" in permitted
        else [s for s in record.parent_statements if s.get("element") in present]
    )
    if statements or "record.parent_statement" in permitted:
        view["parent_statements"] = statements
    if statements:
        present.add("record.parent_statement")

    if full:
        view["amendments"] = list(record.amendments)
        view["prior_records"] = list(record.prior_records)
        view["directory_opt_out"] = record.directory_opt_out
    view["updated_at"] = record.updated_at
    return view, sorted(present)
