"""Homeroom's own JSON batch: the district's events, one array, streamed record by record.

Schema (``homeroom.batch`` version 1)::

    {
      "format": "homeroom.batch",          optional; when present must be exactly this
      "version": 1,                        optional; when present must be 1
      "records": [ <record>, ... ]         required; read one element at a time
    }

Every record is an object with ``"type"`` and ``"student_id"`` (the district's local student
id, text) and, optionally, ``"id"``: the district's own id for this event. With ``id`` the
record's ``source_record_id`` is ``batch:<type>:<id>``; without it, the natural key of the fact
(e.g. student, school and entry date) is used, so a resubmitted file yields the same ids.

=============  =====================================================================================
type           fields (R = required)
=============  =====================================================================================
student        student (R, object, see below)
enroll         school_id (R), entry_date (R), grade_level, entry_type, student (object: registers
               or updates the student in the same step)
withdraw       school_id (R), exit_date (R), exit_code (R, the district's withdrawal code), entry_date
change_school  from_school_id (R), to_school_id (R), change_date (R), grade_level
attendance     school_id (R), date (R), category (R: absent | tardy | early_departure | present),
               excused (true/false), period (class period; omit or null for daily attendance)
suspension     school_id (R), start_date (R), end_date (inclusive), in_school (true/false).
               Dates only: incident details are refused (element.forbidden).
calendar       no student_id. school_id (R), school_year (R: "2024-2025"), terms (a list of
               {name, begin_date, end_date, instructional_days}: every weekday in a term is a
               school day) and/or days (a list of {date, instructional: true/false}: school days
               and days off; without terms, the days marked instructional are the calendar)
academic_      no student_id. session_id (R), title (R), session_type (R: schoolYear | term |
session        semester | gradingPeriod), start_date (R), end_date (R), school_year (R: "2024-2025"),
               parent_id
course         no student_id. course_id (R), title (R), course_code, school_id (omit: district-wide),
               grades, subjects (lists of text)
class          no student_id. class_id (R), school_id (R), title (R), class_code, class_type
               (homeroom | scheduled), course_id, term_ids, periods, grades, subjects, location
staff          no student_id. staff_id (R, the district's staff id: pseudonymised, never kept),
               role (teacher | aide | administrator), school_ids, staff (R: an object of staff
               elements: staff.first_name (R), staff.last_name (R), staff.email, staff.identifier)
class_         class_id (R), school_id (R), role (R: student | teacher), student_id (R for a student)
enrollment     or staff_id (R for a teacher), begin_date (R for a student), end_date, primary
=============  =====================================================================================

``student`` objects are keyed by data-element ids from :mod:`homeroom.catalogue`:
``student.state_id student.local_id student.first_name student.middle_name student.last_name
student.birth_date student.email student.address student.phone student.sex
student.race_ethnicity student.home_language`` (text; ``birth_date`` as YYYY-MM-DD; ``sex`` one
of female/male/other/unspecified; ``race_ethnicity`` a code or a list of codes) and
``program.iep program.section_504 program.ell program.free_reduced_lunch`` (true/false).
``student.local_id``, when given, must equal ``student_id``.

Dates are ``YYYY-MM-DD``. Any other member is refused: an element id the catalogue does not
know (``element.unknown``), a forbidden one such as ``student.ssn`` (``ssn.forbidden``), or a
catalogue element that does not belong in that place (``element.not_allowed_here``). Errors
name the field by path, e.g. ``records[17].entry_date``, and give the line where the record
starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import IO, Any

from homeroom.calendar import Term, parse_school_year
from homeroom.catalogue import CATALOGUE, FORBIDDEN
from services.ingest import codes, formats
from services.ingest import parsed_records as pr
from services.ingest.formats import DEFAULT_OPTIONS, Check, Field, Made, ParseOptions, Rule
from services.ingest.formats._jsonstream import DuplicateKeys, JsonReader, JsonSyntaxError, NonFinite, Oversized
from services.ingest.parsed_records import ParseItem, RecordError, Source, record_id
from services.ingest.screening import SSN_MESSAGE, is_ssn_field, name_words

FORMAT = "batch"
FORMAT_NAME = "homeroom.batch"

_COMMON = {"type", "id", "student_id"}
FIELDS: dict[str, set[str]] = {
    "student": _COMMON | {"student"},
    "enroll": _COMMON | {"school_id", "entry_date", "grade_level", "entry_type", "student"},
    "withdraw": _COMMON | {"school_id", "exit_date", "exit_code", "entry_date"},
    "change_school": _COMMON | {"from_school_id", "to_school_id", "change_date", "grade_level"},
    "attendance": _COMMON | {"school_id", "date", "category", "excused", "period"},
    "suspension": _COMMON | {"school_id", "start_date", "end_date", "in_school"},
    "calendar": {"type", "id", "school_id", "school_year", "terms", "days"},
    # Rosters (issue 23): no student_id, except a student's class enrollment.
    "academic_session": {"type", "id", "session_id", "title", "session_type", "start_date", "end_date",
                         "school_year", "parent_id"},
    "course": {"type", "id", "course_id", "title", "course_code", "school_id", "grades", "subjects"},
    "class": {"type", "id", "class_id", "school_id", "title", "class_code", "class_type", "course_id",
              "term_ids", "periods", "grades", "subjects", "location"},
    "staff": {"type", "id", "staff_id", "role", "school_ids", "staff"},
    "class_enrollment": {"type", "id", "class_id", "school_id", "role", "student_id", "staff_id", "begin_date",
                         "end_date", "primary"},
}  # fmt: skip
ROSTER_TYPES = frozenset(["academic_session", "course", "class", "staff"])
SESSION_TYPES = ("schoolYear", "term", "semester", "gradingPeriod")
STAFF_ROLES = ("teacher", "aide", "administrator")
STUDENT_TEXT_ELEMENTS = (
    "student.state_id",
    "student.local_id",
    "student.first_name",
    "student.middle_name",
    "student.last_name",
    "student.email",
    "student.phone",
    "student.home_language",
)
PROGRAM_ELEMENTS = ("program.iep", "program.section_504", "program.ell", "program.free_reduced_lunch")
_INCIDENT_WORDS = {
    "incident",
    "incidents",
    "reason",
    "description",
    "behavior",
    "behaviour",
    "offense",
    "offence",
    "narrative",
    "notes",
    "weapon",
    "injury",
    "details",
}
_CATEGORIES = {c.value: c for c in pr.AttendanceCategory}
_SCALARS = frozenset([str, int, float, bool, type(None)])  # JSON values that hold nothing to check


def parse_batch(
    stream: IO[bytes], *, file: str = "batch.json", opts: ParseOptions = DEFAULT_OPTIONS
) -> Iterator[ParseItem]:
    """Yield normalised records, errors and warnings from a JSON batch, in input order."""
    counter = formats.Counter(file, opts, formats.stream_size(stream))
    reader = JsonReader(formats.CountingReader(stream), opts.max_record_bytes)

    def bytes_read() -> int:
        return reader.bytes_read

    seen_records = False
    try:
        reader.expect("{")
        if reader.peek() == "}":
            reader.expect("}")
        else:
            while True:
                key = reader.key()
                reader.expect(":")
                if key == "records":
                    seen_records = True
                    if reader.peek() != "[":
                        reader.value()
                        yield formats.file_error(
                            file, "schema.type", "'records' must be a list of records.", reader.line, "records"
                        )
                    else:
                        reader.expect("[")
                        for index, line, value in reader.array_items():
                            yield from _record(value, index, line, file, opts)
                            counter.row(bytes_read)
                else:
                    yield from _envelope_member(key, reader.value(limit=1 << 16), file, reader.line)
                if reader.expect(",}") == "}":
                    break
        if not reader.at_end():
            raise reader.error("there is more text after the end of the batch object")
    except JsonSyntaxError as exc:
        yield exc.refusal(file, "Records")
        counter.done(reader.bytes_read)
        return
    if not seen_records:
        yield formats.file_error(file, "schema.required", "The batch has no 'records' list.", 1, "records")
    counter.done(reader.bytes_read)


def _envelope_member(key: str, value: Any, file: str, line: int) -> Iterator[RecordError]:
    if key == "format":
        if value != FORMAT_NAME:
            yield formats.file_error(file, "schema.invalid", f"'format' must be \"{FORMAT_NAME}\".", line, "format")
    elif key == "version":
        if value != 1 or isinstance(value, bool):
            yield formats.file_error(
                file, "schema.invalid", "'version' must be 1: this is the only batch version.", line, "version"
            )
    else:
        src = Source(FORMAT, file, line, "")
        check = Check(src)
        check.unknown(key, value if value is not None else "x", what=" at the top of a batch")
        yield from check.errors


def _record(value: Any, index: int, line: int, file: str, opts: ParseOptions) -> Sequence[ParseItem]:
    pointer = f"records[{index}]"
    src = Source(FORMAT, file, line, pointer)
    check = Check(src, pointer + ".", opts)
    if isinstance(value, Oversized):
        check.fail("", "record.too_large", f"The record is larger than {opts.max_record_bytes} bytes and was skipped.")
        return check.errors
    if type(value) is not dict and not isinstance(value, Mapping):
        check.fail("", "schema.type", "Each record must be an object with a 'type'.", value)
        return check.errors
    _structure(check, value)
    rtype = value.get("type")
    if not isinstance(rtype, str) or rtype not in FIELDS:
        if rtype is None:
            check.fail("type", "schema.required", "type is required: one of " + ", ".join(FIELDS) + ".", rtype)
        else:
            check.fail("type", "record.type_unknown", "type must be one of " + ", ".join(FIELDS) + ".", rtype)
        return check.errors
    allowed = FIELDS[rtype]
    if not allowed.issuperset(value):  # most records: every member in place, no Python loop
        for key, v in value.items():
            if key not in allowed:
                _refuse_member(check, rtype, key, v)
    event_id = check.text("id", value["id"], max_len=128) if "id" in value else None
    made: Made
    if rtype in _ROSTER_BUILDERS:
        made = _ROSTER_BUILDERS[rtype](check, src, value, event_id)
    else:
        student = check.text("student_id", value.get("student_id"), required=True)
        made = _BUILDERS[rtype](check, src, value, event_id, student or "")
    return formats.issues_then(check, made)


def _structure(check: Check, value: Mapping[str, Any]) -> None:
    """Duplicate member names and NaN/Infinity anywhere in the record."""
    if type(value) is dict and _SCALARS.issuperset(map(type, value.values())):
        return  # most records: a flat object of plain values, nothing to look into (no Python loop)
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, DuplicateKeys):
            for k in v.duplicates:
                check.fail(f"{path}{k}", "schema.duplicate_member", f"'{k}' appears more than once in the same object.")
        if isinstance(v, Mapping):
            stack.extend((f"{path}{k}.", x) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}].", x) for i, x in enumerate(v))
        elif isinstance(v, NonFinite):
            check.fail(path.rstrip("."), "schema.type", "NaN and Infinity are not valid JSON numbers.", "number")


def _refuse_member(check: Check, rtype: str, key: str, value: Any) -> None:
    if is_ssn_field(key) or key == "student.ssn":
        if key == "student.ssn" and not check.forbid_ssn_field(key, value):
            check.fail(key, "ssn.forbidden", SSN_MESSAGE, value)
        else:
            check.forbid_ssn_field(key, value)
        return
    words = set(name_words(key))
    if key in FORBIDDEN or (rtype == "suspension" and words & _INCIDENT_WORDS):
        element = key if key in FORBIDDEN else "discipline.incident_details"
        check.forbidden(key, element, FORBIDDEN[element].rstrip("."), value)
        return
    if key in CATALOGUE or key in {f for fs in FIELDS.values() for f in fs}:
        check.fail(key, "element.not_allowed_here", f"'{key}' does not belong in a '{rtype}' record.", value)
        return
    check.unknown(key, value if value is not None else "x", what=f" in a '{rtype}' record")


def _student_elements(check: Check, student_id: str, raw: Any, *, required: bool) -> pr.StudentRecord | bool | None:
    """Read a ``student`` object into (elements, programs). Returns False if absent."""
    if raw is None:
        if required:
            check.fail("student", "schema.required", "student is required: an object of student data elements.")
        return False
    if not isinstance(raw, Mapping):
        check.fail("student", "schema.type", "student must be an object keyed by data-element ids.", raw)
        return None
    elements: dict[str, str] = {}
    programs: dict[str, bool] = {}
    for key, v in raw.items():
        field = f"student.{key}"
        if key in STUDENT_TEXT_ELEMENTS:
            s = check.text(field, v, what=key)
            if s is not None:
                elements[key] = s
        elif key == "student.address":
            s = check.text(field, v, max_len=1000, free_text=True, what=key)
            if s is not None:
                elements[key] = s
        elif key == "student.birth_date":
            d = check.date(field, v, what=key)
            if d is not None:
                elements[key] = d.isoformat()
        elif key == "student.sex":
            code = check.code(field, v, codes.normalise_sex, accepted=codes.SEX_ACCEPTED, what=key)
            if code is not None:
                elements[key] = code
        elif key == "student.race_ethnicity":
            race = _race(check, field, v)
            if race is not None:
                elements[key] = race
        elif key in PROGRAM_ELEMENTS:
            b = check.boolean(field, v, what=key)
            if b is not None:
                programs[key] = b
        elif key == "student.ssn" or is_ssn_field(key):
            if not check.forbid_ssn_field(field, v) and key == "student.ssn":
                check.fail(field, "ssn.forbidden", SSN_MESSAGE, v)
        elif key in FORBIDDEN:
            check.forbidden(field, key, FORBIDDEN[key].rstrip("."), v)
        elif key in CATALOGUE:
            check.fail(
                field, "element.not_allowed_here", f"'{key}' is not a student element; it cannot go in 'student'.", v
            )
        else:
            check.unknown(field, v if v is not None else "x", what=" in a student")
    local = elements.get("student.local_id")
    if local is not None and student_id and local != student_id:
        check.fail(
            "student.student.local_id", "schema.inconsistent", "student.local_id must equal the record's student_id."
        )
    if student_id:
        elements.setdefault("student.local_id", student_id)
    return pr.StudentRecord(
        source=check.source,
        source_record_id="",
        student_ref=student_id,
        elements=elements,
        programs=programs,
    )


def _race(check: Check, field: str, v: Any) -> str | None:
    values = v if isinstance(v, list) else [v]
    out: set[str] = set()
    for i, item in enumerate(values):
        f = f"{field}[{i}]" if isinstance(v, list) else field
        code = check.code(f, item, codes.normalise_race, accepted=codes.RACE_ACCEPTED, what="student.race_ethnicity")
        if code is not None:
            out.add(code)
    return codes.join_codes(out) if out else None


def _with_id(student: pr.StudentRecord, rid: str) -> pr.StudentRecord:
    return replace(student, source_record_id=rid)


def _student(
    check: Check, src: Source, value: Mapping[str, Any], event_id: str | None, sid: str
) -> pr.StudentRecord | None:
    student = _student_elements(check, sid, value.get("student"), required=True)
    if not isinstance(student, pr.StudentRecord) or not check.ok:
        return None
    return _with_id(student, _rid("student", event_id, sid))


def _rid(kind: str, event_id: str | None, *parts: str) -> str:
    """A record's id: from the sender's event_id when it gave one, else from the identifying fields."""
    return record_id(FORMAT, kind, event_id) if event_id else record_id(FORMAT, kind, *parts)


@dataclass(frozen=True, slots=True)
class _Declared:
    """A record type read by its declared fields alone: the record it makes (``action`` for an
    enrollment), the fields and rules in the order they are read (the batch's names, with the
    record's name where the two differ), and the record fields its id is made of when the sender
    gave no ``id`` (after the student's, for a record about one student). Called as a builder."""

    kind: str
    record: Callable[..., pr.ParsedRecord]
    fields: tuple[Field | Rule, ...]
    key: tuple[str, ...]
    action: pr.EnrollmentAction | None = None

    def __call__(
        self, check: Check, src: Source, value: Mapping[str, Any], event_id: str | None, sid: str | None = None
    ) -> pr.ParsedRecord | None:
        values = check.read(value, self.fields)
        if not check.ok:
            return None
        key: list[str] = [] if sid is None else [sid]
        for name in self.key:  # ids are text, dates (ISO) and absent values (""): a loop, no call each
            v = values[name]
            key.append(v if isinstance(v, str) else "" if v is None else v.isoformat())
        rid = _rid(self.kind, event_id, *key)
        if sid is None:
            return self.record(source=src, source_record_id=rid, **values)
        if self.action is None:
            return self.record(source=src, source_record_id=rid, student_ref=sid, **values)
        return self.record(source=src, source_record_id=rid, student_ref=sid, action=self.action, **values)


_SCHOOL = Field("school_id", formats.text(required=True))
_ENROLL = _Declared(
    "enroll",
    pr.EnrollmentRecord,
    (_SCHOOL, Field("entry_date", formats.day(required=True)), Field("grade_level", formats.GRADE),
     Field("entry_type", formats.text())),
    key=("school_id", "entry_date"),
    action=pr.EnrollmentAction.ENROLL,
)  # fmt: skip


def _enroll(check: Check, src: Source, value: Mapping[str, Any], event_id: str | None, sid: str) -> Made:
    enrollment = _ENROLL(check, src, value, event_id, sid)
    student = _student_elements(check, sid, value.get("student"), required=False)
    if enrollment is None or not check.ok:
        return None
    if isinstance(student, pr.StudentRecord):  # registered or updated in the same step, first
        return _with_id(student, enrollment.source_record_id + "#student"), enrollment
    return enrollment


def _another_school(check: Check, _record: Mapping[str, Any], values: dict[str, Any]) -> None:
    if values["from_school_id"] is not None and values["from_school_id"] == values["school_id"]:
        check.fail("to_school_id", "schema.inconsistent", "to_school_id is the same school as from_school_id.")


_CATEGORY = formats.one_of(
    _CATEGORIES, "category must be one of absent, tardy, early_departure, present.", required=True
)
# Records about one student that their declared fields say all of (enroll also reads a student).
_STUDENT_FACTS: dict[str, _Declared] = {
    "withdraw": _Declared(
        "withdraw",
        pr.EnrollmentRecord,
        (_SCHOOL, Field("exit_date", formats.day(required=True)), Field("exit_code", formats.text(required=True)),
         Field("entry_date", formats.day())),
        key=("school_id", "exit_date"),
        action=pr.EnrollmentAction.WITHDRAW,
    ),
    "change_school": _Declared(
        "change_school",
        pr.EnrollmentRecord,
        (Field("from_school_id", formats.text(required=True)),
         Field("to_school_id", formats.text(required=True), into="school_id"),
         Field("change_date", formats.day(required=True), into="entry_date"), Field("grade_level", formats.GRADE),
         _another_school),
        key=("from_school_id", "school_id", "entry_date"),
        action=pr.EnrollmentAction.CHANGE_SCHOOL,
    ),
    "attendance": _Declared(
        "attendance",
        pr.AttendanceRecord,
        (_SCHOOL, Field("date", formats.day(required=True)), Field("category", _CATEGORY),
         Field("excused", formats.flag()), Field("period", formats.text(max_len=64))),
        key=("school_id", "date", "period", "category"),
    ),
    "suspension": _Declared(
        "suspension",
        pr.SuspensionRecord,
        (_SCHOOL, Field("start_date", formats.day(required=True)), Field("end_date", formats.day()),
         Field("in_school", formats.flag())),
        key=("school_id", "start_date"),
    ),
}  # fmt: skip


def _calendar(check: Check, src: Source, value: Mapping[str, Any], event_id: str | None) -> pr.CalendarRecord | None:
    school = check.text("school_id", value.get("school_id"), required=True)
    year = _school_year(check, "school_year", value.get("school_year"))
    terms: list[Term] = []
    for i, t in enumerate(formats.objects(check, value, "terms")):
        name = check.text(f"terms[{i}].name", t.get("name"), required=True)
        begin = check.date(f"terms[{i}].begin_date", t.get("begin_date"), required=True)
        end = check.date(f"terms[{i}].end_date", t.get("end_date"), required=True)
        declared = t.get("instructional_days")
        if declared is not None and (isinstance(declared, bool) or not isinstance(declared, int) or declared < 0):
            check.fail(f"terms[{i}].instructional_days", "schema.type", "instructional_days must be a count.", declared)
            declared = None
        for key in t:
            if key not in ("name", "begin_date", "end_date", "instructional_days"):
                check.unknown(f"terms[{i}].{key}", t[key], what=" in a calendar term")
        if begin and end and end < begin:
            check.fail(f"terms[{i}].end_date", "date.end_before_start", "The term ends before it begins.")
        if name and begin and end:
            terms.append(Term(name, begin, end, declared))
    days: list[tuple[date, bool]] = []
    for i, d in enumerate(formats.objects(check, value, "days")):
        day = check.date(f"days[{i}].date", d.get("date"), required=True)
        instructional = check.boolean(f"days[{i}].instructional", d.get("instructional"), required=True)
        for key in d:
            if key not in ("date", "instructional"):
                check.unknown(f"days[{i}].{key}", d[key], what=" in a calendar day")
        if day is not None and instructional is not None:
            days.append((day, instructional))
    if not terms and not days and check.ok:
        check.fail("terms", "schema.required", "A calendar needs terms or days.")
    if not check.ok or school is None or year is None:
        return None
    rid = _rid("calendar", event_id, school, str(year))
    return pr.CalendarRecord(
        source=src,
        source_record_id=rid,
        school_id=school,
        school_year=year,
        sessions=tuple(terms),
        days=tuple(days),
    )


def _school_year(check: Check, name: str, value: object) -> int | None:
    """A required school year, written 2024-2025: the year it starts in."""
    raw_year = check.text(name, value, required=True)
    year = parse_school_year(raw_year) if raw_year else None
    if raw_year and year is None:
        check.fail(name, "schema.invalid", f"{name} must be written 2024-2025.", raw_year)
    return year


def _school_year_ending(check: Check, name: str, value: object) -> int | None:
    """A session's school year, 2024-2025, as the year it ends in (a SessionRecord's school_year)."""
    year = _school_year(check, name, value)
    return None if year is None else year + 1


def _texts(check: Check, key: str, v: object) -> tuple[str, ...]:
    """A JSON member that must be a list of texts (() when absent)."""
    if v is None:
        return ()
    if not isinstance(v, list):
        check.fail(key, "schema.type", f"{key} must be a list of texts.", v)
        return ()
    out = [check.text(f"{key}[{i}]", x) for i, x in enumerate(v)]
    return tuple(dict.fromkeys(x for x in out if x))


def _lists(*keys: str) -> tuple[Field, ...]:
    return tuple(Field(k, _texts) for k in keys)


# Roster records that their declared fields say all of.
_ROSTER_FACTS: dict[str, _Declared] = {
    "academic_session": _Declared(
        "session",
        pr.SessionRecord,
        (Field("session_id", formats.text(required=True)), Field("title", formats.TITLE),
         Field("session_type", formats.one_of({t: t for t in SESSION_TYPES},
                                              f"session_type must be one of {', '.join(SESSION_TYPES)}.",
                                              required=True)),
         Field("start_date", formats.day(required=True)), Field("end_date", formats.day(required=True)),
         formats.ends_after("start_date", "end_date", "The session ends before it begins."),
         Field("school_year", _school_year_ending), Field("parent_id", formats.text())),
        key=("session_id",),
    ),
    "course": _Declared(
        "course",
        pr.CourseRecord,
        (Field("course_id", formats.text(required=True)), Field("title", formats.TITLE),
         Field("course_code", formats.text()), Field("school_id", formats.text()), *_lists("grades", "subjects")),
        key=("course_id",),
    ),
    "class": _Declared(
        "class",
        pr.ClassRecord,
        (Field("class_id", formats.text(required=True)), _SCHOOL, Field("title", formats.TITLE),
         Field("class_type", formats.one_of({"homeroom": "homeroom", "scheduled": "scheduled"},
                                            "class_type must be homeroom or scheduled.", default="scheduled")),
         *_lists("term_ids", "periods", "grades", "subjects"), Field("class_code", formats.text()),
         Field("course_id", formats.text()), Field("location", formats.text())),
        key=("class_id",),
    ),
}  # fmt: skip


def _staff(check: Check, src: Source, value: Mapping[str, Any], event_id: str | None) -> pr.StaffRecord | None:
    sid = check.text("staff_id", value.get("staff_id"), required=True)
    role = check.text("role", value.get("role")) or "teacher"
    if role not in STAFF_ROLES:
        check.fail("role", "code.unknown", f"role must be one of {', '.join(STAFF_ROLES)}.", role)
    schools = _texts(check, "school_ids", value.get("school_ids"))
    raw = value.get("staff")
    elements: dict[str, str] = {}
    if raw is not None and not isinstance(raw, Mapping):
        check.fail("staff", "schema.type", "staff must be an object of staff elements.", raw)
    for key, v in (raw or {}).items() if isinstance(raw, Mapping) else ():
        element = CATALOGUE.get(key)
        if is_ssn_field(key) or key in FORBIDDEN:
            _refuse_member(check, "staff", key, v)
        elif element is None or element.subject != "staff" or key == "staff.class_assignment":
            check.unknown(f"staff.{key}", v if v is not None else "x", what=" in a staff object")
        else:
            text = check.text(f"staff.{key}", v, required=key in ("staff.first_name", "staff.last_name"))
            if text is not None:
                elements[key] = text
    for required in ("staff.first_name", "staff.last_name"):
        if required not in elements and check.ok:
            check.fail(f"staff.{required}", "schema.required", f"staff.{required} is required.")
    if not check.ok or sid is None:
        return None
    return pr.StaffRecord(
        source=src,
        source_record_id=_rid("staff", event_id, sid),
        staff_ref=sid,
        role=role,
        schools=schools,
        elements=elements,
    )


def _class_enrollment(
    check: Check, src: Source, value: Mapping[str, Any], event_id: str | None
) -> pr.EnrollmentRecord | pr.TeachingRecord | None:
    """A student's (student_id) or teacher's (staff_id) enrollment in a class. A student's also
    enrolls them at the class's school from begin_date, as OneRoster class enrollments do."""
    cls = check.text("class_id", value.get("class_id"), required=True)
    school = check.text("school_id", value.get("school_id"), required=True)
    role = check.text("role", value.get("role"), required=True)
    if role is not None and role not in ("student", "teacher"):
        check.fail("role", "code.unknown", "role must be student or teacher.", role)
    person_field = "student_id" if role == "student" else "staff_id"
    other = "staff_id" if role == "student" else "student_id"
    person = check.text(person_field, value.get(person_field), required=True)
    if value.get(other) is not None:
        check.fail(other, "element.not_allowed_here", f"a {role} class enrollment names the {person_field} only.")
    begin = check.date("begin_date", value.get("begin_date"), required=role == "student")
    end = check.date("end_date", value.get("end_date"))
    if begin and end and end < begin:
        check.fail("end_date", "date.end_before_start", "The class enrollment ends before it begins.")
    primary = check.boolean("primary", value.get("primary"))
    if not check.ok or cls is None or school is None or person is None or role is None:
        return None
    rid = _rid("class_enrollment", event_id, cls, role, person)
    if role == "student":
        return formats.in_class(src, rid, person, school, cls, begin, end)
    return pr.TeachingRecord(
        source=src,
        source_record_id=rid,
        staff_ref=person,
        class_id=cls,
        school_id=school,
        primary=bool(primary),
        begin_date=begin,
        end_date=end,
    )


# Records that name no student (or, a class enrollment, name their own person), by type.
_RosterBuilder = Callable[[Check, Source, Mapping[str, Any], "str | None"], Made]
_ROSTER_BUILDERS: dict[str, _RosterBuilder] = {
    **_ROSTER_FACTS,
    "calendar": _calendar,
    "staff": _staff,
    "class_enrollment": _class_enrollment,
}

# Records about one student, given the record's student_id (checked first).
_Builder = Callable[[Check, Source, Mapping[str, Any], "str | None", str], Made]
_BUILDERS: dict[str, _Builder] = {"student": _student, "enroll": _enroll, **_STUDENT_FACTS}
