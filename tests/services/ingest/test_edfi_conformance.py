"""Ed-Fi as districts export it: every standard descriptor value of the elements Homeroom keeps is
mapped; every Data Standard version's shapes (2.0, 3.2, 4.0, 5.2) go in; and the Alliance's
own DS 5.2 sample district goes in whole, in the order a district sends it.

The corpus in `edfi_corpus/` (Apache-2.0, see its NOTICE) is always there: excerpts of the
5.2 samples, records written to the 2.0/3.2/4.0 schemas, the descriptor code lists and the
2.0 schema's code lists. The whole sample district is read from ../shared/interop when it
exists (skipped with the reason otherwise); its per-file counts are printed and written to
test-artifacts/edfi-ds5.2-conformance.json.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path

import defusedxml.ElementTree as ET
import pytest

from homeroom_dev.generate import EdFiEnrollment, write_edfi_enrollment
from services.ingest import codes
from services.ingest.check import FileReport, check_files
from services.ingest.formats._edfi import PROGRAM_TYPES, frl_known, lep_known
from services.ingest.screening import is_ssn_system

CORPUS = Path(__file__).parent / "edfi_corpus"
SAMPLES = Path(__file__).resolve().parents[3] / ".." / "shared" / "interop" / "edfi-ds5.2" / "Samples"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
TODAY = date(2026, 12, 1)

# The order a district sends its interchanges: organisations and calendars first, then
# students, their enrollments and programs, then attendance and discipline.
DISTRICT_ORDER = (
    "EducationOrganization.xml",
    "EducationOrgCalendar.xml",
    "MasterSchedule.xml",
    "Student.xml",
    "StudentEnrollment.xml",
    "StudentProgram.xml",
    "Contact.xml",
    "StudentSchoolAttendance.xml",
    "StudentSectionAttendance-Tardy.xml",
    "StudentDiscipline.xml",
)

# Descriptor -> whether Homeroom has decided what each code value means.
MAPPED: dict[str, Callable[[str], bool]] = {
    "AttendanceEventCategory": lambda v: codes.edfi_attendance(v) is not None,
    "CalendarEvent": lambda v: codes.calendar_event_instructional(v) is not None,
    "GradeLevel": lambda v: codes.normalise_grade(v) is not None,
    "Sex": lambda v: codes.normalise_sex(v) is not None,
    "Race": lambda v: codes.normalise_race(v) is not None,
    "LimitedEnglishProficiency": lep_known,
    "SchoolFoodServiceProgramService": frl_known,
    "Discipline": lambda v: codes.edfi_suspension(v) is not None or "suspension" not in v.lower(),
    "StudentIdentificationSystem": lambda v: codes.descriptor_code(v) in codes.STUDENT_ID_SYSTEMS or is_ssn_system(v),
    "ProgramType": lambda v: codes.descriptor_code(v) in PROGRAM_TYPES,
}
# The same code lists in Data Standard 2.0, where the schema itself enumerates them.
DS20_TYPES: dict[str, str] = {
    "AttendanceEventCategoryMapType": "AttendanceEventCategory",
    "CalendarEventMapType": "CalendarEvent",
    "GradeLevelMapType": "GradeLevel",
    "SexType": "Sex",
    "RaceType": "Race",
    "LimitedEnglishProficiencyMapType": "LimitedEnglishProficiency",
    "SchoolFoodServicesEligibilityMapType": "SchoolFoodServiceProgramService",
    "DisciplineMapType": "Discipline",
    "StudentIdentificationSystemMapType": "StudentIdentificationSystem",
    "ProgramType": "ProgramType",
}


def test_every_standard_descriptor_value_of_a_kept_element_is_mapped() -> None:
    unmapped: list[str] = []
    walked = 0
    for path in sorted((CORPUS / "descriptors").glob("*Descriptor.xml")):
        kind = path.name.removesuffix("Descriptor.xml")
        for code in ET.parse(path).getroot().iter("{http://ed-fi.org/5.2.0}CodeValue"):
            walked += 1
            value = code.text or ""
            uri = f"uri://ed-fi.org/{kind}Descriptor#{value}"
            if not (MAPPED[kind](value) and MAPPED[kind](uri)):
                unmapped.append(f"{kind}: {value}")
    xsd = (CORPUS / "ds2.0" / "Ed-Fi-Core-code-lists.xsd").read_text()
    for name, kind in DS20_TYPES.items():
        block = re.search(rf'<xs:simpleType name="{name}">(.*?)</xs:simpleType>', xsd, re.S)
        assert block is not None, name
        for value in re.findall(r'enumeration value="([^"]*)"', block.group(1)):
            walked += 1
            if not MAPPED[kind](value):
                unmapped.append(f"DS 2.0 {name}: {value}")
    assert walked > 250
    assert unmapped == []


def _counts(r: FileReport) -> tuple[int, int, int, int, int]:
    return r.records_read, r.accepted, r.rejected, r.warned, r.skipped


@pytest.mark.parametrize("version", ["ds2.0", "ds3.2", "ds4.0"])
def test_each_data_standard_versions_shapes_go_in(version: str) -> None:
    base = CORPUS / version
    names = [
        "EducationOrgCalendar.xml",
        "Student.xml",
        "StudentEnrollment.xml",
        "StudentProgram.xml",
        "StudentAttendance.xml",
        "StudentDiscipline.xml",
    ]
    reports = {r.file: r for r in check_files([base / n for n in names], schools=["255901001"], today=TODAY)}
    assert [e for r in reports.values() for e in r.refusals()] == []
    assert {n: _counts(r)[1] for n, r in reports.items()} == {
        # a Session is a calendar term and an academic session for rosters (issue 23): two records
        "EducationOrgCalendar.xml": 3 if version == "ds2.0" else 4,
        "Student.xml": 1,
        "StudentEnrollment.xml": 1 if version == "ds2.0" else 2,
        "StudentProgram.xml": 1,  # special education kept; gifted and talented skipped
        "StudentAttendance.xml": 3,
        "StudentDiscipline.xml": 1,
    }
    dropped = {n["name"] for r in reports.values() for n in r.not_collected}
    assert "StudentSchoolAttendanceEvent/AttendanceEvent/AttendanceEventReason" in dropped
    assert "Student/Name/PersonalTitlePrefix" in dropped
    assert "StudentProgramAssociation (Gifted and Talented)" in dropped


def _enrollments_for(samples: Path) -> list[EdFiEnrollment]:
    """A StudentEnrollment interchange for the sample district (not published with the samples):
    each student at every school their attendance or discipline names, else the high school."""
    schools: dict[str, set[str]] = {}
    ns = "{http://ed-fi.org/5.2.0}"
    for name in ("StudentSchoolAttendance.xml", "StudentSectionAttendance-Tardy.xml", "StudentDiscipline.xml"):
        for _ev, elem in ET.iterparse(samples / name):
            if elem.tag in (
                f"{ns}StudentSchoolAttendanceEvent",
                f"{ns}StudentSectionAttendanceEvent",
                f"{ns}DisciplineAction",
            ):
                student = elem.findtext(f".//{ns}StudentUniqueId")
                school = elem.findtext(f".//{ns}SchoolId")
                if student and school:
                    schools.setdefault(student, set()).add(school)
                elem.clear()
    out = []
    for _ev, elem in ET.iterparse(samples / "Student.xml"):
        if elem.tag == f"{ns}Student":
            student = elem.findtext(f"{ns}StudentUniqueId") or ""
            for school in sorted(schools.get(student, {"255901001"})):
                out.append(EdFiEnrollment(student, school, "2021-08-23", "09"))
            elem.clear()
    return out


def _district(samples: Path, tmp: Path) -> list[Path]:
    enrollment = tmp / "StudentEnrollment.xml"
    write_edfi_enrollment(enrollment, _enrollments_for(samples))
    return [enrollment if n == "StudentEnrollment.xml" else samples / n for n in DISTRICT_ORDER]


INCIDENTS = {
    "DisciplineIncident",
    "StudentDisciplineIncidentBehaviorAssociation",
    "StudentDisciplineIncidentNonOffenderAssociation",
}


def _only_incidents_refused(reports: list[FileReport]) -> None:
    refused = [(e.file, e.field, e.rule) for r in reports for e in r.refusals()]
    assert refused and all(rule == "element.forbidden" and field in INCIDENTS for _f, field, rule in refused), Counter(
        (f, field, rule) for f, field, rule in refused
    )


def test_ds52_sample_excerpts_go_in_in_district_order(tmp_path: Path) -> None:
    reports = check_files(_district(CORPUS / "ds5.2", tmp_path), today=TODAY)
    _only_incidents_refused(reports)
    by_file = {r.file: r for r in reports}
    assert _counts(by_file["Student.xml"]) == (7, 4, 0, 4, 3)  # 4 students taken, 3 Person records skipped
    assert _counts(by_file["Contact.xml"]) == (3, 0, 0, 0, 3)  # the whole interchange: one notice
    attendance = by_file["StudentSchoolAttendance.xml"]
    assert attendance.rejected == 0 and attendance.accepted == attendance.records_read == 9  # includes "Partial"
    dropped = {n["name"]: n["count"] for r in reports for n in r.not_collected}
    assert dropped["Student/Name/PersonalTitlePrefix"] == 4
    assert dropped["StudentSchoolAttendanceEvent/AttendanceEvent/AttendanceEventReason"] == 9
    assert _counts(by_file["StudentDiscipline.xml"]) == (4, 2, 2, 2, 0)  # 2 suspensions; 2 incidents refused
    assert dropped["InterchangeContact"] == 3


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"the Ed-Fi DS 5.2 sample district is not at {SAMPLES}")
def test_the_whole_ds52_sample_district_goes_in(tmp_path: Path) -> None:
    reports = check_files(_district(SAMPLES, tmp_path), today=TODAY)
    _only_incidents_refused(reports)
    table = {
        r.file: dict(zip(("read", "accepted", "refused", "warned", "skipped"), _counts(r), strict=True))
        for r in reports
    }
    by_file = {r.file: r for r in reports}
    # every student, every attendance event (the 1,917 daily and 66 section ones) and every suspension
    assert table["Student.xml"]["accepted"] == 960
    assert table["StudentSchoolAttendance.xml"] == {
        "read": 1917,
        "accepted": 1917,
        "refused": 0,
        "warned": 1917,
        "skipped": 0,
    }
    assert table["StudentSectionAttendance-Tardy.xml"]["accepted"] == 66
    assert table["StudentDiscipline.xml"]["accepted"] == 24  # the 25th action is an expulsion: skipped
    assert all(r.rejected == 0 for r in reports if r.file != "StudentDiscipline.xml")
    refusals = [
        {"file": e.file, "line": e.line, "field": e.field, "rule": e.rule, "message": e.message}
        for r in reports
        for e in r.refusals()
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "edfi-ds5.2-conformance.json").write_text(
        json.dumps(
            {"files": table, "refusals": refusals, "not_collected": {r.file: r.not_collected for r in reports}},
            indent=1,
        )
    )
    print("\nfile                                  read  accepted  refused  warned  skipped")
    for name, c in table.items():
        print(f"{name:<36} {c['read']:>6} {c['accepted']:>9} {c['refused']:>8} {c['warned']:>7} {c['skipped']:>8}")
    print(Counter((e["file"], e["field"], e["rule"]) for e in refusals))
    assert by_file["StudentDiscipline.xml"].rejected == 44
