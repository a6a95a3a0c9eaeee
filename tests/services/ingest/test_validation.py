from __future__ import annotations

from datetime import date

import pytest

from services.ingest.parsed_records import (
    AttendanceCategory,
    AttendanceRecord,
    EnrollmentAction,
    EnrollmentRecord,
    OrgType,
    ParseItem,
    RecordError,
    RecordWarning,
    SchoolRecord,
    Source,
    StudentRecord,
    SuspensionRecord,
)
from services.ingest.validation import Validator

TODAY = date(2024, 10, 15)
_line = iter(range(1, 1_000_000))


def src() -> Source:
    return Source("batch", "b.json", next(_line), "")


def student(ref: str = "L1", **elements: str) -> StudentRecord:
    return StudentRecord(source=src(), source_record_id=f"s:{ref}", student_ref=ref, elements=elements)


def enroll(ref: str = "L1", school: str = "S1", entry: date = date(2024, 9, 3), **kw: object) -> EnrollmentRecord:
    fields: dict[str, object] = {
        "source": src(),
        "source_record_id": f"e:{ref}:{school}:{entry}:{kw.get('action', 'enroll')}",
        "action": EnrollmentAction.ENROLL,
        "student_ref": ref,
        "school_id": school,
        "entry_date": entry,
    }
    fields.update(kw)
    return EnrollmentRecord(**fields)  # type: ignore[arg-type]


def absent(
    ref: str = "L1", school: str = "S1", day: date = date(2024, 9, 10), rid: str | None = None
) -> AttendanceRecord:
    return AttendanceRecord(
        source=src(),
        source_record_id=rid or f"a:{ref}:{school}:{day}",
        student_ref=ref,
        school_id=school,
        date=day,
        category=AttendanceCategory.ABSENT,
        excused=True,
    )


def validator(**kw: object) -> Validator:
    return Validator("d-100", {"S1", "S2"}, TODAY, **kw)  # type: ignore[arg-type]


def rules(items: list[ParseItem]) -> list[str]:
    return [i.rule for i in items if isinstance(i, RecordError)]


def accepted(items: list[ParseItem]) -> list[ParseItem]:
    return [i for i in items if not isinstance(i, RecordError | RecordWarning)]


def test_a_clean_submission_is_accepted_in_order() -> None:
    items: list[ParseItem] = [student(), enroll(), absent()]
    out = list(validator().run(items))
    assert out == items


def test_parser_errors_pass_through_and_are_counted() -> None:
    err = RecordError("b.json", 4, "records[3].x", "element.unknown", "m", "text")
    v = validator()
    out = list(v.run([err, student()]))
    assert out[0] is err
    assert v.refused == 1 and v.accepted == 1


def test_school_not_in_district_is_refused_for_every_kind() -> None:
    items: list[ParseItem] = [
        student(),
        enroll(school="OTHER"),
        absent(school="OTHER"),
        SchoolRecord(source=src(), source_record_id="sch:x", school_id="OTHER"),
        SuspensionRecord(
            source=src(), source_record_id="susp", student_ref="L1", school_id="OTHER", start_date=date(2024, 9, 5)
        ),
    ]
    out = list(validator().run(items))
    assert rules(out) == ["school.not_in_district"] * 4


def test_change_school_needs_both_schools_in_the_district() -> None:
    change = enroll(action=EnrollmentAction.CHANGE_SCHOOL, school="S2", from_school_id="ELSEWHERE")
    out = list(validator().run([student(), change]))
    assert rules(out) == ["school.not_in_district"]
    assert next(i for i in out if isinstance(i, RecordError)).field == "from_school_id"


def test_other_district_organisation_is_refused_own_is_accepted() -> None:
    own = SchoolRecord(source=src(), source_record_id="o1", school_id="255901", org_type=OrgType.DISTRICT)
    other = SchoolRecord(source=src(), source_record_id="o2", school_id="999999", org_type=OrgType.DISTRICT)
    out = list(validator(district_org_ids=["255901"]).run([own, other]))
    assert accepted(out) == [own]
    assert rules(out) == ["organization.other_district"]


def test_school_claimed_by_another_agency_is_refused_when_district_ids_are_known() -> None:
    school = SchoolRecord(source=src(), source_record_id="s", school_id="S1", parent_ref="999999")
    assert rules(list(validator(district_org_ids=["255901"]).run([school]))) == ["school.not_in_district"]
    ours = SchoolRecord(source=src(), source_record_id="s2", school_id="S1", parent_ref="255901")
    assert rules(list(validator(district_org_ids=["255901"]).run([ours]))) == []


