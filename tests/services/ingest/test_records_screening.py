from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeroom.catalogue import CATALOGUE
from services.ingest.parsed_records import (
    AttendanceCategory,
    AttendanceRecord,
    EnrollmentAction,
    EnrollmentRecord,
    Source,
    StudentRecord,
    pseudonymise,
    record_id,
    value_class,
)
from services.ingest.screening import (
    ScreeningPolicy,
    is_org_id_field,
    is_ssn_field,
    is_ssn_system,
    safe_field_name,
    ssn_in_value,
)


def _attendance(file: str = "a.json", line: int = 3, **kw: object) -> AttendanceRecord:
    fields: dict[str, object] = {
        "source": Source("batch", file, line, "records[0]"),
        "source_record_id": "batch:attendance:x",
        "student_ref": "L1",
        "school_id": "S1",
        "date": date(2024, 9, 4),
        "category": AttendanceCategory.ABSENT,
        "excused": False,
    }
    fields.update(kw)
    return AttendanceRecord(**fields)  # type: ignore[arg-type]


def test_fingerprint_ignores_where_the_record_came_from_but_not_what_it_says() -> None:
    a = _attendance()
    moved = _attendance(file="other.json", line=900)
    assert a.fingerprint() == moved.fingerprint()
    assert a.fingerprint() != _attendance(excused=True).fingerprint()
    assert a.fingerprint() != _attendance(date=date(2024, 9, 5)).fingerprint()


def test_keyed_fingerprint_differs_per_key_and_is_stable() -> None:
    a = _attendance()
    assert a.fingerprint(b"district-a-key") == a.fingerprint(b"district-a-key")
    assert a.fingerprint(b"district-a-key") != a.fingerprint(b"district-b-key")
    assert a.fingerprint(b"k") != a.fingerprint()


def test_student_fingerprint_is_independent_of_element_order() -> None:
    src = Source("batch", "f", 1)
    one = StudentRecord(
        source=src,
        source_record_id="r",
        student_ref="L1",
        elements={"student.first_name": "A", "student.last_name": "B"},
    )
    two = StudentRecord(
        source=src,
        source_record_id="r",
        student_ref="L1",
        elements={"student.last_name": "B", "student.first_name": "A"},
    )
    assert one.fingerprint() == two.fingerprint()


def test_content_names_kind_and_uses_iso_dates() -> None:
    r = EnrollmentRecord(
        source=Source("batch", "f", 1),
        source_record_id="x",
        action=EnrollmentAction.ENROLL,
        student_ref="L1",
        school_id="S1",
        entry_date=date(2024, 9, 3),
    )
    content = r.content()
    assert content["kind"] == "enrollment"
    assert content["entry_date"] == "2024-09-03"
    assert "source" not in content and "source_record_id" not in content


def test_record_id_escapes_separators_so_keys_cannot_collide() -> None:
    assert record_id("batch", "enroll", "a/b", "c") != record_id("batch", "enroll", "a", "b/c")
    assert record_id("batch", "enroll", "a%2Fb") != record_id("batch", "enroll", "a/b")
    assert record_id("oneroster", "user", "s1") == "oneroster:user:s1"


@given(st.lists(st.text(alphabet="ab/%2F", max_size=4), max_size=4))
def test_record_id_is_the_join_of_each_part_escaped(parts: list[str]) -> None:
    escaped = [p.replace("%", "%25").replace("/", "%2F") for p in parts]
    assert record_id("batch", "enroll", *parts) == "batch:enroll:" + "/".join(escaped)


