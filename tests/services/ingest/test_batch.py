from __future__ import annotations

import io
import json
from datetime import date
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.formats import ParseOptions, Progress
from services.ingest.formats.batch import parse_batch
from services.ingest.parsed_records import (
    AttendanceCategory,
    AttendanceRecord,
    Dropped,
    EnrollmentAction,
    EnrollmentRecord,
    ParsedRecord,
    ParseItem,
    RecordError,
    RecordWarning,
    StudentRecord,
    SuspensionRecord,
)


def parse(doc: Any, **kw: Any) -> list[ParseItem]:
    data = doc if isinstance(doc, bytes) else json.dumps(doc, indent=1).encode()
    return list(parse_batch(io.BytesIO(data), file="b.json", **kw))


def errors(items: list[ParseItem]) -> list[RecordError]:
    return [i for i in items if isinstance(i, RecordError)]


def records(items: list[ParseItem]) -> list[ParsedRecord]:
    return [i for i in items if not isinstance(i, RecordError | RecordWarning | Dropped)]


def student_refs(items: list[ParseItem]) -> list[str | None]:
    """The student each record is about (a school record is about none)."""
    return [getattr(r, "student_ref", None) for r in records(items)]


GOOD = {
    "format": "homeroom.batch",
    "version": 1,
    "records": [
        {
            "type": "enroll",
            "student_id": "L1",
            "school_id": "S1",
            "entry_date": "2024-09-03",
            "grade_level": "9",
            "student": {
                "student.first_name": "Ada",
                "student.last_name": "Lovelace",
                "student.birth_date": "2011-12-10",
                "student.sex": "F",
                "student.race_ethnicity": ["white", "hispanic_latino"],
                "program.iep": True,
                "program.ell": False,
            },
        },
        {"type": "withdraw", "student_id": "L1", "school_id": "S1", "exit_date": "2024-10-01", "exit_code": "T2"},
        {
            "type": "change_school",
            "student_id": "L1",
            "from_school_id": "S1",
            "to_school_id": "S2",
            "change_date": "2024-10-02",
        },
        {
            "type": "attendance",
            "student_id": "L1",
            "school_id": "S2",
            "date": "2024-10-03",
            "category": "absent",
            "excused": False,
        },
        {
            "type": "attendance",
            "student_id": "L1",
            "school_id": "S2",
            "date": "2024-10-03",
            "category": "tardy",
            "period": "3",
        },
        {
            "type": "suspension",
            "student_id": "L1",
            "school_id": "S2",
            "start_date": "2024-10-04",
            "end_date": "2024-10-05",
            "in_school": False,
        },
        {"type": "student", "id": "evt-7", "student_id": "L2", "student": {"student.first_name": "Bo"}},
    ],
}


def test_every_record_type_is_normalised() -> None:
    items = parse(GOOD)
    assert errors(items) == []
    student, enroll, withdraw, change, daily, period, suspension, student2 = records(items)
    assert isinstance(student, StudentRecord)
    assert student.elements == {
        "student.first_name": "Ada",
        "student.last_name": "Lovelace",
        "student.birth_date": "2011-12-10",
        "student.sex": "female",
        "student.race_ethnicity": "hispanic_latino;white",
        "student.local_id": "L1",
    }
    assert student.programs == {"program.iep": True, "program.ell": False}
    assert isinstance(enroll, EnrollmentRecord) and enroll.action is EnrollmentAction.ENROLL
    assert enroll.grade_level == "09" and enroll.entry_date == date(2024, 9, 3)
    assert isinstance(withdraw, EnrollmentRecord) and withdraw.exit_code == "T2"
    assert isinstance(change, EnrollmentRecord) and (change.from_school_id, change.school_id) == ("S1", "S2")
    assert isinstance(daily, AttendanceRecord) and daily.period is None and daily.excused is False
    assert isinstance(period, AttendanceRecord) and period.period == "3" and period.category is AttendanceCategory.TARDY
    assert period.excused is None
    assert isinstance(suspension, SuspensionRecord) and suspension.end_date == date(2024, 10, 5)
    assert student2.source_record_id == "batch:student:evt-7"
    assert enroll.source.pointer == "records[0]" and enroll.source.line == 5


def test_source_record_ids_are_stable_across_resubmission_and_reordering() -> None:
    first = [r.source_record_id for r in records(parse(GOOD))]
    shuffled = dict(GOOD, records=list(reversed(GOOD["records"])))  # type: ignore[call-overload]
    second = [r.source_record_id for r in records(parse(shuffled))]
    assert sorted(first) == sorted(second)
    assert len(set(first)) == len(first)
    fp1 = {r.source_record_id: r.fingerprint() for r in records(parse(GOOD))}
    fp2 = {r.source_record_id: r.fingerprint() for r in records(parse(shuffled))}
    assert fp1 == fp2


