"""Ed-Fi ODS/API resource JSON (Data Standard 3+ shapes, ODS/API v5 and later), streamed.

The body is what the API's GET returns (a JSON array of resources) or one resource object.
The caller names the resource, as in the API path:

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
==========================================  ================================================

``id``, ``_etag``, ``_lastModifiedDate``, ``link`` and the listed bookkeeping members
(calendar, session and school-year references, primarySchool, repeatGradeIndicator,
eventDuration, ...) are read past and never stored. Any other top-level member with a value is
refused (``element.unknown``): e.g. students' birthCity, otherNames, visas, or an attendance
event's free-text attendanceEventReason. Every string anywhere in a resource is screened for
Social Security numbers first. Errors name the field as ``[17].entryDate``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

from services.ingest import codes
from services.ingest.formats import (
    DEFAULT_OPTIONS,
    GRADES_ACCEPTED,
    RACE_ACCEPTED,
    SEX_ACCEPTED,
    Check,
    Counter,
    CountingReader,
    ParseOptions,
    file_error,
    issues_then,
    stream_size,
)
from services.ingest.formats._edfi import FORMAT_JSON, attendance_event, identification_code, lep_is_ell
from services.ingest.formats._jsonstream import JsonReader, JsonSyntaxError, Oversized
from services.ingest.records import (
    EnrollmentAction,
    EnrollmentRecord,
    ParseItem,
    Source,
    StudentRecord,
    record_id,
)
from services.ingest.screening import is_ssn_field

FORMAT = FORMAT_JSON
_META = frozenset(["id", "_etag", "_lastModifiedDate", "link"])

_Mapper = Callable[[Mapping[str, Any], Source, Check], Iterator[ParseItem]]


def _resource_name(resource: str) -> str:
    return resource.strip("/").rsplit("/", 1)[-1]


def parse_edfi_json(
    stream: IO[bytes], *, resource: str, file: str = "edfi.json", opts: ParseOptions = DEFAULT_OPTIONS
) -> Iterator[ParseItem]:
    """Yield records, errors and warnings from Ed-Fi resource JSON of the named resource."""
    name = _resource_name(resource)
    entry = _RESOURCES.get(name)
    if entry is None:
        yield file_error(
            file,
            "record.type_unknown",
            f"Homeroom does not take the Ed-Fi resource '{name}'; accepted: {', '.join(sorted(_RESOURCES))}.",
        )
        return
    mapper, known = entry
    counter = Counter(file, opts, stream_size(stream))
    reader = JsonReader(CountingReader(stream), opts.max_record_bytes)
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
        yield file_error(
            file,
            "file.unreadable",
            f"The file is not valid JSON at line {exc.line}, column {exc.column}: {exc.message}. "
            "Resources before that point were read; nothing after it was.",
            exc.line,
        )
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
) -> Iterator[ParseItem]:
    src = Source(FORMAT, file, line, f"{name}[{index}]")
    check = Check(src, f"[{index}].", opts)
    if isinstance(value, Oversized):
        check.fail(
            "", "record.too_large", f"The resource is larger than {opts.max_record_bytes} bytes and was skipped."
        )
        yield from check.errors
        return
    if not isinstance(value, Mapping):
        check.fail("", "schema.type", f"Each {name} entry must be a JSON object.", value)
        yield from check.errors
        return
    _screen(check, value, "")
    if check.ok:
        for key, v in value.items():
            if key not in known and key not in _META:
                check.unknown(key, v, what=f" in {name}")
    if not check.ok:
        yield from check.errors
        return
    yield from mapper(value, src, check)


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


def _descriptor(value: Any) -> Any:
    return codes.descriptor_code(value) if isinstance(value, str) else value


def _list(check: Check, value: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    v = value.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
        check.fail(key, "schema.type", f"{key} must be a list of objects.", v)
        return []
    return v


# --- resources --------------------------------------------------------------------------------


def _students(value: Mapping[str, Any], src: Source, check: Check) -> Iterator[ParseItem]:
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
    sex = check.code("birthSexDescriptor", value.get("birthSexDescriptor"), codes.normalise_sex, accepted=SEX_ACCEPTED)
    if sex is not None:
        elements["student.sex"] = sex
    if key is None or not check.ok:
        yield from check.errors
        return
    elements.setdefault("student.state_id", key)
    yield from issues_then(
        check,
        StudentRecord(
            source=src,
            source_record_id=record_id(FORMAT, "student", key),
            student_ref=key,
            elements=elements,
        ),
    )


def _seoa(value: Mapping[str, Any], src: Source, check: Check) -> Iterator[ParseItem]:
    key = check.text(
        "studentReference.studentUniqueId", _ref(value, "studentReference", "studentUniqueId"), required=True
    )
    org = check.text(
        "educationOrganizationReference.educationOrganizationId",
        _ref(value, "educationOrganizationReference", "educationOrganizationId"),
        required=True,
    )
    elements: dict[str, str] = {}
    programs: dict[str, bool] = {}
    sex = check.code("sexDescriptor", value.get("sexDescriptor"), codes.normalise_sex, accepted=SEX_ACCEPTED)
    if sex is not None:
        elements["student.sex"] = sex
    races: set[str] = set()
    if check.boolean("hispanicLatinoEthnicity", value.get("hispanicLatinoEthnicity")):
        races.add("hispanic_latino")
    for i, race in enumerate(_list(check, value, "races")):
        code = check.code(
            f"races[{i}].raceDescriptor", race.get("raceDescriptor"), codes.normalise_race, accepted=RACE_ACCEPTED
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
    for i, ident in enumerate(_list(check, value, "studentIdentificationCodes")):
        identification_code(
            check,
            f"studentIdentificationCodes[{i}]",
            ident.get("studentIdentificationSystemDescriptor"),
            ident.get("identificationCode"),
            elements,
        )
    for i, lang in enumerate(_list(check, value, "languages")):
        uses = [
            codes.descriptor_code(str(u.get("languageUseDescriptor", ""))).lower() for u in lang.get("uses", []) or []
        ]
        if not uses or any("home" in u for u in uses):
            v = check.text(f"languages[{i}].languageDescriptor", _descriptor(lang.get("languageDescriptor")))
            if v is not None:
                elements.setdefault("student.home_language", v)
    for i, addr in enumerate(_list(check, value, "addresses")[:1]):
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
    for i, tel in enumerate(_list(check, value, "telephones")[:1]):
        v = check.text(f"telephones[{i}].telephoneNumber", tel.get("telephoneNumber"))
        if v is not None:
            elements["student.phone"] = v
    for i, mail in enumerate(_list(check, value, "electronicMails")[:1]):
        v = check.text(f"electronicMails[{i}].electronicMailAddress", mail.get("electronicMailAddress"))
        if v is not None:
            elements["student.email"] = v
    if key is None or org is None or not check.ok:
        yield from check.errors
        return
    yield from issues_then(
        check,
        StudentRecord(
            source=src,
            source_record_id=record_id(FORMAT, "seoa", key, org),
            student_ref=key,
            elements=elements,
            programs=programs,
        ),
    )


def _ssa(value: Mapping[str, Any], src: Source, check: Check) -> Iterator[ParseItem]:
    student = check.text(
        "studentReference.studentUniqueId", _ref(value, "studentReference", "studentUniqueId"), required=True
    )
    school = check.text("schoolReference.schoolId", _ref(value, "schoolReference", "schoolId"), required=True)
    entry = check.date("entryDate", value.get("entryDate"), required=True)
    grade = check.code(
        "entryGradeLevelDescriptor",
        value.get("entryGradeLevelDescriptor"),
        codes.normalise_grade,
        accepted=GRADES_ACCEPTED,
    )
    entry_type = check.text("entryTypeDescriptor", _descriptor(value.get("entryTypeDescriptor")))
    exit_date = check.date("exitWithdrawDate", value.get("exitWithdrawDate"))
    exit_code = check.text("exitWithdrawTypeDescriptor", _descriptor(value.get("exitWithdrawTypeDescriptor")))
    if student is None or school is None or entry is None or not check.ok:
        yield from check.errors
        return
    yield from issues_then(
        check,
        EnrollmentRecord(
            source=src,
            source_record_id=record_id(FORMAT, "ssa", student, school, entry.isoformat()),
            action=EnrollmentAction.WITHDRAW if exit_date else EnrollmentAction.ENROLL,
            student_ref=student,
            school_id=school,
            entry_date=entry,
            exit_date=exit_date,
            exit_code=exit_code,
            grade_level=grade,
            entry_type=entry_type,
        ),
    )


def _attendance(value: Mapping[str, Any], src: Source, check: Check) -> Iterator[ParseItem]:
    student = check.text(
        "studentReference.studentUniqueId", _ref(value, "studentReference", "studentUniqueId"), required=True
    )
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
    yield from attendance_event(
        check,
        src,
        FORMAT,
        category_field="attendanceEventCategoryDescriptor",
        raw_category=raw,
        student=student,
        school=school,
        day=day,
        period=period,
    )


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
                "personReference",
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
                "studentReference",
                "schoolReference",
                "entryDate",
                "entryGradeLevelDescriptor",
                "entryTypeDescriptor",
                "exitWithdrawDate",
                "exitWithdrawTypeDescriptor",
                # bookkeeping
                "schoolYearTypeReference",
                "classOfSchoolYearTypeReference",
                "calendarReference",
                "graduationPlanReference",
                "primarySchool",
                "repeatGradeIndicator",
                "schoolChoiceTransfer",
                "educationPlans",
                "alternativeGraduationPlans",
                "fullTimeEquivalency",
                "termCompletionIndicator",
                "enrollmentTypeDescriptor",
                "entryGradeLevelReasonDescriptor",
                "nextYearGradeLevelDescriptor",
                "nextYearSchoolReference",
                "schoolChoice",
                "schoolChoiceBasisDescriptor",
            ]
        ),
    ),
    "studentSchoolAttendanceEvents": (
        _attendance,
        frozenset(
            [
                "studentReference",
                "schoolReference",
                "eventDate",
                "attendanceEventCategoryDescriptor",
                "sessionReference",
                "educationalEnvironmentDescriptor",
                "eventDuration",
                "schoolAttendanceDuration",
                "arrivalTime",
                "departureTime",
            ]
        ),
    ),
    "studentSectionAttendanceEvents": (
        _attendance,
        frozenset(
            [
                "studentReference",
                "sectionReference",
                "eventDate",
                "attendanceEventCategoryDescriptor",
                "educationalEnvironmentDescriptor",
                "eventDuration",
                "sectionAttendanceDuration",
                "arrivalTime",
                "departureTime",
            ]
        ),
    ),
}

RESOURCES = frozenset(_RESOURCES)
