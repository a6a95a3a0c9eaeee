"""The ingest service end to end: real app, real PostgreSQL, real broker.

Each test uploads through the HTTP API, waits for the submission to finish (polling its report),
then reads what reached the bus and decodes it with the kernel's envelope decoder."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from homeroom.bus.envelope import IncomingEvent, decode
from homeroom.bus.topics import ATTENDANCE, CALENDAR, DISCIPLINE, ENROLLMENT, ORGANIZATION, REJECTED, Topic
from homeroom.clock import fixed
from homeroom.crypto import DecryptionError, EnvelopeCipher
from services.ingest.service import SERVICE
from tests.harness import ServiceEnv, ServiceUnderTest, exported, service_under_test
from tests.services.ingest.ingest_data import base_orgs, enrollment, oneroster_zip, user11

ALL = (ENROLLMENT, ORGANIZATION, ATTENDANCE, DISCIPLINE, CALENDAR, REJECTED)
FIRST = "Quintessa"  # names that appear nowhere else, so a plaintext leak is findable
LAST = "Marchbanks"


def staff(env: ServiceEnv, district: str) -> dict[str, str]:
    return env.auth("district_staff", subject=f"staff-{district}", district=district)


@pytest.fixture
async def svc(service_env: ServiceEnv, tmp_path: Any) -> AsyncIterator[ServiceUnderTest]:
    async with service_under_test(SERVICE, service_env, upload_dir=tmp_path / "uploads") as s:
        yield s


async def register(svc: ServiceUnderTest, env: ServiceEnv, district: str, *schools: str) -> None:
    for school in schools:
        r = await svc.client.post(
            f"/v1/districts/{district}/organizations", json={"org_id": school}, headers=staff(env, district)
        )
        assert r.status_code == 201, r.text


async def upload(
    svc: ServiceUnderTest,
    env: ServiceEnv,
    district: str,
    path: str,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    wait: bool = True,
) -> dict[str, Any]:
    r = await svc.client.post(
        f"/v1/districts/{district}/submissions/{path}",
        content=body,
        headers={**staff(env, district), **(headers or {})},
    )
    assert r.status_code in (200, 202), r.text
    report: dict[str, Any] = r.json()
    assert r.headers["location"] == f"/v1/submissions/{report['id']}"
    return await finished(svc, env, district, report["id"]) if wait else report


async def finished(svc: ServiceUnderTest, env: ServiceEnv, district: str, sid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        r = await svc.client.get(f"/v1/submissions/{sid}", headers=staff(env, district))
        assert r.status_code == 200, r.text
        report: dict[str, Any] = r.json()
        if report["status"] in ("completed", "failed", "held"):
            return report
        assert time.monotonic() < deadline, report
        await asyncio.sleep(0.05)


async def problems(svc: ServiceUnderTest, env: ServiceEnv, district: str, sid: str) -> list[dict[str, Any]]:
    r = await svc.client.get(f"/v1/submissions/{sid}/problems?limit=1000", headers=staff(env, district))
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["problems"]
    return out


async def bus_events(svc: ServiceUnderTest, env: ServiceEnv, sid: str) -> list[IncomingEvent]:
    """Every event of one submission (by correlation id) that reached the broker."""
    await svc.runtime.drain_outbox(30)
    consumer = AIOKafkaConsumer(bootstrap_servers=env.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t.name, p) for t in ALL for p in range(t.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[IncomingEvent] = []
        quiet = 0
        deadline = time.monotonic() + 20
        while quiet < 3 and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            if not any(batch.values()):
                quiet += 1
                continue
            quiet = 0
            for tp, msgs in batch.items():
                for m in msgs:
                    ev = decode(tp.topic, tp.partition, m.offset, m.key, m.value, list(m.headers))
                    if ev.meta.correlation_id == sid:
                        out.append(ev)
        return out
    finally:
        await consumer.stop()


def by_change(events: list[IncomingEvent], change: str) -> list[Any]:
    return [e.payload for e in events if e.change == change]


def raw_values(events: list[IncomingEvent]) -> bytes:
    return b"\n".join(e.message.SerializeToString() for e in events)


def batch(*records: dict[str, Any]) -> bytes:
    return json.dumps({"format": "homeroom.batch", "version": 1, "records": list(records)}, indent=1).encode()


def student(sid: str, state_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "student",
        "student_id": sid,
        "student": {
            "student.state_id": state_id,
            "student.first_name": FIRST,
            "student.last_name": LAST,
            "student.birth_date": "2011-12-10",
            "program.iep": True,
            **extra,
        },
    }


def enroll(sid: str, school: str = "sch-1", entry: str = "2024-09-03") -> dict[str, Any]:
    return {"type": "enroll", "student_id": sid, "school_id": school, "entry_date": entry, "grade_level": "09"}


def absent(sid: str, day: str, school: str = "sch-1", excused: bool = False) -> dict[str, Any]:
    return {
        "type": "attendance",
        "student_id": sid,
        "school_id": school,
        "date": day,
        "category": "absent",
        "excused": excused,
    }


# --- the JSON batch end to end ---------------------------------------------------------------


async def test_batch_end_to_end_sealed_pseudonymous_and_problems_reported(
    svc: ServiceUnderTest, service_env: ServiceEnv
) -> None:
    env = service_env
    await register(svc, env, "d-1", "sch-1")
    await register(svc, env, "d-2", "sch-9")
    body = batch(
        student("L1", "NYS-0000001"),
        enroll("L1"),
        absent("L1", "2024-10-01", excused=True),
        {
            "type": "suspension",
            "student_id": "L1",
            "school_id": "sch-1",
            "start_date": "2024-10-02",
            "end_date": "2024-10-03",
            "in_school": False,
        },
        # refused: an SSN field, another district's school, an impossible date, unknown student
        student("L2", "NYS-0000002", **{"student.ssn": "219-09-9999", "student.birth_date": "2011-02-30"}),
        enroll("L1", school="sch-9", entry="2024-09-04"),
        absent("L1", "2024-02-30"),
        absent("L404", "2024-10-01"),
    )
    report = await upload(svc, env, "d-1", "batch", body)
    assert report["status"] == "completed", report
    # five problems, four records: the second student is refused for two reasons
    assert report["counts"]["accepted"] == 4 and report["counts"]["rejected"] == 4, report
    assert report["counts"]["records_read"] == 8 and sum(report["problems_by_rule"].values()) == 5
    assert report["progress"] == 1.0
    probs = await problems(svc, env, "d-1", report["id"])
    assert {(p["rule"], p["field"]) for p in probs} >= {("ssn.forbidden", "records[4].student.student.ssn")}
    assert any(p["rule"] == "school.not_in_district" for p in probs)
    assert any(p["rule"] == "date.invalid" and p["field"] == "records[6].date" for p in probs)
    assert any(p["rule"] == "reference.unknown_student" for p in probs)
    for p in probs:
        assert p["file"] == "batch.json" and p["line"] > 0 and p["message"]
        assert "219-09-9999" not in json.dumps(p) and "9999" not in p["message"]
    ssn = next(p for p in probs if p["rule"] == "ssn.forbidden")
    assert "Social Security" in ssn["message"]

    events = await bus_events(svc, env, report["id"])
    (registered,) = by_change(events, "student_registered")
    (enrolled,) = by_change(events, "student_enrolled")
    (attendance,) = by_change(events, "attendance_recorded")
    (suspension,) = by_change(events, "suspension_recorded")
    rejected = by_change(events, "record_rejected")
    assert len(rejected) == 5 and {r.rule for r in rejected} >= {"ssn.forbidden", "school.not_in_district"}
    key = registered.student_key
    assert key.startswith("stu_") and key == svc.runtime.pseudonymizer.student_key("NYS-0000001")
    assert enrolled.student_key == attendance.student_key == suspension.student_key == key
    assert (enrolled.school_id, enrolled.entry_date, enrolled.grade_level) == ("sch-1", "2024-09-03", "09")
    assert (attendance.date, attendance.excused, attendance.category) == ("2024-10-01", True, 2)
    assert (suspension.start_date, suspension.end_date) == ("2024-10-02", "2024-10-03")
    assert set(registered.sealed_elements) == {
        "student.state_id",
        "student.local_id",
        "student.first_name",
        "student.last_name",
        "student.birth_date",
        "program.iep",
    }
    # privacy: no plaintext name, state id, local id or SSN anywhere on the wire
    wire = raw_values(events) + b"".join(k for e in events for k in [e.key or b""])
    for secret in (FIRST, LAST, "NYS-0000001", "NYS-0000002", "L1", "219-09-9999", "2011-12-10"):
        assert secret.encode() not in wire, secret
    # ... and the sealed values open only for this district and student
    cipher: EnvelopeCipher = svc.runtime.require_cipher()
    first = registered.sealed_elements["student.first_name"].ciphertext
    assert await cipher.open("d-1", key, "student.first_name", first) == FIRST.encode()
    with pytest.raises(DecryptionError):
        await cipher.open("d-1", key, "student.last_name", first)
    for e in events:
        assert e.meta.district_id == "d-1" and e.meta.source == "/homeroom/ingest/d-1"
    metrics = (await svc.client.get("/metrics")).text
    for line in (
        'homeroom_ingest_rejections_total{district="d-1",rule="ssn.forbidden"}',
        'homeroom_ingest_records_total{district="d-1",format="batch",outcome="accepted"}',
        'homeroom_ingest_submissions_total{format="batch",status="completed"}',
        'homeroom_ingest_events_total{topic="ingest.rejected.v1"}',
    ):
        assert exported(metrics, line) > 0, line
    assert "NYS-0000001" not in metrics and FIRST not in metrics


async def test_same_state_id_same_key_in_two_districts_and_resubmission_makes_no_new_events(
    svc: ServiceUnderTest, service_env: ServiceEnv
) -> None:
    env = service_env
    await register(svc, env, "d-1", "sch-1")
    await register(svc, env, "d-2", "sch-2")
    one = await upload(svc, env, "d-1", "batch", batch(student("A-77", " nys-555 "), enroll("A-77")))
    two = await upload(svc, env, "d-2", "batch", batch(student("X9", "NYS-555"), enroll("X9", school="sch-2")))
    k1 = by_change(await bus_events(svc, env, one["id"]), "student_registered")[0].student_key
    k2 = by_change(await bus_events(svc, env, two["id"]), "student_registered")[0].student_key
    assert k1 == k2
    again = await upload(svc, env, "d-1", "batch", batch(student("A-77", " nys-555 "), enroll("A-77")))
    assert again["counts"]["unchanged"] == 2 and again["counts"]["accepted"] == 0, again
    assert await bus_events(svc, env, again["id"]) == []
    # attendance sent later, on its own, finds the student and enrollment on record
    later = await upload(svc, env, "d-1", "batch", batch(absent("A-77", "2024-10-07")))
    assert later["counts"] == {**later["counts"], "accepted": 1, "rejected": 0}, later
    (att,) = by_change(await bus_events(svc, env, later["id"]), "attendance_recorded")
    assert att.student_key == k1


async def test_idempotency_key_returns_the_first_submission(svc: ServiceUnderTest, service_env: ServiceEnv) -> None:
    env = service_env
    await register(svc, env, "d-1", "sch-1")
    body = batch(student("L1", "NYS-1"))
    first = await upload(svc, env, "d-1", "batch", body, headers={"Idempotency-Key": "k-1"})
    r = await svc.client.post(
        "/v1/districts/d-1/submissions/batch", content=body, headers={**staff(env, "d-1"), "Idempotency-Key": "k-1"}
    )
    assert r.status_code == 200 and r.json()["id"] == first["id"]
    listed = (await svc.client.get("/v1/districts/d-1/submissions", headers=staff(env, "d-1"))).json()
    assert [s["id"] for s in listed["submissions"]] == [first["id"]]

    # Issue 17, item 7: the same key with another body silently returned the first
    # submission, and another user's same key got that submission's report.
    other_body = batch(student("L2", "NYS-2"))
    r = await svc.client.post(
        "/v1/districts/d-1/submissions/batch",
        content=other_body,
        headers={**staff(env, "d-1"), "Idempotency-Key": "k-1"},
    )
    assert r.status_code == 422, r.text
    (error,) = r.json()["errors"]
    assert (error["field"], error["rule"]) == ("header.Idempotency-Key", "idempotency_key.reused")
    colleague = env.auth("district_staff", subject="staff-d-1-colleague", district="d-1")
    r = await svc.client.post(
        "/v1/districts/d-1/submissions/batch", content=body, headers={**colleague, "Idempotency-Key": "k-1"}
    )
    assert r.status_code == 202 and r.json()["id"] != first["id"], r.text
    assert "NYS" not in r.text


# --- access -----------------------------------------------------------------------------------------


async def test_other_districts_and_roles_are_refused(svc: ServiceUnderTest, service_env: ServiceEnv) -> None:
    env = service_env
    await register(svc, env, "d-1", "sch-1")
    report = await upload(svc, env, "d-1", "batch", batch(student("L1", "NYS-1")))
    sid = report["id"]
    other = staff(env, "d-2")
    for path in (f"/v1/submissions/{sid}", f"/v1/submissions/{sid}/problems"):
        r = await svc.client.get(path, headers=other)
        assert r.status_code == 404 and "NYS" not in r.text and "accepted" not in r.text
    assert (await svc.client.post(f"/v1/submissions/{sid}/confirm", headers=other)).status_code == 404
    assert (await svc.client.get("/v1/districts/d-1/submissions", headers=other)).status_code == 403
    r = await svc.client.post("/v1/districts/d-1/submissions/batch", content=b"{}", headers=other)
    assert r.status_code == 403
    vendor = env.auth("vendor", agreement="a-1", organization="Acme")
    assert (await svc.client.get(f"/v1/submissions/{sid}", headers=vendor)).status_code == 403
    school = env.auth("school_staff", district="d-1", schools=["sch-1"])
    assert (await svc.client.get(f"/v1/submissions/{sid}", headers=school)).status_code == 404  # not theirs
    assert (await svc.client.get(f"/v1/submissions/{sid}")).status_code == 401
    # a school registered to another district cannot be claimed
    r = await svc.client.post("/v1/districts/d-2/organizations", json={"org_id": "sch-1"}, headers=other)
    assert r.status_code == 409


async def test_oversized_upload_is_refused_with_413(service_env: ServiceEnv, tmp_path: Any) -> None:
    env = service_env
    async with service_under_test(SERVICE, env, upload_dir=tmp_path / "u", max_upload_bytes=1000) as s:
        big = batch(*[student(f"L{i}", f"NYS-{i}") for i in range(50)])
        assert len(big) > 1000

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while streaming
            for i in range(0, len(big), 256):
                yield big[i : i + 256]

        for content in (big, chunks()):
            r = await s.client.post("/v1/districts/d-1/submissions/batch", content=content, headers=staff(env, "d-1"))
            assert r.status_code == 413, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["max_bytes"] == 1000
        assert list((tmp_path / "u").iterdir()) == []  # nothing left behind
        listed = await s.client.get("/v1/districts/d-1/submissions", headers=staff(env, "d-1"))
        assert listed.json()["submissions"] == []
        r = await s.client.post("/v1/districts/d-1/submissions/batch", content=b"", headers=staff(env, "d-1"))
        assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "upload.empty"


async def test_malformed_json_keeps_the_records_before_the_damage(
    svc: ServiceUnderTest, service_env: ServiceEnv
) -> None:
    env = service_env
    await register(svc, env, "d-1", "sch-1")
    good = batch(student("L1", "NYS-1"), enroll("L1"))
    broken = good[: good.rindex(b"]")] + b', {"type": "enroll", "student_id": "L2" "school_id": 1}]}'
    report = await upload(svc, env, "d-1", "batch", broken)
    assert report["status"] == "completed"
    assert report["counts"]["accepted"] == 2 and report["counts"]["rejected"] == 1
    (p,) = await problems(svc, env, "d-1", report["id"])
    assert p["rule"] == "file.unreadable" and p["line"] > 1 and "line" in p["message"]
    events = await bus_events(svc, env, report["id"])
    assert len(by_change(events, "student_enrolled")) == 1


def _edfi_student(uid: str) -> dict[str, Any]:
    return {"studentUniqueId": uid, "birthDate": "2010-01-13", "firstName": FIRST, "lastSurname": LAST}


async def test_edfi_json_resources(svc: ServiceUnderTest, service_env: ServiceEnv) -> None:
    env = service_env
    await register(svc, env, "d-1", "255901001")
    students = [_edfi_student("604822"), dict(_edfi_student("604823"), socialSecurityNumber="219-09-9999")]
    rep = await upload(svc, env, "d-1", "edfi/students", json.dumps(students).encode())
    assert (rep["counts"]["accepted"], rep["counts"]["rejected"]) == (1, 1)
    (p,) = await problems(svc, env, "d-1", rep["id"])
    assert (p["rule"], p["field"], p["value_class"]) == ("ssn.forbidden", "[1].socialSecurityNumber", "ssn-like")
    ssa = [
        {
            "studentReference": {"studentUniqueId": "604822"},
            "schoolReference": {"schoolId": 255901001},
            "entryDate": "2024-09-03",
            "entryGradeLevelDescriptor": "uri://ed-fi.org/GradeLevelDescriptor#Ninth grade",
        }
    ]
    rep2 = await upload(svc, env, "d-1", "edfi/studentSchoolAssociations", json.dumps(ssa).encode())
    att = [
        {
            "studentReference": {"studentUniqueId": "604822"},
            "schoolReference": {"schoolId": 255901001},
            "eventDate": "2024-09-10",
            "attendanceEventCategoryDescriptor": "uri://ed-fi.org/AttendanceEventCategoryDescriptor#Tardy",
        }
    ]
    rep3 = await upload(svc, env, "d-1", "edfi/studentSchoolAttendanceEvents", json.dumps(att).encode())
    assert rep2["counts"]["accepted"] == 1 and rep3["counts"]["accepted"] == 1, (rep2, rep3)
    key = svc.runtime.pseudonymizer.student_key("604822")
    (enrolled,) = by_change(await bus_events(svc, env, rep2["id"]), "student_enrolled")
    (tardy,) = by_change(await bus_events(svc, env, rep3["id"]), "attendance_recorded")
    assert enrolled.student_key == tardy.student_key == key and tardy.category == 3
    r = await svc.client.post("/v1/districts/d-1/submissions/edfi/staff", content=b"[]", headers=staff(env, "d-1"))
    assert r.status_code == 404


XML_ORGS = """<InterchangeEducationOrganization xmlns="http://ed-fi.org/0320">
<LocalEducationAgency><LocalEducationAgencyId>255901</LocalEducationAgencyId>
<NameOfInstitution>Grand Bend ISD</NameOfInstitution></LocalEducationAgency>
<School><SchoolId>255901001</SchoolId><NameOfInstitution>Grand Bend High School</NameOfInstitution>
<LocalEducationAgencyReference><LocalEducationAgencyIdentity><LocalEducationAgencyId>255901</LocalEducationAgencyId>
</LocalEducationAgencyIdentity></LocalEducationAgencyReference></School>
<School><SchoolId>255901002</SchoolId><NameOfInstitution>Other</NameOfInstitution></School>
</InterchangeEducationOrganization>"""

XML_STUDENTS = f"""<InterchangeStudent xmlns="http://ed-fi.org/0320">
<Student><StudentUniqueId>604822</StudentUniqueId>
<Name><FirstName>{FIRST}</FirstName><LastSurname>{LAST}</LastSurname></Name>
<BirthData><BirthDate>2010-01-13</BirthDate></BirthData></Student>
<Student><StudentUniqueId>604823</StudentUniqueId>
<Name><FirstName>Bo</FirstName><LastSurname>Ng</LastSurname></Name>
<BirthData><BirthDate>2010-02-30</BirthDate></BirthData></Student>
</InterchangeStudent>"""

XML_ENROLL = """<InterchangeStudentEnrollment xmlns="http://ed-fi.org/0320">
<StudentSchoolAssociation>
  <StudentReference><StudentIdentity><StudentUniqueId>604822</StudentUniqueId></StudentIdentity></StudentReference>
  <SchoolReference><SchoolIdentity><SchoolId>255901001</SchoolId></SchoolIdentity></SchoolReference>
  <EntryDate>2024-09-03</EntryDate><EntryGradeLevel>Ninth grade</EntryGradeLevel>
