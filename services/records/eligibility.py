"""Who is an *eligible student* on a given day (FERPA 99.3, 99.5): 18 or older, or attending a
postsecondary institution. The rights FERPA gives parents then belong to the student (issue 24).

Computed here, where the birth date is kept sealed, so no other service reads it: consent asks
(`GET /v1/districts/{d}/student-names?on=`) and receives only the answer and its basis. Pure:
the day is an argument, so a test moves it across an 18th birthday."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from homeroom.contracts.student_directory import Eligibility, EligibilityBasis

ADULT_AGE = 18
# Grade levels that mean postsecondary education (Ed-Fi's GradeLevelDescriptor "Postsecondary",
# and the short forms SIS exports use).
POSTSECONDARY_GRADES = frozenset({"postsecondary", "ps", "college"})


def eighteenth_birthday(birth_date: date) -> date:
    try:
        return birth_date.replace(year=birth_date.year + ADULT_AGE)
    except ValueError:  # born on 29 February: of age on 1 March in a common year
        return date(birth_date.year + ADULT_AGE, 3, 1)


def eligibility(birth_date: date | None, current_grade_levels: Iterable[str], on: date) -> Eligibility:
    """The student's standing on `on` from the birth date (if held) and the grade levels of the
    enrollments current that day."""
    if any(g.strip().lower() in POSTSECONDARY_GRADES for g in current_grade_levels if g):
        return Eligibility(eligible=True, basis=EligibilityBasis.POSTSECONDARY)
    if birth_date is None:
        return Eligibility(eligible=None, basis=EligibilityBasis.UNKNOWN)
    of_age = eighteenth_birthday(birth_date)
    if on >= of_age:
        return Eligibility(eligible=True, basis=EligibilityBasis.AGE)
    return Eligibility(eligible=False, basis=EligibilityBasis.UNDER_AGE, eligible_from=of_age)
