"""Code lists and value normalisation shared by the parsers. Pure; no I/O.

Normalised vocabularies (what records carry, whatever the input format):

* grade levels: the CEDS / OneRoster codes ``IT PR PK TK KG 01..13 PS UG Other``; Ed-Fi
  GradeLevelDescriptor names ("Ninth grade", "Kindergarten", ...) are mapped onto them;
* sex: ``female male other unspecified``;
* race / ethnicity: a ``;``-joined sorted set of ``american_indian_alaska_native asian
  black_african_american native_hawaiian_pacific_islander white hispanic_latino
  two_or_more other not_reported``;
* attendance: :class:`AttendanceCategory` plus ``excused``.
"""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache

from services.ingest.parsed_records import AttendanceCategory

# What the normalise_* functions accept, as the parsers' messages name it.
GRADES_ACCEPTED = "IT, PR, PK, TK, KG, 01-13, PS, UG, Other, or an Ed-Fi grade level"
SEX_ACCEPTED = "female, male, other, unspecified"
RACE_ACCEPTED = (
    "american_indian_alaska_native, asian, black_african_american, native_hawaiian_pacific_islander, "
    "white, hispanic_latino, two_or_more, other, not_reported"
)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:T[0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)?")


@lru_cache(maxsize=4096)  # a file repeats few dates (its school days, birth years): parse each once
def parse_date(text: str) -> date | None:
    """A real calendar date from ``YYYY-MM-DD`` (a trailing ISO time is tolerated and dropped).
    None when the text is not in that form or the day does not exist (2023-02-30)."""
    m = _DATE.fullmatch(text.strip())
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def descriptor_code(value: str) -> str:
    """The code value of an Ed-Fi descriptor URI (``uri://ed-fi.org/XDescriptor#Code`` -> ``Code``)."""
    return value.rsplit("#", 1)[-1].strip()


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def match_key(text: str) -> str:
    """Letters and digits only, lower case: how code values are compared ("Free Lunch" = "free-lunch")."""
    return _key(text)


GRADE_LEVELS: frozenset[str] = frozenset(
    ["IT", "PR", "PK", "TK", "KG", *(f"{n:02d}" for n in range(1, 14)), "PS", "UG", "Other"]
)
_ORDINALS = [
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
    "eleventh", "twelfth",
]  # fmt: skip
_GRADE_ALIASES: dict[str, str] = {
    "infanttoddler": "IT",
    "earlyeducation": "PR",
    "preschool": "PR",
    "preschoolprekindergarten": "PK",
    "prekindergarten": "PK",
    "transitionalkindergarten": "TK",
    "kindergarten": "KG",
    "k": "KG",
    "grade13": "13",
    "postsecondary": "PS",
    "ungraded": "UG",
    "nogradelevel": "UG",
    "outofschool": "Other",
    "adulteducation": "Other",
    "other": "Other",
}
for _i, _word in enumerate(_ORDINALS, start=1):
    _GRADE_ALIASES[f"{_word}grade"] = f"{_i:02d}"
    _GRADE_ALIASES[f"grade{_i}"] = f"{_i:02d}"


def normalise_grade(text: str) -> str | None:
    """CEDS grade code for a OneRoster code, a bare number or an Ed-Fi grade descriptor; None if unknown."""
    raw = descriptor_code(text)
    if raw in GRADE_LEVELS:
        return raw
    upper = raw.upper()
    if upper in GRADE_LEVELS:
        return upper
    if raw.isdigit() and 1 <= int(raw) <= 13:
        return f"{int(raw):02d}"
    return _GRADE_ALIASES.get(_key(raw))


_SEX: dict[str, str] = {
    "f": "female",
    "female": "female",
    "m": "male",
    "male": "male",
    "x": "other",
    "other": "other",
    "nonbinary": "other",
    "notselected": "unspecified",
    "unspecified": "unspecified",
    "unknown": "unspecified",
}


def normalise_sex(text: str) -> str | None:
    return _SEX.get(_key(descriptor_code(text)))


