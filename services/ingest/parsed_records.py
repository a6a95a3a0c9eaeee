"""The normalised record model: what every input format (JSON batch, Ed-Fi JSON, Ed-Fi XML,
OneRoster CSV) is turned into before validation. Pure domain code: no I/O.

Identity
--------
``student_ref`` is the identifier the *upload* uses for a student: the batch ``student_id``
(the district's local id), the Ed-Fi ``StudentUniqueId``, or the OneRoster user ``sourcedId``.
``Source.format`` says which. It is a raw identifier (PII, catalogue sensitivity
``identifier``): the service must pseudonymise it before anything leaves ingest.

``source_record_id`` is stable across resubmissions of the same fact (it is built from the
fact's natural key, never from its position in a file), so the service can drop a record it has
already taken. It embeds raw identifiers too: publish only ``pseudonymise(source_record_id,
district_key)``. ``fingerprint(key)`` hashes the content (not the position) so a resubmitted
record with changed content can be told apart from an exact repeat; pass the district's
pseudonymisation key so low-entropy content cannot be recovered by guessing.

Errors
------
``RecordError`` / ``RecordWarning`` name the file, line, field, rule id and a plain-language
message, plus ``value_class``: what *kind* of value was there ("empty", "9-digit number",
"ssn-like", "date", "text"), never the value itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from enum import StrEnum
from json.encoder import encode_basestring
from operator import attrgetter
from typing import Any, ClassVar, TypeAlias

from homeroom.calendar import Term


class RecordKind(StrEnum):
    STUDENT = "student"
    SCHOOL = "school"
    ENROLLMENT = "enrollment"
    ATTENDANCE = "attendance"
    SUSPENSION = "suspension"
    CALENDAR = "calendar"
    SECTION = "section"
    SESSION = "academic session"
    COURSE = "course"
    CLASS = "class"
    STAFF = "staff"
    TEACHING = "teacher class enrollment"


class EnrollmentAction(StrEnum):
    ENROLL = "enroll"
    WITHDRAW = "withdraw"
    CHANGE_SCHOOL = "change_school"


class AttendanceCategory(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"
    TARDY = "tardy"
    EARLY_DEPARTURE = "early_departure"
    PARTIAL = "partial"  # present for part of the day (Ed-Fi "Partial"): not an absent day


class OrgType(StrEnum):
    SCHOOL = "school"
    DISTRICT = "district"


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record came from. ``line`` is the 1-based line where it starts (0 if unknown);
    ``pointer`` locates it inside the file: ``records[17]``, ``users.csv``, ``Student``."""

    format: str
    file: str
    line: int
    pointer: str = ""


def record_id(fmt: str, kind: str, *parts: str) -> str:
    """A source_record_id from a natural key: ``fmt:kind:part/part``; '/' and '%' in parts are escaped."""
    key = "/".join(parts)
    # Most keys have neither character: then the plain join is the escaped one (one join, no
    # loop over the parts: every parsed record pays for this call).
    if "%" in key or key.count("/") != len(parts) - 1:
        key = "/".join([p.replace("%", "%25").replace("/", "%2F") for p in parts])
    return f"{fmt}:{kind}:{key}"


def pseudonymise(value: str, key: bytes) -> str:
    """Keyed, irreversible token for an identifier (HMAC-SHA256, hex, 32 chars)."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def _canon(value: Any) -> Any:
    if type(value) is str or value is None:  # most values: nothing to do
        return value
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in sorted(value.items())}
    if isinstance(value, frozenset | set):
        return sorted(_canon(v) for v in value)
    if isinstance(value, Term):
        return [value.name, value.begin.isoformat(), value.end.isoformat(), value.declared_days]
    if isinstance(value, tuple | list):
        return [_canon(v) for v in value]
    return value


_CONTENT_FIELDS: dict[type, tuple[str, ...]] = {}
# json.dumps with these arguments, made once (json.dumps builds an encoder on every call that
# passes any): the text every fingerprint hashes, so it must never change.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _content_fields(cls: type) -> tuple[str, ...]:
    """A record type's fields but where it came from (dataclasses.fields costs a walk per call)."""
    names = _CONTENT_FIELDS.get(cls)
    if names is None:
        names = _CONTENT_FIELDS[cls] = tuple(
            f.name for f in fields(cls) if f.name not in ("source", "source_record_id")
        )
    return names


