"""`GET /v1/districts/{d}/student-names` (records), as consent asks it when a district issues
linking codes (issue 24): each of the district's own students named, and, when asked `on` a
day, whether the student is an *eligible student* that day (FERPA 99.3, 99.5: 18 or older, or
attending a postsecondary institution), computed by records from the birth date and enrollment
it keeps sealed, so the birth date itself never leaves records."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import BaseModel


class EligibilityBasis(StrEnum):
    AGE = "age_18"  # 18 or older on the day asked (the record's birth date)
    POSTSECONDARY = "postsecondary"  # a current enrollment at the postsecondary grade level
    UNDER_AGE = "under_18"  # younger than 18 on the day asked and not in postsecondary education
    UNKNOWN = "unknown"  # no birth date and no postsecondary enrollment: the district attests


class Eligibility(BaseModel):
    eligible: bool | None  # None: Homeroom holds no data to decide (the district's attestation counts)
    basis: EligibilityBasis
    eligible_from: date | None = None  # the 18th birthday, when a birth date is held and it is later


class DistrictStudents(BaseModel):
    district_id: str
    names: dict[str, str]
    eligibility: dict[str, Eligibility] = {}  # only when asked `on` a day
