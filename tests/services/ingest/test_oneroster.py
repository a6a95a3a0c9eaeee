from __future__ import annotations

import io
import tracemalloc
import zipfile
from datetime import date
from pathlib import Path

from services.ingest.formats import ParseOptions, Progress
from services.ingest.formats.oneroster_csv import OneRosterUpload, parse_oneroster
from services.ingest.parsed_records import (
    CalendarRecord,
    CalendarSource,
    CourseRecord,
    Dropped,
    EnrollmentAction,
    EnrollmentRecord,
    OrgType,
    ParseItem,
    RecordError,
    RecordWarning,
    SchoolRecord,
    StudentRecord,
)
from services.ingest.validation import Validator
from tests.services.ingest.ingest_data import (
    CLASSES,
    ENROLLMENTS,
    ORGS,
    SESSIONS,
    USERS_11,
    IterStream,
    base_classes,
    base_orgs,
    base_sessions,
    big_oneroster_zip,
    csv_text,
    enrollment,
    make_zip,
    manifest,
    oneroster_zip,
    user11,
)


def parse(data: bytes, **kw: object) -> list[ParseItem]:
    return list(parse_oneroster(io.BytesIO(data), **kw))  # type: ignore[arg-type]


def errors(items: list[ParseItem]) -> list[RecordError]:
    return [i for i in items if isinstance(i, RecordError)]


def of(items: list[ParseItem], cls: type) -> list:  # type: ignore[type-arg]
    return [i for i in items if isinstance(i, cls)]


def test_oneroster_11_bulk_becomes_schools_students_and_enrollments() -> None:
    users = [
        user11("s1", email="ada@example.org", middleName="B"),
        user11("t1", role="teacher"),
        user11("p1", role="parent", password="secret"),  # never read: not a student
    ]
    enrollments = [
        enrollment("e1", "s1"),
        enrollment("e2", "s1", cls="cls-2", school="sch-2", beginDate="2024-09-05", endDate="2025-01-24"),
        enrollment("e3", "t1", role="teacher"),
    ]
    demographics = [
        {"sourcedId": "s1", "birthDate": "2011-12-10", "sex": "female", "white": "true", "asian": "true"},
        {"sourcedId": "t1", "birthDate": "1980-01-01", "sex": "male"},  # a teacher's: never read
    ]
    items = parse(oneroster_zip(users, enrollments, demographics=demographics))
    assert errors(items) == []
    district, school1, _school2 = of(items, SchoolRecord)
    assert district.org_type is OrgType.DISTRICT and district.school_id == "dist-1"
    assert (school1.school_id, school1.parent_ref, school1.nces_id) == ("sch-1", "dist-1", "010100010001")
    student, demo = of(items, StudentRecord)
    assert student.student_ref == "s1"
    assert student.elements == {
        "student.first_name": "Ada",
        "student.last_name": "Lovelace",
        "student.middle_name": "B",
        "student.local_id": "Ls1",
        "student.email": "ada@example.org",
        "enrollment.grade_level": "09",
    }
    assert student.schools == ("sch-1",)
    assert demo.source_record_id == "oneroster:demographics:s1"
    assert demo.elements == {
        "student.birth_date": "2011-12-10",
        "student.sex": "female",
        "student.race_ethnicity": "asian;white",
    }
    e1, e2 = of(items, EnrollmentRecord)
    assert (e1.action, e1.school_id, e1.class_ref, e1.entry_date) == (
        EnrollmentAction.ENROLL,
        "sch-1",
        "cls-1",
        date(2024, 9, 3),
    )
    assert (e2.entry_date, e2.exit_date, e2.school_id) == (date(2024, 9, 5), date(2025, 1, 24), "sch-2")
    assert e1.source.file == "enrollments.csv" and e1.source.line == 2