@dataclass(frozen=True, slots=True)
class _FingerprintPlan:
    """The canonical JSON of a record type's content() laid out once: its keys sorted, each with
    the text before its value (``{"category":``, ``,"date":``; the constant ``"kind"`` pair folded
    into its neighbour), the values read by one attrgetter, and the text after the last value."""

    before: tuple[str, ...]
    values: Callable[[Any], tuple[Any, ...]]
    end: str


_FINGERPRINT_PLANS: dict[type, _FingerprintPlan] = {}


def _fingerprint_plan(cls: type) -> _FingerprintPlan:
    kind = encode_basestring(str(cls.kind))  # type: ignore[attr-defined]
    keys = sorted((*_content_fields(cls), "kind"))
    before: list[str] = []
    pending = "{"
    for k in keys:
        if k == "kind":
            pending += f"{encode_basestring(k)}:{kind},"
        else:
            before.append(f"{pending}{encode_basestring(k)}:")
            pending = ","
    names = [k for k in keys if k != "kind"]
    get = attrgetter(*names)
    values = get if len(names) > 1 else lambda record: (get(record),)  # one name: attrgetter gives the value
    plan = _FINGERPRINT_PLANS[cls] = _FingerprintPlan(tuple(before), values, pending[:-1] + "}")
    return plan


def _json_value(value: Any) -> str:
    """``value`` as the canonical encoder writes ``_canon(value)``: the common types directly."""
    t = type(value)
    if t is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is date:
        return f'"{value.isoformat()}"'
    if isinstance(value, StrEnum):
        return encode_basestring(str(value))
    if t is int or (t is float and math.isfinite(value)):  # the encoder writes NaN, Infinity
        return repr(value)
    if t is tuple:
        return "[" + ",".join([_json_value(v) for v in value]) + "]"
    if t is dict and all(type(k) is str for k in value):  # else str(key) may sort or read differently
        return "{" + ",".join([f"{encode_basestring(k)}:{_json_value(v)}" for k, v in sorted(value.items())]) + "}"
    return _CANONICAL_JSON.encode(_canon(value))


class _RecordMixin:
    """fingerprint() shared by every record type."""

    __slots__ = ()
    kind: ClassVar[RecordKind]

    def content(self) -> dict[str, Any]:
        """The record's content: every field except where it came from."""
        out: dict[str, Any] = {"kind": str(self.kind)}
        for name in _content_fields(type(self)):
            out[name] = _canon(getattr(self, name))
        return out

    def fingerprint(self, key: bytes = b"") -> str:
        """Content hash (BLAKE2b-128, hex) of content() as canonical JSON (keys sorted, compact,
        UTF-8), independent of file name and position.

        With ``key`` (up to 64 bytes) it is a keyed hash: use the district's pseudonymisation key."""
        plan = _FINGERPRINT_PLANS.get(type(self)) or _fingerprint_plan(type(self))
        text = "".join([b + _json_value(v) for b, v in zip(plan.before, plan.values(self), strict=True)]) + plan.end
        return hashlib.blake2b(text.encode(), digest_size=16, key=key[:64]).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Record(_RecordMixin):
    """Where every parsed record came from: the file position, and the id the record is known
    by across uploads (``record_id``: format, kind and the source's identifying fields)."""

    source: Source
    source_record_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StudentRecord(_Record):
    """Identity, demographics and program flags, keyed by catalogue element ids.

    ``elements`` holds ``student.*`` element ids (and ``enrollment.grade_level`` when the source
    gives a grade on the student) mapped to normalised text (dates ISO 8601). ``programs`` maps
    ``program.*`` element ids to True/False where the source said so. A record may be partial
    (e.g. OneRoster demographics.csv, Ed-Fi studentEducationOrganizationAssociations): the
    records service merges elements per student. ``schools`` lists schools the source ties the
    student to (used by the bulk-withdrawal safety rail when a student is deleted)."""

    kind: ClassVar[RecordKind] = RecordKind.STUDENT
    student_ref: str
    elements: Mapping[str, str] = field(default_factory=dict)
    programs: Mapping[str, bool] = field(default_factory=dict)
    schools: tuple[str, ...] = ()
    deleted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SchoolRecord(_Record):
    """A school (or the district itself, ``org_type=district``) as the upload describes it.
    ``parent_ref`` is the upload's id for the owning education agency, when given."""

    kind: ClassVar[RecordKind] = RecordKind.SCHOOL
    school_id: str
    org_type: OrgType = OrgType.SCHOOL
    name: str | None = None
    parent_ref: str | None = None
    nces_id: str | None = None
    grades: tuple[str, ...] = ()
    deleted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class _StudentAtSchool(_Record):
    """A fact about one student at one school (an enrollment, an attendance mark, a
    suspension): the student as the upload names them, and the school's id in the upload."""

    student_ref: str
    school_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EnrollmentRecord(_StudentAtSchool):
    """Enroll, withdraw or change school.

    enroll: ``school_id``, ``entry_date`` (``exit_date`` when the source gives a planned end).
    withdraw: ``school_id``, ``exit_date`` (may be None for a OneRoster ``tobedeleted`` row
    without dates), ``exit_code``; ``entry_date`` when the source repeats it.
    change_school: ``from_school_id`` -> ``school_id`` on ``entry_date``.
    ``class_ref`` is set for class/section enrollments (OneRoster enrollments.csv)."""

    kind: ClassVar[RecordKind] = RecordKind.ENROLLMENT
    action: EnrollmentAction
    entry_date: date | None = None
    exit_date: date | None = None
    exit_code: str | None = None
    grade_level: str | None = None
    entry_type: str | None = None
    from_school_id: str | None = None
    class_ref: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttendanceRecord(_StudentAtSchool):
    """One attendance event: daily when ``period`` is None, class-period otherwise.
    ``excused`` is None when the source does not say (e.g. Ed-Fi "Tardy")."""

    kind: ClassVar[RecordKind] = RecordKind.ATTENDANCE
    date: date
    category: AttendanceCategory
    excused: bool | None = None
    period: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SuspensionRecord(_StudentAtSchool):
    """A suspension: dates only (EngageNY FAQ; never incident details). ``end_date`` is
    inclusive; None when the source gives only a length (``school_days``)."""

    kind: ClassVar[RecordKind] = RecordKind.SUSPENSION
    start_date: date
    end_date: date | None = None
    in_school: bool | None = None
    school_days: float | None = None


