from __future__ import annotations

import io
import tracemalloc
from datetime import date
from typing import IO, cast

from services.ingest.formats import ParseOptions, Progress
from services.ingest.formats.edfi_xml import parse_edfi_xml
from services.ingest.parsed_records import (
    AttendanceCategory,
    AttendanceRecord,
    Dropped,
    EnrollmentAction,
    EnrollmentRecord,
    OrgType,
    ParseItem,
    RecordError,
    RecordWarning,
    SchoolRecord,
    StudentRecord,
    SuspensionRecord,
)
from tests.services.ingest.ingest_data import IterStream, xml_attendance_lines


def parse(xml: str | bytes, **kw: object) -> list[ParseItem]:
    data = xml.encode() if isinstance(xml, str) else xml
    return list(parse_edfi_xml(io.BytesIO(data), file="x.xml", **kw))  # type: ignore[arg-type]


def errors(items: list[ParseItem]) -> list[RecordError]:
    return [i for i in items if isinstance(i, RecordError)]


def records(items: list[ParseItem]) -> list[ParseItem]:
    return [i for i in items if not isinstance(i, RecordError | RecordWarning | Dropped)]


def dropped(items: list[ParseItem]) -> list[str]:
    return [n for i in items if isinstance(i, Dropped) for n in (i.names or (i.record,))]


STUDENTS = """<?xml version="1.0" encoding="UTF-8"?>
<InterchangeStudent xmlns="http://ed-fi.org/0220" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <Student id="S1">
    <StudentUniqueId>604822</StudentUniqueId>
    <StudentIdentificationCode IdentificationSystem="District" AssigningOrganizationCode="255901">
      <IdentificationCode>D-4411</IdentificationCode>
    </StudentIdentificationCode>
    <Name><FirstName>Lisa</FirstName><MiddleName>K</MiddleName><LastSurname>Woods</LastSurname></Name>
    <Sex>Female</Sex>
    <BirthData><BirthDate>2010-01-13</BirthDate></BirthData>
    <HispanicLatinoEthnicity>true</HispanicLatinoEthnicity>
    <Race><RacialCategory>White</RacialCategory></Race>
    <LimitedEnglishProficiency>Limited</LimitedEnglishProficiency>
    <SchoolFoodServicesEligibility>Reduced price</SchoolFoodServicesEligibility>
    <HomeLanguages><Language>Spanish</Language></HomeLanguages>
  </Student>
  <Student>
    <StudentUniqueId>604823</StudentUniqueId>
    <StudentIdentificationCode IdentificationSystem="SSN"><IdentificationCode>X-1</IdentificationCode></StudentIdentificationCode>
    <Name><FirstName>Bo</FirstName><LastSurname>Ng</LastSurname></Name>
  </Student>
  <Student>
    <StudentUniqueStateId>604824</StudentUniqueStateId>
    <Name Verification="Birth certificate"><FirstName>Cy</FirstName><LastSurname>Oh</LastSurname></Name>
    <LearningStyles><VisualLearning>1</VisualLearning></LearningStyles>
    <Disabilities><Disability>Deafness</Disability></Disabilities>
  </Student>
  <Student>
    <StudentUniqueId>604825</StudentUniqueId>
    <Name><FirstName>Di</FirstName><LastSurname>Li</LastSurname></Name>
    <BirthData><BirthDate>2010-02-30</BirthDate><CityOfBirth>Troy</CityOfBirth></BirthData>
  </Student>
  <Student>
    <StudentUniqueId>604826</StudentUniqueId>
    <Name><FirstName>Ed</FirstName><LastSurname>Wu</LastSurname></Name>
    <Address><StreetNumberName>1 Main St, SSN 123-45-6789</StreetNumberName></Address>
  </Student>
  <Student>
    <StudentUniqueId>604827</StudentUniqueId>
    <FirstName>Flat</FirstName><LastSurname>Shape</LastSurname><BirthDate>2011-03-04</BirthDate>
    <BirthSex>uri://ed-fi.org/SexDescriptor#Male</BirthSex>
  </Student>
</InterchangeStudent>
"""  # noqa: E501