def test_oneroster_12_uses_roles_csv_and_new_columns() -> None:
    users = [
        {"sourcedId": "s1", "status": "active", "givenName": "Ada", "familyName": "L", "userMasterIdentifier": "NY123",
         "identifier": "L1", "userIds": "{LDAP:ada},{state:NY123}", "primaryOrgSourcedId": "sch-1"},
        {"sourcedId": "s2", "status": "active", "givenName": "Bo", "familyName": "N", "preferredGivenName": "Bobby"},
        {"sourcedId": "t1", "status": "active", "givenName": "Tea", "familyName": "Cher"},
    ]  # fmt: skip
    roles = [
        {"sourcedId": "r1", "status": "active", "userSourcedId": "s1", "roleType": "primary", "role": "student",
         "orgSourcedId": "sch-1"},
        {"sourcedId": "r2", "status": "active", "userSourcedId": "s2", "roleType": "primary", "role": "student",
         "orgSourcedId": "sch-2"},
        {"sourcedId": "r3", "status": "active", "userSourcedId": "t1", "roleType": "primary", "role": "teacher",
         "orgSourcedId": "sch-1"},
    ]  # fmt: skip
    upload = OneRosterUpload(io.BytesIO(oneroster_zip(users, [enrollment("e1", "s1")], version="1.2", roles=roles)))
    items = list(upload)
    assert upload.manifest is not None and upload.manifest.version == "1.2"
    student, _bo = of(items, StudentRecord)
    assert student.elements["student.state_id"] == "NY123" and student.elements["student.local_id"] == "L1"
    assert student.schools == ("sch-1",)
    # the catalogue has no preferred names: the column is dropped (named, never kept), the student taken
    assert errors(items) == []
    assert [d.names for d in of(items, Dropped)] == [("preferredGivenName",)]
    assert "Bobby" not in repr(items)
    assert upload.students_by_school == {"sch-1": {"s1"}, "sch-2": {"s2"}}


def test_oneroster_12_without_roles_warns_and_reads_no_users() -> None:
    users = [{"sourcedId": "s1", "status": "active", "givenName": "Ada", "familyName": "L"}]
    items = parse(oneroster_zip(users, [], version="1.2"))
    assert of(items, StudentRecord) == []
    assert [w.rule for w in of(items, RecordWarning)] == ["oneroster.role_unknown"]


def test_tobedeleted_rows_become_deletions_and_withdrawals() -> None:
    users = [user11("s1"), user11("s2", status="tobedeleted", givenName="", familyName="")]
    enrollments = [
        enrollment("e1", "s1", status="tobedeleted", endDate="2024-10-01"),
        enrollment("e2", "s1", status="tobedeleted", dateLastModified="2024-10-09T12:00:00Z"),
    ]
    items = parse(oneroster_zip(users, enrollments, mode="delta"))
    assert errors(items) == []
    deleted = of(items, StudentRecord)[1]
    assert deleted.deleted and deleted.schools == ("sch-1",)
    w1, w2 = of(items, EnrollmentRecord)
    assert w1.action is EnrollmentAction.WITHDRAW and w1.exit_date == date(2024, 10, 1)
    assert w2.action is EnrollmentAction.WITHDRAW and w2.exit_date == date(2024, 10, 9)


def test_an_enrollment_keeps_its_id_whether_it_enrolls_or_withdraws() -> None:
    """One builder on both paths: a withdrawal's id is the enrollment's id, '%' and '/' escaped alike."""
    users = [user11("s1")]
    enroll = parse(oneroster_zip(users, [enrollment("e%1/x", "s1"), enrollment("e%2", "s1")]))
    withdraw = parse(
        oneroster_zip(
            users,
            [
                enrollment("e%1/x", "s1", status="tobedeleted", endDate="2024-10-01"),
                enrollment("e%2", "s1", status="tobedeleted", endDate="2024-10-01"),
            ],
            mode="delta",
        )
    )
    assert errors(enroll) == errors(withdraw) == []
    ids = ["oneroster:enrollment:e%251%2Fx", "oneroster:enrollment:e%252"]
    assert [e.source_record_id for e in of(enroll, EnrollmentRecord)] == ids
    assert [e.source_record_id for e in of(withdraw, EnrollmentRecord)] == ids
    assert {e.action for e in of(withdraw, EnrollmentRecord)} == {EnrollmentAction.WITHDRAW}