</StudentSchoolAssociation>
<StudentSchoolAssociation>
  <StudentReference><StudentIdentity><StudentUniqueId>604822</StudentUniqueId></StudentIdentity></StudentReference>
  <SchoolReference><SchoolIdentity><SchoolId>255901002</SchoolId></SchoolIdentity></SchoolReference>
  <EntryDate>2024-09-03</EntryDate><EntryGradeLevel>Ninth grade</EntryGradeLevel>
</StudentSchoolAssociation>
</InterchangeStudentEnrollment>"""


async def test_edfi_xml_interchanges_and_another_districts_school(
    svc: ServiceUnderTest, service_env: ServiceEnv
) -> None:
    env = service_env
    await register(svc, env, "d-2", "255901002")  # the second school belongs to another district
    orgs = await upload(svc, env, "d-1", "edfi-xml?file=orgs.xml", XML_ORGS.encode())
    assert (orgs["counts"]["accepted"], orgs["counts"]["rejected"]) == (2, 1), orgs
    (p,) = await problems(svc, env, "d-1", orgs["id"])
    assert p["rule"] == "school.not_in_district" and p["file"] == "orgs.xml"
    (school,) = by_change(await bus_events(svc, env, orgs["id"]), "school_registered")
    assert (school.school_id, school.name, school.district_id) == ("255901001", "Grand Bend High School", "d-1")
    listed = (await svc.client.get("/v1/districts/d-1/organizations", headers=staff(env, "d-1"))).json()
    assert {o["org_id"] for o in listed["organizations"]} == {"255901", "255901001"}

    stu = await upload(svc, env, "d-1", "edfi-xml", XML_STUDENTS.encode())
    assert (stu["counts"]["accepted"], stu["counts"]["rejected"]) == (1, 1)
    (p,) = await problems(svc, env, "d-1", stu["id"])
    assert p["rule"] == "date.invalid" and "BirthDate" in p["field"] and p["line"] == 5
    enr = await upload(svc, env, "d-1", "edfi-xml", XML_ENROLL.encode())
    assert (enr["counts"]["accepted"], enr["counts"]["rejected"]) == (1, 1)
    events = await bus_events(svc, env, stu["id"]) + await bus_events(svc, env, enr["id"])
    assert FIRST.encode() not in raw_values(events) and b"604822" not in raw_values(events)
    (enrolled,) = by_change(events, "student_enrolled")
    assert enrolled.student_key == svc.runtime.pseudonymizer.student_key("604822")
    assert [r.rule for r in by_change(events, "record_rejected")] == ["date.invalid", "school.not_in_district"]
    bad = await upload(svc, env, "d-1", "edfi-xml", XML_ENROLL.encode()[:400])
    assert bad["status"] == "completed"
    assert [p["rule"] for p in await problems(svc, env, "d-1", bad["id"])] == ["file.unreadable"]


# --- OneRoster ---------------------------------------------------------------------------------


async def test_oneroster_zip_end_to_end(svc: ServiceUnderTest, service_env: ServiceEnv) -> None:
    env = service_env
    users = [
        user11("u1", givenName=FIRST, familyName=LAST),
        user11("u2"),
        user11("u3", identifier="219-09-9999"),
        user11("u4", orgs="sch-x"),
    ]
    enrollments = [
        enrollment("e1", "u1", beginDate="2024-09-03"),
        enrollment("e2", "u1", cls="cls-2", school="sch-2", beginDate="2024-09-03"),
        enrollment("e3", "u2", beginDate="2024-09-03"),
        enrollment("e4", "u2", beginDate="2024-09-31"),
    ]
    body = oneroster_zip(users, enrollments)
    rep = await upload(svc, env, "d-1", "oneroster", body)
    assert rep["status"] == "completed", rep
    probs = await problems(svc, env, "d-1", rep["id"])
    rules = sorted(p["rule"] for p in probs if p["severity"] == "error")
    assert "ssn.forbidden" in rules and "date.invalid" in rules, probs
    assert all(
        p["file"] in ("oneroster.zip", "users.csv", "enrollments.csv", "orgs.csv") or p["file"].endswith(".csv")
        for p in probs
    )
    ssn = next(p for p in probs if p["rule"] == "ssn.forbidden")
    assert ssn["file"] == "users.csv" and ssn["line"] == 4 and ssn["value_class"] == "ssn-like"
    events = await bus_events(svc, env, rep["id"])
    schools = {s.school_id for s in by_change(events, "school_registered")}
    assert schools == {"sch-1", "sch-2"}
    registered = by_change(events, "student_registered")
    assert len(registered) == 3  # u1, u2 and u4 (a student of an unknown org is still a student); u3 refused
    # the term in academicSessions.csv is each school's calendar until the district sends one
    calendars = by_change(events, "calendar_published")
    assert sorted((c.school_id, c.school_year, len(c.instructional_dates)) for c in calendars) == [
        ("sch-1", 2024, 104),
        ("sch-2", 2024, 104),
    ]
    enrolled = by_change(events, "student_enrolled")
    assert sorted((e.school_id, e.entry_date) for e in enrolled) == [
        ("sch-1", "2024-09-03"),
        ("sch-1", "2024-09-03"),
        ("sch-2", "2024-09-03"),
    ]
    wire = raw_values(events)
    assert FIRST.encode() not in wire and LAST.encode() not in wire and b"Lu1" not in wire and b"u1" not in wire
    # the org registry now has the district's schools; another district cannot publish for them
    rep2 = await upload(svc, env, "d-2", "oneroster", body)
    probs2 = await problems(svc, env, "d-2", rep2["id"])
    assert {p["rule"] for p in probs2} >= {"school.not_in_district"}
    events2 = await bus_events(svc, env, rep2["id"])
    assert by_change(events2, "student_enrolled") == [] and by_change(events2, "school_registered") == []
    # 2 schools, the term calendar at each, 2 classes (issue 23: rosters), 3 enrollments
    assert sum(1 for p in probs2 if p["rule"] == "school.not_in_district") == 9


async def test_bulk_withdrawal_is_held_until_confirmed(service_env: ServiceEnv, tmp_path: Any) -> None:
    env = service_env
    async with service_under_test(
        SERVICE, env, upload_dir=tmp_path / "u", hold_min_withdrawals=2, hold_max_share=0.25
    ) as s:
        await register(s, env, "d-1", "sch-1")
        students = [f"W{i}" for i in range(8)]
        first = await upload(
            s, env, "d-1", "batch", batch(*[student(x, f"NYS-W{x}") for x in students], *[enroll(x) for x in students])
        )
        assert first["status"] == "completed" and first["counts"]["accepted"] == 16
        withdraw = [
            {"type": "withdraw", "student_id": x, "school_id": "sch-1", "exit_date": "2024-10-01", "exit_code": "T2"}
            for x in students[:3]
        ]
        held = await upload(s, env, "d-1", "batch", batch(*withdraw))
        assert held["status"] == "held", held
        assert held["held"]["schools"] == [{"school_id": "sch-1", "enrolled": 8, "withdrawn": 3, "share": 0.375}]
        assert held["counts"]["accepted"] == 0
        await s.runtime.drain_outbox(10)
        assert await bus_events(s, env, held["id"]) == []
        other = await s.client.post(f"/v1/submissions/{held['id']}/confirm", headers=staff(env, "d-2"))
        assert other.status_code == 404
        r = await s.client.post(f"/v1/submissions/{held['id']}/confirm", headers=staff(env, "d-1"))
        assert r.status_code == 200, r.text
        done = await finished(s, env, "d-1", held["id"])
        assert done["status"] == "completed" and done["counts"]["accepted"] == 3, done
        assert done["held"]["confirmed_by"] == "staff-d-1"
        events = await bus_events(s, env, held["id"])
        assert len(by_change(events, "student_withdrawn")) == 3
        again = await s.client.post(f"/v1/submissions/{held['id']}/confirm", headers=staff(env, "d-1"))
        assert again.status_code == 409
        # one withdrawal is under the threshold: applied at once
        small = await upload(
            s,
            env,
            "d-1",
            "batch",
            batch(
                {
                    "type": "withdraw",
                    "student_id": "W7",
                    "school_id": "sch-1",
                    "exit_date": "2024-10-02",
                    "exit_code": "T2",
                }
            ),
        )
        assert small["status"] == "completed"


async def test_progress_and_paged_problems_on_a_larger_batch(service_env: ServiceEnv, tmp_path: Any) -> None:
    env = service_env
    async with service_under_test(SERVICE, env, upload_dir=tmp_path / "u", chunk_records=40) as s:
        await register(s, env, "d-1", "sch-1")
        recs: list[dict[str, Any]] = [student(f"P{i}", f"NYS-P{i}") for i in range(60)]
        recs += [enroll(f"P{i}") for i in range(60)]
        recs += [absent(f"P{i}", "2024-13-01") for i in range(30)]
        rep = await upload(s, env, "d-1", "batch", batch(*recs))
        assert rep["counts"] == {**rep["counts"], "accepted": 120, "rejected": 30, "records_read": 150}
        assert rep["problems_by_rule"] == {"date.invalid": 30}
        seen: list[int] = []
        after = 0
        while True:
            r = await s.client.get(
                f"/v1/submissions/{rep['id']}/problems", params={"after": after, "limit": 7}, headers=staff(env, "d-1")
            )
            page = r.json()
            seen += [p["seq"] for p in page["problems"]]
            if page["next_after"] is None:
                break
            after = page["next_after"]
        assert seen == list(range(1, 31))


async def test_bad_request_paths(svc: ServiceUnderTest, service_env: ServiceEnv) -> None:
    env = service_env
    h = staff(env, "d-1")
    paths = set((await svc.client.get("/openapi.json")).json()["paths"])
    assert {
        "/v1/districts/{district_id}/submissions/batch",
        "/v1/districts/{district_id}/submissions/edfi/{resource}",
        "/v1/districts/{district_id}/submissions/edfi-xml",
        "/v1/districts/{district_id}/submissions/oneroster",
        "/v1/submissions/{submission_id}",
        "/v1/submissions/{submission_id}/problems",
        "/v1/submissions/{submission_id}/confirm",
        "/v1/districts/{district_id}/submissions",
        "/v1/districts/{district_id}/organizations",
    } <= paths
    assert (await svc.client.get("/v1/submissions/not-a-uuid", headers=h)).status_code == 422
    r = await svc.client.get("/v1/submissions/00000000-0000-0000-0000-000000000000", headers=h)
    assert r.status_code == 404
    r = await svc.client.post("/v1/districts/d-1/organizations", json={"org_id": "a b"}, headers=h)
    assert r.status_code == 422
    rep = await upload(svc, env, "d-1", "oneroster", b"PK not a zip")
    assert rep["status"] == "completed" and rep["counts"]["rejected"] == 1
    assert [p["rule"] for p in await problems(svc, env, "d-1", rep["id"])] == ["file.unreadable"]


def test_orgs_fixture_is_what_the_tests_assume() -> None:
    assert {o["sourcedId"] for o in base_orgs()} == {"dist-1", "sch-1", "sch-2"}


_ = (httpx, Topic)


async def test_oneroster_bulk_file_missing_most_of_a_school_is_held(service_env: ServiceEnv, tmp_path: Any) -> None:
    env = service_env
    async with service_under_test(
        SERVICE, env, upload_dir=tmp_path / "u", hold_min_withdrawals=2, hold_max_share=0.25
    ) as s:
        users = [user11(f"u{i}") for i in range(8)]
        enrollments = [enrollment(f"e{i}", f"u{i}", beginDate="2024-09-03") for i in range(8)]
        full = await upload(s, env, "d-1", "oneroster", oneroster_zip(users, enrollments))
        assert full["status"] == "completed" and full["counts"]["rejected"] == 0, full
        # a truncated bulk export: six of the eight students are missing (implied withdrawals)
        truncated = oneroster_zip(users[:2], enrollments[:2])
        held = await upload(s, env, "d-1", "oneroster", truncated)
        assert held["status"] == "held", held
        assert held["held"]["schools"] == [{"school_id": "sch-1", "enrolled": 8, "withdrawn": 6, "share": 0.75}]
        # the same students as a delta file withdraw nobody: applied at once
        delta = await upload(s, env, "d-1", "oneroster", oneroster_zip(users[:2], enrollments[:2], mode="delta"))
        assert delta["status"] == "completed" and delta["counts"]["unchanged"] >= 4, delta


async def test_school_staff_publish_only_for_their_own_schools(svc: ServiceUnderTest, service_env: ServiceEnv) -> None:
    env = service_env
    await register(svc, env, "d-1", "sch-1", "sch-2")
    alice = env.auth("school_staff", subject="alice", district="d-1", schools=["sch-1"])
    r = await svc.client.post(
        "/v1/districts/d-1/submissions/batch",
        content=batch(student("L1", "NYS-1"), enroll("L1"), enroll("L1", school="sch-2")),
        headers=alice,
    )
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    deadline = time.monotonic() + 30
    while (rep := (await svc.client.get(f"/v1/submissions/{sid}", headers=alice)).json())["status"] != "completed":
        assert time.monotonic() < deadline, rep
        await asyncio.sleep(0.05)
    assert (rep["counts"]["accepted"], rep["counts"]["rejected"]) == (2, 1)
    assert rep["problems_by_rule"] == {"school.not_in_district": 1}
    bob = env.auth("school_staff", subject="bob", district="d-1", schools=["sch-1"])
    assert (await svc.client.get(f"/v1/submissions/{sid}", headers=bob)).status_code == 404
    assert (await svc.client.get(f"/v1/submissions/{sid}", headers=staff(env, "d-1"))).status_code == 200
    assert (await svc.client.get("/v1/districts/d-1/submissions", headers=alice)).status_code == 403
    assert (await svc.client.post(f"/v1/submissions/{sid}/confirm", headers=alice)).status_code == 403
    other = env.auth("school_staff", subject="carol", district="d-2", schools=["sch-1"])
    r = await svc.client.post("/v1/districts/d-1/submissions/batch", content=b"{}", headers=other)
    assert r.status_code == 403
    # school staff cannot register schools by uploading them
    orgs = await svc.client.get("/v1/districts/d-1/organizations", headers=staff(env, "d-1"))
    assert {o["org_id"] for o in orgs.json()["organizations"]} == {"sch-1", "sch-2"}


async def test_paging_past_the_bigint_range_is_422_not_500(svc: ServiceUnderTest, service_env: ServiceEnv) -> None:
    # Found by tests/e2e/test_schema_fuzz.py: these reached PostgreSQL and overflowed the driver.
    env = service_env
    await register(svc, env, "d-1", "sch-1")
    sid = (await upload(svc, env, "d-1", "batch", batch(student("L1", "NYS-1"))))["id"]
    for url in (f"/v1/submissions/{sid}/problems?after={2**63}", f"/v1/districts/d-1/submissions?offset={2**64}"):
        r = await svc.client.get(url, headers=staff(env, "d-1"))
        assert r.status_code == 422, (url, r.text)
    r = await svc.client.get(f"/v1/districts/d-1/submissions?offset={2**63 - 1}", headers=staff(env, "d-1"))
    assert r.status_code == 200 and r.json()["submissions"] == []


async def test_a_dry_run_reports_like_an_upload_and_keeps_nothing(
    svc: ServiceUnderTest, service_env: ServiceEnv
) -> None:
    """POST ...?dry_run=true: the same report (counts, problems, what was not collected),
    answered at once; no submission, problem, student, registry row or event is kept."""
    from pathlib import Path

    env = service_env
    corpus = Path(__file__).parent / "edfi_corpus" / "ds5.2"
    orgs, students = (corpus / "EducationOrganization.xml").read_bytes(), (corpus / "Student.xml").read_bytes()
    tables = ("submissions", "submission_problems", "students", "organizations", "ingested_records", "outbox")

    async def counts() -> dict[str, int]:
        return {t: await svc.pool.fetchval(f"SELECT count(*) FROM {t}") for t in tables}  # noqa: S608

    before = await counts()
    r = await svc.client.post(
        "/v1/districts/d-gb/submissions/edfi-xml",
        params={"dry_run": "true", "file": "Student.xml"},
        content=students,
        headers=staff(env, "d-gb"),
    )
    assert r.status_code == 200, r.text
    dry = r.json()
    assert (dry["status"], dry["id"], dry["dry_run"]) == ("dry_run", None, True)
    assert dry["counts"] == {
        "records_read": 7, "accepted": 4, "rejected": 0, "warned": 4, "unchanged": 0, "skipped": 3, "events": 4,
    }  # fmt: skip
    dropped = {n["name"]: n for n in dry["not_collected"]}
    assert dropped["Student/Name/PersonalTitlePrefix"]["message"] == (
        "Student/Name/PersonalTitlePrefix: dropped 4 times (not collected by Homeroom)"
    )
    assert dropped["Person"]["kind"] == "record"
    assert {p["rule"] for p in dry["problems"]} == {"element.dropped", "record.skipped"}
    assert "Lisarae" not in r.text and "Woodlock" not in r.text
    assert await counts() == before  # nothing kept
    # the real upload of the same file says the same
    await upload(svc, env, "d-gb", "edfi-xml?file=EducationOrganization.xml", orgs)
    real = await upload(svc, env, "d-gb", "edfi-xml?file=Student.xml", students)
    assert real["counts"] == {**dry["counts"], "events": 4}
    assert [(n["name"], n["count"]) for n in real["not_collected"]] == [
        (n["name"], n["count"]) for n in dry["not_collected"]
    ]
    probs = await problems(svc, env, "d-gb", real["id"])
    assert {p["rule"] for p in probs} == {"element.dropped", "record.skipped"}
    assert all(p["line"] == 0 and p["severity"] == "warning" for p in probs)


async def test_today_and_event_times_come_from_the_services_clock(service_env: ServiceEnv, tmp_path: Any) -> None:
    """The service's clock (issue 20): "after today" is the clock's today, and events are stamped
    with its time. Real time (2026 or later) would accept the 2024-10-03 absence."""
    now = datetime(2024, 10, 2, 15, 30, tzinfo=UTC)
    async with service_under_test(SERVICE, service_env, clock=fixed(now), upload_dir=tmp_path / "uploads") as svc:
        await register(svc, service_env, "d-clock", "sch-1")
        body = batch(student("C1", "NYS-C1"), enroll("C1"), absent("C1", "2024-10-01"), absent("C1", "2024-10-03"))
        report = await upload(svc, service_env, "d-clock", "batch", body)
        assert report["counts"]["accepted"] == 3 and report["counts"]["rejected"] == 1, report
        (refused,) = [p for p in await problems(svc, service_env, "d-clock", report["id"]) if p["severity"] == "error"]
        assert refused["rule"] == "date.future_attendance", refused
        events = await bus_events(svc, service_env, report["id"])
        assert len(by_change(events, "attendance_recorded")) == 1
        assert {e.message.meta.time.seconds for e in events} == {int(now.timestamp())}  # type: ignore[attr-defined]