def test_students_good_and_bad() -> None:
    items = parse(STUDENTS)
    good, cy, flat = records(items)
    assert isinstance(good, StudentRecord)
    assert good.student_ref == "604822"
    assert good.elements == {
        "student.first_name": "Lisa",
        "student.middle_name": "K",
        "student.last_name": "Woods",
        "student.birth_date": "2010-01-13",
        "student.sex": "female",
        "student.local_id": "D-4411",
        "student.race_ethnicity": "hispanic_latino;white",
        "student.home_language": "Spanish",
        "student.state_id": "604822",
    }
    assert good.programs == {"program.ell": True, "program.free_reduced_lunch": True}
    assert good.source.line == 3
    assert isinstance(flat, StudentRecord) and flat.elements["student.sex"] == "male"
    # elements the catalogue does not use are dropped (named, never kept), not refused
    assert isinstance(cy, StudentRecord) and cy.elements["student.first_name"] == "Cy"
    assert "Deafness" not in repr(cy) and "VisualLearning" not in repr(cy)
    assert dropped(items) == ["Student/LearningStyles", "Student/Disabilities"]
    errs = errors(items)
    assert [(e.line, e.field, e.rule) for e in errs] == [
        (17, "StudentIdentificationCode", "ssn.forbidden"),
        (28, "BirthDate", "date.invalid"),
        (33, "Student/Address/StreetNumberName", "ssn.forbidden"),
    ]
    for e in errs:
        assert "Deafness" not in e.message and "123-45-6789" not in e.message and "Troy" not in e.message


ENROLLMENT = """<InterchangeStudentEnrollment xmlns="http://ed-fi.org/0320">
<StudentSchoolAssociation>
  <StudentReference><StudentIdentity><StudentUniqueId>604822</StudentUniqueId></StudentIdentity></StudentReference>
  <SchoolReference><SchoolIdentity><SchoolId>255901001</SchoolId></SchoolIdentity></SchoolReference>
  <EntryDate>2024-09-03</EntryDate>
  <EntryGradeLevel>uri://ed-fi.org/GradeLevelDescriptor#Ninth grade</EntryGradeLevel>
  <PrimarySchool>true</PrimarySchool>
</StudentSchoolAssociation>
<StudentSchoolAssociation>
  <StudentReference><StudentIdentity><StudentUniqueId>604823</StudentUniqueId></StudentIdentity></StudentReference>
  <SchoolReference><SchoolIdentity><SchoolId>255901001</SchoolId></SchoolIdentity></SchoolReference>
  <EntryDate>2024-09-03</EntryDate>
  <EntryGradeLevel>Ninth grade</EntryGradeLevel>
  <ExitWithdrawDate>2024-10-01</ExitWithdrawDate>
  <ExitWithdrawType>uri://ed-fi.org/ExitWithdrawTypeDescriptor#Transferred</ExitWithdrawType>
</StudentSchoolAssociation>
<StudentSchoolAssociation>
  <StudentReference><StudentIdentity><StudentUniqueId>604824</StudentUniqueId></StudentIdentity></StudentReference>
  <EntryDate>2024-09-03</EntryDate>
  <EntryGradeLevel>Grade Fourteen</EntryGradeLevel>
</StudentSchoolAssociation>
<StudentSectionAssociation>
  <StudentReference><StudentIdentity><StudentUniqueId>604822</StudentUniqueId></StudentIdentity></StudentReference>
  <SectionReference><SectionIdentity><SchoolId>255901001</SchoolId><SectionIdentifier>ALG-1</SectionIdentifier></SectionIdentity></SectionReference>
  <BeginDate>2024-09-03</BeginDate>
</StudentSectionAssociation>
<GraduationPlan><Type>Standard</Type></GraduationPlan>
</InterchangeStudentEnrollment>"""