def test_exit_before_entry() -> None:
    bad = enroll(action=EnrollmentAction.WITHDRAW, entry=date(2024, 9, 3), exit_date=date(2024, 9, 1), exit_code="T")
    assert rules(list(validator().run([student(), bad]))) == ["date.exit_before_entry"]


def test_withdrawal_before_the_known_entry_is_refused() -> None:
    w = enroll(action=EnrollmentAction.WITHDRAW, entry=None, exit_date=date(2024, 8, 1), exit_code="T")  # type: ignore[arg-type]
    out = list(validator().run([student(), enroll(entry=date(2024, 9, 3)), w]))
    assert rules(out) == ["date.exit_before_entry"]


def test_withdrawal_without_any_enrollment_is_refused_when_the_service_gave_the_record() -> None:
    w = enroll(action=EnrollmentAction.WITHDRAW, entry=None, exit_date=date(2024, 10, 1), exit_code="T")  # type: ignore[arg-type]
    assert rules(list(validator(known_enrollments={}).run([student(), w]))) == ["reference.no_enrollment"]
    # without the district's records the validator cannot judge, so it lets it through
    assert rules(list(validator().run([student(), w]))) == []


def test_future_attendance_is_refused() -> None:
    out = list(validator().run([student(), enroll(), absent(day=date(2024, 10, 16))]))
    assert rules(out) == ["date.future_attendance"]
    ok = list(validator().run([student(), enroll(), absent(day=TODAY)]))
    assert rules(ok) == []


def test_attendance_outside_the_enrollment_window() -> None:
    items: list[ParseItem] = [
        student(),
        enroll(entry=date(2024, 9, 3), exit_date=date(2024, 9, 30)),
        absent(day=date(2024, 9, 2), rid="a1"),
        absent(day=date(2024, 10, 1), rid="a2"),
        absent(day=date(2024, 9, 30), rid="a3"),
    ]
    out = list(validator().run(items))
    assert rules(out) == ["date.attendance_outside_enrollment"] * 2
    assert [i.source_record_id for i in accepted(out) if isinstance(i, AttendanceRecord)] == ["a3"]


def test_attendance_without_any_enrollment_at_that_school() -> None:
    out = list(validator().run([student(), enroll(school="S1"), absent(school="S2")]))
    assert rules(out) == ["reference.no_enrollment"]


def test_attendance_inside_a_known_enrollment_from_the_service() -> None:
    known = {("L9", "S1"): [(date(2024, 9, 3), None)]}
    out = list(validator(known_enrollments=known, known_students={"L9"}).run([absent(ref="L9")]))
    assert rules(out) == [] and len(accepted(out)) == 1


def test_order_does_not_matter_attendance_before_its_enrollment_is_held_then_accepted() -> None:
    a = absent()
    items: list[ParseItem] = [a, student(), enroll()]
    out = list(validator().run(items))
    assert rules(out) == []
    assert out[-1] is a  # decided at the end


def test_change_school_closes_the_old_window_and_opens_the_new() -> None:
    items: list[ParseItem] = [
        student(),
        enroll(school="S1", entry=date(2024, 9, 3)),
        enroll(action=EnrollmentAction.CHANGE_SCHOOL, school="S2", from_school_id="S1", entry=date(2024, 10, 1)),
        absent(school="S1", day=date(2024, 10, 7), rid="old-school"),
        absent(school="S2", day=date(2024, 10, 7), rid="new-school"),
    ]
    out = list(validator().run(items))
    assert rules(out) == ["date.attendance_outside_enrollment"]
    assert [i.source_record_id for i in accepted(out) if isinstance(i, AttendanceRecord)] == ["new-school"]


def test_unknown_student_is_refused_known_from_service_is_accepted() -> None:
    assert rules(list(validator().run([enroll(ref="L404")]))) == ["reference.unknown_student"]
    assert rules(list(validator(known_students={"L404"}).run([enroll(ref="L404")]))) == []


def test_a_refused_student_takes_its_enrollments_with_it() -> None:
    bad = student(**{"student.birth_date": "2030-01-01"})
    out = list(validator().run([bad, enroll()]))
    assert rules(out) == ["date.birth_in_future", "reference.unknown_student"]