RACE_CODES: frozenset[str] = frozenset(
    [
        "american_indian_alaska_native",
        "asian",
        "black_african_american",
        "native_hawaiian_pacific_islander",
        "white",
        "hispanic_latino",
        "two_or_more",
        "other",
        "not_reported",
    ]
)
_RACE: dict[str, str] = {
    "americanindianalaskanative": "american_indian_alaska_native",
    "americanindianalaskannative": "american_indian_alaska_native",
    "americanindianoralaskanative": "american_indian_alaska_native",
    "asian": "asian",
    "blackafricanamerican": "black_african_american",
    "blackorafricanamerican": "black_african_american",
    "nativehawaiianpacificislander": "native_hawaiian_pacific_islander",
    "nativehawaiianorotherpacificislander": "native_hawaiian_pacific_islander",
    "white": "white",
    "hispaniclatino": "hispanic_latino",
    "hispanicorlatino": "hispanic_latino",
    "twoormoreraces": "two_or_more",
    "other": "other",
    "choosenottorespond": "not_reported",
    "notreported": "not_reported",
}


def normalise_race(text: str) -> str | None:
    code = descriptor_code(text)
    if code in RACE_CODES:
        return code
    return _RACE.get(_key(code))


def join_codes(codes: set[str]) -> str:
    return ";".join(sorted(codes))


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def parse_bool(text: str) -> bool | None:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    return None


# Ed-Fi AttendanceEventCategoryDescriptor code values (and common district variants).
_EDFI_ATTENDANCE: dict[str, tuple[AttendanceCategory, bool | None]] = {
    "inattendance": (AttendanceCategory.PRESENT, None),
    "present": (AttendanceCategory.PRESENT, None),
    "excusedabsence": (AttendanceCategory.ABSENT, True),
    "unexcusedabsence": (AttendanceCategory.ABSENT, False),
    "absent": (AttendanceCategory.ABSENT, None),
    "tardy": (AttendanceCategory.TARDY, None),
    "excusedtardy": (AttendanceCategory.TARDY, True),
    "unexcusedtardy": (AttendanceCategory.TARDY, False),
    "earlydeparture": (AttendanceCategory.EARLY_DEPARTURE, None),
    "partial": (AttendanceCategory.PARTIAL, None),
}


def edfi_attendance(text: str) -> tuple[AttendanceCategory, bool | None] | None:
    return _EDFI_ATTENDANCE.get(_key(descriptor_code(text)))


# Ed-Fi DisciplineDescriptor code values that are suspensions, and whether in school.
def edfi_suspension(text: str) -> bool | str | None:
    """True: in-school suspension; False: out-of-school; "other": not a suspension."""
    k = _key(descriptor_code(text))
    if "suspension" not in k:
        return "other"
    if "inschool" in k:
        return True
    if "outofschool" in k:
        return False
    return None


# Every standard Ed-Fi StudentIdentificationSystemDescriptor: the catalogue element it fills, or
# None when Homeroom does not collect it (dropped). SSN systems are refused (screening.is_ssn_system).
STUDENT_ID_SYSTEMS: dict[str, str | None] = {
    "State": "student.state_id",
    "District": "student.local_id",
    "Local": "student.local_id",
    "School": "student.local_id",
    "Student Number": "student.local_id",
    "Canadian SIN": None,
    "Family": None,
    "Federal": None,
    "National Migrant": None,
    "State Migrant": None,
    "Other": None,
    "SSN": None,  # refused before it is looked up
}


# Identification systems (Ed-Fi StudentIdentificationSystemDescriptor, OneRoster userIds types).
def id_system_element(system: str) -> str | None:
    """The catalogue element an identification system maps to, or None if not accepted."""
    k = _key(descriptor_code(system))
    if k in ("state", "stateid", "statestudentid"):
        return "student.state_id"
    if k in ("district", "local", "localid", "sis", "school", "districtid", "studentnumber"):
        return "student.local_id"
    return None


# Ed-Fi CalendarEventDescriptor code values (DS 2.0 CalendarEventMapType and the 3+ descriptors):
# True when students are taught that day.
CALENDAR_EVENTS: dict[str, bool] = {
    "instructionalday": True,
    "makeupday": True,
    "studentlatearrivalearlydismissal": True,
    "emergencyday": False,
    "holiday": False,
    "other": False,
    "strike": False,
    "teacheronlyday": False,
    "weatherday": False,
    "noninstructionalday": False,
}


def calendar_event_instructional(text: str) -> bool | None:
    """Whether an Ed-Fi calendar event is a day of instruction; None for a code not in the list."""
    return CALENDAR_EVENTS.get(_key(descriptor_code(text)))