class CalendarSource(StrEnum):
    """Where a calendar came from. A school's ``calendar`` (Ed-Fi sessions and calendar dates, a
    batch calendar) always wins over ``terms`` (OneRoster academic sessions), which count only
    where no calendar exists."""

    CALENDAR = "calendar"
    TERMS = "terms"


@dataclass(frozen=True, slots=True, kw_only=True)
class CalendarRecord(_Record):
    """Part of one school's calendar for one school year (``school_year``: the year it starts
    in, 2021 for 2021-2022): sessions and/or dated entries (instructional or not). Ingest
    gathers the parts of a school year across uploads and publishes the resolved calendar."""

    kind: ClassVar[RecordKind] = RecordKind.CALENDAR
    school_id: str
    school_year: int
    calendar_source: CalendarSource = CalendarSource.CALENDAR
    sessions: tuple[Term, ...] = ()
    days: tuple[tuple[date, bool], ...] = ()  # (date, instructional)


@dataclass(frozen=True, slots=True, kw_only=True)
class SectionRecord(_Record):
    """A class section (Ed-Fi MasterSchedule): read and checked against the district's
    schools; it carries no student data and makes no event."""

    kind: ClassVar[RecordKind] = RecordKind.SECTION
    school_id: str
    section_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord(_Record):
    """An academic session (OneRoster academicSessions: school year, term, semester, grading
    period), as vendors' apps see it. Not personal data; it also feeds calendars (CalendarRecord)."""

    kind: ClassVar[RecordKind] = RecordKind.SESSION
    session_id: str
    title: str
    session_type: str
    start_date: date
    end_date: date
    school_year: int
    parent_id: str | None = None
    deleted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CourseRecord(_Record):
    """A course (OneRoster courses; Ed-Fi Course/CourseOffering). ``school_id`` None: district-wide."""

    kind: ClassVar[RecordKind] = RecordKind.COURSE
    course_id: str
    title: str
    course_code: str | None = None
    school_id: str | None = None
    school_year_id: str | None = None
    grades: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    deleted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class _ClassAtSchool(_Record):
    """A fact about one class at one of the district's schools (the class itself, or who teaches it)."""

    class_id: str
    school_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassRecord(_ClassAtSchool):
    """A class (OneRoster classes; Ed-Fi Section) at one of the district's schools."""

    kind: ClassVar[RecordKind] = RecordKind.CLASS
    title: str
    class_code: str | None = None
    class_type: str = "scheduled"
    course_id: str | None = None
    term_ids: tuple[str, ...] = ()
    periods: tuple[str, ...] = ()
    grades: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    location: str | None = None
    deleted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StaffRecord(_Record):
    """A teacher or other staff member (OneRoster users with a staff role). ``elements`` hold only
    the catalogue's ``staff.*`` elements; ``staff_ref`` is the source's id, pseudonymised by the
    pipeline into a staff key and never stored or published."""

    kind: ClassVar[RecordKind] = RecordKind.STAFF
    staff_ref: str
    role: str
    schools: tuple[str, ...] = ()
    elements: Mapping[str, str] = field(default_factory=dict)
    deleted: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TeachingRecord(_ClassAtSchool):
    """A staff member's enrollment in a class (OneRoster enrollments with role teacher)."""

    kind: ClassVar[RecordKind] = RecordKind.TEACHING
    staff_ref: str
    primary: bool = False
    begin_date: date | None = None
    end_date: date | None = None
    deleted: bool = False


