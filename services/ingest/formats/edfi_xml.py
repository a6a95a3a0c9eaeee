"""Ed-Fi XML interchange files (the bulk-load format), Data Standard 2.0 through 5.x, streamed.

Parsed with ``defusedxml`` iterparse: DTDs, entity declarations and external references are
refused (``xml.forbidden``: billion laughs, XXE), and each record element is handled when it
closes and then removed from the tree, so memory stays flat however long the file is.
Namespaces are ignored (``http://ed-fi.org/0200`` through ``http://ed-fi.org/5.2.0`` read the
same). The shapes of every version are understood: Data Standard 2.0 keeps demographics on
``Student`` and writes descriptors as ``<X><CodeValue>..</CodeValue></X>``; 3.x-5.x move them
to ``StudentEducationOrganizationAssociation`` and write descriptor URIs
(``uri://ed-fi.org/SexDescriptor#Female``); every version wraps an attendance event's date,
category and reason in ``<AttendanceEvent>``.

===========================================  =================================================
interchange: record                          becomes
===========================================  =================================================
EducationOrganization: School, LEA           SchoolRecord (school / district)
EducationOrgCalendar: Session                CalendarRecord: a term (weekdays instructional)
EducationOrgCalendar: Calendar, CalendarDate CalendarRecord: the calendar, a dated entry
EducationOrgCalendar: Session                SessionRecord too: the term as vendors' rosters see it
MasterSchedule: CourseOffering               CourseRecord (the school's course: LocalCourseCode)
MasterSchedule: Section                      ClassRecord (checked against the district; its
                                             SectionIdentifier is the class id that
                                             StudentSectionAssociation's class_ref names)
Student: Student                             StudentRecord (names, birth date, birth sex; 2.0:
                                             demographics, ids, programs, contact details)
StudentEnrollment: StudentSchoolAssociation  EnrollmentRecord (enroll / withdraw)
StudentEnrollment: StudentSectionAssociation EnrollmentRecord with class_ref
StudentEnrollment: StudentEducation          partial StudentRecord (demographics, ids,
OrganizationAssociation                      English proficiency, contact details)
StudentProgram: program associations         partial StudentRecord: program flags (IEP, 504,
                                             English learner, free/reduced lunch)
StudentAttendance: school / section events   AttendanceRecord (daily / class period)
StudentDiscipline: DisciplineAction          SuspensionRecord (dates only)
StudentDiscipline: incidents and a           refused: element.forbidden (incident details)
student's part in them
StaffAssociation: Staff                      StaffRecord (name, work email, StaffUniqueId as
                                             the identifier; role teacher), emitted when the
                                             file ends, with its schools from
StaffAssociation: StaffSchoolAssociation     ... (a StaffRecord is the staff member's whole
                                             state, so it goes once, with every school)
StaffAssociation: StaffSectionAssociation    TeachingRecord (the section is the class id;
                                             "Teacher of Record" is the primary teacher)
===========================================  =================================================

Everything else is read past without being kept: inside a record, an element that maps to
no catalogue element is dropped (its name reported once per submission, its value never
kept); a record Homeroom takes nothing from (a Contact, Person, Course, a program it does not
collect, a discipline action that is not a suspension) is skipped and counted; an interchange
Homeroom does not use (Contact, Parent, StudentGrade, Finance ...) is counted and skipped with
one notice, its records never parsed for content. ``*Reference`` elements and identifiers are
structure: read, never reported. Every value of a record is screened for Social Security
numbers before anything else, dropped or kept.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date
from typing import IO
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

import defusedxml
import defusedxml.ElementTree as DET

from homeroom.calendar import parse_school_year, school_year
from services.ingest import codes, formats
from services.ingest import parsed_records as pr
from services.ingest.formats import DEFAULT_OPTIONS, Check, Made, ParseOptions
from services.ingest.formats._edfi import (
    FORMAT_XML,
    INCIDENT_REASON,
    INCIDENT_RECORDS,
    PROGRAM_ASSOCIATIONS,
    XML_NAMES,
    attendance_event,
    calendar_date,
    calendar_part,
    frl_eligible,
    identification_code,
    lep_is_ell,
    program_element,
    school_association,
    session_calendar,
    student_part,
    suspension_event,
)
from services.ingest.parsed_records import Dropped, ParseItem, RecordError, Source, record_id

FORMAT = FORMAT_XML
_LINE = " line"  # attribute key that cannot clash with a real XML attribute name

# Interchanges Homeroom reads; any other is counted and skipped with one notice.
USED_INTERCHANGES = frozenset(
    [
        "InterchangeEducationOrganization",
        "InterchangeEducationOrgCalendar",
        "InterchangeMasterSchedule",
        "InterchangeStudent",
        "InterchangeStudentEnrollment",
        "InterchangeStudentProgram",
        "InterchangeStudentAttendance",
        "InterchangeStudentDiscipline",
        "InterchangeStaffAssociation",
    ]
)


class _LineBuilder(TreeBuilder):
    """Strips namespaces and stamps record elements (depth 1) with their start line."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.root: Element | None = None
        self.line: Callable[[], int] = lambda: 0

    def start(self, tag: str, attrs: dict[str, str]) -> Element:
        local = tag.rsplit("}", 1)[-1]
        clean = {k.rsplit("}", 1)[-1]: v for k, v in attrs.items()}
        if self.depth == 1:
            clean[_LINE] = str(self.line())
        self.depth += 1
        elem = super().start(local, clean)
        if self.root is None:
            self.root = elem
        return elem

    def end(self, tag: str) -> Element:
        self.depth -= 1
        return super().end(tag.rsplit("}", 1)[-1])