def test_pseudonymise_is_keyed_and_does_not_contain_the_id() -> None:
    token = pseudonymise("oneroster:user:604822", b"k1")
    assert "604822" not in token
    assert token == pseudonymise("oneroster:user:604822", b"k1")
    assert token != pseudonymise("oneroster:user:604822", b"k2")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "empty"),
        ("  ", "empty"),
        ("123-45-6789", "ssn-like"),
        ("123456789", "ssn-like"),
        ("900123456", "9-digit number"),  # 9xx is never an issued SSN
        ("604822", "6-digit number"),
        ("2024-09-03", "date"),
        ("Ada Lovelace", "text"),
        (True, "boolean"),
        (12, "2-digit number"),
        ({"a": 1}, "object"),
        ([1], "list"),
    ],
)
def test_value_class_describes_without_revealing(value: object, expected: str) -> None:
    assert value_class(value) == expected


@given(st.text(min_size=1, max_size=40))
def test_value_class_never_contains_the_value(s: str) -> None:
    cls = value_class(s)
    if len(s.strip()) > 3:
        assert s.strip() not in cls


@pytest.mark.parametrize(
    "value",
    ["123-45-6789", "123 45 6789", "123456789", " 078-05-1120 "],
)
def test_ssn_shaped_values_are_recognised(value: str) -> None:
    assert ssn_in_value(value)


@pytest.mark.parametrize(
    "value",
    [
        "000-12-3456",  # area 000 never issued
        "666-12-3456",  # area 666 never issued
        "912-34-5678",  # 9xx: ITINs, not SSNs
        "123-00-4567",  # group 00
        "123-45-0000",  # serial 0000
        "1234567890",  # ten digits
        "12345678",  # eight digits
        "555-123-4567",  # a phone number
        "12207-1234",  # ZIP+4
        "2024-09-03",
        "S123456789",  # a prefixed id
    ],
)
def test_non_ssns_are_not_flagged(value: str) -> None:
    assert not ssn_in_value(value)


def test_free_text_finds_embedded_ssns_but_ids_only_whole_values() -> None:
    note = "Mother called; SSN 123-45-6789 on file"
    assert ssn_in_value(note)  # dashed form anywhere
    assert not ssn_in_value("ref 123456789 ok")  # undashed inside text: only for free text
    assert ssn_in_value("ref 123456789 ok", free_text=True)


def test_policy_can_allow_nine_digit_ids_but_never_dashed_ssns() -> None:
    lenient = ScreeningPolicy(nine_digit_ids=False)
    assert not ssn_in_value("231101422", policy=lenient)
    assert ssn_in_value("231-10-1422", policy=lenient)
    assert ssn_in_value("231101422")


@pytest.mark.parametrize(
    "name", ["ssn", "SSN", "studentSSN", "student_ssn", "socialSecurityNumber", "Social Security No"]
)
def test_ssn_field_names(name: str) -> None:
    assert is_ssn_field(name)


@pytest.mark.parametrize("name", ["className", "lessons", "classSourcedId", "session", "assn_code"])
def test_similar_field_names_are_not_ssn(name: str) -> None:
    assert not is_ssn_field(name)


def test_ssn_identification_systems() -> None:
    assert is_ssn_system("uri://ed-fi.org/StudentIdentificationSystemDescriptor#SSN")
    assert is_ssn_system("Social Security Administration")
    assert not is_ssn_system("uri://ed-fi.org/StudentIdentificationSystemDescriptor#State")


def test_org_id_fields() -> None:
    assert is_org_id_field("[0].schoolReference.schoolId")
    assert is_org_id_field("StudentSchoolAssociation/SchoolReference/SchoolIdentity/SchoolId")
    assert is_org_id_field("schoolSourcedId")
    assert not is_org_id_field("studentUniqueId")
    assert not is_org_id_field("identifier")
    assert not is_org_id_field("userSourcedId")


def test_safe_field_name_hides_ssn_shaped_keys_and_bounds_length() -> None:
    assert "123" not in safe_field_name("123-45-6789")
    assert len(safe_field_name("x" * 500)) <= 64
    assert safe_field_name("entry_date") == "entry_date"


def test_catalogue_has_no_ssn_element() -> None:
    assert not any(is_ssn_field(e) for e in CATALOGUE)
