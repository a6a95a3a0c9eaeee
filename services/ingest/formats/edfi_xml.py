"""Ed-Fi XML interchange files (the bulk-load format, and what inBloom ingested), streamed.

Parsed with ``defusedxml`` iterparse: DTDs, entity declarations and external references are
refused (``xml.forbidden``: billion laughs, XXE), and each record element is handled when it
closes and then removed from the tree, so memory stays flat however long the file is.
Namespaces are ignored (Ed-Fi 1.x ``http://ed-fi.org/0100`` through 5.x all read the same);
both the nested Data Standard 1/2 shapes (``Name/FirstName``, ``BirthData/BirthDate``,
``StudentUniqueStateId``) and the flat 3+ shapes (``FirstName``, ``BirthDate``,
``StudentUniqueId``) are understood.

=====================================  =========================================================
interchange: record element            becomes
=====================================  =========================================================
EducationOrganization: School          SchoolRecord (SchoolId / StateOrganizationId)
EducationOrganization: LocalEducation  SchoolRecord(org_type=district)
Agency
Student: Student                       StudentRecord (names, birth date, sex, race, ELL, FRL,
                                       504, home language, contact, state/district ids)
StudentEnrollment:                     EnrollmentRecord (enroll, or withdraw when an exit date
StudentSchoolAssociation               is given; grade, entry type, exit code)
StudentEnrollment:                     EnrollmentRecord with class_ref (section enrollment)
StudentSectionAssociation
StudentEnrollment: StudentEducation    partial StudentRecord (demographics and ids, DS 3+)
OrganizationAssociation
StudentAttendance:                     AttendanceRecord (daily)
StudentSchoolAttendanceEvent
StudentAttendance:                     AttendanceRecord (period = the section identifier)
StudentSectionAttendanceEvent
StudentDiscipline: DisciplineAction    SuspensionRecord when the action is a suspension;
                                       other actions: discipline.not_suspension
StudentDiscipline: DisciplineIncident  refused: element.forbidden (incident details)
and its associations
=====================================  =========================================================

Any other record element in a student interchange is refused (``record.type_unknown``); in the
education-organization interchange other elements (courses, programs, locations) are skipped.
Inside a record, an element that is neither mapped nor listed as bookkeeping is refused
(``element.unknown``) when it holds anything: inBloom took LearningStyles, Disabilities with
diagnoses, ProfileThumbnail and OldEthnicity; Homeroom does not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import IO
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

import defusedxml
import defusedxml.ElementTree as DET

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
from services.ingest.formats._edfi import (
    FORMAT_XML,
    INCIDENT_REASON,
    INCIDENT_RECORDS,
    attendance_event,
    frl_eligible,
    identification_code,
    lep_is_ell,
    program_element,
)
from services.ingest.records import (
    EnrollmentAction,
    EnrollmentRecord,
    OrgType,
    ParseItem,
    RecordError,
    SchoolRecord,
    Source,
    StudentRecord,
    SuspensionRecord,
    record_id,
)

FORMAT = FORMAT_XML
_LINE = " line"  # attribute key that cannot clash with a real XML attribute name


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
    """Yield records, errors and warnings from one Ed-Fi XML interchange file, in document order."""
    counter = Counter(file, opts, stream_size(stream))
    reader = CountingReader(stream)
    builder = _LineBuilder()
    parser = DET.DefusedXMLParser(target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    expat = parser.parser
    builder.line = lambda: int(expat.CurrentLineNumber)
    interchange = ""
    try:
        for _event, elem in DET.iterparse(reader, events=("end",), parser=parser):
            if elem.get(_LINE) is None:
                continue
            root = builder.root
            if not interchange and root is not None:
                interchange = root.tag
                if not interchange.startswith("Interchange"):
                    yield file_error(file, "schema.invalid", "The file is XML but not an Ed-Fi interchange.", 1)
                    counter.done(reader.bytes_read)
                    return
            yield from _record(elem, interchange, file, opts)
            counter.row(lambda: reader.bytes_read)
            if root is not None:
                root.clear()
    except defusedxml.DefusedXmlException as exc:
        yield file_error(
            file,
            "xml.forbidden",
            "The file declares a DTD, entities or external references "
            f"({type(exc).__name__}). Ed-Fi interchanges need none, and they are how XML bombs and "
            "external-entity attacks work, so the whole file was refused.",
            int(expat.CurrentLineNumber or 0),
        )
    except ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else 0
        yield file_error(
            file,
            "file.unreadable",
            f"The file is not well-formed XML at line {line}; records before that point were read, nothing after it.",
            line,
        )
    else:
        if builder.root is not None and not builder.root.tag.startswith("Interchange"):
            yield file_error(file, "schema.invalid", "The file is XML but not an Ed-Fi interchange.", 1)
    counter.done(reader.bytes_read)


# --- helpers ----------------------------------------------------------------------------------


def _text(elem: Element | None, *paths: str) -> str | None:
    if elem is None:
        return None
    for path in paths:
        found = elem.find(path)
        if found is not None:
            t = "".join(found.itertext()).strip()
            if t:
                return t
    return None


def _content(elem: Element) -> str:
    parts = [t for t in elem.itertext() if t.strip()]
    parts.extend(v for k, v in elem.attrib.items() if k != _LINE)
    return " ".join(parts)


def _student_ref(elem: Element) -> str | None:
    ref = elem.find("StudentReference")
    return _text(ref, ".//StudentUniqueId", ".//StudentUniqueStateId")


def _school_ref(elem: Element, *names: str) -> str | None:
    for name in names:
        ref = elem.find(name)
        found = _text(ref, ".//SchoolId", ".//StateOrganizationId", ".//EducationOrganizationId")
        if found:
            return found
    return None


def _refused_early(check: Check, elem: Element, known: frozenset[str]) -> bool:
    """SSNs anywhere and unknown elements: the record is refused before anything is mapped."""
    _screen_all(check, elem, elem.tag)
    if check.ok:
        _unknown_children(check, elem, known, elem.tag)
    return not check.ok


def _unknown_children(check: Check, elem: Element, known: frozenset[str], path: str) -> None:
    for child in elem:
        if child.tag not in known:
            check.unknown(f"{path}/{child.tag}", _content(child), what=f" in {path}")


def _screen_all(check: Check, elem: Element, path: str) -> None:
    """Every value in the record is screened for SSNs, mapped or not."""
    text = elem.text
    if text and not text.isspace() and not check.forbid_ssn_field(path, text):
        check.screen(path, text.strip())
    for k, v in elem.attrib.items():
        if k != _LINE and not check.forbid_ssn_field(k, v):
            check.screen(f"{path}@{k}", v)
    for child in elem:
        _screen_all(check, child, f"{path}/{child.tag}")


# --- records ----------------------------------------------------------------------------------

_Mapper = Callable[[Element, Source, Check], Iterator[ParseItem]]


def _record(elem: Element, interchange: str, file: str, opts: ParseOptions) -> Iterator[ParseItem]:
    line = int(elem.attrib.pop(_LINE, "0"))
    src = Source(FORMAT, file, line, elem.tag)
    check = Check(src, "", opts)
    tag = elem.tag
    if tag in INCIDENT_RECORDS:
        check.forbidden(tag, "discipline.incident_details", INCIDENT_REASON)
        yield from check.errors
        return
    mapper = _MAPPERS.get(tag)
    if mapper is None:
        if interchange == "InterchangeEducationOrganization":
            return
        check.fail(
            tag,
            "record.type_unknown",
            f"Homeroom does not take {tag} records from {interchange or 'an interchange'}.",
            vclass="record",
        )
        yield from check.errors
        return
    yield from mapper(elem, src, check)


_STUDENT_KNOWN = frozenset(
    [
        "StudentUniqueId",
        "StudentUniqueStateId",
        "StudentIdentificationCode",
        "Name",
        "FirstName",
        "MiddleName",
        "LastSurname",
        "Sex",
        "BirthSex",
        "BirthData",
        "BirthDate",
        "Address",
        "Telephone",
        "ElectronicMail",
        "HispanicLatinoEthnicity",
        "Race",
        "LimitedEnglishProficiency",
        "HomeLanguages",
        "Language",
        "Section504Disabilities",
        "SchoolFoodServicesEligibility",
        "ProgramParticipations",
        "PersonReference",
        "StudentReference",
        "EducationOrganizationReference",
    ]
)
_ADDRESS_PARTS = ("StreetNumberName", "ApartmentRoomSuiteNumber", "City", "StateAbbreviation", "PostalCode")
_ADDRESS_OTHER = frozenset(
    [
        "BuildingSiteNumber",
        "NameOfCounty",
        "CountyFIPSCode",
        "CountryCode",
        "Country",
        "Latitude",
        "Longitude",
        "OpenDate",
        "CloseDate",
        "AddressType",
        "Period",
        "DoNotPublishIndicator",
        "CongressionalDistrict",
        "Locale",
    ]
)


def _person_elements(elem: Element, check: Check, elements: dict[str, str], programs: dict[str, bool]) -> None:
    """Student and StudentEducationOrganizationAssociation content (everything but the key)."""
    name = elem.find("Name")
    if name is not None:
        _unknown_children(check, name, frozenset(["FirstName", "MiddleName", "LastSurname"]), "Name")
    for tag, element, required in (
        ("FirstName", "student.first_name", False),
        ("MiddleName", "student.middle_name", False),
        ("LastSurname", "student.last_name", False),
    ):
        v = check.text(tag, _text(elem, tag, f"Name/{tag}"), required=required)
        if v is not None:
            elements[element] = v
    birth = elem.find("BirthData")
    if birth is not None:
        _unknown_children(check, birth, frozenset(["BirthDate"]), "BirthData")
    d = check.date("BirthDate", _text(elem, "BirthDate", "BirthData/BirthDate"))
    if d is not None:
        elements["student.birth_date"] = d.isoformat()
    sex = _text(elem, "Sex", "BirthSex", "SexDescriptor")
    if sex is not None:
        code = check.code("Sex", sex, codes.normalise_sex, accepted=SEX_ACCEPTED)
        if code is not None:
            elements["student.sex"] = code
    for ident in elem.findall("StudentIdentificationCode"):
        system = ident.get("IdentificationSystem") or _text(ident, "StudentIdentificationSystem")
        _unknown_children(
            check,
            ident,
            frozenset(["IdentificationCode", "StudentIdentificationSystem", "AssigningOrganizationIdentificationCode"]),
            "StudentIdentificationCode",
        )
        identification_code(check, "StudentIdentificationCode", system, _text(ident, "IdentificationCode"), elements)
    races: set[str] = set()
    hisp = _text(elem, "HispanicLatinoEthnicity")
    if hisp is not None and check.boolean("HispanicLatinoEthnicity", hisp):
        races.add("hispanic_latino")
    for race in elem.findall("Race"):
        for cat in list(race) or [race]:
            t = "".join(cat.itertext()).strip()
            if t:
                code = check.code("Race", t, codes.normalise_race, accepted=RACE_ACCEPTED)
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
        if eligible is None:
            check.warn("SchoolFoodServicesEligibility", "code.unknown", "SchoolFoodServicesEligibility is not known.")
        else:
            programs["program.free_reduced_lunch"] = eligible
    disabilities_504 = elem.find("Section504Disabilities")
    if disabilities_504 is not None and _content(disabilities_504):
        programs["program.section_504"] = True
    for part in elem.findall("ProgramParticipations"):
        program = _text(part, "Program")
        flag = program_element(program or "")
        if flag is None:
            check.unknown("ProgramParticipations/Program", program or _content(part), what=" as a program")
        else:
            programs[flag] = True
    lang = _text(elem, "HomeLanguages/Language", "Language/Language", "Language")
    if lang is not None:
        v = check.text("HomeLanguages", codes.descriptor_code(lang))
        if v is not None:
            elements["student.home_language"] = v
    address = elem.find("Address")
    if address is not None:
        _unknown_children(check, address, frozenset(_ADDRESS_PARTS) | _ADDRESS_OTHER, "Address")
        parts = [_text(address, p) for p in _ADDRESS_PARTS]
        v = check.text("Address", ", ".join(p for p in parts if p), max_len=1000, free_text=True)
        if v is not None:
            elements["student.address"] = v
    phone = _text(elem, "Telephone/TelephoneNumber")
    if phone is not None:
        v = check.text("Telephone/TelephoneNumber", phone)
        if v is not None:
            elements["student.phone"] = v
    email = _text(elem, "ElectronicMail/EmailAddress", "ElectronicMail/ElectronicMailAddress")
    if email is not None:
        v = check.text("ElectronicMail", email)
        if v is not None:
            elements["student.email"] = v


def _student(elem: Element, src: Source, check: Check) -> Iterator[ParseItem]:
    if _refused_early(check, elem, _STUDENT_KNOWN):
        yield from check.errors
        return
    key = check.text("StudentUniqueId", _text(elem, "StudentUniqueId", "StudentUniqueStateId"), required=True)
    elements: dict[str, str] = {}
    programs: dict[str, bool] = {}
    _person_elements(elem, check, elements, programs)
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
            programs=programs,
        ),
    )


def _seoa(elem: Element, src: Source, check: Check) -> Iterator[ParseItem]:
    if _refused_early(check, elem, _STUDENT_KNOWN):
        yield from check.errors
        return
    key = check.text("StudentReference", _student_ref(elem), required=True)
    org = _text(elem.find("EducationOrganizationReference"), ".//EducationOrganizationId") or ""
    elements: dict[str, str] = {}
    programs: dict[str, bool] = {}
    _person_elements(elem, check, elements, programs)
    if key is None or not check.ok:
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


_SSA_KNOWN = frozenset(
    [
        "StudentReference",
        "SchoolReference",
        "EducationalOrgReference",
        "EntryDate",
        "EntryGradeLevel",
        "EntryType",
        "ExitWithdrawDate",
        "ExitWithdrawType",
        # bookkeeping about the enrollment itself: read past, never stored
        "SchoolYear",
        "ClassOfSchoolYear",
        "RepeatGradeIndicator",
        "PrimarySchool",
        "SchoolChoiceTransfer",
        "GraduationPlanReference",
        "CalendarReference",
        "EducationPlans",
        "EducationPlan",
        "FullTimeEquivalency",
        "TermCompletionIndicator",
        "EnrollmentType",
        "EntryGradeLevelReason",
        "NextYearGradeLevel",
        "NextYearSchoolReference",
        "AlternativeGraduationPlanReference",
        "SchoolChoice",
        "SchoolChoiceBasis",
    ]
)


def _ssa(elem: Element, src: Source, check: Check) -> Iterator[ParseItem]:
    if _refused_early(check, elem, _SSA_KNOWN):
        yield from check.errors
        return
    student = check.text("StudentReference", _student_ref(elem), required=True)
    school = check.text(
        "SchoolReference/SchoolId", _school_ref(elem, "SchoolReference", "EducationalOrgReference"), required=True
    )
    entry = check.date("EntryDate", _text(elem, "EntryDate"), required=True)
    grade = check.code(
        "EntryGradeLevel", _text(elem, "EntryGradeLevel"), codes.normalise_grade, accepted=GRADES_ACCEPTED
    )
    entry_type = check.text("EntryType", _opt_code(_text(elem, "EntryType")))
    exit_date = check.date("ExitWithdrawDate", _text(elem, "ExitWithdrawDate"))
    exit_code = check.text("ExitWithdrawType", _opt_code(_text(elem, "ExitWithdrawType")))
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


def _opt_code(text: str | None) -> str | None:
    return codes.descriptor_code(text) if text else None


def _section(elem: Element) -> tuple[str | None, str | None]:
    ref = elem.find("SectionReference")
    school = _text(ref, ".//SchoolId", ".//StateOrganizationId")
    section = _text(ref, ".//SectionIdentifier", ".//UniqueSectionCode", ".//ClassPeriodName")
    return school, section


_SECTION_ASSOC_KNOWN = frozenset(
    ["StudentReference", "SectionReference", "BeginDate", "EndDate", "HomeroomIndicator", "RepeatIdentifier"]
)


def _section_assoc(elem: Element, src: Source, check: Check) -> Iterator[ParseItem]:
    if _refused_early(check, elem, _SECTION_ASSOC_KNOWN):
        yield from check.errors
        return
    student = check.text("StudentReference", _student_ref(elem), required=True)
    school_raw, section_raw = _section(elem)
    school = check.text("SectionReference/SchoolId", school_raw, required=True)
    section = check.text("SectionReference/SectionIdentifier", section_raw, required=True)
    begin = check.date("BeginDate", _text(elem, "BeginDate"), required=True)
    end = check.date("EndDate", _text(elem, "EndDate"))
    if student is None or school is None or section is None or begin is None or not check.ok:
        yield from check.errors
        return
    yield from issues_then(
        check,
        EnrollmentRecord(
            source=src,
            source_record_id=record_id(FORMAT, "section", student, school, section, begin.isoformat()),
            action=EnrollmentAction.ENROLL,
            student_ref=student,
            school_id=school,
            entry_date=begin,
            exit_date=end,
            class_ref=section,
        ),
    )


_ATTENDANCE_KNOWN = frozenset(
    [
        "StudentReference",
        "SchoolReference",
        "SectionReference",
        "SessionReference",
        "EventDate",
        "AttendanceEventCategory",
        "EducationalEnvironment",
        "EventDuration",
        "SchoolAttendanceDuration",
        "SectionAttendanceDuration",
        "ArrivalTime",
        "DepartureTime",
    ]
)


def _attendance(elem: Element, src: Source, check: Check) -> Iterator[ParseItem]:
    if _refused_early(check, elem, _ATTENDANCE_KNOWN):
        yield from check.errors
        return
    student = check.text("StudentReference", _student_ref(elem), required=True)
    period: str | None = None
    if elem.tag == "StudentSectionAttendanceEvent":
        school_raw, section_raw = _section(elem)
        period = check.text("SectionReference/SectionIdentifier", section_raw, required=True)
    else:
        school_raw = _school_ref(elem, "SchoolReference")
    school = check.text("SchoolReference/SchoolId", school_raw, required=True)
    day = check.date("EventDate", _text(elem, "EventDate"), required=True)
    raw = check.text("AttendanceEventCategory", _text(elem, "AttendanceEventCategory"), required=True)
    yield from attendance_event(
        check,
        src,
        FORMAT,
        category_field="AttendanceEventCategory",
        raw_category=raw,
        student=student,
        school=school,
        day=day,
        period=period,
    )


_DISCIPLINE_KNOWN = frozenset(
    [
        "DisciplineActionIdentifier",
        "Discipline",
        "Disciplines",
        "DisciplineDate",
        "DisciplineActionLength",
        "ActualDisciplineActionLength",
        "StudentReference",
        "ResponsibilitySchoolReference",
        "AssignmentSchoolReference",
        "DisciplineIncidentReference",
        "StudentDisciplineIncidentAssociationReference",
        "StudentDisciplineIncidentBehaviorAssociationReference",
        "StaffReference",
    ]
)


def _discipline_action(elem: Element, src: Source, check: Check) -> Iterator[ParseItem]:
    if _refused_early(check, elem, _DISCIPLINE_KNOWN):
        yield from check.errors
        return
    kinds = [
        "".join(d.itertext()).strip() for d in elem.iter() if d.tag in ("Discipline", "CodeValue", "ShortDescription")
    ]
    results = [codes.edfi_suspension(k) for k in kinds if k]
    suspension = [r for r in results if r != "other"]
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
    if not suspension:
        check.fail(
            "Discipline",
            "discipline.not_suspension",
            "Only suspensions are accepted from discipline data (dates only); this action is not a suspension.",
            vclass="code",
        )
    if student is None or school is None or start is None or not check.ok:
        yield from check.errors
        return
    in_school = suspension[0] if isinstance(suspension[0], bool) else None
    yield from issues_then(
        check,
        SuspensionRecord(
            source=src,
            source_record_id=record_id(FORMAT, "suspension", student, school, start.isoformat()),
            student_ref=student,
            school_id=school,
            start_date=start,
            in_school=in_school,
            school_days=days,
            end_date=start if days is not None and days <= 1 else None,
        ),
    )


def _school(elem: Element, src: Source, check: Check) -> Iterator[ParseItem]:
    district = elem.tag == "LocalEducationAgency"
    ident = check.text(
        "SchoolId",
        _text(elem, "LocalEducationAgencyId" if district else "SchoolId", "StateOrganizationId"),
        required=True,
    )
    name = check.text("NameOfInstitution", _text(elem, "NameOfInstitution"), max_len=512)
    parent = _text(elem.find("LocalEducationAgencyReference"), ".//LocalEducationAgencyId", ".//StateOrganizationId")
    grades: list[str] = []
    for g in elem.iter("GradeLevel"):
        code = codes.normalise_grade("".join(g.itertext()).strip())
        if code:
            grades.append(code)
    if ident is None or not check.ok:
        yield from check.errors
        return
    yield SchoolRecord(
        source=src,
        source_record_id=record_id(FORMAT, "lea" if district else "school", ident),
        school_id=ident,
        org_type=OrgType.DISTRICT if district else OrgType.SCHOOL,
        name=name,
        parent_ref=None if district else parent,
        grades=tuple(dict.fromkeys(grades)),
    )


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
}

__all__ = ["RecordError", "parse_edfi_xml"]