def test_bad_rows_are_reported_with_file_line_field_and_rule() -> None:
    users = [
        user11("s1"),
        user11("s2", password="hunter2"),
        user11("s3", identifier="219-09-9999"),
        user11("s4", userIds="{SSN:219099999}"),
        user11("s5", givenName=""),
        user11("s6", grades="Grade Z"),
    ]
    enrollments = [
        enrollment("e1", "s1"),
        enrollment("e2", "s1", cls="cls-404"),
        enrollment("e3", "s1", beginDate="2024-13-01"),
        enrollment("e4", "219099999"),
        enrollment("e5", "s1", school="  sch-1  "),
    ]
    items = parse(oneroster_zip(users, enrollments))
    assert [(e.file, e.line, e.field, e.rule) for e in errors(items)] == [
        ("users.csv", 4, "identifier", "ssn.forbidden"),
        ("users.csv", 5, "userIds", "ssn.forbidden"),
        ("users.csv", 6, "givenName", "schema.required"),
        ("enrollments.csv", 3, "classSourcedId", "reference.unknown_class"),
        ("enrollments.csv", 4, "beginDate", "date.invalid"),
        ("enrollments.csv", 5, "userSourcedId", "ssn.forbidden"),
    ]
    for e in errors(items):
        assert "hunter2" not in e.message and "219" not in e.message
    (warning,) = of(items, RecordWarning)
    assert (warning.line, warning.field, warning.rule) == (7, "grades", "code.unknown")
    # the whitespace-padded school id was read carefully and trimmed
    assert [e.school_id for e in of(items, EnrollmentRecord)] == ["sch-1", "sch-1"]
    # a password is dropped unread: the student is taken, the password named and never kept
    assert [s.student_ref for s in of(items, StudentRecord)] == ["s1", "s2", "s6"]
    assert [d.names for d in of(items, Dropped)] == [("password",)]


def test_school_ids_can_come_from_org_identifier() -> None:
    items = parse(oneroster_zip([user11("s1")], [enrollment("e1", "s1"), enrollment("e2", "s1", school="sch-404")]),
                  school_id_from="identifier")  # fmt: skip
    assert [s.school_id for s in of(items, SchoolRecord) if s.org_type is OrgType.SCHOOL] == [
        "010100010001",
        "010100010002",
    ]
    assert [e.school_id for e in of(items, EnrollmentRecord)] == ["010100010001"]
    assert [e.rule for e in errors(items)] == ["reference.unknown_school"]
    assert of(items, StudentRecord)[0].schools == ("010100010001",)


def test_ragged_rows_and_broken_csv() -> None:
    bad_users = csv_text(USERS_11, [user11("s1")]) + 's2,active,,true,sch-1,student\r\n"unterminated,quote\r\n'
    data = make_zip(
        {
            "manifest.csv": manifest("1.1", users="bulk", enrollments="bulk"),
            "users.csv": bad_users,
            "enrollments.csv": csv_text(ENROLLMENTS, [enrollment("e1", "s1")]),
        }
    )
    items = parse(data)
    assert [(e.file, e.line, e.rule) for e in errors(items)][:1] == [("users.csv", 3, "schema.columns")]
    assert len(of(items, EnrollmentRecord)) == 1  # the next file is still read


def test_missing_required_columns_refuse_the_file_once() -> None:
    data = make_zip(
        {
            "manifest.csv": manifest("1.1", users="bulk"),
            "users.csv": "sourcedId,givenName\r\ns1,Ada\r\n",
        }
    )
    (err,) = errors(parse(data))
    assert (err.file, err.rule) == ("users.csv", "schema.columns")
    assert "familyName" in err.message and "role" in err.message