def test_enrollment_interchange() -> None:
    items = parse(ENROLLMENT)
    enroll, withdraw, section = records(items)
    assert isinstance(enroll, EnrollmentRecord) and enroll.action is EnrollmentAction.ENROLL
    assert (enroll.school_id, enroll.grade_level, enroll.entry_date) == ("255901001", "09", date(2024, 9, 3))
    assert isinstance(withdraw, EnrollmentRecord) and withdraw.action is EnrollmentAction.WITHDRAW
    assert (withdraw.exit_date, withdraw.exit_code) == (date(2024, 10, 1), "Transferred")
    assert isinstance(section, EnrollmentRecord) and section.class_ref == "ALG-1"
    assert [(e.field, e.rule) for e in errors(items)] == [("SchoolReference/SchoolId", "schema.required")]
    # a record type Homeroom takes nothing from is skipped and counted, not refused
    assert dropped(items) == ["StudentSchoolAssociation/PrimarySchool", "GraduationPlan"]
    # an unknown optional grade on a refused record is not reported separately
    assert not [w for w in items if isinstance(w, RecordWarning)]


ATTENDANCE = """<InterchangeStudentAttendance xmlns="http://ed-fi.org/5.1.0">
<StudentSchoolAttendanceEvent>
  <StudentReference><StudentIdentity><StudentUniqueId>604822</StudentUniqueId></StudentIdentity></StudentReference>
  <SchoolReference><SchoolIdentity><SchoolId>255901001</SchoolId></SchoolIdentity></SchoolReference>
  <SessionReference><SessionIdentity><SessionName>Fall</SessionName></SessionIdentity></SessionReference>
  <EventDate>2024-09-10</EventDate>
  <AttendanceEventCategory>uri://ed-fi.org/AttendanceEventCategoryDescriptor#Excused Absence</AttendanceEventCategory>
</StudentSchoolAttendanceEvent>
<StudentSectionAttendanceEvent>
  <StudentReference><StudentIdentity><StudentUniqueId>604822</StudentUniqueId></StudentIdentity></StudentReference>
  <SectionReference><SectionIdentity><SchoolId>255901001</SchoolId><SectionIdentifier>ALG-1</SectionIdentifier></SectionIdentity></SectionReference>
  <EventDate>2024-09-11</EventDate>
  <AttendanceEventCategory>Tardy</AttendanceEventCategory>
</StudentSectionAttendanceEvent>
<StudentSchoolAttendanceEvent>
  <StudentReference><StudentIdentity><StudentUniqueId>604822</StudentUniqueId></StudentIdentity></StudentReference>
  <SchoolReference><SchoolIdentity><SchoolId>255901001</SchoolId></SchoolIdentity></SchoolReference>
  <EventDate>2024-09-12</EventDate>
  <AttendanceEventCategory>Unexcused Absence</AttendanceEventCategory>
  <AttendanceEventReason>Family says she was at the clinic</AttendanceEventReason>
</StudentSchoolAttendanceEvent>
<StudentSchoolAttendanceEvent>
  <StudentReference><StudentIdentity><StudentUniqueId>604822</StudentUniqueId></StudentIdentity></StudentReference>
  <SchoolReference><SchoolIdentity><SchoolId>255901001</SchoolId></SchoolIdentity></SchoolReference>
  <EventDate>2024-09-13</EventDate>
  <AttendanceEventCategory>Sleeping in</AttendanceEventCategory>
</StudentSchoolAttendanceEvent>
</InterchangeStudentAttendance>"""


def test_attendance_interchange() -> None:
    items = parse(ATTENDANCE)
    daily, period, reasoned = records(items)
    assert isinstance(daily, AttendanceRecord)
    assert (daily.category, daily.excused, daily.period) == (AttendanceCategory.ABSENT, True, None)
    assert isinstance(period, AttendanceRecord)
    assert (period.category, period.period) == (AttendanceCategory.TARDY, "ALG-1")
    # the free-text reason is dropped (never kept), the absence itself is taken
    assert isinstance(reasoned, AttendanceRecord) and reasoned.category is AttendanceCategory.ABSENT
    assert dropped(items) == ["StudentSchoolAttendanceEvent/AttendanceEventReason"]
    assert "clinic" not in repr(items)
    assert [e.rule for e in errors(items)] == ["code.unknown"]


