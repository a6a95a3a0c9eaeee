"""A vendor sets itself up from Homeroom's OneRoster 1.2 API, as its import does: schools ->
terms -> courses -> classes -> teachers -> students -> enrollments (issue 23).

Real parts end to end: a OneRoster 1.2 CSV zip uploaded to the real ingest service, its events
taken from the real broker and applied by records' real handlers, the agreement made and decided
by the real consent service (in process). Every answer is validated against the OneRoster 1.2
JSON schemas (tests/services/records/oneroster_schemas.py), every link in every answer is
followed, and the roster must come out complete and consistent, and cut to the agreement."""

from __future__ import annotations

import io
import re
import time
import uuid
import zipfile
from typing import Any

import httpx
import jsonschema
from aiokafka import AIOKafkaConsumer, TopicPartition

from homeroom.bus.consumer import RejectEvent
from homeroom.bus.envelope import OutgoingEvent, build_event, decode
from homeroom.bus.topics import CALENDAR, ENROLLMENT, ORGANIZATION, ROSTER
from homeroom.catalogue import STAFF_LEGAL_BASIS
from homeroom.events.v1 import roster_pb2
from homeroom.events.v1.envelope_pb2 import SealedValue
from homeroom_dev.scenario import SUPPLEMENTAL_ANSWERS
from services.consent.service import SERVICE as CONSENT
from services.ingest.formats.oneroster_csv import OneRosterUpload
from services.ingest.parsed_records import (
    ClassRecord,
    EnrollmentRecord,
    RecordError,
    StaffRecord,
    StudentRecord,
    TeachingRecord,
)
from services.ingest.service import SERVICE as INGEST
from tests.harness import ServiceEnv, service_under_test
from tests.services.ingest.ingest_data import (
    CLASSES,
    ENROLLMENTS,
    ORGS,
    ROLES_12,
    SESSIONS,
    USERS_12,
    base_orgs,
    csv_text,
    enrollment,
    make_zip,
    manifest,
)
from tests.services.ingest.test_api import upload
from tests.services.records.helpers import Records, agreement_ended, apply, apply_batches, records_service
from tests.services.records.oneroster_schemas import COLLECTIONS, collection, single

OR = "/ims/oneroster/rostering/v1p2"
HIDDEN = ("Zebulon", "Quillfeather", "Ottoline", "Vashti")  # names at the school the agreement does not cover


def _role(sid: str, user: str, role: str, org: str) -> dict[str, str]:
    return {"sourcedId": sid, "status": "active", "userSourcedId": user, "roleType": "primary", "role": role,
            "orgSourcedId": org}  # fmt: skip