RosterRecord: TypeAlias = SessionRecord | CourseRecord | ClassRecord | StaffRecord | TeachingRecord

ParsedRecord: TypeAlias = (
    StudentRecord
    | SchoolRecord
    | EnrollmentRecord
    | AttendanceRecord
    | SuspensionRecord
    | CalendarRecord
    | SectionRecord
    | SessionRecord
    | CourseRecord
    | ClassRecord
    | StaffRecord
    | TeachingRecord
)


@dataclass(frozen=True, slots=True)
class Issue:
    """A problem with one input record. Never carries the offending value."""

    file: str
    line: int
    field: str
    rule: str
    message: str
    value_class: str = ""
    severity: ClassVar[str] = "issue"

    def as_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, **asdict(self)}


@dataclass(frozen=True, slots=True)
class RecordError(Issue):
    """The record was refused."""

    severity: ClassVar[str] = "error"


@dataclass(frozen=True, slots=True)
class RecordWarning(Issue):
    """The record was accepted, but something in it was dropped or looks wrong."""

    severity: ClassVar[str] = "warning"


@dataclass(frozen=True, slots=True)
class Dropped:
    """What Homeroom did not collect from one input record: element names only, never values.

    ``names`` are the elements dropped from a record that was read (the record itself comes
    next); ``record`` names a whole record type that was skipped (``count`` of them: one
    notice can stand for a whole interchange Homeroom does not use). The service adds these
    up and reports each name once per submission: "dropped N times (not collected by
    Homeroom)"."""

    file: str
    line: int
    names: tuple[str, ...] = ()
    record: str = ""
    count: int = 1

    @property
    def skipped(self) -> bool:
        return bool(self.record)


ParseItem: TypeAlias = ParsedRecord | RecordError | RecordWarning | Dropped


def error_at(source: Source, field: str, rule: str, message: str, value_class: str = "") -> RecordError:
    return RecordError(source.file, source.line, field, rule, message, value_class)


def warning_at(source: Source, field: str, rule: str, message: str, value_class: str = "") -> RecordWarning:
    return RecordWarning(source.file, source.line, field, rule, message, value_class)


# --- value classes: describe a value without revealing it -----------------------------------

_SSN_SHAPE = re.compile(r"\s*(\d{3})([- ]?)(\d{2})\2(\d{4})\s*")
_DATE_SHAPE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}(?:[T ].*)?")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def ssn_structure(area: str, group: str, serial: str) -> bool:
    """True when the parts could be a Social Security number as issued (SSA rules)."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def looks_like_ssn(value: str) -> bool:
    """The whole value is nine digits (optionally 3-2-4 with dashes or spaces) with SSN structure."""
    m = _SSN_SHAPE.fullmatch(value)
    return bool(m) and ssn_structure(m.group(1), m.group(3), m.group(4))  # type: ignore[union-attr]


def value_class(value: object) -> str:
    """A short description of what kind of value this is, safe to show anyone."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        if isinstance(value, int) and value >= 0:
            return f"{len(str(value))}-digit number"
        return "number"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "list"
    if not isinstance(value, str):
        return type(value).__name__
    s = value.strip()
    if not s:
        return "empty"
    if looks_like_ssn(s):
        return "ssn-like"
    if s.isdigit():
        return f"{len(s)}-digit number"
    if _DATE_SHAPE.fullmatch(s):
        return "date"
    if _NUMBER.fullmatch(s):
        return "number"
    if "@" in s and " " not in s:
        return "email-like text"
    return "text"