def parse_edfi_xml(
    stream: IO[bytes], *, file: str = "interchange.xml", opts: ParseOptions = DEFAULT_OPTIONS
) -> Iterator[ParseItem]:
    """Yield records, errors, warnings and drops from one Ed-Fi XML interchange, in document order."""
    counter = formats.Counter(file, opts, formats.stream_size(stream))
    reader = formats.CountingReader(stream)
    builder = _LineBuilder()
    parser = DET.DefusedXMLParser(target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    expat = parser.parser
    builder.line = lambda: int(expat.CurrentLineNumber)
    interchange = ""
    unused: Tally[str] = Tally()
    staff = _StaffGathered()
    try:
        for _event, elem in DET.iterparse(reader, events=("end",), parser=parser):
            if elem.get(_LINE) is None:
                continue
            root = builder.root
            if not interchange and root is not None:
                interchange = root.tag
                if not interchange.startswith("Interchange"):
                    yield formats.file_error(file, "schema.invalid", "The file is XML but not an Ed-Fi interchange.", 1)
                    counter.done(reader.bytes_read)
                    return
            if interchange in USED_INTERCHANGES:
                yield from _record(elem, interchange, file, opts, staff)
            else:
                unused[elem.tag] += 1
            counter.row(lambda: reader.bytes_read)
            if root is not None:
                root.clear()
    except defusedxml.DefusedXmlException as exc:
        yield formats.file_error(
            file,
            "xml.forbidden",
            "The file declares a DTD, entities or external references "
            f"({type(exc).__name__}). Ed-Fi interchanges need none, and they are how XML bombs and "
            "external-entity attacks work, so the whole file was refused.",
            int(expat.CurrentLineNumber or 0),
        )
    except ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else 0
        yield formats.file_error(
            file,
            "file.unreadable",
            f"The file is not well-formed XML at line {line}; records before that point were read, nothing after it.",
            line,
        )
    else:
        if builder.root is not None and not builder.root.tag.startswith("Interchange"):
            yield formats.file_error(file, "schema.invalid", "The file is XML but not an Ed-Fi interchange.", 1)
    yield from staff.records()
    if unused:
        # One notice for the whole interchange: Homeroom takes nothing from it.
        yield Dropped(file, 0, record=interchange, count=sum(unused.values()))
    counter.done(reader.bytes_read)


# --- reading values ------------------------------------------------------------------------------


def _value(elem: Element | None) -> str | None:
    """An element's value: a DS 2.0 descriptor's CodeValue, else its own text."""
    if elem is None:
        return None
    code = elem.find("CodeValue")
    if code is not None:
        elem = code
    text = (elem.text or "").strip()
    if not text and len(elem):
        text = "".join(elem.itertext()).strip()
    return text or None


def _text(elem: Element | None, *paths: str) -> str | None:
    if elem is None:
        return None
    for path in paths:
        found = _value(elem.find(path))
        if found:
            return found
    return None


def _content(elem: Element) -> str:
    parts = [t for t in elem.itertext() if t.strip()]
    parts.extend(v for k, v in elem.attrib.items() if k != _LINE)
    return " ".join(parts)


def _student_ref(elem: Element) -> str | None:
    return _text(elem.find("StudentReference"), ".//StudentUniqueId", ".//StudentUniqueStateId")


def _school_ref(elem: Element, *names: str) -> str | None:
    for name in names:
        found = _text(elem.find(name), ".//SchoolId", ".//StateOrganizationId", ".//EducationOrganizationId")
        if found:
            return found
    return None


def _is_structure(tag: str) -> bool:
    """References and lookups locate other records: read, never reported as dropped."""
    return tag.endswith(("Reference", "Identity", "Lookup"))


def _drop_rest(check: Check, elem: Element, kept: frozenset[str], path: str) -> None:
    """Every child not kept (and not structure) is dropped under its path."""
    for child in elem:
        if child.tag not in kept and not _is_structure(child.tag):
            check.drop(f"{path}/{child.tag}", _content(child))


def _screen_all(check: Check, elem: Element, path: str) -> None:
    """Every value in the record is screened for SSNs, kept, dropped or structure."""
    text = elem.text
    if text and not text.isspace() and not check.forbid_ssn_field(path, text):
        check.screen(path, text.strip())
    for k, v in elem.attrib.items():
        if k != _LINE and not check.forbid_ssn_field(k, v):
            check.screen(f"{path}@{k}", v)
    for child in elem:
        _screen_all(check, child, f"{path}/{child.tag}")


def _school_year(check: Check, text: str | None, fallback: date | None) -> int | None:
    if text:
        year = parse_school_year(text)
        if year is None:
            check.fail("SchoolYear", "schema.invalid", "SchoolYear must be written 2021-2022 (or 2022).", text)
        return year
    return school_year(fallback) if fallback is not None else None


# --- records --------------------------------------------------------------------------------------

_Mapper = Callable[[Element, Source, Check], Made]


def _record(
    elem: Element, interchange: str, file: str, opts: ParseOptions, staff: _StaffGathered
) -> Iterator[ParseItem]:
    line = int(elem.attrib.pop(_LINE, "0"))
    src = Source(FORMAT, file, line, elem.tag)
    tag = elem.tag
    # Records about organisations carry nine-digit organisation codes, never a person's number.
    check = Check(src, "", replace(opts, screening=formats.ORG_POLICY) if tag in _ORGANISATION_RECORDS else opts)
    if tag in INCIDENT_RECORDS:
        check.forbidden(tag, "discipline.incident_details", INCIDENT_REASON)
        yield from check.errors
        return
    mapper = _MAPPERS.get(tag)
    if mapper is None and tag not in _STAFF_GATHERED:
        # A record of a used interchange that holds nothing Homeroom collects (Contact, Person,
        # Course, GradingPeriod, another program ...): skipped and counted, never parsed.
        yield Dropped(file, line, record=tag)
        return
    _screen_all(check, elem, tag)
    if not check.ok:
        yield from check.errors
        return
    made = _STAFF_GATHERED[tag](staff, elem, src, check) if mapper is None else mapper(elem, src, check)
    yield from formats.issues_then(check, made)


# Student and StudentEducationOrganizationAssociation: what maps to catalogue elements.
_PERSON_KEPT = frozenset(
    [
        "StudentUniqueId",
        "StudentUniqueStateId",
        "Name",
        "FirstName",
        "MiddleName",
        "LastSurname",
        "BirthData",
        "BirthDate",
        "Sex",
        "BirthSex",
        "StudentIdentificationCode",
        "HispanicLatinoEthnicity",
        "Race",
        "LimitedEnglishProficiency",
        "SchoolFoodServicesEligibility",
        "Language",
        "HomeLanguages",
        "ProgramParticipation",
        "ProgramParticipations",
        "StudentCharacteristic",
        "Address",
        "Telephone",
        "ElectronicMail",
        "Responsibility",  # DS 2.0 association bookkeeping
    ]
)
_NAME_KEPT = frozenset(["FirstName", "MiddleName", "LastSurname"])
_BIRTH_KEPT = frozenset(["BirthDate", "BirthSex"])
_ADDRESS_PARTS = ("StreetNumberName", "ApartmentRoomSuiteNumber", "City", "StateAbbreviation", "PostalCode")


def _first_kept(check: Check, elems: list[Element], path: str, kept: frozenset[str]) -> Element | None:
    """The first of repeated contact elements is kept (its other parts dropped); the rest dropped."""
    for extra in elems[1:]:
        check.drop(path, _content(extra))
    if elems:
        _drop_rest(check, elems[0], kept, path)
        return elems[0]
    return None


def _person_elements(elem: Element, check: Check, elements: dict[str, str], programs: dict[str, bool]) -> None:
    tag = elem.tag
    _drop_rest(check, elem, _PERSON_KEPT, tag)
    name = elem.find("Name")
    if name is not None:
        _drop_rest(check, name, _NAME_KEPT, f"{tag}/Name")
    for part, element in (
        ("FirstName", "student.first_name"),
        ("MiddleName", "student.middle_name"),
        ("LastSurname", "student.last_name"),
    ):
        v = check.text(part, _text(elem, part, f"Name/{part}"))
        if v is not None:
            elements[element] = v
    birth = elem.find("BirthData")
    if birth is not None:
        _drop_rest(check, birth, _BIRTH_KEPT, f"{tag}/BirthData")
    d = check.date("BirthDate", _text(elem, "BirthDate", "BirthData/BirthDate"))
    if d is not None:
        elements["student.birth_date"] = d.isoformat()
    sex = _text(elem, "Sex", "BirthSex", "BirthData/BirthSex")
    if sex is not None:
        code = check.code("Sex", sex, codes.normalise_sex, accepted=codes.SEX_ACCEPTED)
        if code is not None:
            elements["student.sex"] = code
    for ident in elem.findall("StudentIdentificationCode"):
        system = (
            ident.get("IdentificationSystem")
            or _text(ident, "StudentIdentificationSystem")
            or _text(ident, "StudentIdentificationSystemDescriptor")
        )
        _drop_rest(
            check,
            ident,
            frozenset(["IdentificationCode", "StudentIdentificationSystem", "AssigningOrganizationIdentificationCode"]),
            f"{tag}/StudentIdentificationCode",
        )
        identification_code(check, "StudentIdentificationCode", system, _text(ident, "IdentificationCode"), elements)
    races: set[str] = set()
    hisp = _text(elem, "HispanicLatinoEthnicity")
    if hisp is not None and check.boolean("HispanicLatinoEthnicity", hisp):
        races.add("hispanic_latino")
    for race in elem.findall("Race"):
        for cat in [c for c in race if c.tag != "Namespace"] or [race]:
            t = _value(cat)
            if t:
                code = check.code("Race", t, codes.normalise_race, accepted=codes.RACE_ACCEPTED)
                if code:
                    races.add(code)
    if races:
        elements["student.race_ethnicity"] = codes.join_codes(races)
    lep = _text(elem, "LimitedEnglishProficiency")
    if lep is not None:
        ell = lep_is_ell(lep)
        if ell is None:
            check.warn("LimitedEnglishProficiency", "code.unknown", "LimitedEnglishProficiency is not a known code.")
        else:
            programs["program.ell"] = ell
    frl = _text(elem, "SchoolFoodServicesEligibility")
    if frl is not None:
        eligible = frl_eligible(frl)
        if eligible is not None:
            programs["program.free_reduced_lunch"] = eligible
    for characteristic in elem.findall("StudentCharacteristic"):
        value = _text(characteristic, "StudentCharacteristic", "CodeValue") or _value(characteristic) or ""
        if codes.match_key(codes.descriptor_code(value)) in ("section504handicapped", "section504"):
            programs["program.section_504"] = True
        else:
            check.drop(f"{tag}/StudentCharacteristic", value)
    for participation in [*elem.findall("ProgramParticipation"), *elem.findall("ProgramParticipations")]:
        program = _text(participation, "ProgramType", "Program") or ""
        flag = program_element(program)
        if flag is None:
            check.drop(f"{tag}/ProgramParticipation", _content(participation))
        else:
            programs[flag] = _text(participation, "EndDate") is None
    languages = [*elem.findall("Language"), *elem.findall("HomeLanguages")]
    for lang in languages:
        uses = [
            codes.match_key(codes.descriptor_code(_value(u) or ""))
            for u in lang.iter()
            if u.tag in ("Use", "LanguageUse")
        ]
        code = _text(lang, "Language", "LanguageDescriptor") or _value(lang)
        if code and (not uses or any("home" in u for u in uses)):
            v = check.text("Language", codes.descriptor_code(code))
            if v is not None:
                elements.setdefault("student.home_language", v)
        elif code:
            check.drop(f"{tag}/Language", code)
    address = _first_kept(check, elem.findall("Address"), f"{tag}/Address", frozenset(_ADDRESS_PARTS))
    if address is not None:
        parts = [_text(address, p) for p in _ADDRESS_PARTS]
        v = check.text("Address", ", ".join(codes.descriptor_code(p) for p in parts if p), max_len=1000, free_text=True)
        if v is not None:
            elements["student.address"] = v
    phone = _first_kept(check, elem.findall("Telephone"), f"{tag}/Telephone", frozenset(["TelephoneNumber"]))
    if phone is not None and (number := _text(phone, "TelephoneNumber")) is not None:
        v = check.text("Telephone/TelephoneNumber", number)
        if v is not None:
            elements["student.phone"] = v
    mail_kept = frozenset(["ElectronicMailAddress", "EmailAddress"])
    mail = _first_kept(check, elem.findall("ElectronicMail"), f"{tag}/ElectronicMail", mail_kept)
    if mail is not None and (address_text := _text(mail, "ElectronicMailAddress", "EmailAddress")) is not None:
        v = check.text("ElectronicMail", address_text)
        if v is not None:
            elements["student.email"] = v


def _student(elem: Element, src: Source, check: Check) -> Made:
    key = check.text("StudentUniqueId", _text(elem, "StudentUniqueId", "StudentUniqueStateId"), required=True)
    elements: dict[str, str] = {}
    programs: dict[str, bool] = {}
    _person_elements(elem, check, elements, programs)
    return student_part(check, src, FORMAT, "student", key, elements, programs)


def _seoa(elem: Element, src: Source, check: Check) -> Made:
    key = check.text("StudentReference", _student_ref(elem), required=True)
    org = _text(elem.find("EducationOrganizationReference"), ".//EducationOrganizationId") or ""
    elements: dict[str, str] = {}
    programs: dict[str, bool] = {}
    _person_elements(elem, check, elements, programs)
    return student_part(check, src, FORMAT, "seoa", key, elements, programs, org=org)


_SSA_KEPT = frozenset(
    ["EntryDate", "EntryGradeLevel", "EntryType", "ExitWithdrawDate", "ExitWithdrawType", "SchoolYear"]
)


def _ssa(elem: Element, src: Source, check: Check) -> Made:
    _drop_rest(check, elem, _SSA_KEPT, elem.tag)
    student = check.text("StudentReference", _student_ref(elem), required=True)
    school = check.text(
        "SchoolReference/SchoolId", _school_ref(elem, "SchoolReference", "EducationalOrgReference"), required=True
    )
    entry = check.date("EntryDate", _text(elem, "EntryDate"), required=True)
    grade = check.code(
        "EntryGradeLevel", _text(elem, "EntryGradeLevel"), codes.normalise_grade, accepted=codes.GRADES_ACCEPTED
    )
    entry_type = check.text("EntryType", _opt_code(_text(elem, "EntryType")))
    exit_date = check.date("ExitWithdrawDate", _text(elem, "ExitWithdrawDate"))
    exit_code = check.text("ExitWithdrawType", _opt_code(_text(elem, "ExitWithdrawType")))
    return school_association(check, src, FORMAT, student, school, entry, exit_date, exit_code, grade, entry_type)


def _opt_code(text: str | None) -> str | None:
    return codes.descriptor_code(text) if text else None


def _section(elem: Element) -> tuple[str | None, str | None]:
    ref = elem.find("SectionReference")
    school = _text(ref, ".//SchoolId", ".//StateOrganizationId")
    section = _text(ref, ".//SectionIdentifier", ".//UniqueSectionCode", ".//ClassPeriodName")
    return school, section


def _section_assoc(elem: Element, src: Source, check: Check) -> Made:
    _drop_rest(check, elem, frozenset(["BeginDate", "EndDate"]), elem.tag)
    student = check.text("StudentReference", _student_ref(elem), required=True)
    school_raw, section_raw = _section(elem)
    school = check.text("SectionReference/SchoolId", school_raw, required=True)
    section = check.text("SectionReference/SectionIdentifier", section_raw, required=True)
    begin = check.date("BeginDate", _text(elem, "BeginDate"), required=True)
    end = check.date("EndDate", _text(elem, "EndDate"))
    if student is None or school is None or section is None or begin is None or not check.ok:
        return None
    rid = record_id(FORMAT, "section", student, school, section, begin.isoformat())
    return formats.in_class(src, rid, student, school, section, begin, end)


_EVENT_KEPT = frozenset(["EventDate", "AttendanceEventCategory"])


def _attendance(elem: Element, src: Source, check: Check) -> Made:
    tag = elem.tag
    wrapper = elem.find("AttendanceEvent")  # every Data Standard from 2.0 on; 1.x had none
    event = wrapper if wrapper is not None else elem
    if wrapper is not None:
        _drop_rest(check, elem, frozenset(["AttendanceEvent"]), tag)
        _drop_rest(check, wrapper, _EVENT_KEPT, f"{tag}/AttendanceEvent")
    else:
        _drop_rest(check, elem, _EVENT_KEPT, tag)
    student = check.text("StudentReference", _student_ref(elem), required=True)
    period: str | None = None
    if tag == "StudentSectionAttendanceEvent":
        school_raw, section_raw = _section(elem)
        period = check.text("SectionReference/SectionIdentifier", section_raw, required=True)
    else:
        school_raw = _school_ref(elem, "SchoolReference")
    school = check.text("SchoolReference/SchoolId", school_raw, required=True)
    day = check.date("EventDate", _text(event, "EventDate"), required=True)
    raw = check.text("AttendanceEventCategory", _text(event, "AttendanceEventCategory"), required=True)
    return attendance_event(
        check, src, XML_NAMES, raw_category=raw, student=student, school=school, day=day, period=period
    )


_DISCIPLINE_KEPT = frozenset(
    [
        "DisciplineActionIdentifier",
        "Discipline",
        "Disciplines",
        "DisciplineDate",
        "DisciplineActionLength",
        "ActualDisciplineActionLength",
    ]
)


def _discipline_action(elem: Element, src: Source, check: Check) -> Made:
    kinds = [_value(d) or "" for d in [*elem.findall("Discipline"), *elem.findall("Disciplines")]]
    results = [codes.edfi_suspension(k) for k in kinds if k]
    suspension = [r for r in results if r != "other"]
    if results and not suspension:
        # Detention, expulsion, community service ...: Homeroom collects suspension dates only.
        return Dropped(src.file, src.line, record="DisciplineAction (not a suspension)")
    _drop_rest(check, elem, _DISCIPLINE_KEPT, elem.tag)
    student = check.text("StudentReference", _student_ref(elem), required=True)
    school = check.text(
        "ResponsibilitySchoolReference/SchoolId",
        _school_ref(elem, "ResponsibilitySchoolReference", "AssignmentSchoolReference"),
        required=True,
    )
    start = check.date("DisciplineDate", _text(elem, "DisciplineDate"), required=True)
    length = _text(elem, "ActualDisciplineActionLength", "DisciplineActionLength")
    days: float | None = None
    if length is not None:
        try:
            days = float(length)
        except ValueError:
            check.fail(
                "DisciplineActionLength", "schema.type", "DisciplineActionLength must be a number of days.", length
            )
    action_id = _text(elem, "DisciplineActionIdentifier") or ""
    return suspension_event(check, src, XML_NAMES, suspension, student, school, start, days, action_id)


_PROGRAM_KEPT = frozenset(["BeginDate", "EndDate", "SchoolFoodServiceProgramService", "SchoolFoodServicesEligibility"])


def _program_association(elem: Element, src: Source, check: Check) -> Made:
    tag = elem.tag
    flag = PROGRAM_ASSOCIATIONS.get(tag)
    program = _text(elem.find("ProgramReference"), ".//ProgramType", ".//ProgramName", ".//ProgramTypeDescriptor")
    if flag is None:
        flag = program_element(program or "")
    if flag is None:
        # CTE, migrant, homeless, gifted ...: no catalogue element, the association is skipped.
        return Dropped(src.file, src.line, record=f"{tag} ({codes.descriptor_code(program or 'unnamed program')})")
    _drop_rest(check, elem, _PROGRAM_KEPT, tag)
    student = check.text("StudentReference", _student_ref(elem), required=True)
    begin = check.date("BeginDate", _text(elem, "BeginDate"))
    end = check.date("EndDate", _text(elem, "EndDate"))
    value: bool | None = end is None  # an association that has ended no longer sets the flag
    if flag == "program.free_reduced_lunch":
        services = [
            _value(s) or "" for s in elem.iter() if s.tag in ("SchoolFoodServiceProgramService",) and not len(s)
        ]
        services += [v for v in [_text(elem, "SchoolFoodServicesEligibility")] if v]
        found = [frl_eligible(s) for s in services]
        known = [f for f in found if f is not None]
        value = (any(known) and end is None) if known else None
    if student is None or not check.ok:
        return None
    if value is None:
        return Dropped(src.file, src.line, record=f"{tag} (no eligibility given)")
    return pr.StudentRecord(
        source=src,
        source_record_id=record_id(FORMAT, "program", student, flag, begin.isoformat() if begin else ""),
        student_ref=student,
        programs={flag: value},
    )


def _school(elem: Element, src: Source, check: Check) -> Made:
    district = elem.tag == "LocalEducationAgency"
    _drop_rest(
        check,
        elem,
        frozenset(["SchoolId", "LocalEducationAgencyId", "StateOrganizationId", "NameOfInstitution", "GradeLevel"]),
        elem.tag,
    )
    ident = check.text(
        "SchoolId",
        _text(elem, "LocalEducationAgencyId" if district else "SchoolId", "StateOrganizationId"),
        required=True,
    )
    name = check.text("NameOfInstitution", _text(elem, "NameOfInstitution"), max_len=512)
    parent = _text(elem.find("LocalEducationAgencyReference"), ".//LocalEducationAgencyId", ".//StateOrganizationId")
    grades: list[str] = []
    for g in elem.iter("GradeLevel"):
        if len(g) and g.find("CodeValue") is None:
            continue  # a DS 3+ wrapper: its inner GradeLevel is read on its own
        code = codes.normalise_grade(_value(g) or "")
        if code:
            grades.append(code)
    if ident is None or not check.ok:
        return None
    return pr.SchoolRecord(
        source=src,
        source_record_id=record_id(FORMAT, "lea" if district else "school", ident),
        school_id=ident,
        org_type=pr.OrgType.DISTRICT if district else pr.OrgType.SCHOOL,
        name=name,
        parent_ref=None if district else parent,
        grades=tuple(dict.fromkeys(grades)),
    )


def session_id(school: str, year: int, name: str) -> str:
    """The academic session id rosters use for an Ed-Fi session: school, school year, name."""
    return f"{school}-{year}-{name}"


def course_id(school: str, local_code: str) -> str:
    """A course offering's course, per school (LocalCourseCode is the school's own code)."""
    return f"{school}-{local_code}"


def _course_offering(elem: Element, src: Source, check: Check) -> Made:
    _drop_rest(check, elem, frozenset(["LocalCourseCode", "LocalCourseTitle"]), elem.tag)
    school = check.text("SchoolReference/SchoolId", _school_ref(elem, "SchoolReference"), required=True)
    code = check.text("LocalCourseCode", _text(elem, "LocalCourseCode"), required=True)
    title = check.text("LocalCourseTitle", _text(elem, "LocalCourseTitle"), max_len=512, free_text=True)
    session = elem.find("SessionReference")
    year = _school_year(check, _text(session, ".//SchoolYear"), None) if session is not None else None
    if school is None or code is None or not check.ok:
        return None
    # Offerings of one course repeat per session, and real exports repeat an offering outright
    # (the DS 5.2 sample does): the line keeps each a record of its own; they all upsert the
    # same course.
    session_name = _text(session, ".//SessionName") or ""
    rid = record_id(FORMAT, "course-offering", school, code, session_name, str(year or ""), str(src.line))
    return pr.CourseRecord(
        source=src,
        source_record_id=rid,
        course_id=course_id(school, code),
        title=title or _text(elem.find("CourseReference"), ".//CourseCode") or code,
        course_code=code,
        school_id=school,
    )


def _section_record(elem: Element, src: Source, check: Check) -> Made:
    _drop_rest(check, elem, frozenset(["SectionIdentifier", "UniqueSectionCode", "SectionName"]), elem.tag)
    school = check.text(
        "SchoolReference/SchoolId",
        _school_ref(elem, "SchoolReference", "LocationSchoolReference")
        or _text(elem.find("CourseOfferingReference"), ".//SchoolId"),
        required=True,
    )
    section = check.text("SectionIdentifier", _text(elem, "SectionIdentifier", "UniqueSectionCode"), required=True)
    offering = elem.find("CourseOfferingReference")
    local_code = _text(offering, ".//LocalCourseCode")
    session_name = _text(offering, ".//SessionName")
    year_text = _text(offering, ".//SchoolYear")
    year = _school_year(check, year_text, None) if year_text else None
    title = check.text("SectionName", _text(elem, "SectionName"), max_len=512, free_text=True)
    periods = tuple(dict.fromkeys(p for p in (_value(e) for e in elem.iter("ClassPeriodName")) if p))
    location = _text(elem.find("LocationReference"), ".//ClassroomIdentificationCode")
    if school is None or section is None or not check.ok:
        return None
    # The section's id names its offering (course code, session, school year) wherever the
    # export nests it.
    offering_key = (_text(elem, f".//{name}") or "" for name in ("LocalCourseCode", "SessionName", "SchoolYear"))
    return pr.ClassRecord(
        source=src,
        source_record_id=record_id(FORMAT, "section-of", school, section, *offering_key),
        class_id=section,
        school_id=school,
        title=title or local_code or section,
        class_code=local_code,
        course_id=course_id(school, local_code) if local_code else None,
        term_ids=(session_id(school, year, session_name),) if year and session_name else (),
        periods=periods,
        location=location,
    )


def _session(elem: Element, src: Source, check: Check) -> Made:
    kept = frozenset(["SessionName", "SchoolYear", "BeginDate", "EndDate", "TotalInstructionalDays"])
    _drop_rest(check, elem, kept, elem.tag)
    school = check.text("SchoolReference/SchoolId", _school_ref(elem, "SchoolReference"), required=True)
    name = check.text("SessionName", _text(elem, "SessionName"), required=True)
    begin = check.date("BeginDate", _text(elem, "BeginDate"), required=True)
    end = check.date("EndDate", _text(elem, "EndDate"), required=True)
    year = _school_year(check, _text(elem, "SchoolYear"), begin)
    declared: int | None = None
    total = _text(elem, "TotalInstructionalDays")
    if total is not None:
        if total.isdecimal():  # isdigit() would take ², which int() refuses
            declared = int(total)
        else:
            check.fail("TotalInstructionalDays", "schema.type", "TotalInstructionalDays must be a whole number.", total)
    if begin and end and end < begin:
        check.fail("EndDate", "date.end_before_start", "The session ends before it begins.", vclass="date")
    calendar = session_calendar(check, src, FORMAT, school, year, name, begin, end, declared)
    if calendar is None or school is None or name is None or begin is None or end is None or year is None:
        return None
    term = (_value(elem.find("TermDescriptor")) or _text(elem, "Term") or name).lower()
    return calendar, pr.SessionRecord(
        source=src,
        source_record_id=record_id(FORMAT, "roster-session", school, str(year), name),
        session_id=session_id(school, year, name),
        title=name,
        session_type="semester" if "semester" in term else "term",
        start_date=begin,
        end_date=end,
        school_year=year + 1,
    )


def _calendar(elem: Element, src: Source, check: Check) -> Made:
    _drop_rest(check, elem, frozenset(["CalendarCode", "SchoolYear", "CalendarType"]), elem.tag)
    school = check.text("SchoolReference/SchoolId", _school_ref(elem, "SchoolReference"), required=True)
    code = check.text("CalendarCode", _text(elem, "CalendarCode"), required=True)
    year = _school_year(check, _text(elem, "SchoolYear"), None)
    if year is None and check.ok:
        check.fail("SchoolYear", "schema.required", "SchoolYear is required but is missing or empty.")
    return calendar_part(check, src, FORMAT, "calendar", school=school, year=year, key=(code,))


def _calendar_date(elem: Element, src: Source, check: Check) -> Made:
    _drop_rest(check, elem, frozenset(["Date", "CalendarEvent"]), elem.tag)
    ref = elem.find("CalendarReference")
    school = check.text(
        "CalendarReference/SchoolId",
        _text(ref, ".//SchoolId") or _school_ref(elem, "SchoolReference"),
        required=True,
    )
    day = check.date("Date", _text(elem, "Date"), required=True)
    year = _school_year(check, _text(ref, ".//SchoolYear"), day)
    events = [
        ("CalendarEvent", _text(event, "CalendarEvent", "CalendarEventDescriptor") or _value(event) or "")
        for event in elem.findall("CalendarEvent")
    ]
    code = _text(ref, ".//CalendarCode") or ""
    return calendar_date(check, src, XML_NAMES, school=school, year=year, code=code, day=day, events=events)


_ORGANISATION_RECORDS = frozenset(
    ["School", "LocalEducationAgency", "CourseOffering", "Section", "Session", "Calendar", "CalendarDate"]
)

# --- staff (StaffAssociation) ---------------------------------------------------------------------

_STAFF_KEPT = frozenset(["StaffUniqueId", "Name", "ElectronicMail"])
TEACHER_OF_RECORD = "Teacher of Record"


class _StaffGathered:
    """Staff members of one file and the schools its StaffSchoolAssociations give them: a
    pr.StaffRecord is the member's whole state (records replaces the schools), so each is emitted
    once, when the file ends. Staff are few (a district's teachers), so holding them is cheap."""

    def __init__(self) -> None:
        self.staff: dict[str, pr.StaffRecord] = {}
        self.schools: dict[str, list[str]] = {}

    def take_staff(self, elem: Element, src: Source, check: Check) -> Made:
        _drop_rest(check, elem, _STAFF_KEPT, elem.tag)
        name = elem.find("Name")
        if name is not None:
            _drop_rest(check, name, frozenset(["FirstName", "LastSurname"]), f"{elem.tag}/Name")
        mails = elem.findall("ElectronicMail")
        for extra in mails[1:]:
            check.drop(f"{elem.tag}/ElectronicMail", _content(extra))
        key = check.text("StaffUniqueId", _text(elem, "StaffUniqueId"), required=True)
        first = check.text("Name/FirstName", _text(name, "FirstName"), required=True, max_len=75)
        last = check.text("Name/LastSurname", _text(name, "LastSurname"), required=True, max_len=75)
        email = (
            check.text("ElectronicMail/ElectronicMailAddress", _text(mails[0], "ElectronicMailAddress"))
            if mails
            else None
        )
        if key is None or first is None or last is None or not check.ok:
            return None
        elements = {"staff.first_name": first, "staff.last_name": last, "staff.identifier": key}
        if email:
            elements["staff.email"] = email
        self.staff[key] = pr.StaffRecord(
            source=src,
            source_record_id=record_id(FORMAT, "staff", key),
            staff_ref=key,
            role="teacher",
            elements=elements,
        )
        return None  # the staff member goes out when the file ends, with every school

    def take_school(self, elem: Element, src: Source, check: Check) -> Made:
        _drop_rest(check, elem, frozenset(), elem.tag)
        key = check.text(
            "StaffReference/StaffUniqueId", _text(elem.find("StaffReference"), ".//StaffUniqueId"), required=True
        )
        school = check.text("SchoolReference/SchoolId", _school_ref(elem, "SchoolReference"), required=True)
        if key is None or school is None or not check.ok:
            return None
        mine = self.schools.setdefault(key, [])
        if school not in mine:
            mine.append(school)
        return None  # a school of the staff member's: it goes with them when the file ends

    def take_section(self, elem: Element, src: Source, check: Check) -> Made:
        _drop_rest(check, elem, frozenset(["ClassroomPosition", "BeginDate", "EndDate"]), elem.tag)
        key = check.text(
            "StaffReference/StaffUniqueId", _text(elem.find("StaffReference"), ".//StaffUniqueId"), required=True
        )
        school_raw, section_raw = _section(elem)
        school = check.text("SectionReference/SchoolId", school_raw, required=True)
        section = check.text("SectionReference/SectionIdentifier", section_raw, required=True)
        begin = check.date("BeginDate", _text(elem, "BeginDate"), required=True)
        end = check.date("EndDate", _text(elem, "EndDate"))
        if begin is not None and end is not None and end < begin:
            check.fail("EndDate", "date.end_before_start", "The EndDate is before the BeginDate.")
        position = _text(elem, "ClassroomPosition") or ""
        if key is None or school is None or section is None or begin is None or not check.ok:
            return None
        return pr.TeachingRecord(
            source=src,
            source_record_id=record_id(FORMAT, "staff-section", key, school, section, begin.isoformat()),
            staff_ref=key,
            class_id=section,
            school_id=school,
            primary=position.rsplit("#", 1)[-1] == TEACHER_OF_RECORD,
            begin_date=begin,
            end_date=end,
        )

    def records(self) -> Iterator[ParseItem]:
        for key, record in self.staff.items():
            yield replace(record, schools=tuple(self.schools.get(key, ())))


_STAFF_GATHERED: dict[str, Callable[[_StaffGathered, Element, Source, Check], Made]] = {
    "Staff": _StaffGathered.take_staff,
    "StaffSchoolAssociation": _StaffGathered.take_school,
    "StaffSectionAssociation": _StaffGathered.take_section,
}


_MAPPERS: dict[str, _Mapper] = {
    "Student": _student,
    "StudentEducationOrganizationAssociation": _seoa,
    "StudentSchoolAssociation": _ssa,
    "StudentSectionAssociation": _section_assoc,
    "StudentSchoolAttendanceEvent": _attendance,
    "StudentSectionAttendanceEvent": _attendance,
    "DisciplineAction": _discipline_action,
    "School": _school,
    "LocalEducationAgency": _school,
    "CourseOffering": _course_offering,
    "Section": _section_record,
    "Session": _session,
    "Calendar": _calendar,
    "CalendarDate": _calendar_date,
    "StudentProgramAssociation": _program_association,
    **{name: _program_association for name in PROGRAM_ASSOCIATIONS},
}

__all__ = ["USED_INTERCHANGES", "RecordError", "parse_edfi_xml"]