def district_zip() -> bytes:
    sessions = [
        {"sourcedId": "y2025", "status": "active", "title": "2024-2025", "type": "schoolYear",
         "startDate": "2024-07-01", "endDate": "2025-06-30", "schoolYear": "2025"},
        {"sourcedId": "term-1", "status": "active", "title": "Fall", "type": "term", "startDate": "2024-09-03",
         "endDate": "2025-01-24", "parentSourcedId": "y2025", "schoolYear": "2025"},
        {"sourcedId": "gp-1", "status": "active", "title": "Q1", "type": "gradingPeriod", "startDate": "2024-09-03",
         "endDate": "2024-11-08", "parentSourcedId": "term-1", "schoolYear": "2025"},
    ]  # fmt: skip
    courses = [
        {"sourcedId": "crs-1", "status": "active", "title": "Algebra I", "courseCode": "MA1", "grades": "09",
         "orgSourcedId": "dist-1", "schoolYearSourcedId": "y2025"},
        {"sourcedId": "crs-2", "status": "active", "title": "Secret Seminar", "orgSourcedId": "sch-2"},
    ]  # fmt: skip
    classes = [
        {"sourcedId": "cls-1", "status": "active", "title": "Algebra I - P1", "classCode": "MA1-01",
         "classType": "scheduled", "courseSourcedId": "crs-1", "schoolSourcedId": "sch-1",
         "termSourcedIds": "term-1", "periods": "1"},
        {"sourcedId": "cls-2", "status": "active", "title": "Secret Seminar", "classType": "scheduled",
         "courseSourcedId": "crs-2", "schoolSourcedId": "sch-2", "termSourcedIds": "term-1"},
    ]  # fmt: skip
    users = [
        {"sourcedId": "s1", "status": "active", "givenName": "Ada", "familyName": "Byron",
         "userMasterIdentifier": "NY-1", "grades": "09"},
        {"sourcedId": "s2", "status": "active", "givenName": "Alan", "familyName": "Turing",
         "userMasterIdentifier": "NY-2", "grades": "09"},
        {"sourcedId": "s3", "status": "active", "givenName": "Zebulon", "familyName": "Quillfeather",
         "userMasterIdentifier": "NY-3", "grades": "10"},
        {"sourcedId": "t1", "status": "active", "givenName": "Grace", "familyName": "Hopper", "identifier": "T-1",
         "email": "ghopper@example.org"},
        {"sourcedId": "t2", "status": "active", "givenName": "Ottoline", "familyName": "Vashti", "identifier": "T-2"},
    ]  # fmt: skip
    roles = [
        _role("r1", "s1", "student", "sch-1"),
        _role("r2", "s2", "student", "sch-1"),
        _role("r3", "s3", "student", "sch-2"),
        _role("r4", "t1", "teacher", "sch-1"),
        _role("r5", "t2", "teacher", "sch-2"),
    ]
    enrollments = [
        enrollment("e1", "s1", beginDate="2024-09-03"),
        enrollment("e2", "s2", beginDate="2024-09-03"),
        enrollment("e3", "t1", role="teacher", primary="true"),
        enrollment("e4", "s3", cls="cls-2", school="sch-2", beginDate="2024-09-03"),
        enrollment("e5", "t2", cls="cls-2", school="sch-2", role="teacher"),
    ]
    return make_zip(
        {
            "orgs.csv": csv_text(ORGS, base_orgs()),
            "academicSessions.csv": csv_text([*SESSIONS, "parentSourcedId", "schoolYear"], sessions),
            "courses.csv": csv_text(
                ["sourcedId", "status", "title", "courseCode", "grades", "orgSourcedId", "schoolYearSourcedId"], courses
            ),
            "classes.csv": csv_text([*CLASSES, "classCode", "classType", "courseSourcedId", "periods"], classes),
            "users.csv": csv_text(USERS_12, users),
            "roles.csv": csv_text(ROLES_12, roles),
            "enrollments.csv": csv_text(ENROLLMENTS, enrollments),
            "manifest.csv": manifest(
                "1.2", orgs="bulk", academicSessions="bulk", courses="bulk", classes="bulk", users="bulk",
                roles="bulk", enrollments="bulk",
            ),
        }
    )  # fmt: skip


