"""Ed-Fi ODS/API resource JSON (Data Standard 3+ shapes, ODS/API v5 and later), streamed.

The body is what the API's GET returns (a JSON array of resources) or one resource object,
such as the API's own example bodies. The caller names the resource, as in the API path:

==========================================  ================================================
resource                                    becomes
==========================================  ================================================
students                                    StudentRecord: studentUniqueId (key and
                                            student.state_id), firstName, middleName,
                                            lastSurname, birthDate, birthSexDescriptor
studentEducationOrganizationAssociations    partial StudentRecord: sexDescriptor,
                                            hispanicLatinoEthnicity + races, limitedEnglish
                                            ProficiencyDescriptor, languages (home language),
                                            addresses, telephones, electronicMails,
                                            studentIdentificationCodes (state / district;
                                            an SSN system is refused)
studentSchoolAssociations                   EnrollmentRecord: entryDate, entryGradeLevel
                                            Descriptor, entryTypeDescriptor, exitWithdrawDate,
                                            exitWithdrawTypeDescriptor (withdraw when an exit
                                            date is given)
studentSchoolAttendanceEvents               AttendanceRecord (daily)
studentSectionAttendanceEvents              AttendanceRecord (period = sectionIdentifier)
disciplineActions                           SuspensionRecord (suspensions; dates only)
sessions                                    CalendarRecord: a term of the school year
calendars, calendarDates                    CalendarRecord: a calendar, a dated entry
==========================================  ================================================

``id``, ``_etag``, ``_lastModifiedDate``, ``link`` and references (``schoolReference`` ...)
are structure: read, never reported. Any other member the mapping does not use (students'
personalTitlePrefix, preferred names, birthCity, visas; an attendance event's free-text
attendanceEventReason; eventDuration ...) is dropped: its value is screened for Social
Security numbers, then forgotten, and its name is reported once per submission with its
count. Errors name the field as ``[17].entryDate``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date
from typing import IO, Any

from homeroom.calendar import parse_school_year, school_year
from services.ingest import codes, formats
from services.ingest.formats import DEFAULT_OPTIONS, Check, Made, ParseOptions
from services.ingest.formats._edfi import (
    FORMAT_JSON,
    JSON_NAMES,
    attendance_event,
    calendar_date,
    calendar_part,
    identification_code,
    lep_is_ell,
    school_association,
    session_calendar,
    student_part,
    suspension_event,
)
from services.ingest.formats._jsonstream import JsonReader, JsonSyntaxError, Oversized
from services.ingest.parsed_records import Dropped, ParseItem, Source
from services.ingest.screening import is_ssn_field

FORMAT = FORMAT_JSON
_META = frozenset(["id", "_etag", "_lastModifiedDate", "link"])

_Mapper = Callable[[Mapping[str, Any], Source, Check], Made]


def _resource_name(resource: str) -> str:
    return resource.strip("/").rsplit("/", 1)[-1]


def parse_edfi_json(
    stream: IO[bytes], *, resource: str, file: str = "edfi.json", opts: ParseOptions = DEFAULT_OPTIONS
) -> Iterator[ParseItem]:
    """Yield records, errors and warnings from Ed-Fi resource JSON of the named resource."""
    name = _resource_name(resource)
    entry = _RESOURCES.get(name)
    if entry is None:
        yield formats.file_error(
            file,
            "record.type_unknown",
            f"Homeroom does not take the Ed-Fi resource '{name}'; accepted: {', '.join(sorted(_RESOURCES))}.",
        )
        return
    mapper, known = entry
    counter = formats.Counter(file, opts, formats.stream_size(stream))
    reader = JsonReader(formats.CountingReader(stream), opts.max_record_bytes)
    try:
        first = reader.peek()
        if first == "[":
            reader.expect("[")
            for index, line, value in reader.array_items():
                yield from _one(value, index, line, name, file, opts, mapper, known)
                counter.row(lambda: reader.bytes_read)
        elif first == "{":
            line = reader.line
            yield from _one(reader.value(), 0, line, name, file, opts, mapper, known)
            counter.row(lambda: reader.bytes_read)
        else:
            raise reader.error("expected a JSON array of resources or one resource object")
        if not reader.at_end():
            raise reader.error("there is more text after the end of the resources")
    except JsonSyntaxError as exc:
        yield exc.refusal(file, "Resources")
    counter.done(reader.bytes_read)


def _one(
    value: Any,
    index: int,
    line: int,
    name: str,
    file: str,
    opts: ParseOptions,
    mapper: _Mapper,
    known: frozenset[str],
) -> Sequence[ParseItem]:
    src = Source(FORMAT, file, line, f"{name}[{index}]")
    check = Check(src, f"[{index}].", opts)
    if isinstance(value, Oversized):
        check.fail(
            "", "record.too_large", f"The resource is larger than {opts.max_record_bytes} bytes and was skipped."
        )
        return check.errors
    if not isinstance(value, Mapping):
        check.fail("", "schema.type", f"Each {name} entry must be a JSON object.", value)
        return check.errors
    _screen(check, value, "")
    if check.ok:
        for key, v in value.items():
            if key not in known and key not in _META and not key.endswith("Reference"):
                check.drop(f"{name}.{key}", v)
    if not check.ok:
        return check.errors
    return formats.issues_then(check, mapper(value, src, check))


def _screen(check: Check, value: Any, path: str) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            p = f"{path}.{k}" if path else str(k)
            if not check.forbid_ssn_field(p if is_ssn_field(str(k)) else str(k), v):
                _screen(check, v, p)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _screen(check, v, f"{path}[{i}]")
    elif isinstance(value, str) and value.strip():
        check.screen(path, value.strip())


def _ref(value: Mapping[str, Any], ref: str, key: str) -> Any:
    r = value.get(ref)
    return r.get(key) if isinstance(r, Mapping) else None


def _student_key(check: Check, value: Mapping[str, Any]) -> str | None:
    """The student a resource is about (studentReference.studentUniqueId), required."""
    return check.text(
        "studentReference.studentUniqueId", _ref(value, "studentReference", "studentUniqueId"), required=True
    )


def _descriptor(value: Any) -> Any:
    return codes.descriptor_code(value) if isinstance(value, str) else value


# --- resources --------------------------------------------------------------------------------


def _students(value: Mapping[str, Any], src: Source, check: Check) -> Made:
    key = check.text("studentUniqueId", value.get("studentUniqueId"), required=True)
    elements: dict[str, str] = {}
    for member, element in (
        ("firstName", "student.first_name"),
        ("middleName", "student.middle_name"),
        ("lastSurname", "student.last_name"),
    ):
        v = check.text(member, value.get(member), required=member != "middleName")
        if v is not None:
            elements[element] = v
    birth = check.date("birthDate", value.get("birthDate"))
    if birth is not None:
        elements["student.birth_date"] = birth.isoformat()
    sex = check.code(
        "birthSexDescriptor", value.get("birthSexDescriptor"), codes.normalise_sex, accepted=codes.SEX_ACCEPTED
    )
    if sex is not None:
        elements["student.sex"] = sex
    return student_part(check, src, FORMAT, "student", key, elements)


def _seoa(value: Mapping[str, Any], src: Source, check: Check) -> Made:
    key = _student_key(check, value)
    org = check.text(
        "educationOrganizationReference.educationOrganizationId",
        _ref(value, "educationOrganizationReference", "educationOrganizationId"),
        required=True,
    )
    elements: dict[str, str] = {}
    programs: dict[str, bool] = {}
    sex = check.code("sexDescriptor", value.get("sexDescriptor"), codes.normalise_sex, accepted=codes.SEX_ACCEPTED)
    if sex is not None:
        elements["student.sex"] = sex
    races: set[str] = set()
    if check.boolean("hispanicLatinoEthnicity", value.get("hispanicLatinoEthnicity")):
        races.add("hispanic_latino")
    for i, race in enumerate(formats.objects(check, value, "races")):
        code = check.code(
            f"races[{i}].raceDescriptor", race.get("raceDescriptor"), codes.normalise_race, accepted=codes.RACE_ACCEPTED
        )
        if code:
            races.add(code)
    if races:
        elements["student.race_ethnicity"] = codes.join_codes(races)
    lep = value.get("limitedEnglishProficiencyDescriptor")
    if isinstance(lep, str) and lep.strip():
        ell = lep_is_ell(lep)
        if ell is None:
            check.warn(
                "limitedEnglishProficiencyDescriptor", "code.unknown", "The English proficiency code is not known."
            )
        else:
            programs["program.ell"] = ell
    for i, ident in enumerate(formats.objects(check, value, "studentIdentificationCodes")):
        identification_code(
            check,
            f"studentIdentificationCodes[{i}]",
            ident.get("studentIdentificationSystemDescriptor"),
            ident.get("identificationCode"),
            elements,
        )
    for i, lang in enumerate(formats.objects(check, value, "languages")):
        uses = [
            codes.descriptor_code(str(u.get("languageUseDescriptor", ""))).lower() for u in lang.get("uses", []) or []
        ]
        if not uses or any("home" in u for u in uses):
            v = check.text(f"languages[{i}].languageDescriptor", _descriptor(lang.get("languageDescriptor")))
            if v is not None:
                elements.setdefault("student.home_language", v)
    for i, addr in enumerate(formats.objects(check, value, "addresses")[:1]):
        parts = [
            addr.get("streetNumberName"),
            addr.get("apartmentRoomSuiteNumber"),
            addr.get("city"),
            _descriptor(addr.get("stateAbbreviationDescriptor")),
            addr.get("postalCode"),
        ]
        text = ", ".join(str(p).strip() for p in parts if isinstance(p, str | int) and str(p).strip())
        v = check.text(f"addresses[{i}]", text, max_len=1000, free_text=True)
        if v is not None:
            elements["student.address"] = v
    for i, tel in enumerate(formats.objects(check, value, "telephones")[:1]):
        v = check.text(f"telephones[{i}].telephoneNumber", tel.get("telephoneNumber"))
        if v is not None:
            elements["student.phone"] = v
    for i, mail in enumerate(formats.objects(check, value, "electronicMails")[:1]):
        v = check.text(f"electronicMails[{i}].electronicMailAddress", mail.get("electronicMailAddress"))
        if v is not None:
            elements["student.email"] = v
    if org is None:
        return None
    return student_part(check, src, FORMAT, "seoa", key, elements, programs, org=org)


def _ssa(value: Mapping[str, Any], src: Source, check: Check) -> Made:
    student = _student_key(check, value)
    school = check.text("schoolReference.schoolId", _ref(value, "schoolReference", "schoolId"), required=True)
    entry = check.date("entryDate", value.get("entryDate"), required=True)
    grade = check.code(
        "entryGradeLevelDescriptor",
        value.get("entryGradeLevelDescriptor"),
        codes.normalise_grade,
        accepted=codes.GRADES_ACCEPTED,
    )
    entry_type = check.text("entryTypeDescriptor", _descriptor(value.get("entryTypeDescriptor")))
    exit_date = check.date("exitWithdrawDate", value.get("exitWithdrawDate"))
    exit_code = check.text("exitWithdrawTypeDescriptor", _descriptor(value.get("exitWithdrawTypeDescriptor")))
    return school_association(check, src, FORMAT, student, school, entry, exit_date, exit_code, grade, entry_type)


def _attendance(value: Mapping[str, Any], src: Source, check: Check) -> Made:
    student = _student_key(check, value)
    period: str | None = None
    if "sectionReference" in value:
        school = check.text("sectionReference.schoolId", _ref(value, "sectionReference", "schoolId"), required=True)
        period = check.text(
            "sectionReference.sectionIdentifier", _ref(value, "sectionReference", "sectionIdentifier"), required=True
        )
    else:
        school = check.text("schoolReference.schoolId", _ref(value, "schoolReference", "schoolId"), required=True)
    day = check.date("eventDate", value.get("eventDate"), required=True)
    raw = check.text("attendanceEventCategoryDescriptor", value.get("attendanceEventCategoryDescriptor"), required=True)
    return attendance_event(
        check, src, JSON_NAMES, raw_category=raw, student=student, school=school, day=day, period=period
    )


def _school_year(check: Check, value: Any, fallback: date | None) -> int | None:
    if value is None:
        return school_year(fallback) if fallback else None
    year = parse_school_year(str(value))
    if year is None:
        check.fail("schoolYear", "schema.invalid", "schoolYear must be a year such as 2022 (for 2021-2022).", value)
    return year


def _sessions(value: Mapping[str, Any], src: Source, check: Check) -> Made:
    school = check.text("schoolReference.schoolId", _ref(value, "schoolReference", "schoolId"), required=True)
    name = check.text("sessionName", value.get("sessionName"), required=True)
    begin = check.date("beginDate", value.get("beginDate"), required=True)
    end = check.date("endDate", value.get("endDate"), required=True)
    year = _school_year(check, _ref(value, "schoolYearTypeReference", "schoolYear"), begin)
    declared = value.get("totalInstructionalDays")
    if declared is not None and (isinstance(declared, bool) or not isinstance(declared, int)):
        check.fail("totalInstructionalDays", "schema.type", "totalInstructionalDays must be a whole number.", declared)
        declared = None
    return session_calendar(check, src, FORMAT, school, year, name, begin, end, declared)


def _calendars(value: Mapping[str, Any], src: Source, check: Check) -> Made:
    school = check.text("schoolReference.schoolId", _ref(value, "schoolReference", "schoolId"), required=True)
    code = check.text("calendarCode", value.get("calendarCode"), required=True)
    year = _school_year(check, _ref(value, "schoolYearTypeReference", "schoolYear"), None)
    if year is None and check.ok:
        check.fail("schoolYearTypeReference.schoolYear", "schema.required", "The calendar's school year is required.")
    return calendar_part(check, src, FORMAT, "calendar", school=school, year=year, key=(code,))


def _calendar_dates(value: Mapping[str, Any], src: Source, check: Check) -> Made:
    school = check.text("calendarReference.schoolId", _ref(value, "calendarReference", "schoolId"), required=True)
    day = check.date("date", value.get("date"), required=True)
    year = _school_year(check, _ref(value, "calendarReference", "schoolYear"), day)
    events = [
        (f"calendarEvents[{i}].calendarEventDescriptor", event.get("calendarEventDescriptor"))
        for i, event in enumerate(formats.objects(check, value, "calendarEvents"))
    ]
    code = str(_ref(value, "calendarReference", "calendarCode") or "")
    return calendar_date(check, src, JSON_NAMES, school=school, year=year, code=code, day=day, events=events)


def _discipline_actions(value: Mapping[str, Any], src: Source, check: Check) -> Made:
    kinds = [d.get("disciplineDescriptor") for d in formats.objects(check, value, "disciplines")]
    results = [codes.edfi_suspension(k) for k in kinds if isinstance(k, str)]
    suspension = [r for r in results if r != "other"]
    if results and not suspension:
        return Dropped(src.file, src.line, record="disciplineActions (not a suspension)")
    student = _student_key(check, value)
    school = check.text(
        "responsibilitySchoolReference.schoolId",
        _ref(value, "responsibilitySchoolReference", "schoolId"),
        required=True,
    )
    start = check.date("disciplineDate", value.get("disciplineDate"), required=True)
    length = value.get("actualDisciplineActionLength", value.get("disciplineActionLength"))
    days: float | None = None
    if length is not None:
        if isinstance(length, bool) or not isinstance(length, int | float):
            check.fail("disciplineActionLength", "schema.type", "disciplineActionLength must be a number.", length)
        else:
            days = float(length)
    action_id = str(value.get("disciplineActionIdentifier", ""))
    return suspension_event(check, src, JSON_NAMES, suspension, student, school, start, days, action_id)


_RESOURCES: dict[str, tuple[_Mapper, frozenset[str]]] = {
    "students": (
        _students,
        frozenset(
            [
                "studentUniqueId",
                "firstName",
                "middleName",
                "lastSurname",
                "birthDate",
                "birthSexDescriptor",
            ]
        ),
    ),
    "studentEducationOrganizationAssociations": (
        _seoa,
        frozenset(
            [
                "studentReference",
                "educationOrganizationReference",
                "sexDescriptor",
                "hispanicLatinoEthnicity",
                "races",
                "limitedEnglishProficiencyDescriptor",
                "studentIdentificationCodes",
                "languages",
                "addresses",
                "telephones",
                "electronicMails",
            ]
        ),
    ),
    "studentSchoolAssociations": (
        _ssa,
        frozenset(
            [
                "entryDate",
                "entryGradeLevelDescriptor",
                "entryTypeDescriptor",
                "exitWithdrawDate",
                "exitWithdrawTypeDescriptor",
            ]
        ),
    ),
    "studentSchoolAttendanceEvents": (_attendance, frozenset(["eventDate", "attendanceEventCategoryDescriptor"])),
    "studentSectionAttendanceEvents": (_attendance, frozenset(["eventDate", "attendanceEventCategoryDescriptor"])),
    "disciplineActions": (
        _discipline_actions,
        frozenset(
            [
                "disciplineActionIdentifier",
                "disciplines",
                "disciplineDate",
                "disciplineActionLength",
                "actualDisciplineActionLength",
            ]
        ),
    ),
    "sessions": (_sessions, frozenset(["sessionName", "beginDate", "endDate", "totalInstructionalDays"])),
    "calendars": (_calendars, frozenset(["calendarCode"])),
    "calendarDates": (_calendar_dates, frozenset(["date", "calendarEvents"])),
}

RESOURCES = frozenset(_RESOURCES)
