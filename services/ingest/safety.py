"""The bulk-replace safety rail: an upload that would withdraw more than a set share of a
school's students is held for a person to confirm. Pure computation; no I/O.

A OneRoster bulk file missing half a school (a truncated export, a wrong filter in the SIS)
would otherwise withdraw half the school. The service counts, per school, the distinct students
the upload withdraws — explicit withdrawals, ``tobedeleted`` enrollments and users, school
changes away, and for bulk files the students on record who are absent from the file — and asks
:func:`schools_over_share` which schools to hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from services.ingest.parsed_records import EnrollmentAction, EnrollmentRecord, ParseItem, StudentRecord

DEFAULT_MAX_SHARE = 0.10


@dataclass(frozen=True, slots=True)
class HeldSchool:
    school_id: str
    enrolled: int  # students enrolled now, on record
    withdrawn: int  # distinct students the upload would withdraw
    share: float  # withdrawn / enrolled (1.0 when nobody is on record)


@dataclass(slots=True)
class WithdrawalTally:
    """Counts distinct students withdrawn per school while records stream past."""

    _by_school: dict[str, set[str]] = field(default_factory=dict)

    def add(self, item: ParseItem) -> None:
        if isinstance(item, EnrollmentRecord):
            if item.action is EnrollmentAction.WITHDRAW:
                self._by_school.setdefault(item.school_id, set()).add(item.student_ref)
            elif item.action is EnrollmentAction.CHANGE_SCHOOL and item.from_school_id:
                self._by_school.setdefault(item.from_school_id, set()).add(item.student_ref)
        elif isinstance(item, StudentRecord) and item.deleted:
            for school in item.schools:
                self._by_school.setdefault(school, set()).add(item.student_ref)

    def add_all(self, items: Iterable[ParseItem]) -> WithdrawalTally:
        for item in items:
            self.add(item)
        return self

    def counts(self) -> dict[str, int]:
        return {school: len(students) for school, students in self._by_school.items()}


def implied_bulk_withdrawals(
    enrolled_now: Mapping[str, AbstractSet[str]], present_in_upload: Mapping[str, AbstractSet[str]]
) -> dict[str, int]:
    """For a bulk (full replace) upload: per school, students on record whom the file leaves out."""
    out: dict[str, int] = {}
    for school, students in enrolled_now.items():
        missing = len(students - present_in_upload.get(school, frozenset()))
        if missing:
            out[school] = missing
    return out


def merge_counts(*counts: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for school, n in c.items():
            out[school] = out.get(school, 0) + n
    return out


def schools_over_share(
    enrolled: Mapping[str, int],
    withdrawals: Mapping[str, int],
    *,
    max_share: float = DEFAULT_MAX_SHARE,
    min_withdrawals: int = 1,
) -> list[HeldSchool]:
    """Schools where the upload withdraws strictly more than ``max_share`` of the students enrolled.

    A school with fewer than ``min_withdrawals`` withdrawals is never held (so a two-student
    school losing one student can be let through by raising it). Withdrawals from a school with
    nobody on record count as a share of 1.0: nothing can be checked, so a person decides.
    Sorted by share, largest first."""
    if not 0.0 <= max_share <= 1.0:
        raise ValueError("max_share must be between 0 and 1")
    held: list[HeldSchool] = []
    for school, withdrawn in withdrawals.items():
        if withdrawn <= 0 or withdrawn < min_withdrawals:
            continue
        now = max(enrolled.get(school, 0), 0)
        share = 1.0 if now == 0 else withdrawn / now
        if share > max_share:
            held.append(HeldSchool(school, now, withdrawn, share))
    held.sort(key=lambda h: (-h.share, h.school_id))
    return held