DISCIPLINE = """<InterchangeStudentDiscipline xmlns="http://ed-fi.org/0220">
<DisciplineIncident>
  <IncidentIdentifier>INC-9</IncidentIdentifier>
  <IncidentDescription>Fight in cafeteria</IncidentDescription>
</DisciplineIncident>
<StudentDisciplineIncidentAssociation>
  <StudentReference><StudentIdentity><StudentUniqueId>604822</StudentUniqueId></StudentIdentity></StudentReference>
  <StudentParticipationCode>Perpetrator</StudentParticipationCode>
</StudentDisciplineIncidentAssociation>
<DisciplineAction>
  <DisciplineActionIdentifier>DA-1</DisciplineActionIdentifier>
  <Disciplines><CodeValue>Out of School Suspension</CodeValue></Disciplines>
  <DisciplineDate>2024-09-20</DisciplineDate>
  <DisciplineActionLength>3</DisciplineActionLength>
  <StudentReference><StudentIdentity><StudentUniqueId>604822</StudentUniqueId></StudentIdentity></StudentReference>
  <DisciplineIncidentReference><DisciplineIncidentIdentity><IncidentIdentifier>INC-9</IncidentIdentifier></DisciplineIncidentIdentity></DisciplineIncidentReference>
  <ResponsibilitySchoolReference><EducationalOrgIdentity><StateOrganizationId>255901001</StateOrganizationId></EducationalOrgIdentity></ResponsibilitySchoolReference>
</DisciplineAction>
<DisciplineAction>
  <DisciplineActionIdentifier>DA-2</DisciplineActionIdentifier>
  <Discipline>uri://ed-fi.org/DisciplineDescriptor#Detention</Discipline>
  <DisciplineDate>2024-09-21</DisciplineDate>
  <StudentReference><StudentIdentity><StudentUniqueId>604822</StudentUniqueId></StudentIdentity></StudentReference>
  <ResponsibilitySchoolReference><SchoolIdentity><SchoolId>255901001</SchoolId></SchoolIdentity></ResponsibilitySchoolReference>
</DisciplineAction>
<DisciplineAction>
  <DisciplineActionIdentifier>DA-3</DisciplineActionIdentifier>
  <Discipline>uri://ed-fi.org/DisciplineDescriptor#In School Suspension</Discipline>
  <DisciplineDate>2024-09-22</DisciplineDate>
  <DisciplineActionLength>1</DisciplineActionLength>
  <StudentReference><StudentIdentity><StudentUniqueId>604822</StudentUniqueId></StudentIdentity></StudentReference>
  <ResponsibilitySchoolReference><SchoolIdentity><SchoolId>255901001</SchoolId></SchoolIdentity></ResponsibilitySchoolReference>
</DisciplineAction>
</InterchangeStudentDiscipline>"""


def test_discipline_keeps_suspension_dates_only() -> None:
    items = parse(DISCIPLINE)
    out_of_school, in_school = records(items)
    assert isinstance(out_of_school, SuspensionRecord)
    assert (out_of_school.start_date, out_of_school.in_school, out_of_school.school_days) == (
        date(2024, 9, 20),
        False,
        3,
    )
    assert out_of_school.end_date is None  # a length in school days is not a calendar date
    assert isinstance(in_school, SuspensionRecord) and in_school.in_school is True
    assert in_school.end_date == date(2024, 9, 22)
    assert [e.rule for e in errors(items)] == ["element.forbidden", "element.forbidden"]
    assert dropped(items) == ["DisciplineAction (not a suspension)"]
    assert all("Fight" not in e.message and "Perpetrator" not in e.message for e in errors(items))