def test_errors_name_index_field_line_and_never_the_value() -> None:
    doc = {
        "records": [
            {"type": "enroll", "student_id": "L1", "school_id": "S1", "entry_date": "2024-09-03"},
            {"type": "enroll", "student_id": "L2", "school_id": "S1", "entry_date": "2023-02-29"},
            {"type": "enroll", "student_id": "L3", "school_id": "S1"},
            {"type": "enroll", "student_id": "L4", "school_id": "S1", "entry_date": "2024-09-03",
             "student": {"student.ssn": "219-09-9999", "student.first_name": "Eve"}},
            {"type": "enroll", "student_id": "L5", "school_id": "S1", "entry_date": "2024-09-03",
             "student": {"religion": "Quaker"}},
            {"type": "enroll", "student_id": "L6", "school_id": "S1", "entry_date": "2024-09-03",
             "notes": "her number is 219-09-9999"},
            {"type": "enroll", "student_id": "219099999", "school_id": "S1", "entry_date": "2024-09-03"},
        ]
    }  # fmt: skip
    items = parse(doc)
    errs = errors(items)
    assert [(e.field, e.rule) for e in errs] == [
        ("records[1].entry_date", "date.invalid"),
        ("records[2].entry_date", "schema.required"),
        ("records[3].student.student.ssn", "ssn.forbidden"),
        ("records[4].student.religion", "element.unknown"),
        ("records[5].notes", "ssn.forbidden"),
        ("records[6].student_id", "ssn.forbidden"),
    ]
    assert [e.value_class for e in errs] == ["date", "empty", "ssn-like", "text", "ssn-like", "ssn-like"]
    assert all(e.line > 1 and e.file == "b.json" for e in errs)
    for e in errs:
        for secret in ("219-09-9999", "219099999", "Quaker", "2023-02-29", "Eve"):
            assert secret not in e.message and secret not in e.field
    # the poison records did not block the good one
    assert student_refs(items) == ["L1"]


def test_suspension_refuses_incident_details_outright() -> None:
    doc = {
        "records": [
            {"type": "suspension", "student_id": "L1", "school_id": "S1", "start_date": "2024-09-05", "reason": "x"},
            {"type": "suspension", "student_id": "L1", "school_id": "S1", "start_date": "2024-09-06",
             "discipline.incident_details": "x"},
        ]
    }  # fmt: skip
    errs = errors(parse(doc))
    assert [e.rule for e in errs] == ["element.forbidden", "element.forbidden"]
    assert "dates" in errs[0].message


def test_misplaced_catalogue_elements_and_unknown_types() -> None:
    doc = {
        "records": [
            {"type": "attendance", "student_id": "L1", "school_id": "S1", "date": "2024-09-05", "category": "absent",
             "exit_code": "T"},
            {"type": "student", "student_id": "L1", "student": {"attendance.daily": "x"}},
            {"type": "graduate", "student_id": "L1"},
            {"student_id": "L1"},
            {"type": "attendance", "student_id": "L1", "school_id": "S1", "date": "2024-09-05", "category": "sick"},
            {"type": "enroll", "student_id": "L1", "school_id": "S1", "entry_date": "2024-09-03", "grade_level": "Z"},
            "just text",
        ]
    }  # fmt: skip
    items = parse(doc)
    assert [e.rule for e in errors(items)] == [
        "element.not_allowed_here",
        "element.not_allowed_here",
        "record.type_unknown",
        "schema.required",
        "code.unknown",
        "schema.type",
    ]
    # an unknown optional code is a warning and the record is still taken, without the grade
    warning = next(i for i in items if isinstance(i, RecordWarning))
    assert warning.rule == "code.unknown" and warning.field == "records[5].grade_level"
    enroll = records(items)[0]
    assert isinstance(enroll, EnrollmentRecord) and enroll.grade_level is None


def test_types_and_structure() -> None:
    raw = (
        b'{"records": [\n'
        b'{"type": "enroll", "student_id": 12, "school_id": ["S1"], "entry_date": "2024-09-03"},\n'
        b'{"type": "attendance", "student_id": "L1", "school_id": "S1", "date": "2024-09-05",'
        b' "category": "absent", "excused": "maybe"},\n'
        b'{"type": "student", "student_id": "L1", "student_id": "L2", "student": {"student.first_name": "A"}},\n'
        b'{"type": "student", "student_id": "L1", "student": {"student.first_name": NaN}}\n'
        b"]}"
    )
    errs = errors(parse(raw))
    assert [(e.field, e.rule) for e in errs] == [
        ("records[0].school_id", "schema.type"),
        ("records[1].excused", "schema.type"),
        ("records[2].student_id", "schema.duplicate_member"),
        ("records[3].student.student.first_name", "schema.type"),
        ("records[3].student.student.first_name", "schema.type"),
    ]