async def events_of(env: ServiceEnv, submission: str) -> list[OutgoingEvent]:
    """The submission's events records consumes, as they reached the broker."""
    topics = (ORGANIZATION, ENROLLMENT, CALENDAR, ROSTER)
    consumer = AIOKafkaConsumer(bootstrap_servers=env.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[tuple[int, int, OutgoingEvent]] = []
        quiet, deadline = 0, time.monotonic() + 20
        while quiet < 3 and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            if not any(batch.values()):
                quiet += 1
                continue
            quiet = 0
            for tp, msgs in batch.items():
                for m in msgs:
                    ev = decode(tp.topic, tp.partition, m.offset, m.key, m.value, list(m.headers))
                    if ev.meta.correlation_id == submission:
                        order = [t.name for t in topics].index(tp.topic)
                        found.append(
                            (order, m.offset, OutgoingEvent(ev.event_id, tp.topic, m.key, list(m.headers), m.value))
                        )
        return [e for _, _, e in sorted(found, key=lambda f: (f[0], f[1]))]
    finally:
        await consumer.stop()


async def agreement(
    consent: Any,
    env: ServiceEnv,
    district: str,
    category: str = "vendor",
    schools: tuple[str, ...] = ("sch-1",),
    classes: tuple[str, ...] = (),
) -> str:
    staff = env.auth("district_staff", district=district)
    r = await consent.client.post(
        "/v1/agreements",
        json={
            "organization": "Rosterly",
            "category": category,
            "supplemental": SUPPLEMENTAL_ANSWERS,
            "terms": {
                "elements": [
                    "student.first_name", "student.last_name", "enrollment.school_id", "enrollment.grade_level",
                    "enrollment.class", "staff.class_assignment", "staff.first_name", "staff.last_name",
                ],
                "purposes": ["rostering"],
                "districts": [district],
                "schools": list(schools),
                "classes": list(classes),
                "start_date": "2020-01-01",
                "end_date": "2099-06-30",
                "storage_region": "US",
                "disposition": "destroy",
            },
        },
        headers=staff,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    agreement_id = str(r.json()["id"])
    r = await consent.client.post(f"/v1/agreements/{agreement_id}/activate", headers=staff)
    assert r.status_code == 200, r.text
    return agreement_id


class Vendor:
    """A vendor's import: every answer schema-checked, every link collected."""

    def __init__(self, rec: Records, auth: dict[str, str]) -> None:
        self.rec, self.auth = rec, auth
        self.links: set[str] = set()
        self.found: set[str] = set()  # every listed object's own route: {collection}/{sourcedId}
        self.texts: list[str] = []

    async def get(self, path: str, **params: str) -> httpx.Response:
        r = await self.rec.client.get(f"{OR}/{path}", params=params, headers=self.auth)
        self.texts.append(r.text)
        return r

    async def list(self, path: str, **params: str) -> list[dict[str, Any]]:
        r = await self.get(path, **params)
        assert r.status_code == 200, (path, r.text)
        kind = path.rsplit("/", 1)[-1]
        name, _, item = COLLECTIONS[kind]
        jsonschema.validate(r.json(), collection(name, item))
        assert int(r.headers["x-total-count"]) >= len(r.json()[name])
        assert 'rel="first"' in r.headers["link"] and 'rel="last"' in r.headers["link"]
        self.links.update(re.findall(r'"href": ?"([^"]+)"', r.text))
        items: list[dict[str, Any]] = r.json()[name]
        self.found.update(f"{OR}/{kind}/{i['sourcedId']}" for i in items)
        return items

    async def one(self, href: str) -> dict[str, Any]:
        r = await self.rec.client.get(href, headers=self.auth)
        assert r.status_code == 200, (href, r.text)
        kind = href.removeprefix(OR + "/").split("/")[0]
        _, name, item = COLLECTIONS[kind]
        jsonschema.validate(r.json(), single(name, item))
        self.texts.append(r.text)
        found: dict[str, Any] = r.json()[name]
        return found


async def test_a_vendor_import_ends_with_a_complete_consistent_roster_cut_to_its_agreement(
    service_env: ServiceEnv, tmp_path: Any
) -> None:
    district = f"d-{uuid.uuid4().hex[:6]}"
    async with service_under_test(INGEST, service_env, upload_dir=tmp_path / "uploads") as ingest:
        report = await upload(ingest, service_env, district, "oneroster", district_zip())
        assert report["status"] == "completed", report
        assert report["counts"]["rejected"] == 0, report
        await ingest.runtime.drain_outbox(30)
        events = await events_of(service_env, report["id"])
    async with service_under_test(CONSENT, service_env, start_consumers=False) as consent:
        agreement_id = await agreement(consent, service_env, district)
        transport = consent.transport
        async with records_service(service_env, consent=transport) as rec:
            # As the kernel applies a poll under load: each topic's events as one batch (roster.v1's
            # class enrollments pipelined per district); then again one by one, as a redelivery
            # would: every write an upsert, so the roster below is the same.
            await apply_batches(rec.runtime, *events)
            assert await apply(rec.runtime, *events) == len(events)
            assert await apply(rec.runtime, *events) == 0  # redelivered by id: nothing applied twice
            vendor = Vendor(rec, service_env.auth("vendor", agreement=agreement_id, organization="Rosterly"))

            # The import, in the order vendors' apps do it.
            schools = await vendor.list("schools")
            terms = await vendor.list("terms")
            periods = await vendor.list("gradingPeriods")
            courses = await vendor.list("courses")
            classes = await vendor.list("classes")
            teachers = await vendor.list("teachers")
            students = await vendor.list("students")
            enrollments = await vendor.list("enrollments")
            assert [s["sourcedId"] for s in schools] == ["sch-1"]
            assert [t["sourcedId"] for t in terms] == ["term-1"] and terms[0]["parent"]["sourcedId"] == "y2025"
            assert [p["sourcedId"] for p in periods] == ["gp-1"]
            assert [c["sourcedId"] for c in courses] == ["crs-1"]  # district-wide; crs-2 is at sch-2
            assert [(c["sourcedId"], c["course"]["sourcedId"], c["periods"]) for c in classes] == [
                ("cls-1", "crs-1", ["1"])
            ]
            (teacher,) = teachers
            assert (teacher["givenName"], teacher["familyName"]) == ("Grace", "Hopper")
            assert "email" not in teacher and "identifier" not in teacher  # not in the agreement
            assert teacher["sourcedId"].startswith("stf_") and "t1" not in teacher["sourcedId"]
            assert sorted(u["givenName"] for u in students) == ["Ada", "Alan"]
            # Complete and consistent: every enrollment's user, class and school was imported,
            # every class's course, terms and school too, and nothing is left out.
            user_ids = {u["sourcedId"] for u in [*students, *teachers]}
            class_ids = {c["sourcedId"] for c in classes}
            assert {(e["role"], e["class"]["sourcedId"]) for e in enrollments} == {
                ("student", "cls-1"),
                ("teacher", "cls-1"),
            }
            assert {e["user"]["sourcedId"] for e in enrollments} == user_ids
            assert all(
                e["class"]["sourcedId"] in class_ids and e["school"]["sourcedId"] == "sch-1" for e in enrollments
            )
            assert all(e["beginDate"] is None for e in enrollments if e["role"] == "student")  # entry dates withheld
            for c in classes:
                assert c["course"]["sourcedId"] in {x["sourcedId"] for x in courses}
                assert {t["sourcedId"] for t in c["terms"]} <= {t["sourcedId"] for t in terms}
            # Nested routes agree with the flat ones.
            assert {u["sourcedId"] for u in await vendor.list("classes/cls-1/students")} == {
                u["sourcedId"] for u in students
            }
            assert [u["sourcedId"] for u in await vendor.list("classes/cls-1/teachers")] == [teacher["sourcedId"]]
            assert [c["sourcedId"] for c in await vendor.list(f"students/{students[0]['sourcedId']}/classes")] == [
                "cls-1"
            ]
            assert [c["sourcedId"] for c in await vendor.list(f"teachers/{teacher['sourcedId']}/classes")] == ["cls-1"]
            assert [c["sourcedId"] for c in await vendor.list("schools/sch-1/classes")] == ["cls-1"]
            assert [c["sourcedId"] for c in await vendor.list("courses/crs-1/classes")] == ["cls-1"]
            assert [c["sourcedId"] for c in await vendor.list("terms/term-1/classes")] == ["cls-1"]
            assert [p["sourcedId"] for p in await vendor.list("terms/term-1/gradingPeriods")] == ["gp-1"]
            assert len(await vendor.list("users")) == 3 and len(await vendor.list("schools/sch-1/enrollments")) == 3
            assert len(await vendor.list("academicSessions")) == 3 and await vendor.list("orgs")
            assert [c["sourcedId"] for c in await vendor.list("schools/sch-1/courses")] == ["crs-1"]
            assert [t["sourcedId"] for t in await vendor.list("schools/sch-1/terms")] == ["term-1"]
            assert len(await vendor.list("schools/sch-1/students")) == 2
            assert [u["sourcedId"] for u in await vendor.list("schools/sch-1/teachers")] == [teacher["sourcedId"]]
            assert [c["sourcedId"] for c in await vendor.list(f"users/{teacher['sourcedId']}/classes")] == ["cls-1"]
            # Every link in every answer resolves (and each single answer is schema-valid).
            assert len(vendor.links) >= 8
            for href in sorted(vendor.links):
                await vendor.one(href)
            # ... and so does every listed object's sourcedId, in the collection it was listed in
            # (enrollments included: GET /enrollments/{id}).
            assert {f.removeprefix(OR + "/").split("/")[0] for f in vendor.found} >= set(COLLECTIONS) - {"demographics"}
            for found in sorted(vendor.found - vendor.links):
                await vendor.one(found)
            r = await vendor.get("enrollments/" + enrollments[0]["sourcedId"][::-1])
            assert r.status_code == 404

            # Outside the agreement: the other school's class, course, teacher and student.
            for path in ("classes/cls-2", "courses/crs-2", "classes/cls-2/students", "classes/cls-2/teachers",
                         "schools/sch-2/classes", "schools/sch-2/enrollments", "orgs/sch-2"):  # fmt: skip
                r = await vendor.get(path)
                assert r.status_code == 404, (path, r.text)
            assert not any(name in text for text in vendor.texts for name in HIDDEN)
            # Filters and sorts only on fields the agreement releases; fields, sort, paging, headers.
            for path, params, rule in (
                ("teachers", {"filter": "email~'example'"}, "filter.field_withheld"),
                ("teachers", {"sort": "email"}, "sort.field_withheld"),
                ("students", {"filter": "givenName='Ada'"}, "filter.field_unsupported"),
                ("classes", {"fields": "sourcedId,secret"}, "fields.unknown"),
                ("classes", {"orderBy": "sideways"}, "orderBy.invalid"),
                ("enrollments", {"filter": "beginDate>'2024-01-01'"}, "filter.field_withheld"),
            ):
                r = await vendor.get(path, **params)
                assert r.status_code == 400, (path, params, r.text)
                assert r.json()["errors"][0]["rule"] == rule
            r = await vendor.get("students", limit="1", fields="sourcedId,givenName")
            assert r.headers["x-total-count"] == "2" and 'rel="next"' in r.headers["link"]
            assert [set(u) for u in r.json()["users"]] == [{"sourcedId", "givenName"}]
            nxt = re.search(r'<([^>]+)>; rel="next"', r.headers["link"])
            assert nxt is not None
            r2 = await rec.client.get(nxt.group(1), headers=vendor.auth)
            assert [u["sourcedId"] for u in [*r.json()["users"], *r2.json()["users"]]] == sorted(
                u["sourcedId"] for u in students
            )
            r = await vendor.get("users", sort="role", orderBy="desc")
            assert [u["roles"][0]["role"] for u in r.json()["users"]] == ["teacher", "student", "student"]
            assert await vendor.list("demographics") == []  # the agreement releases no demographics

            # Every read that released a student or a teacher is in the disclosure log.
            disclosures = await rec.disclosures()
            staff = [d for d in disclosures if d.student_key.startswith("stf_")]
            pupils = [d for d in disclosures if d.student_key.startswith("stu_")]
            assert {d.student_key for d in staff} == {teacher["sourcedId"]}
            assert all(d.legal_basis == STAFF_LEGAL_BASIS and d.agreement_id == agreement_id for d in staff)
            assert all("staff.class_assignment" in d.elements for d in staff)
            assert {d.student_key for d in pupils} == {u["sourcedId"] for u in students}
            assert any("enrollment.class" in d.elements for d in pupils)
            assert all(d.channel == "oneroster" for d in disclosures)

            # The bulk CSV zip: the same roster, readable by a OneRoster CSV reader (Homeroom's own
            # ingest parser, which refuses what the specification does not allow), one disclosure
            # per student and teacher in it, the copy kept sealed under the agreement's key.
            before = len(disclosures)
            r = await rec.client.get(f"{OR}/bulk.zip", headers=vendor.auth)
            assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text
            items = list(OneRosterUpload(io.BytesIO(r.content)))
            assert [i for i in items if isinstance(i, RecordError)] == []
            assert sorted(s.student_ref for s in items if isinstance(s, StudentRecord)) == sorted(
                u["sourcedId"] for u in students
            )
            assert [t.staff_ref for t in items if isinstance(t, StaffRecord)] == [teacher["sourcedId"]]
            assert [c.class_id for c in items if isinstance(c, ClassRecord)] == ["cls-1"]
            assert len([e for e in items if isinstance(e, EnrollmentRecord | TeachingRecord)]) == 3
            with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
                text = "".join(zf.read(n).decode() for n in zf.namelist())
            assert not any(name in text for name in HIDDEN) and "ghopper@example.org" not in text
            fresh = (await rec.disclosures())[before:]
            assert sorted(d.student_key for d in fresh) == sorted(
                [*(u["sourcedId"] for u in students), teacher["sourcedId"]]
            )
            async with rec.admin.acquire() as conn:
                copies = await conn.fetchval(
                    "SELECT count(*) FROM agreement_releases WHERE agreement_id = $1", agreement_id
                )
            assert copies >= 1
            # A delta since now holds nothing and releases nothing; a bad `since` is a 400.
            r = await rec.client.get(f"{OR}/bulk.zip", params={"since": "2999-01-01T00:00:00Z"}, headers=vendor.auth)
            assert r.status_code == 200
            assert not [i for i in OneRosterUpload(io.BytesIO(r.content)) if isinstance(i, StudentRecord | StaffRecord)]
            assert len(await rec.disclosures()) == before + len(fresh)
            r = await rec.client.get(f"{OR}/bulk.zip", params={"since": "yesterday"}, headers=vendor.auth)
            assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "since.date"

            await counts_reveal_only_whom_the_vendor_may_see(consent, service_env, rec, district, students)
            await a_class_limited_agreement_reaches_nothing_outside_its_classes(
                consent, service_env, rec, district, students, teacher, enrollments
            )


async def counts_reveal_only_whom_the_vendor_may_see(
    consent: Any, env: ServiceEnv, rec: Records, district: str, students: list[dict[str, Any]]
) -> None:
    """X-Total-Count and the Link header's last page count only students the vendor may see: under
    an agreement resting on written consent, where only Ada's parent consented, Alan is in no
    count of any list (before the fix every student-bearing list counted him: 2 students, 3 users,
    3 enrollments)."""
    other = await agreement(consent, env, district, category="other")
    ada = next(u["sourcedId"] for u in students if u["givenName"] == "Ada")
    r = await consent.client.post(
        f"/v1/students/{ada}/consents",
        json={
            "district_id": district,
            "recipient": other,
            "elements": ["student.first_name", "student.last_name", "enrollment.school_id", "enrollment.class"],
            "method": "paper_form",
        },
        headers=env.auth("district_staff", district=district),
    )
    assert r.status_code == 201, r.text
    vendor = Vendor(rec, env.auth("vendor", agreement=other, organization="Rosterly"))
    expected = {  # one student (Ada) and the class's teacher
        "students": 1,
        "schools/sch-1/students": 1,
        "classes/cls-1/students": 1,
        "users": 2,
        "enrollments": 2,
        "schools/sch-1/enrollments": 2,
        "demographics": 0,
    }
    tried = 0
    for path, total in expected.items():
        for extra in ({}, {"filter": "status='active'"}, {"sort": "sourcedId"}):
            params = {"limit": "1", **extra}
            r = await vendor.get(path, **params)
            tried += 1
            assert r.status_code == 200, (path, r.text)
            assert r.headers["x-total-count"] == str(total), (path, params, r.headers["x-total-count"])
            last = re.search(r'offset=(\d+)>; rel="last"', r.headers["link"])
            assert last is not None and int(last.group(1)) == max(0, total - 1), (path, r.headers["link"])
            assert ('rel="next"' in r.headers["link"]) == (total > 1), (path, r.headers["link"])
            # Past the visible rows: empty pages, never a count of the others.
            r = await vendor.get(path, limit="1", offset=str(total))
            assert r.status_code == 200 and r.headers["x-total-count"] == str(total)
    assert tried == 21
    assert not any("Alan" in t or "Turing" in t for t in vendor.texts)


async def a_class_limited_agreement_reaches_nothing_outside_its_classes(
    consent: Any,
    env: ServiceEnv,
    rec: Records,
    district: str,
    students: list[dict[str, Any]],
    teacher: dict[str, Any],
    enrollments: list[dict[str, Any]],
) -> None:
    """An agreement for class cls-2 only (both schools covered): cls-1, its course, its students
    (Ada, Alan), its teacher (Grace) and their enrollments are out of reach by every route, by
    id, nested and through every filter; the bulk zip holds none of them; counts agree."""
    limited = await agreement(consent, env, district, schools=(), classes=("cls-2",))
    vendor = Vendor(rec, env.auth("vendor", agreement=limited, organization="Rosterly"))
    ada, alan = (next(u["sourcedId"] for u in students if u["givenName"] == n) for n in ("Ada", "Alan"))
    grace = teacher["sourcedId"]
    theirs = [e["sourcedId"] for e in enrollments]  # cls-1's enrollments, as the first vendor saw them
    assert [c["sourcedId"] for c in await vendor.list("classes")] == ["cls-2"]
    assert [c["sourcedId"] for c in await vendor.list("courses")] == ["crs-2"]
    (zeb,) = await vendor.list("students")
    assert zeb["givenName"] == "Zebulon"
    (ottoline,) = await vendor.list("teachers")
    assert ottoline["givenName"] == "Ottoline"
    assert {e["class"]["sourcedId"] for e in await vendor.list("enrollments")} == {"cls-2"}
    assert [c["sourcedId"] for c in await vendor.list("terms/term-1/classes")] == ["cls-2"]
    assert [c["sourcedId"] for c in await vendor.list(f"students/{zeb['sourcedId']}/classes")] == ["cls-2"]
    gone = [
        "classes/cls-1", "classes/cls-1/students", "classes/cls-1/teachers", "courses/crs-1", "courses/crs-1/classes",
        f"students/{ada}", f"users/{ada}", f"demographics/{ada}", f"students/{ada}/classes", f"users/{ada}/classes",
        f"teachers/{grace}", f"users/{grace}", f"teachers/{grace}/classes", f"users/{grace}/classes",
        *(f"enrollments/{e}" for e in theirs),
    ]  # fmt: skip
    for path in gone:
        r = await vendor.get(path)
        assert r.status_code == 404, (path, r.status_code, r.text)
    empty = [
        ("schools/sch-1/students", {}), ("schools/sch-1/teachers", {}), ("schools/sch-1/classes", {}),
        ("schools/sch-1/enrollments", {}), ("schools/sch-1/courses", {}),
        ("enrollments", {"filter": "class.sourcedId='cls-1'"}), ("enrollments", {"filter": f"user.sourcedId='{ada}'"}),
        ("enrollments", {"filter": f"user.sourcedId='{grace}'"}),
        ("enrollments", {"filter": "school.sourcedId='sch-1'"}),
        *(("enrollments", {"filter": f"sourcedId='{e}'"}) for e in theirs),
        ("students", {"filter": f"sourcedId='{ada}'"}), ("students", {"filter": f"sourcedId='{alan}'"}),
        ("users", {"filter": f"sourcedId='{grace}'"}), ("users", {"filter": f"sourcedId='{ada}'"}),
        ("teachers", {"filter": f"sourcedId='{grace}'"}), ("classes", {"filter": "sourcedId='cls-1'"}),
        ("courses", {"filter": "sourcedId='crs-1'"}), ("demographics", {"filter": f"sourcedId='{ada}'"}),
    ]  # fmt: skip
    for path, params in empty:
        r = await vendor.get(path, **params)
        assert r.status_code == 200 and r.headers["x-total-count"] == "0", (path, params, r.text)
    for path, total in (("students", 1), ("teachers", 1), ("users", 2), ("enrollments", 2), ("classes", 1)):
        r = await vendor.get(path, limit="1")
        assert r.headers["x-total-count"] == str(total), (path, r.headers["x-total-count"])
    r = await rec.client.get(f"{OR}/bulk.zip", headers=vendor.auth)
    assert r.status_code == 200
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        vendor.texts.append("".join(zf.read(n).decode() for n in zf.namelist()))
    assert "Zebulon" in vendor.texts[-1] and "cls-2" in vendor.texts[-1]
    for name in ("Ada", "Byron", "Alan", "Turing", "Grace", "Hopper", ada, alan, grace, "cls-1", "crs-1", *theirs):
        assert not any(name in t for t in vendor.texts), name
    assert len(gone) + len(empty) >= 35
    # Consent's own decision holds the line too (records asks with the student's classes).
    for classes, denial in ((["cls-1"], "class_not_covered"), (None, "class_not_covered"), (["cls-2"], None)):
        r = await consent.client.post(
            "/v1/decisions",
            json={
                "action": "read",
                "requester": {"role": "vendor", "subject": "v", "organization": "Rosterly", "agreement_id": limited},
                "student_key": ada,
                "district_id": district,
                "school_id": "sch-1",
                "class_ids": classes,
                "elements": ["student.first_name"],
            },
            headers=env.auth("service"),
        )
        assert r.status_code == 200 and r.json()["denial"] == denial, (classes, r.text)


async def test_bad_roster_events_are_refused_with_their_rule(service_env: ServiceEnv) -> None:
    """roster.v1 events records cannot apply are dead-lettered with the rule (RejectEvent)."""

    def event(change: str, payload: Any) -> OutgoingEvent:
        return build_event(ROSTER, change, payload, source="/test", subject="", key="d-x", district_id="d-x")

    bad = [
        (
            event("class_enrollment_recorded", roster_pb2.ClassEnrollmentRecorded(
                district_id="d-x", class_id="c", school_id="s", role="principal", user_key="stu_x")),
            "role.unknown",
        ),
        (
            event("class_enrollment_recorded", roster_pb2.ClassEnrollmentRecorded(
                district_id="d-x", class_id="c", school_id="s", role="student", user_key="stu_x",
                begin_date="2025-02-01", end_date="2025-01-01")),
            "date.end_before_start",
        ),
        (
            event("staff_registered", roster_pb2.StaffRegistered(
                district_id="d-x", staff_key="stf_x", sealed_elements={"student.first_name": SealedValue()})),
            "element.unknown",
        ),
        (
            event("class_registered", roster_pb2.ClassRegistered(district_id="d-x", class_id="c", title="T")),
            "payload.missing_field",
        ),
        (
            event("academic_session_registered", roster_pb2.AcademicSessionRegistered(
                district_id="d-y", session_id="t", title="T", session_type="term", start_date="2025-01-01",
                end_date="2025-02-01")),
            "district.mismatch",
        ),
    ]  # fmt: skip
    async with records_service(service_env) as rec:
        for e, rule in bad:
            try:
                await apply(rec.runtime, e)
            except RejectEvent as exc:
                assert exc.rule == rule, (rule, exc)
            else:
                raise AssertionError(f"{rule}: applied")
        async with rec.admin.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM class_enrollments") == 0
            assert await conn.fetchval("SELECT count(*) FROM staff") == 0


async def test_a_vendor_read_under_an_ended_agreement_is_refused_before_any_lookup_and_logged(
    service_env: ServiceEnv,
) -> None:
    """The route's vendor read is built once, by its dependency: a list's parameters are still
    checked first (422), an agreement not in force is refused (403) before anything is looked up,
    and the refusal reaches the security log like one raised in the route."""
    async with records_service(service_env) as rec:
        ended = f"ended-{uuid.uuid4().hex[:8]}"
        await apply(rec.runtime, agreement_ended(ended))
        vendor = {"agreement": ended, "organization": "Latecomer"}
        key = f"stu_{uuid.uuid4().hex}"
        assert (await rec.get(f"{OR}/students?limit=0", "vendor", **vendor)).status_code == 422
        for path in (f"{OR}/students", f"{OR}/students/{key}", f"{OR}/bulk.zip"):
            r = await rec.get(path, "vendor", **vendor)
            assert r.status_code == 403 and r.json()["reason"] == "agreement_ended", (path, r.text)
        assert await rec.disclosures() == []
        refusals = (await rec.get("/v1/security-log", "compliance")).json()["refusals"]
        assert {(x["route"], x["student_key"], x["status"], x["reason"]) for x in refusals
                if x["requester"]["agreement_id"] == ended} == {
            (f"{OR}/students", None, 403, "agreement_ended"),
            (f"{OR}/students/{{sourced_id}}", key, 403, "agreement_ended"),
            (f"{OR}/bulk.zip", None, 403, "agreement_ended"),
        }  # fmt: skip