def test_manifest_problems() -> None:
    no_manifest = make_zip({"users.csv": csv_text(USERS_11, [user11("s1")])})
    assert [e.rule for e in errors(parse(no_manifest))] == ["manifest.missing"]
    wrong_version = make_zip({"manifest.csv": manifest("2.0", users="bulk")})
    assert [e.rule for e in errors(parse(wrong_version))] == ["manifest.invalid"]
    bad_mode = make_zip({"manifest.csv": manifest("1.1", users="sometimes")})
    assert [e.rule for e in errors(parse(bad_mode))] == ["manifest.invalid"]
    missing_file = make_zip({"manifest.csv": manifest("1.1", users="bulk")})
    assert [(e.file, e.rule) for e in errors(parse(missing_file))] == [("users.csv", "manifest.file_missing")]
    ignored = make_zip({"manifest.csv": manifest("1.1"), "users.csv": csv_text(USERS_11, [user11("s1")])})
    items = parse(ignored)
    assert [w.rule for w in of(items, RecordWarning)] == ["manifest.file_ignored"]
    assert of(items, StudentRecord) == []


def test_unreadable_containers() -> None:
    for raw in (b"", b"not a zip at all", b"PK\x03\x04" + b"\x00" * 40):
        items = parse(raw)
        assert [e.rule for e in errors(items)] == ["file.unreadable"], raw
    good = oneroster_zip([user11("s1")], [enrollment("e1", "s1")])
    corrupt = bytearray(good)
    start = good.index(b"PK\x03\x04", good.index(b"users.csv") - 40)
    corrupt[start + 60 : start + 90] = b"\xff" * 30  # damage compressed data of one member
    items = parse(bytes(corrupt))
    assert any(e.rule == "file.unreadable" for e in errors(items))


def test_zip_declaring_more_than_the_ceiling_is_refused() -> None:
    data = oneroster_zip([user11(f"s{i}") for i in range(50)], [])
    items = parse(data, opts=ParseOptions(max_uncompressed_bytes=1000))
    assert [e.rule for e in errors(items)] == ["file.too_large"]


def test_non_seekable_stream_is_spooled() -> None:
    data = oneroster_zip([user11("s1")], [enrollment("e1", "s1")])
    items = list(parse_oneroster(IterStream([data[i : i + 100] for i in range(0, len(data), 100)])))  # type: ignore[arg-type]
    assert len(of(items, EnrollmentRecord)) == 1


def test_parse_then_validate_end_to_end() -> None:
    users = [user11("s1"), user11("s2")]
    enrollments = [
        enrollment("e1", "s1"),
        enrollment("e1", "s2"),
        enrollment("e3", "s404"),
        enrollment("e4", "s2", cls="cls-2", school="sch-2"),
    ]
    v = Validator("d-100", {"sch-1"}, date(2024, 10, 15), district_org_ids=["dist-1"])
    result = v.validate(parse_oneroster(io.BytesIO(oneroster_zip(users, enrollments))))
    assert [(e.file, e.line, e.rule) for e in result.errors] == [
        ("orgs.csv", 4, "school.not_in_district"),
        ("classes.csv", 3, "school.not_in_district"),  # a class at another district's school (issue 23)
        ("academicSessions.csv", 2, "school.not_in_district"),
        ("enrollments.csv", 3, "record.duplicate"),
        ("enrollments.csv", 5, "school.not_in_district"),
        ("enrollments.csv", 4, "reference.unknown_student"),
    ]
    assert sorted(r.source_record_id for r in result.accepted if isinstance(r, EnrollmentRecord)) == [
        "oneroster:enrollment:e1"
    ]