def test_broken_json_midway_keeps_what_came_before_and_says_where() -> None:
    raw = (
        b'{"records": [\n'
        b'{"type": "student", "student_id": "L1", "student": {"student.first_name": "A"}},\n'
        b'{"type": "student", "student_id": "L2", "student": {"student.first_name": "B"},\n'
        b'{"type": "student", "student_id": "L3" ,,}\n'
        b"]}"
    )
    items = parse(raw)
    assert student_refs(items) == ["L1"]
    (err,) = errors(items)
    assert err.rule == "file.unreadable" and err.line == 4
    assert "line 4" in err.message


def test_unreadable_inputs_yield_one_file_level_error() -> None:
    for raw in (b"", b"not json", b"[1, 2]", b"\xff\xfe\x00garbage", b'{"records": [ {"type": "student"'):
        items = parse(raw)
        assert len(items) == 1 and isinstance(items[0], RecordError), raw
        assert items[0].rule == "file.unreadable"


def test_envelope_errors() -> None:
    items = parse({"format": "other", "version": 2, "district": "d-100", "records": []})
    assert [(e.field, e.rule) for e in errors(items)] == [
        ("format", "schema.invalid"),
        ("version", "schema.invalid"),
        ("district", "element.unknown"),
    ]
    assert [e.rule for e in errors(parse({"items": [1]}))] == ["element.unknown", "schema.required"]
    assert [e.rule for e in errors(parse({"records": {}}))] == ["schema.type"]


def test_oversized_record_is_skipped_and_the_next_one_read() -> None:
    big = {"type": "student", "student_id": "L0", "student": {"student.first_name": "x" * 5000}}
    small = {"type": "student", "student_id": "L1", "student": {"student.first_name": "A"}}
    items = parse({"records": [big, small]}, opts=ParseOptions(max_record_bytes=1000))
    assert [e.rule for e in errors(items)] == ["record.too_large"]
    assert student_refs(items) == ["L1"]


def test_record_split_across_read_chunks_and_long_strings() -> None:
    recs = [
        {"type": "student", "student_id": f"L{i}", "student": {"student.address": "12 Long Road " * 20}}
        for i in range(800)
    ]
    items = parse({"records": recs})
    assert errors(items) == []
    assert len(records(items)) == 800


def test_progress_is_reported_in_bytes_and_rows() -> None:
    seen: list[Progress] = []
    recs = [{"type": "student", "student_id": f"L{i}", "student": {"student.first_name": "A"}} for i in range(250)]
    parse({"records": recs}, opts=ParseOptions(progress=seen.append, progress_every=100))
    assert [p.rows_read for p in seen] == [100, 200, 250]
    assert seen[-1].done and seen[-1].bytes_read == seen[-1].total_bytes
    assert seen[0].bytes_read > 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_raises(raw: bytes) -> None:
    parse(raw)


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=12),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    )
)
def test_arbitrary_record_shapes_never_raise(record: Any) -> None:
    items = parse({"records": [record]})
    assert all(isinstance(i, RecordError | RecordWarning | StudentRecord | EnrollmentRecord) or True for i in items)


def test_tiny_reads_split_every_token_and_give_the_same_result() -> None:
    from tests.services.ingest.ingest_data import IterStream

    raw = json.dumps(GOOD).encode() + b"\n"
    whole = list(parse_batch(io.BytesIO(raw), file="b.json"))
    for size in (1, 3, 7):
        chunks = [raw[i : i + size] for i in range(0, len(raw), size)]
        assert list(parse_batch(IterStream(chunks), file="b.json")) == whole  # type: ignore[arg-type]


def test_a_syntax_error_is_reported_at_once_not_after_reading_ahead() -> None:
    tail = b"".join(b'{"type": "student", "student_id": "L%d", "student": {}},\n' % i for i in range(40_000))
    raw = b'{"records": [\n{"type": "student", "student_id": tru},\n' + tail + b"{}]}"
    seen: list[Progress] = []
    items = parse(raw, opts=ParseOptions(progress=seen.append))
    (err,) = errors(items)
    assert err.rule == "file.unreadable" and err.line == 2
    assert seen[-1].bytes_read < 200_000  # it stopped near the damage, not at the end of 2 MB
