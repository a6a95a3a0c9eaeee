"""Use case: what a transfer withholds (the decision's elements re-checked against the
catalogue, and the package records sends back kept to what was released).

This is the code the policy work of issue 20 (item 3) replaces with the one policy engine;
it moved here whole from `worker.py`, its rules unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeroom.catalogue import element as catalogue_element
from homeroom.catalogue import is_known
from services.transfer.clients import PeerError
from services.transfer.store import Case

# Sections of a records package and the elements that allow each to travel.
_SECTION_ELEMENTS: dict[str, tuple[str, ...]] = {
    "enrollments": (
        "enrollment.school_id",
        "enrollment.entry_date",
        "enrollment.exit_date",
        "enrollment.exit_code",
        "enrollment.grade_level",
    ),
    "suspension_dates": ("discipline.suspension_dates",),
    "parent_statements": ("record.parent_statement",),
}


class BadAnswer(PeerError):
    def __init__(self, peer: str, message: str) -> None:
        super().__init__(peer, message, retryable=True)


def keep_transferable(allowed_raw: Sequence[Any], withheld: list[dict[str, str]]) -> list[str]:
    """The elements consent allowed that the catalogue lets travel; the others are added to
    `withheld` with the catalogue's reason."""
    allowed: list[str] = []
    for e in allowed_raw:
        name = str(e)
        if not is_known(name):
            withheld.append({"element": name, "reason": "not in the data-element catalogue"})
        elif not catalogue_element(name).transferable:
            withheld.append({"element": name, "reason": "never transferable (catalogue)"})
        else:
            allowed.append(name)
    return allowed


def filter_package(raw: dict[str, Any], case: Case) -> tuple[dict[str, Any], list[str]]:
    """Keep only what the decision released, whatever records sent back (defence in depth).
    Returns the package and the element ids it carries."""
    if raw.get("case_id") != case.case_id or raw.get("student_key") != case.student_key:
        raise BadAnswer("records", "the package names another case or student")
    released = set(case.elements_released)
    values = raw.get("elements") or {}
    if not isinstance(values, dict):
        raise BadAnswer("records", "package 'elements' is not an object")
    elements = {k: v for k, v in values.items() if k in released}
    package: dict[str, Any] = {
        "case_id": case.case_id,
        "student_key": case.student_key,
        "from_district_id": case.from_district_id,
        "elements": elements,
    }
    for section, needs in _SECTION_ELEMENTS.items():
        if released.intersection(needs):
            package[section] = raw.get(section) or []
        else:
            package[section] = []
    attendance = raw.get("attendance") or {}
    package["attendance"] = {
        "days": attendance.get("days", []) if "attendance.daily" in released and isinstance(attendance, dict) else [],
        "summary": attendance.get("summary", {})
        if "attendance.summary" in released and isinstance(attendance, dict)
        else {},
    }
    flags = raw.get("program_flags") or []
    package["program_flags"] = [
        f for f in flags if isinstance(f, str) and (f in released or f"program.{f}" in released)
    ]
    included = sorted(set(elements) | {e for e in raw.get("elements_included") or [] if e in released})
    package["elements_included"] = included
    # Not an element: the parent's choice, which travels with the record and binds the receiving district.
    package["directory_opt_out"] = raw.get("directory_opt_out") is True
    return package, included
