"""The public data dictionary is generated from the catalogue (issue 24, item 3): every element,
once, with the recipients the rules allow and the agreements in force that list it."""

from __future__ import annotations

from homeroom.catalogue import CATALOGUE, ELEMENTS, STAFF_ELEMENTS, STUDENT_ELEMENT_IDS, LegalBasis
from homeroom.data_dictionary import dictionary, never_collected, retention_group

AGREEMENT = {
    "agreement_id": "agr-1",
    "organization": "Brightpath Learning",
    "elements": [{"id": "student.first_name"}, {"id": "attendance.daily"}],
    "purposes": [{"id": "instruction", "description": "Delivering instruction"}],
}


def test_every_catalogue_element_is_listed_once_with_its_recipients_and_retention() -> None:
    entries = dictionary([AGREEMENT])
    assert [e.id for e in entries] == [e.id for e in ELEMENTS]
    by_id = {e.id: e for e in entries}
    first = by_id["student.first_name"]
    assert first.directory and first.sealed and "opt out" in first.note
    bases = [r.legal_basis for r in first.recipients]
    assert LegalBasis.SCHOOL_OFFICIAL.value in bases and LegalBasis.PARENT.value in bases
    vendor = next(r for r in first.recipients if r.who.startswith("Brightpath Learning"))
    assert vendor.purposes == ("Delivering instruction",)
    assert first.agreements == ("Brightpath Learning",)
    # An element no agreement lists names no vendor; one that never travels says so.
    birth = by_id["student.birth_date"]
    assert birth.agreements == () and LegalBasis.SCHOOL_OFFICIAL.value not in [r.legal_basis for r in birth.recipients]
    details = by_id["discipline.incident_details"]
    assert not details.transfers and LegalBasis.TRANSFER.value not in [r.legal_basis for r in details.recipients]
    assert retention_group("attendance.daily") == "attendance" and "attendance" in by_id["attendance.daily"].retention
    assert retention_group("student.last_name") == "record"
    assert by_id["student.last_name"].as_dict()["travels_on_transfer"] is True
    assert set(never_collected()) >= {"student.ssn"}
    # every student element; staff elements (issue 23) are not about a student
    assert len(entries) == len(STUDENT_ELEMENT_IDS) == len(CATALOGUE) - len(STAFF_ELEMENTS)