def test_implausible_birth_date_is_a_warning_not_a_refusal() -> None:
    out = list(validator().run([student(**{"student.birth_date": "1950-01-01"})]))
    assert rules(out) == []
    assert [w.rule for w in out if isinstance(w, RecordWarning)] == ["date.birth_implausible"]
    assert len(accepted(out)) == 1


def test_duplicates_in_one_submission_keep_the_first() -> None:
    first, second = absent(rid="same"), absent(rid="same")
    out = list(validator().run([student(), enroll(), first, second]))
    assert rules(out) == ["record.duplicate"]
    assert first in out and second not in out


def test_suspension_dates() -> None:
    backwards = SuspensionRecord(
        source=src(),
        source_record_id="s1",
        student_ref="L1",
        school_id="S1",
        start_date=date(2024, 9, 10),
        end_date=date(2024, 9, 9),
    )
    before_enrollment = SuspensionRecord(
        source=src(), source_record_id="s2", student_ref="L1", school_id="S1", start_date=date(2024, 8, 1)
    )
    fine = SuspensionRecord(
        source=src(), source_record_id="s3", student_ref="L1", school_id="S1", start_date=date(2024, 9, 10)
    )
    out = list(validator().run([student(), enroll(), backwards, before_enrollment, fine]))
    assert rules(out) == ["date.end_before_start", "date.suspension_outside_enrollment"]
    assert fine in out


def test_many_class_enrollments_merge_into_one_window() -> None:
    v = validator()
    items: list[ParseItem] = [student()]
    items += [enroll(entry=date(2024, 9, 3), class_ref=f"c{i}", source_record_id=f"e{i}") for i in range(50)]
    list(v.run(items))
    assert len(v._windows[("L1", "S1")]) == 1


def test_validate_collects_everything() -> None:
    result = validator().validate([student(), enroll(school="X"), student(**{"student.birth_date": "1950-01-01"})])
    assert [type(r).__name__ for r in result.accepted] == ["StudentRecord"]
    assert [e.rule for e in result.errors] == ["school.not_in_district", "record.duplicate"]
    assert result.warnings == []


def test_rule_table_documents_every_rule_the_validator_emits() -> None:
    import services.ingest.validation as module

    doc = module.__doc__ or ""
    for rule in [
        "record.duplicate",
        "school.not_in_district",
        "organization.other_district",
        "reference.unknown_student",
        "reference.no_enrollment",
        "date.exit_before_entry",
        "date.end_before_start",
        "date.future_attendance",
        "date.attendance_outside_enrollment",
        "date.suspension_outside_enrollment",
        "date.birth_in_future",
        "date.birth_implausible",
        "ssn.forbidden",
        "element.unknown",
    ]:
        assert rule in doc


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_safety_share_must_be_a_fraction(share: float) -> None:
    from services.ingest.safety import schools_over_share

    with pytest.raises(ValueError, match="max_share"):
        schools_over_share({"S1": 10}, {"S1": 1}, max_share=share)


def test_every_rule_id_in_the_ingest_code_is_in_the_published_table() -> None:
    import re
    from pathlib import Path

    import services.ingest.validation as module

    root = Path(module.__file__).parent
    prefixes = (
        "file|xml|manifest|schema|record|code|date|value|encoding|ssn|element|discipline|reference|oneroster"
        "|school|organization"
    )
    pattern = re.compile(rf'"((?:{prefixes})\.[a-z_]+)"')
    used: set[str] = set()
    for path in [*root.glob("*.py"), *root.glob("formats/*.py")]:
        used |= set(pattern.findall(path.read_text()))
    used |= {"date.attendance_outside_enrollment", "date.suspension_outside_enrollment"}  # built with an f-string
    used -= {"discipline.incident_details", "oneroster.version", "oneroster.zip"}  # an element, a property, a file
    table = module.__doc__ or ""
    missing = sorted(r for r in used if r not in table)
    assert not missing, missing
    assert len(used) > 30


def test_deleted_student_can_still_be_withdrawn_in_the_same_upload() -> None:
    gone = StudentRecord(source=src(), source_record_id="s:gone", student_ref="G1", deleted=True)
    w = enroll(ref="G1", action=EnrollmentAction.WITHDRAW, entry=None, exit_date=date(2024, 10, 1))  # type: ignore[arg-type]
    assert rules(list(validator().run([gone, w]))) == []
