"""The declared field tables the parsers read records by (``Check.read`` over ``Field`` and
rules), and the OneRoster / Ed-Fi XML counts that once stopped a whole file."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import pytest

from services.ingest.formats import Check, Field, Rule, batch, day, ends_after, one_of, text
from services.ingest.formats.edfi_xml import parse_edfi_xml
from services.ingest.formats.oneroster_csv import OneRosterUpload, parse_oneroster
from services.ingest.parsed_records import ParseItem, RecordError, SessionRecord, Source
from tests.services.ingest.ingest_data import ORGS, SESSIONS, base_orgs, csv_text, make_zip, manifest


def _table_fills_its_record(record: Any, fields: tuple[Field | Rule, ...], *extra: str) -> None:
    """Every declared field fills a field of the record type (the record is built from the values
    by name, which mypy cannot follow): a misspelt ``into`` fails here, not on a district's upload."""
    names = {f.name for f in dataclasses.fields(record)}
    filled = [f.into for f in fields if isinstance(f, Field)]
    assert set(filled) <= names, set(filled) - names
    assert len(filled) == len(set(filled))
    assert not set(extra) - names


def test_every_batch_table_fills_its_record() -> None:
    tables = [batch._ENROLL, *batch._STUDENT_FACTS.values(), *batch._ROSTER_FACTS.values()]
    for declared in tables:
        filled = {f.into for f in declared.fields if isinstance(f, Field)}
        assert set(declared.key) <= filled, declared.kind
        student = ("student_ref",) if declared in (batch._ENROLL, *batch._STUDENT_FACTS.values()) else ()
        _table_fills_its_record(declared.record, declared.fields, *student, *(["action"] if declared.action else []))
    assert set(batch._STUDENT_FACTS) | set(batch._ROSTER_FACTS) | {"enroll"} <= set(batch.FIELDS)


def test_every_oneroster_table_fills_its_record() -> None:
    upload = OneRosterUpload(io.BytesIO(b""))
    for row_type in upload._row_types.values():
        assert row_type.key in {f.into for f in row_type.fields if isinstance(f, Field)}
        _table_fills_its_record(row_type.record, row_type.fields, "deleted")


def test_read_walks_fields_and_rules_in_order() -> None:
    fields: tuple[Field | Rule, ...] = (
        Field("sessionName", text(required=True), into="title"),
        Field(
            "kind", one_of({"term": "term", "semester": "semester"}, "kind must be term or semester.", fold=str.lower)
        ),
        Field("begins", day(required=True), into="start_date"),
        Field("ends", day(), into="end_date"),
        ends_after("start_date", "end_date", "It ends before it begins.", name="ends"),
        Field("note", text(max_len=4)),
    )
    check = Check(Source("test", "f", 3))
    values = check.read({"sessionName": " Fall ", "kind": "SEMESTER", "begins": "2024-09-01"}, fields)
    assert check.ok
    assert values == {
        "title": "Fall",
        "kind": "semester",
        "start_date": values["start_date"],
        "end_date": None,
        "note": None,
    }
    assert values["start_date"].isoformat() == "2024-09-01"

    check = Check(Source("test", "f", 3), "r.")
    bad = {"kind": "quarter", "begins": "2024-09-01", "ends": "2024-08-01", "note": "too long"}
    values = check.read(bad, fields)
    # one problem a field, in the table's order, the rule where it stands; nothing refused is kept
    assert [(e.field, e.rule) for e in check.errors] == [
        ("r.sessionName", "schema.required"),
        ("r.kind", "code.unknown"),
        ("r.ends", "date.end_before_start"),
        ("r.note", "value.too_long"),
    ]
    assert check.errors[1].message == "kind must be term or semester." and check.errors[1].value_class == "text"
    assert values["title"] is None and values["kind"] is None and values["note"] is None


def _batch(records: list[dict[str, object]]) -> list[ParseItem]:
    return list(batch.parse_batch(io.BytesIO(json.dumps({"records": records}).encode())))


def test_batch_session_reports_every_bad_field() -> None:
    """parent_id is checked with the other fields (it was read only once they had all passed)."""
    items = _batch(
        [
            {"type": "academic_session", "session_id": "t1", "title": "", "session_type": "term",
             "start_date": "2024-09-01", "end_date": "2024-08-01", "school_year": "spring", "parent_id": ["y"]},
        ]
    )  # fmt: skip
    assert [(i.field, i.rule) for i in items if isinstance(i, RecordError)] == [
        ("records[0].title", "schema.required"),
        ("records[0].end_date", "date.end_before_start"),
        ("records[0].school_year", "schema.invalid"),
        ("records[0].parent_id", "schema.type"),
    ]


def _sessions_zip(*years: str) -> bytes:
    rows = [
        {"sourcedId": f"t{i}", "title": "Fall", "type": "term", "startDate": "2024-09-03", "endDate": "2025-01-24",
         "schoolYear": year}
        for i, year in enumerate(years)
    ]  # fmt: skip
    return make_zip(
        {
            "orgs.csv": csv_text(ORGS, base_orgs()),
            "academicSessions.csv": csv_text([*SESSIONS, "schoolYear"], rows),
            "manifest.csv": manifest("1.1", orgs="bulk", academicSessions="bulk"),
        }
    )


@pytest.mark.parametrize("year", ["²⁰²⁵", "20²5"])
def test_oneroster_school_year_in_superscript_refuses_the_row_only(year: str) -> None:
    """str.isdigit() takes superscript digits and int() raises on them: a schoolYear written so
    once stopped the whole academicSessions.csv with file.unreadable."""
    items = list(parse_oneroster(io.BytesIO(_sessions_zip("2025", year, "2025"))))
    refusals = [(i.file, i.line, i.field, i.rule) for i in items if isinstance(i, RecordError)]
    assert refusals == [("academicSessions.csv", 3, "schoolYear", "schema.type")]
    sessions = [i for i in items if isinstance(i, SessionRecord)]
    assert [(s.session_id, s.school_year) for s in sessions] == [("t0", 2025), ("t2", 2025)]


def test_edfi_session_days_in_superscript_refuse_the_record_only() -> None:
    session = """<Session><SessionName>{name}</SessionName><SchoolYear>2021-2022</SchoolYear>
    <BeginDate>2021-08-23</BeginDate><EndDate>2021-12-17</EndDate><TotalInstructionalDays>{days}</TotalInstructionalDays>
    <SchoolReference><SchoolIdentity><SchoolId>255901001</SchoolId></SchoolIdentity></SchoolReference></Session>"""
    xml = (
        '<InterchangeEducationOrgCalendar xmlns="http://ed-fi.org/5.2.0">'
        + session.format(name="Fall", days="81")
        + session.format(name="Winter", days="8¹")
        + session.format(name="Spring", days="88")
        + "</InterchangeEducationOrgCalendar>"
    )
    items = list(parse_edfi_xml(io.BytesIO(xml.encode()), file="cal.xml"))
    refusals = [(i.field, i.rule) for i in items if isinstance(i, RecordError)]
    assert refusals == [("TotalInstructionalDays", "schema.type")]
    terms = [i.title for i in items if isinstance(i, SessionRecord)]
    assert terms == ["Fall", "Spring"]
