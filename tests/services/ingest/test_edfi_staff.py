"""Ed-Fi StaffAssociation (issue 23): staff, their schools and the sections they teach.

The DS 5.2 sample district has no StaffAssociation interchange, so the file read here was
written by Homeroom (edfi_handwritten/StaffAssociation-ds5.2.xml, not from a real export) and
is first validated against the Ed-Fi DS 5.2 XML schema in ../shared/interop."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest
from lxml import etree

from services.ingest.formats.edfi_xml import parse_edfi_xml
from services.ingest.records import Dropped, ParseItem, RecordError, StaffRecord, TeachingRecord

FILE = Path(__file__).parent / "edfi_handwritten" / "StaffAssociation-ds5.2.xml"
XSD = Path(__file__).resolve().parents[3] / ".." / "shared" / "interop" / "edfi-ds5.2" / "Schemas" / "Bulk"
SECTION = "25590100102Trad220ALG112011"  # a section of the sample's MasterSchedule.xml


def parse(text: str) -> list[ParseItem]:
    return list(parse_edfi_xml(io.BytesIO(text.encode()), file="StaffAssociation.xml"))


@pytest.mark.skipif(not XSD.is_dir(), reason=f"the Ed-Fi DS 5.2 schemas are not at {XSD}")
def test_the_handwritten_file_is_valid_against_the_ed_fi_schema() -> None:
    schema = etree.XMLSchema(etree.parse(str(XSD / "Interchange-StaffAssociation.xsd")))
    assert schema.validate(etree.parse(str(FILE))), schema.error_log
    # The schema does check: a Staff without its name's last surname is not valid.
    broken = FILE.read_text().replace("<LastSurname>Lindqvist</LastSurname>", "")
    assert not schema.validate(etree.fromstring(broken.encode()))


def test_staff_their_schools_and_sections_become_staff_and_teaching_records() -> None:
    items = parse(FILE.read_text())
    assert [i for i in items if isinstance(i, RecordError)] == []
    staff = {s.staff_ref: s for s in items if isinstance(s, StaffRecord)}
    assert set(staff) == {"207288", "207300"}
    mabel = staff["207288"]
    assert mabel.role == "teacher" and mabel.schools == ("255901001",)
    assert dict(mabel.elements) == {
        "staff.first_name": "Mabel",
        "staff.last_name": "Okonkwo",
        "staff.identifier": "207288",
        "staff.email": "mokonkwo@grandbend.example.org",
    }
    assert "staff.email" not in staff["207300"].elements
    teaching = sorted((t for t in items if isinstance(t, TeachingRecord)), key=lambda t: t.staff_ref)
    assert [(t.staff_ref, t.class_id, t.school_id, t.primary) for t in teaching] == [
        ("207288", SECTION, "255901001", True),  # Teacher of Record
        ("207300", SECTION, "255901001", False),
    ]
    assert teaching[1].begin_date == date(2021, 8, 23) and teaching[1].end_date == date(2021, 12, 17)
    # What the catalogue has no staff element for is dropped by name, its value never kept.
    dropped = {n for d in items if isinstance(d, Dropped) for n in d.names}
    assert {"Staff/Sex", "Staff/BirthDate", "Staff/StaffIdentificationCode"} <= dropped
    assert not any("1979-03-14" in repr(i) for i in items)


def test_bad_staff_records_are_refused_with_their_field_and_rule_and_others_kept() -> None:
    text = FILE.read_text()
    cases = [  # (the file made bad, where the error is named, the staff and teaching records still taken)
        (text.replace("<LastSurname>Lindqvist</LastSurname>", "<LastSurname></LastSurname>"), "Name/LastSurname", 3),
        (text.replace("<IdentificationCode>E-207288</IdentificationCode>", "<IdentificationCode>123-45-6789"
                      "</IdentificationCode>"), "ssn", 3),
        (text.replace("<EndDate>2021-12-17</EndDate>", "<EndDate>2021-01-01</EndDate>"), "EndDate", 3),
        (text.replace("<BeginDate>2021-08-23</BeginDate>", "<BeginDate>someday</BeginDate>", 1), "BeginDate", 3),
        # a school association naming no staff member: refused; the staff member is kept, with no school
        (text.replace("<StaffUniqueId>207300</StaffUniqueId>\n\t\t\t</StaffIdentity>", "</StaffIdentity>", 1),
         "StaffReference/StaffUniqueId", 4),
    ]  # fmt: skip
    for bad, where, taken in cases:
        assert bad != text, where
        items = parse(bad)
        errors = [i for i in items if isinstance(i, RecordError)]
        assert len(errors) == 1, (where, errors)
        assert where in errors[0].field or where in errors[0].rule, (where, errors[0])
        kept = [i for i in items if isinstance(i, StaffRecord | TeachingRecord)]
        assert len(kept) == taken, (where, kept)
    tobias = next(i for i in parse(cases[-1][0]) if isinstance(i, StaffRecord) and i.staff_ref == "207300")
    assert tobias.schools == ()
    assert "123-45-6789" not in repr(parse(cases[1][0]))