ORGS = """<InterchangeEducationOrganization xmlns="http://ed-fi.org/0320">
<LocalEducationAgency><LocalEducationAgencyId>255901</LocalEducationAgencyId><NameOfInstitution>Grand Bend ISD</NameOfInstitution></LocalEducationAgency>
<School>
  <SchoolId>255901001</SchoolId><NameOfInstitution>Grand Bend High School</NameOfInstitution>
  <GradeLevel>uri://ed-fi.org/GradeLevelDescriptor#Ninth grade</GradeLevel><GradeLevel>Tenth grade</GradeLevel>
  <LocalEducationAgencyReference><LocalEducationAgencyIdentity><LocalEducationAgencyId>255901</LocalEducationAgencyId></LocalEducationAgencyIdentity></LocalEducationAgencyReference>
</School>
<Course><CourseCode>ALG</CourseCode></Course>
</InterchangeEducationOrganization>"""  # noqa: E501


def test_education_organisations() -> None:
    items = parse(ORGS)
    assert errors(items) == []
    lea, school = records(items)
    assert isinstance(lea, SchoolRecord) and lea.org_type is OrgType.DISTRICT and lea.school_id == "255901"
    assert isinstance(school, SchoolRecord)
    assert (school.school_id, school.parent_ref, school.grades) == ("255901001", "255901", ("09", "10"))


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<InterchangeStudent><Student><StudentUniqueId>&lol9;</StudentUniqueId></Student></InterchangeStudent>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<InterchangeStudent><Student><StudentUniqueId>&xxe;</StudentUniqueId></Student></InterchangeStudent>"""


def test_xml_bombs_and_external_entities_are_refused_whole() -> None:
    tracemalloc.start()
    try:
        items = parse(BILLION_LAUGHS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(items) == 1 and isinstance(items[0], RecordError) and items[0].rule == "xml.forbidden"
    assert peak < 5_000_000  # the expansion (~3 GB of "lol") never happened
    xxe = parse(XXE)
    assert [i.rule for i in xxe if isinstance(i, RecordError)] == ["xml.forbidden"]
    assert "root:" not in str(xxe)
    doctype_only = parse('<?xml version="1.0"?><!DOCTYPE InterchangeStudent SYSTEM "x.dtd"><InterchangeStudent/>')
    assert [i.rule for i in doctype_only if isinstance(i, RecordError)] == ["xml.forbidden"]


def test_unreadable_and_truncated_files() -> None:
    for raw in (b"", b"hello, not xml", b"\x89PNG\r\n\x1a\n"):
        items = parse(raw)
        assert [i.rule for i in items if isinstance(i, RecordError)] == ["file.unreadable"], raw
    truncated = ATTENDANCE[: ATTENDANCE.index("<StudentSchoolAttendanceEvent>", 700)]
    items = parse(truncated)
    assert len(records(items)) == 2
    assert errors(items)[-1].rule == "file.unreadable"
    assert [e.rule for e in errors(parse("<html><body>hi</body></html>"))] == ["schema.invalid"]


def test_large_interchange_streams_in_flat_memory_and_reports_progress() -> None:
    n = 60_000  # ~20 MB of XML; tracemalloc slows parsing, so the CSV test carries the 200k rows
    seen: list[Progress] = []
    stream = cast(IO[bytes], IterStream(xml_attendance_lines(n)))  # a readable stream is all the parser uses
    tracemalloc.start()
    try:
        count = 0
        for item in parse_edfi_xml(
            stream, file="big.xml", opts=ParseOptions(progress=seen.append, progress_every=20_000)
        ):
            assert isinstance(item, AttendanceRecord)
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    # ~20 MB of XML went through; a parser that kept the tree would need well over 100 MB
    assert peak < 6_000_000, peak
    assert [p.rows_read for p in seen] == [20_000, 40_000, 60_000, 60_000]
    assert seen[-1].done and seen[-1].bytes_read > 18_000_000