def test_large_upload_streams_in_flat_memory_and_reports_progress(tmp_path: Path) -> None:
    path = tmp_path / "big.zip"
    big_oneroster_zip(str(path), students=20_000, enrollments_per_student=10, schools=10)
    with zipfile.ZipFile(path) as zf:
        unpacked = sum(i.file_size for i in zf.infolist())
    seen: list[Progress] = []
    with path.open("rb") as f:
        tracemalloc.start()
        try:
            counts: dict[str, int] = {}
            for item in parse_oneroster(f, opts=ParseOptions(progress=seen.append, progress_every=50_000)):
                counts[type(item).__name__] = counts.get(type(item).__name__, 0) + 1
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert counts == {
        "StudentRecord": 20_000,
        "EnrollmentRecord": 200_000,
        "SchoolRecord": 11,
        "CalendarRecord": 10,
        "SessionRecord": 1,
        "ClassRecord": 2_000,
    }
    assert unpacked > 15_000_000
    # the parser keeps only per-student and per-class indexes (a few MB), never the files
    assert peak < 12_000_000, peak
    assert seen[-1].done and seen[-1].rows_read == 20_000 + 200_000 + 2_000 + 11 + 1
    assert seen[0].bytes_read < seen[-1].bytes_read == seen[-1].total_bytes


def test_real_exports_extension_and_credential_columns_and_quirks() -> None:
    """OneRoster as real systems write it (the generator's `oneroster-ext` shape): metadata.* and
    ext_* columns, filled passwords, preferred names and pronouns, a byte-order mark, a class
    title with a quoted line break, a trailing empty header column; terms feed the calendar."""
    from homeroom_dev.generate import generate_world
    from homeroom_dev.generate import oneroster_zip as generated_zip

    world = generate_world(students_per_district=12, days=5)
    district = world.districts[0]
    items = parse(generated_zip(district, world.start, extensions=True))
    assert errors(items) == []
    students = [s for s in of(items, StudentRecord) if s.source.file == "users.csv"]
    assert len(students) == 12
    names = {n for d in of(items, Dropped) for n in d.names}
    assert {"password", "preferredGivenName", "metadata.nickname", "ext_lms_guid"} <= names
    for secret in ("Spring2026!", "Spring2027!", "lms-000001"):
        assert secret not in repr(items)
    (calendar_terms,) = {c.sessions for c in of(items, CalendarRecord)}
    assert calendar_terms[0].name == "Fall"
    assert {c.school_id for c in of(items, CalendarRecord)} == {s.id for s in district.schools}
    assert all(c.calendar_source is CalendarSource.TERMS for c in of(items, CalendarRecord))


def test_oneroster_11_with_10_column_names_absent_and_unused_files() -> None:
    users = [{k: v for k, v in user11("s1", userId="{state:NY-77}").items() if k != "userIds"}]
    users11 = [*USERS_11[:7], "userId", *USERS_11[8:]]  # the 1.0 name of userIds
    files: dict[str, str | bytes] = {
        "orgs.csv": csv_text(ORGS, base_orgs()),
        "academicSessions.csv": csv_text(SESSIONS, base_sessions()),
        "classes.csv": csv_text([*CLASSES[:10], "termSourcedId", *CLASSES[11:]], [
            {**{k: v for k, v in c.items() if k != "termSourcedIds"}, "termSourcedId": c["termSourcedIds"]}
            for c in base_classes()
        ]),
        "users.csv": csv_text(users11, users),
        "enrollments.csv": csv_text(ENROLLMENTS, [enrollment("e1", "s1")]),
        "demographics.csv": "sourcedId,birthDate\r\ns1,219-09-9999\r\n",  # absent in the manifest: never read
        "courses.csv": "sourcedId,title\r\nc1,Algebra\r\n",
        "manifest.csv": manifest(
            "1.1", orgs="bulk", academicSessions="bulk", classes="bulk", users="bulk", enrollments="bulk"
        ),
    }  # fmt: skip
    items = parse(make_zip(files))
    assert errors(items) == []
    (student,) = of(items, StudentRecord)
    assert student.elements["student.state_id"] == "NY-77"
    (enroll,) = of(items, EnrollmentRecord)
    assert enroll.entry_date == date(2024, 9, 3)  # the class's term, found through termSourcedId
    # courses.csv is read when the manifest lists it (issue 23); here it does not, so it is not read
    assert sorted(w.rule for w in of(items, RecordWarning)) == ["manifest.file_ignored"]
    assert of(items, CourseRecord) == []
